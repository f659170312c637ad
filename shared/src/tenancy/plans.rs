//! Plans: global FREE / PRO / ENTERPRISE rows seeded by migration, and per-tenant override
//! rows (same code, the tenant's id) that win over the global one for that tenant.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{Response, ok},
    db::Row,
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

pub const REQUESTS_PER_MINUTE_OF_T: &str = effective_plan_column!("requests_per_minute");
pub const MAX_API_KEYS_OF_T: &str = effective_plan_column!("max_api_keys");
pub const MAX_USERS_OF_T: &str = effective_plan_column!("max_users");

pub const CODES: &[&str] = &["FREE", "PRO", "ENTERPRISE"];

const PLAN_COLUMNS: &str = "p.code, p.tenant_id, p.name, p.requests_per_minute, p.max_users, p.max_api_keys, p.monthly_credits, p.priority";

fn plan_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "code": row.get::<String>("code")?,
        "name": row.get::<String>("name")?,
        "overridden": row.get::<Option<String>>("tenant_id")?.is_some(),
        "limits": {
            "requests_per_minute": row.get::<i64>("requests_per_minute")?,
            "max_users": row.get::<i64>("max_users")?,
            "max_api_keys": row.get::<i64>("max_api_keys")?,
            "monthly_credits": row.get::<i64>("monthly_credits")?,
            "priority": row.get::<i64>("priority")?,
        }
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

/// Limits a platform admin sets for one tenant; absent ones keep their current value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub requests_per_minute: Option<i64>,
    pub max_users: Option<i64>,
    pub max_api_keys: Option<i64>,
    pub monthly_credits: Option<i64>,
    pub priority: Option<i64>,
}

impl Overrides {
    fn validate(&self) -> ApiResult<()> {
        let positive = [
            ("requests_per_minute", self.requests_per_minute),
            ("max_users", self.max_users),
            ("max_api_keys", self.max_api_keys),
        ];
        for (field, value) in positive {
            if value.is_some_and(|value| value <= 0) {
                return Err(ApiError::invalid_field(field, "must be positive"));
            }
        }
        if self.monthly_credits.is_some_and(|value| value < 0) {
            return Err(ApiError::invalid_field(
                "monthly_credits",
                "must not be negative",
            ));
        }
        Ok(())
    }
}

/// Moves a tenant to plan `code` and, when `overrides` is given, writes the tenant's own row
/// for that plan (created from the global row, then updated field by field).
pub async fn assign(
    env: &Env,
    tenant_id: &str,
    code: &str,
    overrides: Option<Overrides>,
) -> ApiResult<()> {
    let now = env.now();
    let mut statements = vec![sql!(
        "UPDATE tenants SET plan_code = ?, updated_at = ? WHERE id = ? AND status != 'deleted'",
        code,
        now,
        tenant_id
    )];
    if let Some(overrides) = &overrides {
        overrides.validate()?;
        let values = [
            overrides.requests_per_minute,
            overrides.max_users,
            overrides.max_api_keys,
            overrides.monthly_credits,
            overrides.priority,
        ];
        let mut upsert = sql!(
            "INSERT INTO plans (id, code, tenant_id, name, requests_per_minute, max_users, max_api_keys,
                                monthly_credits, priority, created_at, updated_at)
             SELECT ?, g.code, t.id, g.name, COALESCE(?, g.requests_per_minute), COALESCE(?, g.max_users),
                    COALESCE(?, g.max_api_keys), COALESCE(?, g.monthly_credits), COALESCE(?, g.priority), ?, ?
             FROM plans g JOIN tenants t ON t.id = ? AND t.status != 'deleted'
             WHERE g.code = ? AND g.tenant_id IS NULL
             ON CONFLICT (tenant_id, code) WHERE tenant_id IS NOT NULL DO UPDATE SET
                 requests_per_minute = COALESCE(?, requests_per_minute),
                 max_users = COALESCE(?, max_users),
                 max_api_keys = COALESCE(?, max_api_keys),
                 monthly_credits = COALESCE(?, monthly_credits),
                 priority = COALESCE(?, priority),
                 updated_at = ?",
            new_id()
        );
        for value in values {
            upsert = upsert.bind(value);
        }
        upsert = upsert.bind(now).bind(now).bind(tenant_id).bind(code);
        for value in values {
            upsert = upsert.bind(value);
        }
        statements.push(upsert.bind(now));
    }
    let results = env.db.batch(statements).await?;
    if results[0].rows_affected == 0 {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(())
}
