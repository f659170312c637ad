//! Thresholds, blocking and auto top-up, evaluated in the batch of every movement.
//!
//! Crossing a threshold (a percentage of the account's total in use or held) records one
//! alert per account, threshold and month, with a `credits.alert` event in the outbox. At
//! 100 % the account is blocked: reserves are refused until credits are added, which
//! resolves the alerts that no longer hold and unblocks. An account with auto top-up
//! enabled whose remaining credits fall to its threshold gets one pending top-up request
//! (a `credits.topup_requested` event for billing to charge), never more per month than
//! its maximum.

use serde_json::json;

use crate::{
    Env,
    api::{Response, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    credits::{accounts, period},
    db::Statement,
    error::ApiResult,
    ids::new_id,
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

/// The statements that react to the balances of `account_ids` after a movement.
pub fn evaluate(account_ids: &[String], now: i64) -> Vec<Statement> {
    let batch = new_id();
    let month = period(now);
    let ids = in_list(account_ids.len());
    let alerts = sql!(
        format!(
            "INSERT INTO credit_alerts (id, tenant_id, account_id, threshold, period, batch_id, created_at)
             SELECT lower(hex(randomblob(16))), a.tenant_id, a.id, t.value, ?, ?, ?
             FROM credit_accounts a, json_each(a.alert_thresholds) t
             WHERE a.id IN ({ids}) AND a.total > 0 AND (a.used + a.reserved) * 100 >= t.value * a.total
             ON CONFLICT (account_id, threshold, period) DO NOTHING"
        ),
        &month,
        &batch,
        now
    );
    // Each event statement finds this batch's rows among the accounts' own (by index),
    // never by scanning the table for the batch.
    let alert_events = sql!(
        format!(
            "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
             SELECT lower(hex(randomblob(16))), tenant_id, 'credits.alert',
                    json_object('account_id', account_id, 'threshold', threshold, 'period', period), created_at
             FROM credit_alerts WHERE account_id IN ({ids}) AND period = ? AND batch_id = ?"
        )
    );
    let block = sql!(
        format!(
            "UPDATE credit_accounts SET blocked_at = ?, blocked_by = ?
             WHERE id IN ({ids}) AND blocked_at IS NULL AND total > 0 AND used + reserved >= total"
        ),
        now,
        &batch
    );
    let block_events = sql!(format!(
        "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
         SELECT lower(hex(randomblob(16))), tenant_id, 'credits.blocked',
                json_object('account_id', id, 'total', total, 'used', used, 'reserved', reserved), blocked_at
         FROM credit_accounts WHERE id IN ({ids}) AND blocked_by = ?"
    ));
    let topups = sql!(
        format!(
            "INSERT INTO credit_topup_requests (id, tenant_id, account_id, amount, period, batch_id, created_at)
             SELECT lower(hex(randomblob(16))), a.tenant_id, a.id, a.auto_topup_amount, ?, ?, ?
             FROM credit_accounts a
             WHERE a.id IN ({ids}) AND a.auto_topup_enabled = 1 AND a.auto_topup_amount > 0
               AND a.total IS NOT NULL AND a.total - a.used - a.reserved <= a.auto_topup_threshold
               AND NOT EXISTS (SELECT 1 FROM credit_topup_requests r WHERE r.account_id = a.id
                               AND r.status IN ('pending', 'charging'))
               AND (SELECT COUNT(*) FROM credit_topup_requests r WHERE r.account_id = a.id AND r.period = ?)
                   < a.auto_topup_max_per_month"
        ),
        &month,
        &batch,
        now
    );
    let topup_events = sql!(format!(
        "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
         SELECT lower(hex(randomblob(16))), tenant_id, 'credits.topup_requested',
                json_object('request_id', id, 'account_id', account_id, 'amount', amount), created_at
         FROM credit_topup_requests WHERE account_id IN ({ids}) AND period = ? AND batch_id = ?"
    ));
    vec![
        bind_all(alerts, account_ids),
        bind_all(alert_events, account_ids)
            .bind(&month)
            .bind(&batch),
        bind_all(block, account_ids),
        bind_all(block_events, account_ids).bind(&batch),
        bind_all(topups, account_ids).bind(&month),
        bind_all(topup_events, account_ids)
            .bind(&month)
            .bind(&batch),
    ]
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
            "UPDATE credit_accounts SET blocked_at = NULL, blocked_by = NULL, updated_at = ?
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
        for statement in evaluate(&ids, 1_000)
            .into_iter()
            .chain(resolve(&ids, 1_000))
        {
            let placeholders = statement.sql.matches('?').count();
            assert_eq!(placeholders, statement.params.len(), "{}", statement.sql);
        }
    }
}
