//! The housekeeping cron does for counters: old daily counters and forgotten idempotency
//! keys go, monthly counters and current days stay.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tollgate_tests::{TestApp, expect_status};

use crate::support::{record_ok, spawn_quota_app};

async fn rows(app: &TestApp, sql: &str) -> i64 {
    app.query(sql, vec![]).await[0][0].as_i64().unwrap()
}

#[tokio::test]
async fn cron_drops_daily_counters_after_two_months_and_keeps_the_monthly_ones() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    record_ok(&app, &owner, "jobs", 1).await;

    let soon = app.run_cron().await;
    app.advance_clock(63 * 86_400);
    let later = app.run_cron().await;

    assert_eq!(soon.usage_rows_purged, 0);
    assert_eq!(
        later.usage_rows_purged, 2,
        "the user's and the tenant's day"
    );
    assert_eq!(
        rows(
            &app,
            "SELECT COUNT(*) FROM usage_counters WHERE period = 'day'"
        )
        .await,
        0
    );
    assert_eq!(
        rows(
            &app,
            "SELECT COUNT(*) FROM usage_counters WHERE period = 'month'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn an_idempotency_key_is_forgotten_after_a_week() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let send = || {
        app.request(Method::POST, "usage/events")
            .bearer_auth(&owner.access_token)
            .header("Idempotency-Key", "call-1")
            .json(&json!({ "metric": "jobs", "amount": 1 }))
            .send()
    };
    expect_status(send().await.unwrap(), StatusCode::CREATED).await;

    app.advance_clock(8 * 86_400);
    app.run_cron().await;

    expect_status(send().await.unwrap(), StatusCode::CREATED).await;
}

#[tokio::test]
async fn cron_drops_rate_limit_windows_an_hour_old() {
    let app = spawn_quota_app().await;
    app.register("acme").await;
    let windows = rows(&app, "SELECT COUNT(*) FROM rate_limit_windows").await;
    assert!(windows > 0);

    app.advance_clock(3_601 + 60);
    let report = app.run_cron().await;

    assert_eq!(report.rate_limit_windows_purged as i64, windows);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM rate_limit_windows").await,
        0
    );
}
