//! Adding credits: a platform admin's grant to a tenant's pool, a tenant admin's grant to a
//! user's allowance, and setting (or removing) a user's allowance. Adding credits resolves
//! the alerts that no longer hold and unblocks.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok},
    audit::{self, Action, Actor, Target},
    auth::{principal::Principal, rbac::Permission},
    credits::{
        accounts::{
            self, ACCOUNT_COLUMNS, account_json, ensure_pool, ensure_user, pool_id, require_member,
            user_account_id,
        },
        alerts,
        ledger::{Movement, apply},
        within_balance,
    },
    db::Statement,
    error::ApiResult,
    ids::new_id,
    sql,
};

/// Credits to add, and the key that makes adding them idempotent.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub amount: i64,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Grant {
    fn validate(&self, kind: &str) -> ApiResult<()> {
        if kind == "adjustment" {
            super::bounded_amount("amount", self.amount, -super::MAX_AMOUNT)?;
            if self.amount == 0 {
                return Err(ApiError::invalid_field("amount", "must not be zero"));
            }
            if self
                .reason
                .as_ref()
                .is_none_or(|reason| reason.trim().is_empty())
            {
                return Err(ApiError::invalid_field(
                    "reason",
                    "an adjustment states its reason",
                ));
            }
        } else {
            super::bounded_amount("amount", self.amount, 1)?;
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|reason| reason.chars().count() > 200)
        {
            return Err(ApiError::invalid_field(
                "reason",
                "must be at most 200 characters",
            ));
        }
        if self
            .idempotency_key
            .as_ref()
            .is_some_and(|key| key.is_empty() || key.len() > 200)
        {
            return Err(ApiError::invalid_field(
                "idempotency_key",
                "must be 1 to 200 characters",
            ));
        }
        Ok(())
    }
}

/// Records a grant (or a signed adjustment) on `account_id` and answers with the account;
/// a replayed key answers the account as it is, with `applied: false`, and is not audited
/// again.
async fn grant(
    env: &Env,
    tenant_id: &str,
    account_id: String,
    ensure: Statement,
    actor: &Actor,
    body: Grant,
    kind: &'static str,
) -> ApiResult<Response> {
    body.validate(kind)?;
    let now = env.now();
    let metadata = json!({
        "account_id": account_id,
        "amount": body.amount,
        "reason": body.reason,
        "idempotency_key": body.idempotency_key,
    });
    let movement = Movement {
        id: new_id(),
        tenant_id,
        account_id: account_id.clone(),
        kind,
        total_delta: body.amount,
        used_delta: 0,
        reserved_delta: 0,
        reason: body.reason,
        actor_id: actor.acting_id().map(str::to_owned),
        idempotency_key: body.idempotency_key.unwrap_or_else(new_id),
        now,
    };
    let touched = std::slice::from_ref(&account_id);
    let mut statements = vec![ensure, movement.record(), apply(&[&movement.id], now)];
    statements.extend(alerts::resolve(touched, now));
    let event = if kind == "grant" {
        "credits.granted"
    } else {
        "credits.adjusted"
    };
    statements.push(sql!(
        "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
         SELECT ?, tenant_id, ?, json_object('account_id', account_id, 'amount', total_delta, 'reason', reason), created_at
         FROM credit_ledger WHERE id = ?",
        new_id(),
        event,
        &movement.id
    ));
    statements.push(
        audit::entry(
            tenant_id,
            actor,
            if kind == "grant" {
                Action::CreditsGranted
            } else {
                Action::CreditsAdjusted
            },
            Target::new("credit_account", &account_id),
            metadata,
            now,
        )
        .only_if_exists(&sql!(
            "SELECT 1 FROM credit_ledger WHERE id = ?",
            &movement.id
        )),
    );
    statements.push(sql!(
        format!("SELECT {ACCOUNT_COLUMNS} FROM credit_accounts WHERE id = ?"),
        &account_id
    ));
    let Some(results) = within_balance(env, statements).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "adjustment_below_spend",
            "the adjustment would take the account below what is already used or held",
        ));
    };
    let applied = results[1].rows_affected == 1;
    audit::try_seal(env, tenant_id).await;
    let row = results
        .last()
        .and_then(|rows| rows.first())
        .ok_or_else(|| ApiError::internal().caused_by("account vanished"))?;
    let body = json!({ "applied": applied, "account": account_json(&row)? });
    Ok(if applied { created(&body) } else { ok(&body) })
}

/// `POST /api/v1/admin/tenants/{id}/credits/grants` (platform admin): adds to the pool.
pub async fn grant_to_pool(
    env: &Env,
    request: &ApiRequest,
    admin_id: &str,
    tenant_id: &str,
) -> ApiResult<Response> {
    let actor = Actor::platform_admin(admin_id, request.client());
    add_to_pool_as(env, &actor, tenant_id, request.json()?).await
}

/// `POST /api/v1/admin/tenants/{id}/credits/adjustments` (platform admin): a signed
/// correction of the pool with a stated reason.
pub async fn adjust_pool(
    env: &Env,
    request: &ApiRequest,
    admin_id: &str,
    tenant_id: &str,
) -> ApiResult<Response> {
    let body: Grant = request.json()?;
    require_tenant(env, tenant_id).await?;
    let ensure = ensure_pool(tenant_id, env.now());
    grant(
        env,
        tenant_id,
        pool_id(tenant_id),
        ensure,
        &Actor::platform_admin(admin_id, request.client()),
        body,
        "adjustment",
    )
    .await
}

async fn require_tenant(env: &Env, tenant_id: &str) -> ApiResult<()> {
    let exists = env
        .db
        .execute(sql!(
            "SELECT 1 AS found FROM tenants WHERE id = ? AND status != 'deleted'",
            tenant_id
        ))
        .await?;
    if exists.is_empty() {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(())
}

/// Adds credits to a tenant's pool on an operator's behalf (the admin API, billing); the
/// audit log names `actor_id` as the system component that granted.
pub async fn add_to_pool(
    env: &Env,
    actor_id: &str,
    tenant_id: &str,
    body: Grant,
) -> ApiResult<Response> {
    add_to_pool_as(env, &Actor::system(actor_id), tenant_id, body).await
}

/// [`add_to_pool`] by `actor`.
pub async fn add_to_pool_as(
    env: &Env,
    actor: &Actor,
    tenant_id: &str,
    body: Grant,
) -> ApiResult<Response> {
    require_tenant(env, tenant_id).await?;
    let ensure = ensure_pool(tenant_id, env.now());
    grant(
        env,
        tenant_id,
        pool_id(tenant_id),
        ensure,
        actor,
        body,
        "grant",
    )
    .await
}

/// `POST /api/v1/users/{id}/credits/grants` (tenant admin): raises the user's allowance; a
/// user without an allowance gets one of the granted size.
pub async fn grant_to_user(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::CreditsManage)?;
    let body: Grant = request.json()?;
    require_member(env, principal, user_id).await?;
    let tenant = principal.tenant_id.as_str();
    let ensure = ensure_user(tenant, user_id, env.now());
    grant(
        env,
        tenant,
        user_account_id(user_id),
        ensure,
        &Actor::of(principal),
        body,
        "grant",
    )
    .await
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Allowance {
    /// `null` removes the allowance: the user then spends from the pool alone.
    allowance: Option<i64>,
}

/// `PUT /api/v1/users/{id}/credits/allowance` (tenant admin). An allowance below what the
/// user has already used or holds is refused.
pub async fn set_allowance(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::CreditsManage)?;
    let body: Allowance = request.json()?;
    if let Some(allowance) = body.allowance {
        super::bounded_amount("allowance", allowance, 0)?;
    }
    require_member(env, principal, user_id).await?;
    let tenant = principal.tenant_id.as_str();
    let now = env.now();
    let account = user_account_id(user_id);
    let ids = std::slice::from_ref(&account);
    let mut statements = vec![
        ensure_user(tenant, user_id, now),
        sql!(
            "INSERT INTO credit_ledger (id, tenant_id, account_id, kind, total_delta, actor_id, idempotency_key, created_at)
             SELECT ?, tenant_id, id, 'allowance', COALESCE(?, 0) - COALESCE(total, 0), ?, ?, ?
             FROM credit_accounts WHERE id = ?",
            new_id(),
            body.allowance,
            &principal.user_id,
            new_id(),
            now,
            &account
        ),
        sql!(
            "UPDATE credit_accounts SET total = ?, updated_at = ? WHERE id = ?",
            body.allowance,
            now,
            &account
        ),
    ];
    statements.extend(alerts::resolve(ids, now));
    statements.push(audit::entry(
        tenant,
        &Actor::of(principal),
        Action::CreditsAllowanceSet,
        Target::new("credit_account", &account),
        json!({ "user_id": user_id, "allowance": body.allowance }),
        now,
    ));
    if within_balance(env, statements).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "allowance_below_spend",
            "the allowance is below what the user has already used or holds",
        ));
    }
    audit::try_seal(env, tenant).await;
    let balances: Json = accounts::balances(env, &principal.tenant_id, user_id).await?;
    Ok(ok(&balances["user"]))
}
