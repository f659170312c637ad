//! The usage report (`GET usage`): for one user or the whole tenant, per metric, today's and
//! this month's consumption against the limits in force, the month's daily history, its
//! daily average and end-of-month projection, and the last activity.
//!
//! All of it is read in one batch, so the figures are of one moment. For a user, `remaining`
//! is what that user may still use: the smaller of what their own limit and the tenant's
//! leave (`limited_by` says which), since both counters must accept every event.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use super::{
    by_model::{self, ModelUsage},
    counters::{CurrentValues, current_values},
    limits::{LimitTable, subject_exists},
    metrics::{Metric, Period, Scope, TENANT_ROW},
    periods::{MonthProgress, Window, date_label},
    projection::{Projection, percent_used},
};
use crate::{
    ApiError, Env,
    clock::rfc3339,
    db::{Rows, Statement},
    error::ApiResult,
    ids::TenantId,
    sql,
};

/// Whose usage: one user of the tenant, or the tenant as a whole.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    User(&'a str),
    Tenant,
}

impl Subject<'_> {
    fn user_id(&self) -> &str {
        match self {
            Subject::User(id) => id,
            Subject::Tenant => TENANT_ROW,
        }
    }

    fn scope(&self) -> Scope {
        match self {
            Subject::User(_) => Scope::User,
            Subject::Tenant => Scope::Tenant,
        }
    }
}

/// The report, or 404 when the user is not an active member of the tenant.
pub async fn report(env: &Env, tenant_id: &TenantId, subject: Subject<'_>) -> ApiResult<Json> {
    let now = env.now();
    let tenant = tenant_id.as_str();
    let user_id = subject.user_id();
    let month = Window::containing(Period::Month, now);
    let today = Window::containing(Period::Day, now);
    let mut statements = vec![
        subject_exists(tenant, user_id),
        LimitTable::statement(tenant, user_id),
        current_values(tenant, user_id, now),
        daily_history(tenant, user_id, month.start, today.start),
        last_activity(tenant, user_id),
    ];
    let only_user = match subject {
        Subject::User(id) => Some(id),
        Subject::Tenant => None,
    };
    for window in [&today, &month] {
        statements.push(by_model::of_subject(
            tenant,
            only_user,
            window.start,
            window.end,
        ));
    }
    if let Subject::Tenant = subject {
        statements.push(by_user(tenant, month.start));
    }
    let results = env.db.batch(statements).await?;
    if results[0].is_empty() {
        return Err(ApiError::not_found("user"));
    }
    let limits = results[1]
        .first()
        .map(|row| LimitTable::from_row(&row))
        .transpose()?
        .unwrap_or_default();
    let values = CurrentValues::from_rows(&results[2])?;
    let history = History::from_rows(&results[3])?;
    let last = last_activity_by_metric(&results[4])?;
    let progress = MonthProgress::at(now);

    let mut metrics = serde_json::Map::new();
    for metric in Metric::ALL {
        let figures =
            |period: Period| period_figures(&limits, &values, subject, metric, period, now);
        let month_used = values.get(subject.scope(), metric, Period::Month);
        let month_limit = limits.limit(subject.scope(), metric, Period::Month).value;
        let projection = Projection::of(month_used, progress);
        let daily: Vec<Json> = month
            .day_starts()
            .take_while(|start| *start <= today.start)
            .map(|start| json!({ "date": date_label(start), "used": history.get(metric, start) }))
            .collect();
        metrics.insert(
            metric.as_str().to_owned(),
            json!({
                "day": figures(Period::Day),
                "month": figures(Period::Month),
                "daily_history": daily,
                "daily_average": projection.daily_average,
                "projected_month_end": projection.month_end,
                "projected_to_exceed": month_limit.is_some_and(|limit| projection.month_end > limit),
                "last_activity_at": last.get(&metric).copied().map(rfc3339),
            }),
        );
    }
    let mut body = json!({
        "scope": subject.scope(),
        "tenant_id": tenant,
        "user_id": only_user,
        "as_of": rfc3339(now),
        "day": { "start": rfc3339(today.start), "resets_at": rfc3339(today.end) },
        "month": {
            "start": rfc3339(month.start),
            "resets_at": rfc3339(month.end),
            "days_in_month": progress.days_in_month,
            "days_elapsed": progress.days_elapsed,
        },
        "last_activity_at": last.values().max().copied().map(rfc3339),
        "metrics": metrics,
        "llm_by_model": {
            "day": ModelUsage::from_rows(&results[5])?,
            "month": ModelUsage::from_rows(&results[6])?,
        },
    });
    if let Subject::Tenant = subject {
        body["by_user"] = by_user_json(&results[7])?;
    }
    Ok(body)
}

/// One period of one metric, as the report shows it.
fn period_figures(
    limits: &LimitTable,
    values: &CurrentValues,
    subject: Subject<'_>,
    metric: Metric,
    period: Period,
    now: i64,
) -> Json {
    let own = values.state(limits, subject.scope(), metric, period, now);
    let own_limit = limits.limit(subject.scope(), metric, period);
    let mut left = vec![(subject.scope(), own.remaining())];
    if let Subject::User(_) = subject {
        let tenant = values.state(limits, Scope::Tenant, metric, period, now);
        left.push((Scope::Tenant, tenant.remaining()));
    }
    let binding = left
        .into_iter()
        .filter_map(|(scope, left)| left.map(|left| (scope, left)))
        .min_by_key(|(_, left)| *left);
    json!({
        "used": own.used,
        "limit": own_limit.value,
        "limit_source": own_limit.source,
        "remaining": binding.map(|(_, left)| left),
        "limited_by": binding.map(|(scope, _)| scope),
        "percent_used": percent_used(own.used, own_limit.value),
        "resets_at": rfc3339(own.window.end),
    })
}

fn daily_history(tenant_id: &str, user_id: &str, from: i64, to: i64) -> Statement {
    sql!(
        "SELECT metric, period_start, value FROM usage_counters
         WHERE tenant_id = ? AND user_id = ? AND period = 'day' AND period_start >= ? AND period_start <= ?",
        tenant_id,
        user_id,
        from,
        to
    )
}

/// Day counters of the month, by metric and day start.
struct History(HashMap<(Metric, i64), i64>);

impl History {
    fn from_rows(rows: &Rows) -> ApiResult<Self> {
        let mut days = HashMap::new();
        for row in rows.iter() {
            if let Some(metric) = Metric::parse(&row.get::<String>("metric")?) {
                days.insert((metric, row.get("period_start")?), row.get("value")?);
            }
        }
        Ok(History(days))
    }

    fn get(&self, metric: Metric, day_start: i64) -> i64 {
        self.0.get(&(metric, day_start)).copied().unwrap_or(0)
    }
}

fn last_activity(tenant_id: &str, user_id: &str) -> Statement {
    sql!(
        "SELECT metric, MAX(updated_at) AS last FROM usage_counters
         WHERE tenant_id = ? AND user_id = ? GROUP BY metric",
        tenant_id,
        user_id
    )
}

fn last_activity_by_metric(rows: &Rows) -> ApiResult<HashMap<Metric, i64>> {
    let mut last = HashMap::new();
    for row in rows.iter() {
        if let Some(metric) = Metric::parse(&row.get::<String>("metric")?) {
            last.insert(metric, row.get("last")?);
        }
    }
    Ok(last)
}

/// Each user's consumption this month, for the tenant's report.
fn by_user(tenant_id: &str, month_start: i64) -> Statement {
    sql!(
        "SELECT c.user_id, u.email, u.name, c.metric, c.value, c.updated_at
         FROM usage_counters c LEFT JOIN users u ON u.id = c.user_id AND u.tenant_id = c.tenant_id
         WHERE c.tenant_id = ? AND c.user_id != '' AND c.period = 'month' AND c.period_start = ?
         ORDER BY u.email, c.user_id",
        tenant_id,
        month_start
    )
}

fn by_user_json(rows: &Rows) -> ApiResult<Json> {
    let mut users: Vec<Json> = Vec::new();
    for row in rows.iter() {
        let user_id: String = row.get("user_id")?;
        if users
            .last()
            .is_none_or(|user| user["user_id"] != user_id.as_str())
        {
            let mut month = serde_json::Map::new();
            for metric in Metric::ALL {
                month.insert(metric.as_str().to_owned(), json!(0));
            }
            users.push(json!({
                "user_id": user_id,
                "email": row.get::<Option<String>>("email")?,
                "name": row.get::<Option<String>>("name")?,
                "month": month,
                "last_activity_at": Json::Null,
            }));
        }
        let user = users.last_mut().expect("pushed above");
        if let Some(metric) = Metric::parse(&row.get::<String>("metric")?) {
            user["month"][metric.as_str()] = json!(row.get::<i64>("value")?);
        }
        let updated: i64 = row.get("updated_at")?;
        let later = user["last_activity_at"]
            .as_str()
            .is_none_or(|seen| seen < rfc3339(updated).as_str());
        if later {
            user["last_activity_at"] = json!(rfc3339(updated));
        }
    }
    Ok(json!(users))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Value;

    fn rows(columns: &[&str], rows: Vec<Vec<Value>>) -> Rows {
        Rows {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
            rows_affected: 0,
        }
    }

    #[test]
    fn the_tenant_report_groups_month_counters_by_user() {
        let listed = rows(
            &["user_id", "email", "name", "metric", "value", "updated_at"],
            vec![
                vec![
                    "a".into(),
                    "a@x.test".into(),
                    "A".into(),
                    "jobs".into(),
                    3.into(),
                    100.into(),
                ],
                vec![
                    "a".into(),
                    "a@x.test".into(),
                    "A".into(),
                    "llm_tokens".into(),
                    900.into(),
                    200.into(),
                ],
                vec![
                    "b".into(),
                    "b@x.test".into(),
                    "B".into(),
                    "jobs".into(),
                    1.into(),
                    50.into(),
                ],
            ],
        );
        let users = by_user_json(&listed).unwrap();
        assert_eq!(users.as_array().unwrap().len(), 2);
        assert_eq!(users[0]["month"]["jobs"], 3);
        assert_eq!(users[0]["month"]["llm_tokens"], 900);
        assert_eq!(users[0]["month"]["gpu_seconds"], 0);
        assert_eq!(users[0]["last_activity_at"], rfc3339(200));
        assert_eq!(users[1]["month"]["jobs"], 1);
    }
}
