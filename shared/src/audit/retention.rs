//! Retention: entries older than the plan's `audit_retention_days` are pruned by cron.
//!
//! Pruning removes a prefix of the chain and records its last entry (sequence and hash) as
//! the tenant's checkpoint in the same batch, so verification starts from the checkpoint and
//! the rest of the chain still verifies. Only sealed entries are pruned, and the prefix ends
//! before the first entry still within retention, so a chain is never cut in the middle.
//! Both statements are idempotent and move only forward: two runs at once prune once.

use crate::{Env, db::DbError, sql, tenancy::plans};

const DAY: i64 = 86_400;

/// Prunes every tenant's expired entries; returns how many it removed.
pub async fn prune(env: &Env) -> Result<u64, DbError> {
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                format!(
                    "WITH bounds AS (
                         SELECT c.tenant_id,
                                MIN(c.sealed_seq, COALESCE(
                                    (SELECT MIN(y.seq) - 1 FROM audit_log y
                                     WHERE y.tenant_id = c.tenant_id AND y.created_at >= ? - {DAY} * {retention}),
                                    c.sealed_seq)) AS last_seq
                         FROM audit_chains c JOIN tenants t ON t.id = c.tenant_id)
                     UPDATE audit_chains SET pruned_seq = a.seq, pruned_hash = a.hash, updated_at = ?
                     FROM bounds b JOIN audit_log a ON a.tenant_id = b.tenant_id AND a.seq = b.last_seq
                     WHERE audit_chains.tenant_id = b.tenant_id
                       AND a.seq > audit_chains.pruned_seq AND a.hash IS NOT NULL",
                    retention = plans::AUDIT_RETENTION_DAYS_OF_T
                ),
                now,
                now
            ),
            sql!(
                "DELETE FROM audit_log WHERE rowid IN (
                     SELECT a.rowid FROM audit_chains c
                     JOIN audit_log a ON a.tenant_id = c.tenant_id AND a.seq <= c.pruned_seq)"
            ),
        ])
        .await?;
    Ok(results[1].rows_affected)
}
