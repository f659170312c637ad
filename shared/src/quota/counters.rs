//! Usage counters, and the one increment that can never pass a limit.
//!
//! An event moves four counters — the user's day and month, the tenant's day and month —
//! in one atomic batch of upserts. Each upsert writes the limit in force (computed in the
//! statement itself, see [`super::limits`]) beside the new value, and the table's
//! `quota_exceeded` CHECK (`value <= limit_value`) refuses a value past it. One refused
//! counter rolls the whole batch back, so concurrent events never overshoot and never count
//! halfway. Only after a refusal do we read the counters, to say which one and when it
//! resets; that read explains the answer, it never decides it.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Value as Json, json};

use super::{
    limits::{LimitTable, in_force_sql},
    metrics::{Metric, Period, Scope, TENANT_ROW},
    periods::Window,
};
use crate::{
    ApiError, Env,
    clock::rfc3339,
    db::{DbError, Rows, Statement},
    error::ApiResult,
    ids::{TenantId, UserId},
    sql,
};

/// The largest amount one event may add: far above any real job or LLM call, and far below
/// where the sum of many could overflow a 64-bit counter.
pub const MAX_AMOUNT: i64 = 1_000_000_000;

/// The counters an event moves, in the order of the increment batch.
pub const MOVED_BY_AN_EVENT: [(Scope, Period); 4] = [
    (Scope::User, Period::Day),
    (Scope::User, Period::Month),
    (Scope::Tenant, Period::Day),
    (Scope::Tenant, Period::Month),
];

/// One counter as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    pub scope: Scope,
    pub metric: Metric,
    pub period: Period,
    pub used: i64,
    pub limit: Option<i64>,
    pub window: Window,
}

impl CounterState {
    pub fn remaining(&self) -> Option<i64> {
        super::projection::remaining(self.used, self.limit)
    }

    /// True when adding `amount` would pass the limit.
    pub fn refuses(&self, amount: i64) -> bool {
        self.limit
            .is_some_and(|limit| self.used.saturating_add(amount) > limit)
    }

    pub fn to_json(&self) -> Json {
        json!({
            "scope": self.scope,
            "metric": self.metric,
            "period": self.period,
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining(),
            "resets_at": rfc3339(self.window.end),
        })
    }
}

/// The increment batch: the four upserts of [`MOVED_BY_AN_EVENT`], each returning the
/// counter's new value and limit. Callers that must count in the same batch as other work
/// (a job's creation) append these to their own statements and treat a failure with
/// [`is_quota_exceeded`] as [`exceeded`] explains it.
///
/// The user must belong to the tenant; a deleted user's work in flight is still counted.
///
/// With `only_if`, each upsert runs only when that query returns a row (see
/// [`record_once`]).
pub fn increment(
    tenant_id: &TenantId,
    user_id: &UserId,
    metric: Metric,
    amount: i64,
    now: i64,
    only_if: Option<&Statement>,
) -> Vec<Statement> {
    upserts(
        tenant_id,
        user_id,
        metric,
        amount,
        now,
        only_if,
        Overflow::Refuse,
    )
}

/// The same four upserts for work already done (a finished job's GPU seconds): a counter
/// fills up to its limit and stops there instead of refusing, so the usage is counted as
/// far as the limit goes and the next piece of work is the one refused.
pub fn increment_to_limit(
    tenant_id: &TenantId,
    user_id: &UserId,
    metric: Metric,
    amount: i64,
    now: i64,
    only_if: Option<&Statement>,
) -> Vec<Statement> {
    upserts(
        tenant_id,
        user_id,
        metric,
        amount,
        now,
        only_if,
        Overflow::Saturate,
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Refuse,
    Saturate,
}

fn upserts(
    tenant_id: &TenantId,
    user_id: &UserId,
    metric: Metric,
    amount: i64,
    now: i64,
    only_if: Option<&Statement>,
    overflow: Overflow,
) -> Vec<Statement> {
    MOVED_BY_AN_EVENT
        .iter()
        .map(|&(scope, period)| {
            let user_column = match scope {
                Scope::User => "u.id",
                Scope::Tenant => "''",
            };
            let limit = in_force_sql(scope, metric, period);
            let (inserted, updated) = match overflow {
                Overflow::Refuse => ("?".to_owned(), "value + excluded.value".to_owned()),
                Overflow::Saturate => (
                    format!("MIN(?, COALESCE({limit}, ?))"),
                    "MIN(value + ?, COALESCE(excluded.limit_value, value + ?))".to_owned(),
                ),
            };
            let guard = only_if.map_or(String::new(), |query| format!(" AND EXISTS ({})", query.sql));
            let mut statement = sql!(
                format!(
                    "INSERT INTO usage_counters
                         (tenant_id, user_id, metric, period, period_start, value, limit_value, updated_at)
                     SELECT t.id, {user_column}, ?, ?, ?, {inserted}, {limit}, ?
                     FROM tenants t JOIN users u ON u.id = ? AND u.tenant_id = t.id
                     WHERE t.id = ?{guard}
                     ON CONFLICT (tenant_id, user_id, metric, period, period_start) DO UPDATE SET
                         value = {updated},
                         limit_value = excluded.limit_value,
                         updated_at = excluded.updated_at
                     RETURNING value, limit_value"
                ),
                metric.as_str(),
                period.as_str(),
                Window::containing(period, now).start,
                amount
            );
            if overflow == Overflow::Saturate {
                statement = statement.bind(amount);
            }
            statement = statement.bind(now).bind(user_id).bind(tenant_id);
            statement = only_if
                .into_iter()
                .flat_map(|query| query.params.iter().cloned())
                .fold(statement, Statement::bind);
            if overflow == Overflow::Saturate {
                statement = statement.bind(amount).bind(amount);
            }
            statement
        })
        .collect()
}

/// One row when any of `metric`'s four counters (the user's and the tenant's, day and
/// month) already stands at or past its limit, so nothing more may be counted: the check
/// before work whose size is known only once it is done (an LLM call's tokens), which is
/// then counted with [`increment_to_limit`]. [`exceeded`] explains a refusal.
pub fn used_up(tenant_id: &TenantId, user_id: &UserId, metric: Metric, now: i64) -> Statement {
    let mut conditions = Vec::new();
    let mut starts = Vec::new();
    for (scope, period) in MOVED_BY_AN_EVENT {
        let user_column = match scope {
            Scope::User => "u.id",
            Scope::Tenant => "''",
        };
        conditions.push(format!(
            "COALESCE((SELECT c.value FROM usage_counters c
                       WHERE c.tenant_id = t.id AND c.user_id = {user_column} AND c.metric = '{metric}'
                         AND c.period = '{period}' AND c.period_start = ?), 0)
             >= {limit}",
            metric = metric.as_str(),
            period = period.as_str(),
            limit = in_force_sql(scope, metric, period),
        ));
        starts.push(Window::containing(period, now).start);
    }
    let statement = sql!(
        format!(
            "SELECT 1 AS used_up FROM tenants t JOIN users u ON u.id = ? AND u.tenant_id = t.id
             WHERE t.id = ? AND ({})",
            conditions.join(" OR ")
        ),
        user_id,
        tenant_id
    );
    starts.into_iter().fold(statement, Statement::bind)
}

/// True when a batch failed because a counter would have passed its limit.
pub fn is_quota_exceeded(error: &DbError) -> bool {
    matches!(error, DbError::Constraint(message) if message.contains("quota_exceeded"))
}

/// Counts `amount` of `metric` for a user and its tenant; the counters after the increment,
/// or 429 `quota_exceeded` with nothing counted.
pub async fn record(
    env: &Env,
    tenant_id: &TenantId,
    user_id: &UserId,
    metric: Metric,
    amount: i64,
) -> ApiResult<Vec<CounterState>> {
    let now = env.now();
    let results = match env
        .db
        .batch(increment(tenant_id, user_id, metric, amount, now, None))
        .await
    {
        Ok(results) => results,
        Err(error) if is_quota_exceeded(&error) => {
            return Err(exceeded(env, tenant_id, user_id, metric, amount, now).await);
        }
        Err(error) => return Err(error.into()),
    };
    counted(&results, metric, now)
}

/// The counters as the increment's upserts returned them (in [`MOVED_BY_AN_EVENT`] order).
fn counted(results: &[Rows], metric: Metric, now: i64) -> ApiResult<Vec<CounterState>> {
    MOVED_BY_AN_EVENT
        .iter()
        .zip(results)
        .map(|(&(scope, period), rows)| {
            let row = rows.first().ok_or_else(|| ApiError::not_found("user"))?;
            Ok(CounterState {
                scope,
                metric,
                period,
                used: row.get("value")?,
                limit: row.get("limit_value")?,
                window: Window::containing(period, now),
            })
        })
        .collect()
}

/// What an event with an idempotency key came to.
pub enum Recorded {
    /// Counted now.
    Counted(Vec<CounterState>),
    /// The key was seen before with the same event: nothing was counted again.
    Replayed,
}

/// [`record`], once per `key` and tenant: the event is written in the same batch as the
/// increments, which run only when this batch wrote it. The same key with another event is
/// a conflict.
pub async fn record_once(
    env: &Env,
    tenant_id: &TenantId,
    user_id: &UserId,
    metric: Metric,
    amount: i64,
    key: &str,
) -> ApiResult<Recorded> {
    let now = env.now();
    let batch = crate::ids::new_id();
    let fresh = sql!(
        "SELECT 1 FROM usage_events WHERE tenant_id = ? AND idempotency_key = ? AND batch_id = ?",
        tenant_id,
        key,
        &batch
    );
    let mut statements = vec![sql!(
        "INSERT INTO usage_events (tenant_id, idempotency_key, user_id, metric, amount, batch_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
        tenant_id,
        key,
        user_id,
        metric.as_str(),
        amount,
        &batch,
        now
    )];
    statements.extend(increment(
        tenant_id,
        user_id,
        metric,
        amount,
        now,
        Some(&fresh),
    ));
    statements.push(sql!(
        "SELECT user_id, metric, amount FROM usage_events WHERE tenant_id = ? AND idempotency_key = ?",
        tenant_id,
        key
    ));
    let results = match env.db.batch(statements).await {
        Ok(results) => results,
        Err(error) if is_quota_exceeded(&error) => {
            return Err(exceeded(env, tenant_id, user_id, metric, amount, now).await);
        }
        Err(error) => return Err(error.into()),
    };
    if results[0].rows_affected == 0 {
        let first = results
            .last()
            .and_then(|rows| rows.first())
            .ok_or_else(|| ApiError::internal().caused_by("usage event vanished"))?;
        let same = first.get::<String>("user_id")? == user_id.as_str()
            && first.get::<String>("metric")? == metric.as_str()
            && first.get::<i64>("amount")? == amount;
        if !same {
            return Err(ApiError::conflict(
                "idempotency_conflict",
                "this Idempotency-Key was used for a different usage event",
            ));
        }
        return Ok(Recorded::Replayed);
    }
    counted(&results[1..], metric, now).map(Recorded::Counted)
}

/// The current day's and month's values of every metric, for a user (`user_id`) and its
/// tenant; `user_id` '' reads the tenant's alone.
pub fn current_values(tenant_id: &str, user_id: &str, now: i64) -> Statement {
    sql!(
        "SELECT user_id, metric, period, value FROM usage_counters
         WHERE tenant_id = ? AND user_id IN (?, '')
           AND ((period = 'day' AND period_start = ?) OR (period = 'month' AND period_start = ?))",
        tenant_id,
        user_id,
        Window::containing(Period::Day, now).start,
        Window::containing(Period::Month, now).start
    )
}

/// What [`current_values`] returned, by counter; a counter without a row stands at 0.
#[derive(Debug, Clone, Default)]
pub struct CurrentValues(HashMap<(Scope, Metric, Period), i64>);

impl CurrentValues {
    pub fn from_rows(rows: &Rows) -> ApiResult<Self> {
        let mut values = HashMap::new();
        for row in rows.iter() {
            let scope = if row.get::<String>("user_id")? == TENANT_ROW {
                Scope::Tenant
            } else {
                Scope::User
            };
            let metric = Metric::parse(&row.get::<String>("metric")?);
            let period = Period::parse(&row.get::<String>("period")?);
            if let (Some(metric), Some(period)) = (metric, period) {
                values.insert((scope, metric, period), row.get("value")?);
            }
        }
        Ok(CurrentValues(values))
    }

    pub fn get(&self, scope: Scope, metric: Metric, period: Period) -> i64 {
        self.0.get(&(scope, metric, period)).copied().unwrap_or(0)
    }

    /// A counter with its value and the limit in force now.
    pub fn state(
        &self,
        limits: &LimitTable,
        scope: Scope,
        metric: Metric,
        period: Period,
        now: i64,
    ) -> CounterState {
        CounterState {
            scope,
            metric,
            period,
            used: self.get(scope, metric, period),
            limit: limits.limit(scope, metric, period).value,
            window: Window::containing(period, now),
        }
    }
}

/// The 429 for an increment of `amount` that the database refused: reads the counters to
/// name the one that is full.
pub async fn exceeded(
    env: &Env,
    tenant_id: &TenantId,
    user_id: &UserId,
    metric: Metric,
    amount: i64,
    now: i64,
) -> ApiError {
    let read = env
        .db
        .batch(vec![
            LimitTable::statement(tenant_id.as_str(), user_id.as_str()),
            current_values(tenant_id.as_str(), user_id.as_str(), now),
        ])
        .await;
    let states = read.map_err(ApiError::from).and_then(|results| {
        let limits = results[0]
            .first()
            .map(|row| LimitTable::from_row(&row))
            .transpose()?
            .unwrap_or_default();
        let values = CurrentValues::from_rows(&results[1])?;
        Ok(MOVED_BY_AN_EVENT
            .iter()
            .map(|&(scope, period)| values.state(&limits, scope, metric, period, now))
            .collect::<Vec<_>>())
    });
    match states {
        Ok(states) => quota_exceeded(&states, amount, now),
        Err(error) => error,
    }
}

/// The answer to an increment that would pass a limit: 429 `quota_exceeded` naming the
/// counter, its limit, its value and when it resets, with `Retry-After`.
///
/// When several counters are full, the one named is the one that keeps the caller waiting
/// longest (a month before a day; the user's own before the tenant's), and `exceeded` lists
/// them all. Should none look full by the time they are read (a limit raised meanwhile), the
/// counter closest to its limit is named.
pub fn quota_exceeded(states: &[CounterState], amount: i64, now: i64) -> ApiError {
    let mut full: Vec<&CounterState> = states
        .iter()
        .filter(|state| state.refuses(amount))
        .collect();
    full.sort_by_key(|state| {
        (
            std::cmp::Reverse(state.window.end),
            state.scope != Scope::User,
        )
    });
    let named = full.first().copied().or_else(|| {
        states
            .iter()
            .filter(|state| state.limit.is_some())
            .min_by_key(|state| state.remaining())
    });
    let Some(named) = named else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            "a usage quota is used up",
        );
    };
    let retry_after = named.window.seconds_left(now);
    let limit = named.limit.unwrap_or_default();
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
        format!(
            "the {scope}'s {period} {metric} quota allows {limit}; {used} used, {amount} more \
             would pass it. It resets at {resets}",
            scope = named.scope.as_str(),
            period = named.period.adjective(),
            metric = named.metric.as_str(),
            used = named.used,
            resets = rfc3339(named.window.end),
        ),
    )
    .with_details(json!({
        "scope": named.scope,
        "metric": named.metric,
        "period": named.period,
        "limit": named.limit,
        "used": named.used,
        "requested": amount,
        "resets_at": rfc3339(named.window.end),
        "retry_after_seconds": retry_after,
        "exceeded": full.iter().map(|state| state.to_json()).collect::<Vec<_>>(),
    }))
    .with_header(http::header::RETRY_AFTER, retry_after)
}

/// Daily counters are kept two months (a month's daily history needs one); idempotency
/// keys of usage events a week (longer than any client retries). Run by cron.
pub fn purge_expired(now: i64) -> [Statement; 2] {
    [
        sql!(
            "DELETE FROM usage_counters WHERE period = 'day' AND period_start < ?",
            now - 62 * 86_400
        ),
        sql!(
            "DELETE FROM usage_events WHERE created_at < ?",
            now - 7 * 86_400
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_710_460_799; // 2024-03-14T23:59:59Z

    fn state(scope: Scope, period: Period, used: i64, limit: Option<i64>) -> CounterState {
        CounterState {
            scope,
            metric: Metric::Jobs,
            period,
            used,
            limit,
            window: Window::containing(period, NOW),
        }
    }

    #[test]
    fn an_increment_that_lands_on_the_limit_is_allowed_and_one_past_it_refused() {
        let day = state(Scope::User, Period::Day, 24, Some(25));
        assert!(!day.refuses(1));
        assert!(day.refuses(2));
        assert!(!state(Scope::User, Period::Day, 1_000, None).refuses(MAX_AMOUNT));
    }

    #[test]
    fn the_named_counter_is_the_full_one_with_its_reset_and_retry_after() {
        let states = [
            state(Scope::User, Period::Day, 25, Some(25)),
            state(Scope::User, Period::Month, 25, Some(500)),
            state(Scope::Tenant, Period::Day, 30, Some(50)),
            state(Scope::Tenant, Period::Month, 30, Some(500)),
        ];
        let error = quota_exceeded(&states, 1, NOW);
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.code, "quota_exceeded");
        assert_eq!(error.details["scope"], "user");
        assert_eq!(error.details["period"], "day");
        assert_eq!(error.details["limit"], 25);
        assert_eq!(error.details["used"], 25);
        assert_eq!(error.details["resets_at"], "2024-03-15T00:00:00Z");
        assert_eq!(error.details["retry_after_seconds"], 1);
        assert_eq!(error.details["exceeded"].as_array().unwrap().len(), 1);
        let retry_after = error
            .headers
            .iter()
            .find(|(name, _)| name == http::header::RETRY_AFTER)
            .map(|(_, value)| value.to_str().unwrap().to_owned());
        assert_eq!(retry_after.as_deref(), Some("1"));
    }

    #[test]
    fn a_full_month_is_named_before_a_full_day_and_the_user_before_the_tenant() {
        let states = [
            state(Scope::User, Period::Day, 10, Some(10)),
            state(Scope::User, Period::Month, 10, Some(100)),
            state(Scope::Tenant, Period::Day, 10, Some(10)),
            state(Scope::Tenant, Period::Month, 10, Some(10)),
        ];
        let error = quota_exceeded(&states, 1, NOW);
        assert_eq!(error.details["scope"], "tenant");
        assert_eq!(error.details["period"], "month");
        assert_eq!(error.details["resets_at"], "2024-04-01T00:00:00Z");
        assert_eq!(error.details["exceeded"].as_array().unwrap().len(), 3);
        let days_only = [states[0], states[2]];
        assert_eq!(quota_exceeded(&days_only, 1, NOW).details["scope"], "user");
    }

    #[test]
    fn with_nothing_full_any_more_the_closest_counter_is_named() {
        let states = [
            state(Scope::User, Period::Day, 3, Some(10)),
            state(Scope::Tenant, Period::Day, 8, Some(10)),
        ];
        let error = quota_exceeded(&states, 1, NOW);
        assert_eq!(error.details["scope"], "tenant");
        assert_eq!(error.details["exceeded"], json!([]));
    }

    #[test]
    fn only_the_quota_check_is_taken_for_a_full_counter() {
        assert!(is_quota_exceeded(&DbError::Constraint(
            "CHECK constraint failed: quota_exceeded".into()
        )));
        assert!(!is_quota_exceeded(&DbError::Constraint(
            "CHECK constraint failed: credits_cover_spend".into()
        )));
        assert!(!is_quota_exceeded(&DbError::Other("quota_exceeded".into())));
    }
}
