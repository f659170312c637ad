//! Steps the report and mail tests share, taken as a client would.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::{
    clock::Clock,
    quota::{metrics::Period, periods::Window},
};
use tollgate_tests::{TestApp, TestUser, expect_status, spawn_app_with};

use crate::provider::Provider;

/// A server whose clock stands at 12:00:00 UTC on a day that is not the last of its
/// month (so the next day is in the same month), whose tokens outlive the months the tests
/// travel through, and which sends mail to `provider` when one is given.
pub async fn spawn_report_app(provider: Option<&Provider>) -> TestApp {
    let settings = provider.map(Provider::settings);
    let app = spawn_app_with(|config| {
        config.access_token_ttl = 120 * 24 * 3600;
        config.email_provider = settings;
    })
    .await;
    let now = app.clock.now();
    app.advance_clock(Window::containing(Period::Day, now).end + 12 * 3600 - now);
    let now = app.clock.now();
    if Window::containing(Period::Day, now).end == Window::containing(Period::Month, now).end {
        app.advance_clock(24 * 3600);
    }
    app
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

/// `YYYY-MM-DD` of the server's today.
pub fn today(app: &TestApp) -> String {
    tollgate::quota::periods::date_label(app.clock.now())
}

/// `YYYY-MM` of the server's month.
pub fn this_month(app: &TestApp) -> String {
    today(app)[..7].to_owned()
}

/// Meters `amount` of `metric` for `user` and expects 201.
pub async fn record(app: &TestApp, user: &TestUser, metric: &str, amount: i64) {
    let response = app
        .post(
            "usage/events",
            &user.access_token,
            &json!({ "metric": metric, "amount": amount }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;
}

/// `GET reports` with `query` by `user`, expecting 200; the listed reports.
pub async fn list(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let response = app
        .get(&format!("reports{query}"), &user.access_token)
        .await;
    let body = expect_status(response, StatusCode::OK).await;
    body["data"].as_array().unwrap().clone()
}

/// The one listed report of `kind`.
pub async fn only_report(app: &TestApp, user: &TestUser, kind: &str) -> Value {
    let reports = list(app, user, &format!("?kind={kind}")).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports[0].clone()
}

/// `GET reports/{id}` by `user`, expecting 200.
pub async fn get_report(app: &TestApp, user: &TestUser, id: &str) -> Value {
    let response = app.get(&format!("reports/{id}"), &user.access_token).await;
    expect_status(response, StatusCode::OK).await
}

/// One number from the database.
pub async fn scalar(app: &TestApp, sql: &str, params: Vec<libsql::Value>) -> i64 {
    app.query(sql, params).await[0][0].as_i64().unwrap()
}

/// Asks for a password reset of `user` (which queues one mail) and expects 202.
pub async fn forgot_password(app: &TestApp, user: &TestUser) {
    let response = app
        .post_public(
            "auth/forgot-password",
            &json!({ "tenant": user.tenant_slug, "email": user.email }),
        )
        .await;
    expect_status(response, StatusCode::ACCEPTED).await;
}

/// `(attempts, sent, failed, last_error)` of the newest mail of `template` to `recipient`.
pub async fn mail_state(
    app: &TestApp,
    recipient: &str,
    template: &str,
) -> (i64, bool, bool, Option<String>) {
    let rows = app
        .query(
            "SELECT attempts, sent_at IS NOT NULL, failed_at IS NOT NULL, last_error
             FROM email_outbox WHERE recipient = ? AND template = ?
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
            vec![recipient.into(), template.into()],
        )
        .await;
    let row = rows
        .first()
        .unwrap_or_else(|| panic!("no {template} mail to {recipient}"));
    (
        row[0].as_i64().unwrap(),
        row[1].as_i64().unwrap() == 1,
        row[2].as_i64().unwrap() == 1,
        row[3].as_str().map(str::to_owned),
    )
}
