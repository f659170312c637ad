//! Credit accounts: reading balances, and creating an account on first use.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{principal::Principal, rbac::Permission},
    credits::alerts,
    db::{Row, Statement},
    error::ApiResult,
    ids::TenantId,
    sql,
};

pub fn pool_id(tenant_id: &str) -> String {
    format!("pool:{tenant_id}")
}

pub fn user_account_id(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Creates the tenant's pool (empty) unless it exists.
pub fn ensure_pool(tenant_id: &str, now: i64) -> Statement {
    sql!(
        "INSERT OR IGNORE INTO credit_accounts (id, tenant_id, user_id, total, created_at, updated_at)
         VALUES (?, ?, NULL, 0, ?, ?)",
        pool_id(tenant_id),
        tenant_id,
        now,
        now
    )
}

/// Creates the user's account (no allowance) unless it exists.
pub fn ensure_user(tenant_id: &str, user_id: &str, now: i64) -> Statement {
    sql!(
        "INSERT OR IGNORE INTO credit_accounts (id, tenant_id, user_id, total, created_at, updated_at)
         VALUES (?, ?, ?, NULL, ?, ?)",
        user_account_id(user_id),
        tenant_id,
        user_id,
        now,
        now
    )
}

pub(crate) const ACCOUNT_COLUMNS: &str =
    "id, user_id, total, used, reserved, alert_thresholds, blocked_at,
     auto_topup_enabled, auto_topup_threshold, auto_topup_amount, auto_topup_max_per_month";

pub(crate) fn account_json(row: &Row<'_>) -> ApiResult<Json> {
    let total: Option<i64> = row.get("total")?;
    let (used, reserved): (i64, i64) = (row.get("used")?, row.get("reserved")?);
    let thresholds: Json = serde_json::from_str(&row.get::<String>("alert_thresholds")?)
        .map_err(|error| ApiError::internal().caused_by(error.to_string()))?;
    Ok(json!({
        "id": row.get::<String>("id")?,
        "kind": if row.get::<Option<String>>("user_id")?.is_some() { "user" } else { "pool" },
        "total": total,
        "used": used,
        "reserved": reserved,
        "remaining": total.map(|total| total - used - reserved),
        "blocked": row.get::<Option<i64>>("blocked_at")?.is_some(),
        "alert_thresholds": thresholds,
        "auto_topup": {
            "enabled": row.get::<bool>("auto_topup_enabled")?,
            "threshold": row.get::<i64>("auto_topup_threshold")?,
            "amount": row.get::<i64>("auto_topup_amount")?,
            "max_per_month": row.get::<i64>("auto_topup_max_per_month")?,
        },
    }))
}

/// An account as it reads before its first movement.
fn untouched(id: &str, kind: &str) -> Json {
    json!({
        "id": id,
        "kind": kind,
        "total": if kind == "pool" { json!(0) } else { Json::Null },
        "used": 0,
        "reserved": 0,
        "remaining": if kind == "pool" { json!(0) } else { Json::Null },
        "blocked": false,
        "alert_thresholds": alerts::DEFAULT_THRESHOLDS,
        "auto_topup": { "enabled": false, "threshold": 0, "amount": 0, "max_per_month": 0 },
    })
}

/// The tenant's pool and one user's account.
pub async fn balances(env: &Env, tenant_id: &TenantId, user_id: &str) -> ApiResult<Json> {
    let (pool, user) = (pool_id(tenant_id.as_str()), user_account_id(user_id));
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {ACCOUNT_COLUMNS} FROM credit_accounts WHERE id IN (?, ?) AND tenant_id = ?"
            ),
            &pool,
            &user,
            tenant_id
        ))
        .await?;
    let find = |id: &str, kind: &str| -> ApiResult<Json> {
        match rows
            .iter()
            .find(|row| row.get::<String>("id").is_ok_and(|found| found == id))
        {
            Some(row) => account_json(&row),
            None => Ok(untouched(id, kind)),
        }
    };
    Ok(json!({ "pool": find(&pool, "pool")?, "user": find(&user, "user")? }))
}

/// 404 unless `user_id` is an active user of the caller's tenant.
pub(crate) async fn require_member(
    env: &Env,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<()> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT 1 AS found FROM users WHERE id = ? AND tenant_id = ? AND status = 'active'",
            user_id,
            &principal.tenant_id
        ))
        .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found("user"));
    }
    Ok(())
}

/// Reading another user's credits needs `CreditsManage`; one's own, `CreditsRead`.
pub(crate) async fn authorize_user(
    env: &Env,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<()> {
    if principal.is_self(user_id) {
        principal.require(Permission::CreditsRead)
    } else {
        principal.require(Permission::CreditsManage)?;
        require_member(env, principal, user_id).await
    }
}

/// `GET /api/v1/credits`: the caller's account and the tenant pool.
pub async fn get_own(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::CreditsRead)?;
    Ok(ok(&balances(
        env,
        &principal.tenant_id,
        principal.user_id.as_str(),
    )
    .await?))
}

/// `GET /api/v1/users/{id}/credits`
pub async fn get_user(env: &Env, principal: &Principal, user_id: &str) -> ApiResult<Response> {
    authorize_user(env, principal, user_id).await?;
    Ok(ok(&balances(env, &principal.tenant_id, user_id).await?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
struct AutoTopUp {
    enabled: bool,
    threshold: i64,
    amount: i64,
    max_per_month: i64,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    alert_thresholds: Option<Vec<i64>>,
    auto_topup: Option<AutoTopUp>,
}

fn settings_statement(
    account_id: &str,
    tenant_id: &TenantId,
    settings: &Settings,
    now: i64,
) -> ApiResult<Statement> {
    let thresholds = match &settings.alert_thresholds {
        Some(list) => {
            if list.is_empty()
                || list.len() > 10
                || list.iter().any(|percent| !(1..=100).contains(percent))
            {
                return Err(ApiError::invalid_field(
                    "alert_thresholds",
                    "must list 1 to 10 percentages from 1 to 100",
                ));
            }
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            Some(serde_json::to_string(&sorted).expect("numbers serialize"))
        }
        None => None,
    };
    if let Some(topup) = &settings.auto_topup {
        super::bounded_amount("auto_topup.threshold", topup.threshold, 0)?;
        super::bounded_amount("auto_topup.amount", topup.amount, 0)?;
        super::bounded_amount("auto_topup.max_per_month", topup.max_per_month, 0)?;
        if topup.enabled && (topup.amount == 0 || topup.max_per_month == 0) {
            return Err(ApiError::invalid_field(
                "auto_topup",
                "an enabled top-up needs a positive amount and max_per_month",
            ));
        }
    }
    let topup = settings.auto_topup.as_ref();
    Ok(sql!(
        "UPDATE credit_accounts SET
             alert_thresholds = COALESCE(?, alert_thresholds),
             auto_topup_enabled = COALESCE(?, auto_topup_enabled),
             auto_topup_threshold = COALESCE(?, auto_topup_threshold),
             auto_topup_amount = COALESCE(?, auto_topup_amount),
             auto_topup_max_per_month = COALESCE(?, auto_topup_max_per_month),
             updated_at = ?
         WHERE id = ? AND tenant_id = ?",
        thresholds,
        topup.map(|topup| topup.enabled),
        topup.map(|topup| topup.threshold),
        topup.map(|topup| topup.amount),
        topup.map(|topup| topup.max_per_month),
        now,
        account_id,
        tenant_id
    ))
}

async fn update_settings(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    account_id: String,
    ensure: Statement,
) -> ApiResult<Json> {
    let settings: Settings = request.json()?;
    let now = env.now();
    let update = settings_statement(&account_id, &principal.tenant_id, &settings, now)?;
    let mut statements = vec![ensure, update];
    statements.push(sql!(
        format!("SELECT {ACCOUNT_COLUMNS} FROM credit_accounts WHERE id = ?"),
        &account_id
    ));
    let results = env.db.batch(statements).await?;
    let row = results
        .last()
        .and_then(|rows| rows.first())
        .ok_or_else(|| ApiError::internal().caused_by("account vanished"))?;
    account_json(&row)
}

/// `PUT /api/v1/credits/settings`: the pool's alert thresholds and auto top-up.
pub async fn update_pool_settings(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::CreditsManage)?;
    let tenant = principal.tenant_id.as_str();
    let account = update_settings(
        env,
        request,
        principal,
        pool_id(tenant),
        ensure_pool(tenant, env.now()),
    )
    .await?;
    Ok(ok(&account))
}

/// `PUT /api/v1/users/{id}/credits/settings`
pub async fn update_user_settings(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::CreditsManage)?;
    require_member(env, principal, user_id).await?;
    let ensure = ensure_user(principal.tenant_id.as_str(), user_id, env.now());
    let account =
        update_settings(env, request, principal, user_account_id(user_id), ensure).await?;
    Ok(ok(&account))
}
