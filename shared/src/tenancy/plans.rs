//! Plans: global FREE / PRO / ENTERPRISE rows seeded by migration, and per-tenant override
//! rows (same code, the tenant's id) that win over the global one for that tenant.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{Response, ok, present},
    audit::{self, Action, Actor, Target},
    db::{Row, Statement, Value},
    error::ApiResult,
    ids::{TenantId, new_id},
    sql,
};

/// One column of the plan in force for the tenant aliased `t`, as a scalar subquery.
macro_rules! effective_plan_column {
    ($column:literal) => {
        concat!(
            "(SELECT p.",
            $column,
            " FROM plans p WHERE p.code = t.plan_code AND (p.tenant_id = t.id OR p.tenant_id IS NULL)",
            " ORDER BY p.tenant_id IS NULL LIMIT 1)"
        )
    };
}
/// For the quota module, which picks the daily and monthly limit columns by metric.
pub(crate) use effective_plan_column;

pub const REQUESTS_PER_MINUTE_OF_T: &str = effective_plan_column!("requests_per_minute");
pub const MAX_API_KEYS_OF_T: &str = effective_plan_column!("max_api_keys");
pub const MAX_USERS_OF_T: &str = effective_plan_column!("max_users");
pub const AUDIT_RETENTION_DAYS_OF_T: &str = effective_plan_column!("audit_retention_days");
pub const MONTHLY_CREDITS_OF_T: &str = effective_plan_column!("monthly_credits");
pub const MAX_WORKERS_OF_T: &str = effective_plan_column!("max_workers");

pub const CODES: &[&str] = &["FREE", "PRO", "ENTERPRISE"];

/// Ten years: the longest an override may keep audit entries.
const MAX_AUDIT_RETENTION_DAYS: i64 = 3_650;
/// The largest count or limit a plan may name: far past any real plan, and small enough
/// that the sums and products the limits take part in stay within 64 bits.
pub const MAX_LIMIT: i64 = 1_000_000_000_000;
/// A plan's priority shifts its jobs' order in the queue by at most this much either way.
const MAX_PRIORITY: i64 = 1_000_000;

const PLAN_COLUMNS: &str = "p.code, p.tenant_id, p.name, p.requests_per_minute, p.max_users, p.max_api_keys, p.monthly_credits, p.priority, p.audit_retention_days,
    p.max_width, p.max_height, p.max_pixels, p.max_vram_mb, p.max_batch_size, p.max_concurrent_jobs, p.max_workers, p.allowed_models,
    p.daily_jobs, p.monthly_jobs, p.daily_gpu_seconds, p.monthly_gpu_seconds, p.daily_llm_tokens, p.monthly_llm_tokens,
    p.llm_requests_per_minute, p.llm_tokens_per_minute, p.llm_key_tokens_per_minute";

/// The limits that may be NULL, meaning none: the work limits `quota::plan_limits` checks
/// and the quotas `quota::limits` falls back to.
pub(crate) const NULLABLE_LIMITS: [&str; 17] = [
    "max_width",
    "max_height",
    "max_pixels",
    "max_vram_mb",
    "max_batch_size",
    "max_concurrent_jobs",
    "max_workers",
    "allowed_models",
    "daily_jobs",
    "monthly_jobs",
    "daily_gpu_seconds",
    "monthly_gpu_seconds",
    "daily_llm_tokens",
    "monthly_llm_tokens",
    "llm_requests_per_minute",
    "llm_tokens_per_minute",
    "llm_key_tokens_per_minute",
];

fn plan_json(row: &Row<'_>) -> ApiResult<Json> {
    let mut limits = json!({
        "requests_per_minute": row.get::<i64>("requests_per_minute")?,
        "max_users": row.get::<i64>("max_users")?,
        "max_api_keys": row.get::<i64>("max_api_keys")?,
        "monthly_credits": row.get::<i64>("monthly_credits")?,
        "priority": row.get::<i64>("priority")?,
        "audit_retention_days": row.get::<i64>("audit_retention_days")?,
    });
    for column in NULLABLE_LIMITS {
        limits[column] = match column {
            "allowed_models" => row
                .get::<Option<String>>(column)?
                .map(|text| serde_json::from_str::<Json>(&text))
                .transpose()
                .map_err(|error| {
                    ApiError::internal().caused_by(format!("plans.{column}: {error}"))
                })?
                .unwrap_or(Json::Null),
            _ => json!(row.get::<Option<i64>>(column)?),
        };
    }
    Ok(json!({
        "code": row.get::<String>("code")?,
        "name": row.get::<String>("name")?,
        "overridden": row.get::<Option<String>>("tenant_id")?.is_some(),
        "limits": limits,
    }))
}

/// The answer when a plan limit stops an action.
pub fn limit_reached(limit: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "plan_limit_reached",
        format!("the plan's limit of {what} is reached"),
    )
    .with_details(json!({ "limit": limit }))
}

/// The plan in force for a tenant, override included.
pub async fn effective(env: &Env, tenant_id: &TenantId) -> ApiResult<Json> {
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {PLAN_COLUMNS} FROM tenants t
                 JOIN plans p ON p.code = t.plan_code AND (p.tenant_id = t.id OR p.tenant_id IS NULL)
                 WHERE t.id = ? ORDER BY p.tenant_id IS NULL LIMIT 1"
            ),
            tenant_id
        ))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("tenant without a plan"))?;
    plan_json(&row)
}

/// `GET /api/v1/plans`: the global plans, as a pricing page shows them.
pub async fn list(env: &Env) -> ApiResult<Response> {
    let rows = env
        .db
        .execute(sql!(format!(
            "SELECT {PLAN_COLUMNS} FROM plans p WHERE p.tenant_id IS NULL ORDER BY p.priority"
        )))
        .await?;
    let plans = rows
        .iter()
        .map(|row| plan_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&json!({ "data": plans })))
}

pub fn parse_code(field: &str, text: &str) -> ApiResult<&'static str> {
    let upper = text.trim().to_ascii_uppercase();
    CODES
        .iter()
        .find(|code| **code == upper)
        .copied()
        .ok_or_else(|| {
            ApiError::invalid_field(field, format!("must be one of {}", CODES.join(", ")))
        })
}

/// Limits a platform admin sets for one tenant; absent ones keep their current value. The
/// limits that may be unlimited (work limits, quotas) take `null` for no limit.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub requests_per_minute: Option<i64>,
    pub max_users: Option<i64>,
    pub max_api_keys: Option<i64>,
    pub monthly_credits: Option<i64>,
    pub priority: Option<i64>,
    pub audit_retention_days: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    pub max_width: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub max_height: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub max_pixels: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub max_vram_mb: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub max_batch_size: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub max_concurrent_jobs: Option<Option<i64>>,
    /// Dedicated workers a tenant may create.
    #[serde(default, deserialize_with = "present")]
    pub max_workers: Option<Option<i64>>,
    /// Model names; `null` allows any model.
    #[serde(default, deserialize_with = "present")]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub daily_jobs: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub monthly_jobs: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub daily_gpu_seconds: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub monthly_gpu_seconds: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub daily_llm_tokens: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub monthly_llm_tokens: Option<Option<i64>>,
    /// The whole tenant's LLM gateway calls per minute.
    #[serde(default, deserialize_with = "present")]
    pub llm_requests_per_minute: Option<Option<i64>>,
    /// The whole tenant's LLM tokens (prompt and completion) per minute.
    #[serde(default, deserialize_with = "present")]
    pub llm_tokens_per_minute: Option<Option<i64>>,
    /// Each API key's LLM tokens per minute.
    #[serde(default, deserialize_with = "present")]
    pub llm_key_tokens_per_minute: Option<Option<i64>>,
}

impl Overrides {
    fn validate(&self) -> ApiResult<()> {
        let positive = [
            ("requests_per_minute", self.requests_per_minute),
            ("max_users", self.max_users),
            ("max_api_keys", self.max_api_keys),
        ];
        for (field, value) in positive {
            if value.is_some_and(|value| !(1..=MAX_LIMIT).contains(&value)) {
                return Err(ApiError::invalid_field(
                    field,
                    format!("must be from 1 to {MAX_LIMIT}"),
                ));
            }
        }
        if self
            .priority
            .is_some_and(|priority| !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&priority))
        {
            return Err(ApiError::invalid_field(
                "priority",
                format!("must be from -{MAX_PRIORITY} to {MAX_PRIORITY}"),
            ));
        }
        if self
            .audit_retention_days
            .is_some_and(|days| !(1..=MAX_AUDIT_RETENTION_DAYS).contains(&days))
        {
            return Err(ApiError::invalid_field(
                "audit_retention_days",
                format!("must be 1 to {MAX_AUDIT_RETENTION_DAYS} days"),
            ));
        }
        if let Some(credits) = self.monthly_credits {
            crate::credits::bounded_amount("monthly_credits", credits, 0)?;
        }
        let work_limits = [
            ("max_width", self.max_width),
            ("max_height", self.max_height),
            ("max_pixels", self.max_pixels),
            ("max_vram_mb", self.max_vram_mb),
            ("max_batch_size", self.max_batch_size),
            ("max_concurrent_jobs", self.max_concurrent_jobs),
            ("max_workers", self.max_workers),
            ("llm_requests_per_minute", self.llm_requests_per_minute),
            ("llm_tokens_per_minute", self.llm_tokens_per_minute),
            ("llm_key_tokens_per_minute", self.llm_key_tokens_per_minute),
        ];
        for (field, value) in work_limits {
            if value
                .flatten()
                .is_some_and(|value| !(1..=MAX_LIMIT).contains(&value))
            {
                return Err(ApiError::invalid_field(
                    field,
                    format!("must be from 1 to {MAX_LIMIT}, or null for no limit"),
                ));
            }
        }
        let quotas = [
            ("daily_jobs", self.daily_jobs),
            ("monthly_jobs", self.monthly_jobs),
            ("daily_gpu_seconds", self.daily_gpu_seconds),
            ("monthly_gpu_seconds", self.monthly_gpu_seconds),
            ("daily_llm_tokens", self.daily_llm_tokens),
            ("monthly_llm_tokens", self.monthly_llm_tokens),
        ];
        for (field, value) in quotas {
            if value
                .flatten()
                .is_some_and(|value| !(0..=MAX_LIMIT).contains(&value))
            {
                return Err(ApiError::invalid_field(
                    field,
                    format!("must be from 0 to {MAX_LIMIT}, or null for no limit"),
                ));
            }
        }
        if let Some(Some(models)) = &self.allowed_models {
            let valid = models.len() <= 200
                && models
                    .iter()
                    .all(|model| !model.trim().is_empty() && model.len() <= 255);
            if !valid {
                return Err(ApiError::invalid_field(
                    "allowed_models",
                    "must be at most 200 model names of 1 to 255 characters, or null for any model",
                ));
            }
        }
        Ok(())
    }

    /// The nullable limits in [`NULLABLE_LIMITS`] order: `None` keeps the current value,
    /// `Some(Value::Null)` removes the limit.
    fn nullable_values(&self) -> [Option<Value>; 17] {
        let number = |value: Option<Option<i64>>| value.map(Value::from);
        [
            number(self.max_width),
            number(self.max_height),
            number(self.max_pixels),
            number(self.max_vram_mb),
            number(self.max_batch_size),
            number(self.max_concurrent_jobs),
            number(self.max_workers),
            self.allowed_models.as_ref().map(|models| {
                models.as_ref().map_or(Value::Null, |models| {
                    Value::from(serde_json::to_string(models).expect("strings serialize"))
                })
            }),
            number(self.daily_jobs),
            number(self.monthly_jobs),
            number(self.daily_gpu_seconds),
            number(self.monthly_gpu_seconds),
            number(self.daily_llm_tokens),
            number(self.monthly_llm_tokens),
            number(self.llm_requests_per_minute),
            number(self.llm_tokens_per_minute),
            number(self.llm_key_tokens_per_minute),
        ]
    }
}

/// Moves a tenant to plan `code` and, when `overrides` is given, writes the tenant's own row
/// for that plan (created from the global row, then updated field by field). Audited as
/// Tollgate's own change; [`assign_as`] names the actor.
pub async fn assign(
    env: &Env,
    tenant_id: &str,
    code: &str,
    overrides: Option<Overrides>,
) -> ApiResult<()> {
    let metadata = json!({ "plan": code, "overridden": overrides.is_some() });
    assign_as(
        env,
        &Actor::system("tollgate"),
        tenant_id,
        code,
        overrides,
        metadata,
    )
    .await
}

/// [`assign`] by `actor`, with the `plan.changed` entry's metadata.
pub async fn assign_as(
    env: &Env,
    actor: &Actor,
    tenant_id: &str,
    code: &str,
    overrides: Option<Overrides>,
    metadata: Json,
) -> ApiResult<()> {
    let now = env.now();
    let mut statements = vec![
        sql!(
            "UPDATE tenants SET plan_code = ?, updated_at = ? WHERE id = ? AND status != 'deleted'",
            code,
            now,
            tenant_id
        ),
        audit::entry(
            tenant_id,
            actor,
            Action::PlanChanged,
            Target::new("tenant", tenant_id),
            metadata,
            now,
        )
        .only_if_exists(&audit::if_changed()),
    ];
    if let Some(overrides) = &overrides {
        overrides.validate()?;
        let values = [
            overrides.requests_per_minute,
            overrides.max_users,
            overrides.max_api_keys,
            overrides.monthly_credits,
            overrides.priority,
            overrides.audit_retention_days,
        ];
        // A nullable limit is bound as (given?, value), so that null can mean "no limit".
        let nullable = overrides.nullable_values();
        let bind_nullable = |mut statement: Statement| {
            for value in &nullable {
                statement = statement.bind(value.is_some()).bind(value.clone());
            }
            statement
        };
        let mut upsert = sql!(
            format!(
                "INSERT INTO plans (id, code, tenant_id, name, requests_per_minute, max_users, max_api_keys,
                                    monthly_credits, priority, audit_retention_days, {columns}, created_at, updated_at)
                 SELECT ?, g.code, t.id, g.name, COALESCE(?, g.requests_per_minute), COALESCE(?, g.max_users),
                        COALESCE(?, g.max_api_keys), COALESCE(?, g.monthly_credits), COALESCE(?, g.priority),
                        COALESCE(?, g.audit_retention_days),
                        {from_global}, ?, ?
                 FROM plans g JOIN tenants t ON t.id = ? AND t.status != 'deleted'
                 WHERE g.code = ? AND g.tenant_id IS NULL
                 ON CONFLICT (tenant_id, code) WHERE tenant_id IS NOT NULL DO UPDATE SET
                     requests_per_minute = COALESCE(?, requests_per_minute),
                     max_users = COALESCE(?, max_users),
                     max_api_keys = COALESCE(?, max_api_keys),
                     monthly_credits = COALESCE(?, monthly_credits),
                     priority = COALESCE(?, priority),
                     audit_retention_days = COALESCE(?, audit_retention_days),
                     {updated},
                     updated_at = ?",
                columns = NULLABLE_LIMITS.join(", "),
                from_global = NULLABLE_LIMITS
                    .map(|column| format!("CASE WHEN ? THEN ? ELSE g.{column} END"))
                    .join(", "),
                updated = NULLABLE_LIMITS
                    .map(|column| format!("{column} = CASE WHEN ? THEN ? ELSE {column} END"))
                    .join(", "),
            ),
            new_id()
        );
        for value in values {
            upsert = upsert.bind(value);
        }
        upsert = bind_nullable(upsert);
        upsert = upsert.bind(now).bind(now).bind(tenant_id).bind(code);
        for value in values {
            upsert = upsert.bind(value);
        }
        upsert = bind_nullable(upsert);
        statements.push(upsert.bind(now));
    }
    let results = env.db.batch(statements).await?;
    if results[0].rows_affected == 0 {
        return Err(ApiError::not_found("tenant"));
    }
    audit::try_seal(env, tenant_id).await;
    Ok(())
}

/// The Stripe price that sells plan `code`, if the operator set one.
pub async fn stripe_price(env: &Env, code: &str) -> ApiResult<Option<String>> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT stripe_price_id FROM plans WHERE code = ? AND tenant_id IS NULL",
            code
        ))
        .await?;
    Ok(rows
        .first()
        .map(|row| row.get("stripe_price_id"))
        .transpose()?
        .flatten())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct StripePrice {
    /// `null` takes the plan off sale.
    price_id: Option<String>,
}

/// `PUT /api/v1/admin/plans/{code}/stripe-price` (platform admin): which Stripe price sells
/// the plan, so checkout can offer it and subscription events can name it.
pub async fn set_stripe_price(
    env: &Env,
    request: &crate::api::ApiRequest,
    code: &str,
) -> ApiResult<Response> {
    let code = parse_code("code", code)?;
    let body: StripePrice = request.json()?;
    if body
        .price_id
        .as_ref()
        .is_some_and(|price| !price.starts_with("price_") || price.len() > 100)
    {
        return Err(ApiError::invalid_field(
            "price_id",
            "must be a Stripe price id (price_...)",
        ));
    }
    env.db
        .execute(sql!(
            "UPDATE plans SET stripe_price_id = ?, updated_at = ? WHERE code = ? AND tenant_id IS NULL",
            body.price_id,
            env.now(),
            code
        ))
        .await?;
    Ok(crate::api::no_content())
}
