//! Cron's report builder: for each kind, the period that just ended, one report per tenant
//! that existed during it, each announced by an outbox event in the same batch (and, for
//! monthly reports, mailed to the tenant's owners in that batch too).
//!
//! Safe when cron runs twice at once: both runs may read the same tenants and compose the
//! same reports, but each report is inserted under the unique `(tenant, kind, period)`
//! with `ON CONFLICT DO NOTHING`, and its event and mail are written only if the row with
//! the id this run chose exists, which is true for the one run whose insert won. Reading
//! before writing is safe here because a period that has ended no longer changes: the
//! counters of past windows are never incremented again, and ledger rows carry the time
//! they were written.

use std::collections::HashMap;

use serde_json::json;

use super::{
    content::{Activity, summary},
    period::{ReportKind, ReportPeriod},
};
use crate::{
    Env,
    clock::rfc3339,
    db::{DbError, Row, Rows, Statement, Value},
    ids::new_id,
    mail,
    quota::{
        by_model::{self, ModelUsage},
        metrics::Metric,
    },
    sql,
    webhooks::events::emit_from,
};

/// Tenants reported on per batch.
const TENANTS_PER_ROUND: i64 = 50;
/// Rounds per kind and cron run (2,500 tenants); the next run carries on.
const MAX_ROUNDS: usize = 50;
/// Daily reports are deleted after this long; monthly ones are kept.
pub const DAILY_RETENTION_SECONDS: i64 = 400 * 86_400;

/// What one run built, for the cron report.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ReportsBuilt {
    pub daily: u64,
    pub monthly: u64,
    /// Daily reports past retention, deleted.
    pub purged: u64,
}

/// Builds the missing reports of the periods that just ended, then applies retention.
pub async fn run(env: &Env) -> Result<ReportsBuilt, DbError> {
    let now = env.now();
    let mut built = ReportsBuilt::default();
    for kind in ReportKind::ALL {
        let period = ReportPeriod::just_ended(kind, now);
        let mut count = 0;
        for _ in 0..MAX_ROUNDS {
            let tenants = unreported(env, &period).await?;
            if tenants.is_empty() {
                break;
            }
            count += build(env, &period, &tenants, now).await?;
            if (tenants.len() as i64) < TENANTS_PER_ROUND {
                break;
            }
        }
        match kind {
            ReportKind::Daily => built.daily = count,
            ReportKind::Monthly => built.monthly = count,
        }
    }
    built.purged = env
        .db
        .execute(sql!(
            "DELETE FROM usage_reports WHERE kind = 'daily' AND period_end < ?",
            now - DAILY_RETENTION_SECONDS
        ))
        .await?
        .rows_affected;
    Ok(built)
}

struct Tenant {
    id: String,
    name: String,
}

/// Tenants that existed during `period` (and are not deleted) without its report yet.
async fn unreported(env: &Env, period: &ReportPeriod) -> Result<Vec<Tenant>, DbError> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT t.id, t.name FROM tenants t
             WHERE t.status != 'deleted' AND t.created_at < ?
               AND NOT EXISTS (SELECT 1 FROM usage_reports r
                               WHERE r.tenant_id = t.id AND r.kind = ? AND r.period = ?)
             ORDER BY t.id LIMIT ?",
            period.end,
            period.kind.as_str(),
            &period.label,
            TENANTS_PER_ROUND
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Tenant {
                id: row.get("id")?,
                name: row.get("name")?,
            })
        })
        .collect()
}

/// `sql` with `{tenants}` replaced by one placeholder per tenant, binding `before`, the
/// tenant ids, then `after`.
fn for_tenants(sql: &str, tenants: &[Tenant], before: Vec<Value>, after: Vec<Value>) -> Statement {
    let placeholders = vec!["?"; tenants.len()].join(", ");
    let mut params = before;
    params.extend(tenants.iter().map(|tenant| Value::from(&tenant.id)));
    params.extend(after);
    Statement {
        sql: sql.replace("{tenants}", &placeholders),
        params,
    }
}

/// Each tenant's activity in `period`, read in one batch (one snapshot).
async fn gather(
    env: &Env,
    period: &ReportPeriod,
    tenants: &[Tenant],
) -> Result<HashMap<String, Activity>, DbError> {
    let range = || vec![Value::from(period.start), Value::from(period.end)];
    let results = env
        .db
        .batch(vec![
            for_tenants(
                "SELECT c.tenant_id, c.user_id, c.metric, c.value, u.email
                 FROM usage_counters c LEFT JOIN users u ON u.id = c.user_id
                 WHERE c.tenant_id IN ({tenants}) AND c.period = ? AND c.period_start = ?",
                tenants,
                vec![],
                vec![
                    period.kind.counter_period().as_str().into(),
                    period.start.into(),
                ],
            ),
            for_tenants(
                "SELECT a.tenant_id, a.user_id, u.email, SUM(l.used_delta) AS used
                 FROM credit_accounts a
                 JOIN credit_ledger l ON l.account_id = a.id AND l.created_at >= ? AND l.created_at < ?
                 LEFT JOIN users u ON u.id = a.user_id
                 WHERE a.tenant_id IN ({tenants}) AND a.user_id IS NOT NULL
                 GROUP BY a.tenant_id, a.user_id HAVING SUM(l.used_delta) != 0",
                tenants,
                range(),
                vec![],
            ),
            for_tenants(
                "SELECT a.tenant_id, SUM(MAX(l.total_delta, 0)) AS added,
                        SUM(MAX(-l.total_delta, 0)) AS removed, SUM(l.used_delta) AS used
                 FROM credit_accounts a
                 JOIN credit_ledger l ON l.account_id = a.id AND l.created_at >= ? AND l.created_at < ?
                 WHERE a.tenant_id IN ({tenants}) AND a.user_id IS NULL
                 GROUP BY a.tenant_id",
                tenants,
                range(),
                vec![],
            ),
            // The balance now, less what moved since the period ended: reading only the
            // ledger rows since then, not the pool's whole history.
            for_tenants(
                "SELECT a.tenant_id,
                        COALESCE(a.total, 0) - a.used - a.reserved
                          - COALESCE((SELECT SUM(l.total_delta - l.used_delta - l.reserved_delta)
                                      FROM credit_ledger l
                                      WHERE l.account_id = a.id AND l.created_at >= ?), 0) AS available
                 FROM credit_accounts a
                 WHERE a.tenant_id IN ({tenants}) AND a.user_id IS NULL",
                tenants,
                vec![period.end.into()],
                vec![],
            ),
            for_tenants(&by_model::of_tenants_sql(), tenants, vec![], range()),
        ])
        .await?;
    fill(tenants, &results)
}

fn fill(tenants: &[Tenant], results: &[Rows]) -> Result<HashMap<String, Activity>, DbError> {
    let mut activities: HashMap<String, Activity> = tenants
        .iter()
        .map(|tenant| (tenant.id.clone(), Activity::default()))
        .collect();
    for row in results[0].iter() {
        let Some(metric) = Metric::parse(&row.get::<String>("metric")?) else {
            continue;
        };
        let (user_id, email, value) = (
            row.get::<String>("user_id")?,
            row.get("email")?,
            row.get("value")?,
        );
        of(&mut activities, &row)?.counter(&user_id, email, metric, value);
    }
    for row in results[1].iter() {
        let (user_id, email, used) = (
            row.get::<String>("user_id")?,
            row.get("email")?,
            row.get("used")?,
        );
        of(&mut activities, &row)?.user_credits(&user_id, email, used);
    }
    for row in results[2].iter() {
        let (added, removed, used) = (row.get("added")?, row.get("removed")?, row.get("used")?);
        let credits = &mut of(&mut activities, &row)?.credits;
        (credits.added, credits.removed, credits.used) = (added, removed, used);
    }
    for row in results[3].iter() {
        let available = row.get("available")?;
        of(&mut activities, &row)?.credits.balance_at_end = available;
    }
    for row in results[4].iter() {
        let usage = ModelUsage::from_row(&row)?;
        of(&mut activities, &row)?.models.push(usage);
    }
    Ok(activities)
}

/// The activity of the row's tenant.
fn of<'a>(
    activities: &'a mut HashMap<String, Activity>,
    row: &Row<'_>,
) -> Result<&'a mut Activity, DbError> {
    Ok(activities.entry(row.get("tenant_id")?).or_default())
}

/// Inserts the reports of `tenants` with their events (and mails) in one batch; returns
/// how many this run inserted.
async fn build(
    env: &Env,
    period: &ReportPeriod,
    tenants: &[Tenant],
    now: i64,
) -> Result<u64, DbError> {
    let activities = gather(env, period, tenants).await?;
    let mut statements = Vec::new();
    let mut inserts = Vec::new();
    for tenant in tenants {
        let id = new_id();
        let content = activities
            .get(&tenant.id)
            .cloned()
            .unwrap_or_default()
            .to_json();
        let totals = summary(&content);
        let inserted = sql!("SELECT 1 FROM usage_reports WHERE id = ?", &id);
        inserts.push(statements.len());
        statements.push(sql!(
            "INSERT INTO usage_reports (id, tenant_id, kind, period, period_start, period_end, content, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id, kind, period) DO NOTHING",
            &id,
            &tenant.id,
            period.kind.as_str(),
            &period.label,
            period.start,
            period.end,
            content.to_string(),
            now
        ));
        let event = json!({
            "report_id": id,
            "kind": period.kind,
            "period": period.label,
            "period_start": rfc3339(period.start),
            "period_end": rfc3339(period.end),
            "usage": totals["usage"],
            "credits": totals["credits"],
        });
        statements.push(emit_from(
            period.kind.event_type(),
            sql!(
                "SELECT tenant_id, ? AS payload, created_at FROM usage_reports WHERE id = ?",
                event.to_string(),
                &id
            ),
        ));
        if period.kind == ReportKind::Monthly {
            let payload = json!({
                "report_id": id,
                "tenant": tenant.name,
                "period": period.label,
                "usage": totals["usage"],
                "credits": totals["credits"],
            });
            statements.push(mail::enqueue_to_owners(
                &tenant.id,
                mail::TEMPLATE_USAGE_REPORT,
                &payload,
                now,
                &inserted,
            ));
        }
    }
    let results = env.db.batch(statements).await?;
    Ok(inserts
        .into_iter()
        .map(|index| results[index].rows_affected)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_lists_bind_one_placeholder_per_tenant_in_order() {
        let tenants = [
            Tenant {
                id: "t1".into(),
                name: "One".into(),
            },
            Tenant {
                id: "t2".into(),
                name: "Two".into(),
            },
        ];
        let statement = for_tenants(
            "SELECT ? FROM x WHERE id IN ({tenants}) AND y = ?",
            &tenants,
            vec![1.into()],
            vec![2.into()],
        );
        assert_eq!(
            statement.sql,
            "SELECT ? FROM x WHERE id IN (?, ?) AND y = ?"
        );
        assert_eq!(
            statement.params,
            vec![1.into(), "t1".into(), "t2".into(), 2.into()]
        );
    }
}
