//! Which limit binds a counter, and the overrides that change it.
//!
//! The rule, in one place ([`sources`]): the first of these that is set wins.
//!
//! - a **tenant** counter: the tenant's override (a `quota_limits` row with `user_id` ''),
//!   then the column of the tenant's effective plan (`daily_jobs`, `monthly_gpu_seconds`, …);
//! - a **user** counter: the user's own override, then the tenant's override, then the plan.
//!
//! So by default any one user may use all of the tenant's allowance, a tenant override moves
//! the ceiling for the tenant and for every user without one of their own, and a user
//! override narrows (or widens) one user only. The tenant counter is incremented with every
//! user's, so no user ever takes the tenant past its own limit. NULL everywhere: unlimited.
//!
//! The same order is used twice: as SQL ([`in_force_sql`]), computed inside the increment
//! statement so the `quota_exceeded` CHECK judges against the limit of that very moment,
//! and in Rust ([`LimitTable`]) to report limits and where they come from.

use std::collections::HashMap;

use serde::Serialize;

use super::metrics::{Metric, Period, Scope, TENANT_ROW};
use crate::{
    db::{Row, Statement},
    error::ApiResult,
    sql,
    tenancy::plans::effective_plan_column,
};

/// Where a limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    UserOverride,
    TenantOverride,
    Plan,
}

/// The sources of a counter's limit, the first one set winning.
pub fn sources(scope: Scope) -> &'static [Source] {
    match scope {
        Scope::User => &[Source::UserOverride, Source::TenantOverride, Source::Plan],
        Scope::Tenant => &[Source::TenantOverride, Source::Plan],
    }
}

/// The effective plan's column for a counter, for a statement where `t` is the tenant.
fn plan_column_sql(metric: Metric, period: Period) -> &'static str {
    match (metric, period) {
        (Metric::Jobs, Period::Day) => effective_plan_column!("daily_jobs"),
        (Metric::Jobs, Period::Month) => effective_plan_column!("monthly_jobs"),
        (Metric::GpuSeconds, Period::Day) => effective_plan_column!("daily_gpu_seconds"),
        (Metric::GpuSeconds, Period::Month) => effective_plan_column!("monthly_gpu_seconds"),
        (Metric::LlmTokens, Period::Day) => effective_plan_column!("daily_llm_tokens"),
        (Metric::LlmTokens, Period::Month) => effective_plan_column!("monthly_llm_tokens"),
    }
}

/// The value of one source as a scalar subquery, for a statement where `t` is the tenant
/// and `u` the user. The metric and period are our own constants, never request text.
fn source_sql(source: Source, metric: Metric, period: Period) -> String {
    let override_of = |user: &str| {
        format!(
            "(SELECT q.limit_value FROM quota_limits q WHERE q.tenant_id = t.id AND q.user_id = {user} \
             AND q.metric = '{}' AND q.period = '{}')",
            metric.as_str(),
            period.as_str()
        )
    };
    match source {
        Source::UserOverride => override_of("u.id"),
        Source::TenantOverride => override_of("''"),
        Source::Plan => plan_column_sql(metric, period).to_owned(),
    }
}

/// The limit in force for a counter, as an SQL expression over `t` (the tenant) and, for a
/// user's counter, `u` (the user). NULL means unlimited.
pub fn in_force_sql(scope: Scope, metric: Metric, period: Period) -> String {
    let candidates: Vec<String> = sources(scope)
        .iter()
        .map(|source| source_sql(*source, metric, period))
        .collect();
    format!("COALESCE({})", candidates.join(", "))
}

/// A counter's limit and where it comes from; both `None` when unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub value: Option<i64>,
    pub source: Option<Source>,
}

/// The values each source holds for one metric and period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Candidates {
    pub user_override: Option<i64>,
    pub tenant_override: Option<i64>,
    pub plan: Option<i64>,
}

impl Candidates {
    fn get(&self, source: Source) -> Option<i64> {
        match source {
            Source::UserOverride => self.user_override,
            Source::TenantOverride => self.tenant_override,
            Source::Plan => self.plan,
        }
    }

    pub fn resolve(&self, scope: Scope) -> Limit {
        sources(scope)
            .iter()
            .find_map(|source| {
                self.get(*source).map(|value| Limit {
                    value: Some(value),
                    source: Some(*source),
                })
            })
            .unwrap_or(Limit {
                value: None,
                source: None,
            })
    }
}

/// Every source of every limit of a tenant and (optionally) one of its users, read at once.
#[derive(Debug, Clone, Default)]
pub struct LimitTable(HashMap<(Metric, Period), Candidates>);

impl LimitTable {
    /// Reads what [`LimitTable::statement`] returned.
    pub fn from_row(row: &Row<'_>) -> ApiResult<Self> {
        let mut table = HashMap::new();
        for metric in Metric::ALL {
            for period in Period::ALL {
                let column = |source: &str| column_name(metric, period, source);
                table.insert(
                    (metric, period),
                    Candidates {
                        user_override: row.get(&column("user"))?,
                        tenant_override: row.get(&column("tenant"))?,
                        plan: row.get(&column("plan"))?,
                    },
                );
            }
        }
        Ok(LimitTable(table))
    }

    /// One row with every source of every limit; `user_id` '' reads the tenant's alone.
    pub fn statement(tenant_id: &str, user_id: &str) -> Statement {
        let mut columns = Vec::new();
        for metric in Metric::ALL {
            for period in Period::ALL {
                for (source, name) in [
                    (Source::UserOverride, "user"),
                    (Source::TenantOverride, "tenant"),
                    (Source::Plan, "plan"),
                ] {
                    columns.push(format!(
                        "{} AS {}",
                        source_sql(source, metric, period),
                        column_name(metric, period, name)
                    ));
                }
            }
        }
        sql!(
            format!(
                "SELECT {} FROM tenants t LEFT JOIN users u ON u.id = ? AND u.tenant_id = t.id WHERE t.id = ?",
                columns.join(", ")
            ),
            user_id,
            tenant_id
        )
    }

    pub fn candidates(&self, metric: Metric, period: Period) -> Candidates {
        self.0.get(&(metric, period)).copied().unwrap_or_default()
    }

    pub fn limit(&self, scope: Scope, metric: Metric, period: Period) -> Limit {
        self.candidates(metric, period).resolve(scope)
    }
}

fn column_name(metric: Metric, period: Period, source: &str) -> String {
    format!("{}_{}_{source}", metric.as_str(), period.as_str())
}

/// A change to one override: a new limit, or `None` to remove it and fall back to the next
/// source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideChange {
    pub metric: Metric,
    pub period: Period,
    pub limit: Option<i64>,
}

/// Writes a user's override (`user_id` a user of the tenant) or the tenant's (`user_id`
/// [`TENANT_ROW`]). Nothing is written unless the user is an active member of the tenant,
/// or, for the tenant's own row, the tenant is not deleted: the caller checks
/// `rows_affected` against [`subject_exists`].
pub fn write_override(
    tenant_id: &str,
    user_id: &str,
    change: OverrideChange,
    now: i64,
) -> Statement {
    let exists = subject_exists(tenant_id, user_id);
    let mut statement = match change.limit {
        Some(limit) => sql!(
            format!(
                "INSERT INTO quota_limits (tenant_id, user_id, metric, period, limit_value, updated_at)
                 SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS ({})
                 ON CONFLICT (tenant_id, user_id, metric, period) DO UPDATE SET
                     limit_value = excluded.limit_value, updated_at = excluded.updated_at",
                exists.sql
            ),
            tenant_id,
            user_id,
            change.metric.as_str(),
            change.period.as_str(),
            limit,
            now
        ),
        None => sql!(
            format!(
                "DELETE FROM quota_limits WHERE tenant_id = ? AND user_id = ? AND metric = ? AND period = ?
                 AND EXISTS ({})",
                exists.sql
            ),
            tenant_id,
            user_id,
            change.metric.as_str(),
            change.period.as_str()
        ),
    };
    statement.params.extend(exists.params);
    statement
}

/// A row when the override's subject exists: an active user of the tenant, or for
/// [`TENANT_ROW`] the tenant itself, unless deleted.
pub fn subject_exists(tenant_id: &str, user_id: &str) -> Statement {
    if user_id == TENANT_ROW {
        sql!(
            "SELECT 1 FROM tenants WHERE id = ? AND status != 'deleted'",
            tenant_id
        )
    } else {
        sql!(
            "SELECT 1 FROM users WHERE id = ? AND tenant_id = ? AND status = 'active'",
            user_id,
            tenant_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(user: Option<i64>, tenant: Option<i64>, plan: Option<i64>) -> Candidates {
        Candidates {
            user_override: user,
            tenant_override: tenant,
            plan,
        }
    }

    #[test]
    fn a_users_override_wins_for_the_user_only() {
        let all = candidates(Some(5), Some(20), Some(50));
        assert_eq!(
            all.resolve(Scope::User),
            Limit {
                value: Some(5),
                source: Some(Source::UserOverride)
            }
        );
        assert_eq!(all.resolve(Scope::Tenant).value, Some(20));
    }

    #[test]
    fn the_tenants_override_wins_over_the_plan_for_the_tenant_and_its_users() {
        let tenant = candidates(None, Some(20), Some(50));
        assert_eq!(
            tenant.resolve(Scope::User).source,
            Some(Source::TenantOverride)
        );
        assert_eq!(tenant.resolve(Scope::Tenant).value, Some(20));
    }

    #[test]
    fn the_plan_binds_when_nothing_overrides_it_and_nothing_set_is_unlimited() {
        let plan = candidates(None, None, Some(50));
        assert_eq!(plan.resolve(Scope::User).source, Some(Source::Plan));
        assert_eq!(plan.resolve(Scope::Tenant).value, Some(50));
        let none = candidates(None, None, None).resolve(Scope::User);
        assert_eq!(none.value, None);
        assert_eq!(none.source, None);
    }

    #[test]
    fn the_sql_takes_the_sources_in_the_same_order() {
        let sql = in_force_sql(Scope::User, Metric::Jobs, Period::Day);
        let user = sql.find("q.user_id = u.id").unwrap();
        let tenant = sql.find("q.user_id = ''").unwrap();
        let plan = sql.find("p.daily_jobs").unwrap();
        assert!(user < tenant && tenant < plan, "{sql}");
        let tenant_sql = in_force_sql(Scope::Tenant, Metric::LlmTokens, Period::Month);
        assert!(!tenant_sql.contains("u.id"));
        assert!(tenant_sql.contains("p.monthly_llm_tokens"));
    }
}
