//! Thresholds, blocking and auto top-up.
//!
//! Crossing a threshold (a percentage of the account's total in use or held) records one
//! alert per account, threshold and month, with a `credits.alert` event in the outbox. At
//! 100 % the account is blocked, with a `credits.blocked` event: reserves are refused until
//! credits are added, which resolves the alerts that no longer hold and unblocks
//! ([`resolve`]). An account with auto top-up enabled whose remaining credits fall to its
//! threshold gets one pending top-up request (a `credits.topup_requested` event for billing
//! to charge), never more per month than its maximum.
//!
//! The first three happen inside the statement that changes the account: they are triggers
//! on `credit_accounts` (migration `0014_credit_reactions.sql`), because looking for them
//! with statements of their own cost every movement six statements, a third of the
//! writer's time on reserve + settle, to find nothing nearly every time. The triggers date
//! what they write with the account's `updated_at`, which every update sets to its moment.

use serde_json::json;

use crate::{
    Env,
    api::{Response, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    credits::accounts,
    db::Statement,
    error::ApiResult,
    sql,
};

pub const DEFAULT_THRESHOLDS: [i64; 3] = [80, 95, 100];

fn in_list(count: usize) -> String {
    vec!["?"; count].join(", ")
}

fn bind_all(mut statement: Statement, ids: &[String]) -> Statement {
    for id in ids {
        statement = statement.bind(id);
    }
    statement
}

/// After credits are added: resolves the alerts that no longer hold and unblocks the
/// accounts that have room again.
pub fn resolve(account_ids: &[String], now: i64) -> Vec<Statement> {
    let ids = in_list(account_ids.len());
    let resolve = sql!(
        format!(
            "UPDATE credit_alerts SET resolved_at = ?
             WHERE account_id IN ({ids}) AND resolved_at IS NULL
               AND EXISTS (SELECT 1 FROM credit_accounts a WHERE a.id = credit_alerts.account_id
                           AND (a.total IS NULL OR (a.used + a.reserved) * 100 < credit_alerts.threshold * a.total))"
        ),
        now
    );
    let unblock = sql!(
        format!(
            "UPDATE credit_accounts SET blocked_at = NULL, updated_at = ?
             WHERE id IN ({ids}) AND blocked_at IS NOT NULL AND (total IS NULL OR used + reserved < total)"
        ),
        now
    );
    vec![
        bind_all(resolve, account_ids),
        bind_all(unblock, account_ids),
    ]
}

/// `GET /api/v1/credits/alerts`: the caller's alerts, and the pool's for admins.
pub async fn list(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::CreditsRead)?;
    let mut accounts = vec![accounts::user_account_id(principal.user_id.as_str())];
    if principal.require(Permission::CreditsManage).is_ok() {
        accounts.push(accounts::pool_id(principal.tenant_id.as_str()));
    }
    let statement = sql!(
        format!(
            "SELECT account_id, threshold, period, created_at, resolved_at FROM credit_alerts
             WHERE tenant_id = ? AND account_id IN ({}) ORDER BY created_at DESC, threshold DESC LIMIT 100",
            in_list(accounts.len())
        ),
        &principal.tenant_id
    );
    let rows = env.db.execute(bind_all(statement, &accounts)).await?;
    let alerts = rows
        .iter()
        .map(|row| {
            Ok(json!({
                "account_id": row.get::<String>("account_id")?,
                "threshold": row.get::<i64>("threshold")?,
                "period": row.get::<String>("period")?,
                "created_at": rfc3339(row.get("created_at")?),
                "resolved_at": row.get::<Option<i64>>("resolved_at")?.map(rfc3339),
            }))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&json!({ "data": alerts })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_binds_what_it_declares() {
        let ids = vec!["pool:t".to_owned(), "user:u".to_owned()];
        for statement in resolve(&ids, 1_000) {
            let placeholders = statement.sql.matches('?').count();
            assert_eq!(placeholders, statement.params.len(), "{}", statement.sql);
        }
    }
}
