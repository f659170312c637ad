//! Small steps the quota tests share, written as a client would take them.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tollgate::{
    clock::Clock,
    quota::{metrics::Period, periods::Window},
};
use tollgate_tests::{TestApp, TestUser, expect_status, spawn_app_with};

/// A server whose clock stands at 12:00:00 UTC on a day that is not the last of its month,
/// so a test can step into the next day without changing month, and whose access tokens
/// outlive the days and months the tests travel through.
pub async fn spawn_quota_app() -> TestApp {
    let app = spawn_app_with(|config| config.access_token_ttl = 90 * 24 * 3600).await;
    let now = app.clock.now();
    let noon_tomorrow = Window::containing(Period::Day, now).end + 12 * 3600;
    app.advance_clock(noon_tomorrow - now);
    if is_last_day_of_month(app.clock.now()) {
        app.advance_clock(24 * 3600);
    }
    app
}

fn is_last_day_of_month(now: i64) -> bool {
    Window::containing(Period::Day, now).end == Window::containing(Period::Month, now).end
}

/// Moves the clock to 12:00:00 UTC of the next day.
pub fn advance_to_next_day(app: &TestApp) {
    let now = app.clock.now();
    app.advance_clock(Window::containing(Period::Day, now).end + 12 * 3600 - now);
}

/// Moves the clock to 12:00:00 UTC of the first day of the next month.
pub fn advance_to_next_month(app: &TestApp) {
    let now = app.clock.now();
    app.advance_clock(Window::containing(Period::Month, now).end + 12 * 3600 - now);
}

/// Seconds from the server's now to the end of its current `period`.
pub fn seconds_to_reset(app: &TestApp, period: Period) -> i64 {
    let now = app.clock.now();
    Window::containing(period, now).end - now
}

/// `POST usage/events`.
pub async fn record(app: &TestApp, token: &str, metric: &str, amount: i64) -> Response {
    app.post(
        "usage/events",
        token,
        &json!({ "metric": metric, "amount": amount }),
    )
    .await
}

/// Records and expects 201.
pub async fn record_ok(app: &TestApp, user: &TestUser, metric: &str, amount: i64) -> Value {
    expect_status(
        record(app, &user.access_token, metric, amount).await,
        StatusCode::CREATED,
    )
    .await
}

/// `PUT users/{id}/quota` by `admin`.
pub async fn set_user_limit(
    app: &TestApp,
    admin: &TestUser,
    user_id: &str,
    body: &Value,
) -> Response {
    app.put(&format!("users/{user_id}/quota"), &admin.access_token, body)
        .await
}

/// Sets `user`'s limit for a counter and expects 200.
pub async fn limit_user(
    app: &TestApp,
    admin: &TestUser,
    user: &TestUser,
    metric: &str,
    period: &str,
    limit: i64,
) {
    let body = json!({ "metric": metric, "period": period, "limit": limit });
    expect_status(
        set_user_limit(app, admin, &user.user_id, &body).await,
        StatusCode::OK,
    )
    .await;
}

/// `PUT admin/tenants/{id}/quota` with a platform admin's token.
pub async fn set_tenant_limit(
    app: &TestApp,
    admin_token: &str,
    tenant_id: &str,
    body: &Value,
) -> Response {
    app.put(
        &format!("admin/tenants/{tenant_id}/quota"),
        admin_token,
        body,
    )
    .await
}

/// Lifts the tenant's request rate limit, so that many requests in one minute are judged
/// by the quotas alone.
pub async fn lift_rate_limit(app: &TestApp, admin_token: &str, tenant: &TestUser) {
    app.assign_plan(
        admin_token,
        tenant,
        &json!({ "plan": "FREE", "overrides": { "requests_per_minute": 100000 } }),
    )
    .await;
}

/// The value of a counter in its current period, read from the database (0 without a row).
pub async fn counter(
    app: &TestApp,
    tenant_id: &str,
    user_id: &str,
    metric: &str,
    period: Period,
) -> i64 {
    let start = Window::containing(period, app.clock.now()).start;
    let period = match period {
        Period::Day => "day",
        Period::Month => "month",
    };
    let rows = app
        .query(
            "SELECT value FROM usage_counters
             WHERE tenant_id = ? AND user_id = ? AND metric = ? AND period = ? AND period_start = ?",
            vec![
                tenant_id.into(),
                user_id.into(),
                metric.into(),
                period.into(),
                start.into(),
            ],
        )
        .await;
    rows.first().map_or(0, |row| row[0].as_i64().unwrap())
}

/// A header of the response, as text.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// The counter of `scope` and `period` in a `POST usage/events` answer.
pub fn counter_in<'a>(answer: &'a Value, scope: &str, period: &str) -> &'a Value {
    answer["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|counter| counter["scope"] == scope && counter["period"] == period)
        .unwrap_or_else(|| panic!("no {scope} {period} counter in {answer}"))
}

/// The server's clock.
pub fn now(app: &TestApp) -> i64 {
    app.clock.now()
}
