//! The ledger: one row per movement per account, applied to the account in the same batch.
//!
//! A row is inserted with `ON CONFLICT DO NOTHING` on `(account, kind, idempotency key)` and
//! applied by joining on its fresh id: a replayed request inserts nothing, so it applies
//! nothing. That is what makes every movement idempotent.

use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::{parse_rfc3339, rfc3339},
    credits::accounts::{self, authorize_user},
    db::{Row, Statement},
    error::ApiResult,
    sql,
};

pub const KINDS: &[&str] = &[
    "grant",
    "purchase",
    "reserve",
    "settle",
    "release",
    "refund",
    "expire",
    "adjustment",
    "allowance",
];

/// One movement on one account.
pub struct Movement<'a> {
    pub id: String,
    pub tenant_id: &'a str,
    pub account_id: String,
    pub kind: &'static str,
    pub total_delta: i64,
    pub used_delta: i64,
    pub reserved_delta: i64,
    pub reason: Option<String>,
    pub actor_id: Option<String>,
    pub idempotency_key: String,
    pub now: i64,
}

impl Movement<'_> {
    /// Inserts the row unless the same key already moved this account this way.
    pub fn record(&self) -> Statement {
        sql!(
            "INSERT INTO credit_ledger (id, tenant_id, account_id, kind, total_delta, used_delta, reserved_delta,
                                        reason, actor_id, idempotency_key, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, kind, idempotency_key) DO NOTHING",
            &self.id,
            self.tenant_id,
            &self.account_id,
            self.kind,
            self.total_delta,
            self.used_delta,
            self.reserved_delta,
            self.reason.clone(),
            self.actor_id.clone(),
            &self.idempotency_key,
            self.now
        )
    }
}

/// Applies freshly inserted ledger rows (at most one per account) to their accounts. Rows a
/// replay did not insert are absent, so they apply nothing. An account without an
/// allowance (total NULL) keeps none unless the row changes its total.
pub fn apply(ledger_ids: &[&str], now: i64) -> Statement {
    let placeholders = vec!["?"; ledger_ids.len()].join(", ");
    let mut statement = sql!(
        format!(
            "UPDATE credit_accounts SET
                 total = CASE WHEN credit_accounts.total IS NULL AND l.total_delta = 0 THEN NULL
                              ELSE COALESCE(credit_accounts.total, 0) + l.total_delta END,
                 used = credit_accounts.used + l.used_delta,
                 reserved = credit_accounts.reserved + l.reserved_delta,
                 updated_at = ?
             FROM credit_ledger l
             WHERE l.id IN ({placeholders}) AND l.account_id = credit_accounts.id"
        ),
        now
    );
    for id in ledger_ids {
        statement = statement.bind(*id);
    }
    statement
}

fn entry_json(row: &Row<'_>) -> ApiResult<Json> {
    let (total, used, reserved): (i64, i64, i64) = (
        row.get("total_delta")?,
        row.get("used_delta")?,
        row.get("reserved_delta")?,
    );
    Ok(json!({
        "id": row.get::<String>("id")?,
        "account_id": row.get::<String>("account_id")?,
        "kind": row.get::<String>("kind")?,
        // What the movement did to the credits still available.
        "amount": total - used - reserved,
        "total_delta": total,
        "used_delta": used,
        "reserved_delta": reserved,
        "reason": row.get::<Option<String>>("reason")?,
        "actor_id": row.get::<Option<String>>("actor_id")?,
        "reservation_id": row.get::<Option<String>>("reservation_id")?,
        "model": row.get::<Option<String>>("model")?,
        "job_id": row.get::<Option<String>>("job_id")?,
        "idempotency_key": row.get::<String>("idempotency_key")?,
        "created_at": rfc3339(row.get("created_at")?),
    }))
}

/// A page of one account's ledger, newest first, filtered by `?kind=` and `?since=` /
/// `?until=` (RFC 3339).
async fn page_of(
    env: &Env,
    request: &ApiRequest,
    tenant_id: &str,
    account_id: &str,
) -> ApiResult<Json> {
    let page = request.page()?;
    let kind = request.query_param("kind");
    if let Some(kind) = &kind
        && !KINDS.contains(&kind.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("kind must be one of {}", KINDS.join(", ")),
        ));
    }
    let time = |name: &str| -> ApiResult<Option<i64>> {
        request
            .query_param(name)
            .map(|text| {
                parse_rfc3339(&text).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{name} must be an RFC 3339 time"),
                    )
                })
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let rows = env
        .db
        .execute(sql!(
            "SELECT id, account_id, kind, total_delta, used_delta, reserved_delta, reason, actor_id,
                    reservation_id, model, job_id, idempotency_key, created_at
             FROM credit_ledger
             WHERE tenant_id = ? AND account_id = ?
               AND (? IS NULL OR kind = ?) AND (? IS NULL OR created_at >= ?) AND (? IS NULL OR created_at < ?)
             ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            tenant_id,
            account_id,
            kind.clone(),
            kind,
            since,
            since,
            until,
            until,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let entries = rows
        .iter()
        .map(|row| entry_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(page.body(entries))
}

/// `GET /api/v1/credits/ledger`: the caller's account; `?account=pool` for the tenant pool
/// (admins).
pub async fn list_own(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    let tenant = principal.tenant_id.as_str();
    let account = match request.query_param("account").as_deref() {
        None | Some("user") => {
            principal.require(Permission::CreditsRead)?;
            accounts::user_account_id(principal.user_id.as_str())
        }
        Some("pool") => {
            principal.require(Permission::CreditsManage)?;
            accounts::pool_id(tenant)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "account must be user or pool",
            ));
        }
    };
    Ok(ok(&page_of(env, request, tenant, &account).await?))
}

/// `GET /api/v1/users/{id}/credits/ledger`
pub async fn list_user(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    authorize_user(env, principal, user_id).await?;
    let account = accounts::user_account_id(user_id);
    Ok(ok(&page_of(
        env,
        request,
        principal.tenant_id.as_str(),
        &account,
    )
    .await?))
}
