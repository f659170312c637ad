//! Plan limits checked before any work is queued: resolution, batch size, estimated VRAM
//! and models, against the tenant's effective plan (its override row, else the global one).
//!
//! The statuses tell the client what to do about it:
//! - **403 `plan_limit_exceeded`** for what the plan does not entitle the tenant to — a
//!   model outside `allowed_models`, or more VRAM than `max_vram_mb`: the same request
//!   would pass on a bigger plan, not by editing it.
//! - **422 `plan_limit_exceeded`** for request parameters beyond the plan's range — width,
//!   height, pixels, batch size: the client can shrink the request and send it again.
//!
//! Details always name the limit (`max_width`, …), what the plan allows and the offending
//! value. The rules are checked in that order (entitlements first), the first broken one
//! answers. `max_concurrent_jobs` is loaded here for the jobs queue, which counts running
//! jobs in its claim statement.
//!
//! [`PlanLimits::check`] is pure; [`load`] reads the plan.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::{ApiError, Env, db::Row, error::ApiResult, ids::TenantId, sql};

/// What a job asks for, as far as the plan cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkRequest {
    pub width: u32,
    pub height: u32,
    pub batch_size: u32,
    pub estimated_vram_mb: u64,
    /// Every model (checkpoint, LoRA, …) the workflow loads.
    #[serde(default)]
    pub models: Vec<String>,
}

/// The limits of a tenant's effective plan; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanLimits {
    pub plan: String,
    pub max_width: Option<i64>,
    pub max_height: Option<i64>,
    pub max_pixels: Option<i64>,
    pub max_vram_mb: Option<i64>,
    pub max_batch_size: Option<i64>,
    pub max_concurrent_jobs: Option<i64>,
    /// `None`: any model.
    pub allowed_models: Option<Vec<String>>,
}

impl PlanLimits {
    /// Ok when the plan allows `work`; otherwise the first rule it breaks.
    pub fn check(&self, work: &WorkRequest) -> ApiResult<()> {
        for (field, value) in [
            ("width", work.width),
            ("height", work.height),
            ("batch_size", work.batch_size),
        ] {
            if value == 0 {
                return Err(ApiError::invalid_field(field, "must be at least 1"));
            }
        }
        if let Some(allowed) = &self.allowed_models
            && let Some(model) = work.models.iter().find(|model| !allowed.contains(model))
        {
            return Err(self.refusal(
                StatusCode::FORBIDDEN,
                "allowed_models",
                json!(allowed),
                json!(model),
                format!("the {} plan does not include the model {model}", self.plan),
            ));
        }
        let pixels = u64::from(work.width) * u64::from(work.height);
        let numeric = [
            (
                StatusCode::FORBIDDEN,
                "max_vram_mb",
                self.max_vram_mb,
                work.estimated_vram_mb,
                "MB of VRAM",
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "max_width",
                self.max_width,
                u64::from(work.width),
                "pixels of width",
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "max_height",
                self.max_height,
                u64::from(work.height),
                "pixels of height",
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "max_pixels",
                self.max_pixels,
                pixels,
                "pixels per image",
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "max_batch_size",
                self.max_batch_size,
                u64::from(work.batch_size),
                "images per batch",
            ),
        ];
        for (status, limit, allowed, requested, unit) in numeric {
            if let Some(allowed) = allowed
                && requested > u64::try_from(allowed).unwrap_or(0)
            {
                return Err(self.refusal(
                    status,
                    limit,
                    json!(allowed),
                    json!(requested),
                    format!(
                        "the {} plan allows at most {allowed} {unit}; the request asks for {requested}",
                        self.plan
                    ),
                ));
            }
        }
        Ok(())
    }

    fn refusal(
        &self,
        status: StatusCode,
        limit: &str,
        allowed: Json,
        requested: Json,
        message: String,
    ) -> ApiError {
        ApiError::new(status, "plan_limit_exceeded", message).with_details(json!({
            "plan": self.plan,
            "limit": limit,
            "allowed": allowed,
            "requested": requested,
        }))
    }

    fn from_row(row: &Row<'_>) -> ApiResult<Self> {
        let allowed_models = row
            .get::<Option<String>>("allowed_models")?
            .map(|text| {
                serde_json::from_str::<Vec<String>>(&text).map_err(|error| {
                    ApiError::internal().caused_by(format!("plans.allowed_models: {error}"))
                })
            })
            .transpose()?;
        Ok(PlanLimits {
            plan: row.get("code")?,
            max_width: row.get("max_width")?,
            max_height: row.get("max_height")?,
            max_pixels: row.get("max_pixels")?,
            max_vram_mb: row.get("max_vram_mb")?,
            max_batch_size: row.get("max_batch_size")?,
            max_concurrent_jobs: row.get("max_concurrent_jobs")?,
            allowed_models,
        })
    }
}

/// The limits of the tenant's effective plan.
pub async fn load(env: &Env, tenant_id: &TenantId) -> ApiResult<PlanLimits> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT p.code, p.max_width, p.max_height, p.max_pixels, p.max_vram_mb, p.max_batch_size,
                    p.max_concurrent_jobs, p.allowed_models
             FROM tenants t
             JOIN plans p ON p.code = t.plan_code AND (p.tenant_id = t.id OR p.tenant_id IS NULL)
             WHERE t.id = ? ORDER BY p.tenant_id IS NULL LIMIT 1",
            tenant_id
        ))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("tenant without a plan"))?;
    PlanLimits::from_row(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free() -> PlanLimits {
        PlanLimits {
            plan: "FREE".into(),
            max_width: Some(1024),
            max_height: Some(1024),
            max_pixels: Some(786_432),
            max_vram_mb: Some(12_288),
            max_batch_size: Some(2),
            max_concurrent_jobs: Some(1),
            allowed_models: Some(vec!["sdxl.safetensors".into(), "sd15.safetensors".into()]),
        }
    }

    fn work() -> WorkRequest {
        WorkRequest {
            width: 768,
            height: 1024,
            batch_size: 2,
            estimated_vram_mb: 12_288,
            models: vec!["sdxl.safetensors".into()],
        }
    }

    fn refused(work: WorkRequest) -> ApiError {
        free().check(&work).unwrap_err()
    }

    #[test]
    fn work_at_every_limit_exactly_passes() {
        assert_eq!(free().check(&work()), Ok(()));
    }

    #[test]
    fn a_plan_without_limits_allows_anything() {
        let unlimited = PlanLimits {
            plan: "ENTERPRISE".into(),
            ..PlanLimits::default()
        };
        let huge = WorkRequest {
            width: u32::MAX,
            height: u32::MAX,
            batch_size: u32::MAX,
            estimated_vram_mb: u64::MAX,
            models: vec!["anything.safetensors".into()],
        };
        assert_eq!(unlimited.check(&huge), Ok(()));
    }

    #[test]
    fn a_model_outside_the_plan_is_forbidden_and_named() {
        let error = refused(WorkRequest {
            models: vec!["sdxl.safetensors".into(), "flux-dev.safetensors".into()],
            ..work()
        });
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(error.code, "plan_limit_exceeded");
        assert_eq!(error.details["limit"], "allowed_models");
        assert_eq!(error.details["requested"], "flux-dev.safetensors");
        assert_eq!(error.details["allowed"][0], "sdxl.safetensors");
    }

    #[test]
    fn an_empty_model_list_allows_no_model() {
        let plan = PlanLimits {
            allowed_models: Some(vec![]),
            ..free()
        };
        assert_eq!(
            plan.check(&WorkRequest {
                models: vec![],
                ..work()
            }),
            Ok(())
        );
        assert!(plan.check(&work()).is_err());
    }

    #[test]
    fn more_vram_than_the_plan_allows_is_forbidden() {
        let error = refused(WorkRequest {
            estimated_vram_mb: 12_289,
            ..work()
        });
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert_eq!(error.details["limit"], "max_vram_mb");
        assert_eq!(error.details["allowed"], 12_288);
        assert_eq!(error.details["requested"], 12_289);
    }

    #[test]
    fn width_beyond_the_plan_is_unprocessable() {
        let error = refused(WorkRequest {
            width: 1025,
            height: 512,
            ..work()
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "plan_limit_exceeded");
        assert_eq!(error.details["limit"], "max_width");
        assert_eq!(error.details["requested"], 1025);
    }

    #[test]
    fn height_beyond_the_plan_is_unprocessable() {
        let error = refused(WorkRequest {
            width: 512,
            height: 2048,
            ..work()
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.details["limit"], "max_height");
    }

    #[test]
    fn pixels_beyond_the_plan_are_unprocessable_even_within_width_and_height() {
        let error = refused(WorkRequest {
            width: 1024,
            height: 1024,
            ..work()
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.details["limit"], "max_pixels");
        assert_eq!(error.details["allowed"], 786_432);
        assert_eq!(error.details["requested"], 1_048_576);
    }

    #[test]
    fn a_batch_beyond_the_plan_is_unprocessable() {
        let error = refused(WorkRequest {
            batch_size: 3,
            ..work()
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.details["limit"], "max_batch_size");
        assert_eq!(error.details["requested"], 3);
    }

    #[test]
    fn entitlements_are_judged_before_sizes() {
        let error = refused(WorkRequest {
            width: 4096,
            models: vec!["flux-dev.safetensors".into()],
            ..work()
        });
        assert_eq!(error.details["limit"], "allowed_models");
    }

    #[test]
    fn empty_images_are_invalid_not_over_a_limit() {
        for work in [
            WorkRequest { width: 0, ..work() },
            WorkRequest {
                height: 0,
                ..work()
            },
            WorkRequest {
                batch_size: 0,
                ..work()
            },
        ] {
            let error = refused(work);
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(error.code, "validation_failed");
        }
    }
}
