//! The per-minute limit on forward-auth, counted by either rate limiter of the native
//! server (in the process by default, in the database with `TOLLGATE_RATE_LIMITER=database`),
//! and the coarse note of an API key's last use.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app_with};

use crate::support::number_header;

/// A tenant capped at 3 requests per minute, with one API key; the window starts afresh.
async fn capped_tenant(in_database: bool) -> (TestApp, TestUser, String) {
    let app = spawn_app_with(|config| config.rate_limits_in_database = in_database).await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["jobs:read"]).await;
    let admin = app.platform_admin("ops@platform.test").await;
    let capped = json!({ "plan": "FREE", "overrides": { "requests_per_minute": 3 } });
    app.assign_plan(&admin, &owner, &capped).await;
    app.advance_clock(60);
    (app, owner, key["key"].as_str().unwrap().to_owned())
}

async fn verify(app: &TestApp, header: (&str, String)) -> Response {
    app.request(Method::GET, "auth/verify")
        .header(header.0, header.1)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/api/v1/jobs")
        .send()
        .await
        .unwrap()
}

/// Three verifies count down, the fourth answers 429 with Retry-After, and the next window
/// lets the caller through again.
async fn assert_limited_per_window(app: &TestApp, header: (&str, String)) {
    for expected_remaining in [2, 1, 0] {
        let response = verify(app, header.clone()).await;
        assert_eq!(number_header(&response, "ratelimit-limit"), 3);
        assert_eq!(
            number_header(&response, "ratelimit-remaining"),
            expected_remaining
        );
        let reset = number_header(&response, "ratelimit-reset");
        assert!((1..=60).contains(&reset), "RateLimit-Reset {reset}");
        expect_status(response, StatusCode::OK).await;
    }

    let refused = verify(app, header.clone()).await;

    let retry_after = number_header(&refused, "retry-after");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(number_header(&refused, "ratelimit-remaining"), 0);
    assert_eq!(number_header(&refused, "ratelimit-reset"), retry_after);
    let error = expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(error["error"]["details"]["limit"], 3);
    app.advance_clock(retry_after);
    let next_window = verify(app, header).await;
    assert_eq!(number_header(&next_window, "ratelimit-remaining"), 2);
    expect_status(next_window, StatusCode::OK).await;
}

async fn counter_rows(app: &TestApp) -> i64 {
    let rows = app
        .query("SELECT COUNT(*) FROM rate_limit_windows", vec![])
        .await;
    rows[0][0].as_i64().unwrap()
}

#[tokio::test]
async fn the_in_process_limiter_enforces_the_plans_limit_on_keys_and_sessions() {
    let (app, owner, key) = capped_tenant(false).await;
    let windows_before = counter_rows(&app).await;

    assert_limited_per_window(&app, ("x-api-key", key)).await;
    let bearer = format!("Bearer {}", owner.access_token);
    assert_limited_per_window(&app, ("authorization", bearer)).await;

    // Nothing of it was counted in the database.
    assert_eq!(counter_rows(&app).await, windows_before);
}

#[tokio::test]
async fn the_database_limiter_enforces_the_same_limit_in_rate_limit_windows() {
    let (app, owner, key) = capped_tenant(true).await;
    let windows_before = counter_rows(&app).await;

    assert_limited_per_window(&app, ("x-api-key", key)).await;
    let bearer = format!("Bearer {}", owner.access_token);
    assert_limited_per_window(&app, ("authorization", bearer)).await;

    // Two windows each of the key and of the user.
    assert_eq!(counter_rows(&app).await, windows_before + 4);
}

async fn last_used_at(app: &TestApp) -> Option<i64> {
    let rows = app.query("SELECT last_used_at FROM api_keys", vec![]).await;
    rows[0][0].as_i64()
}

#[tokio::test]
async fn a_keys_use_is_noted_at_most_once_a_minute_by_either_limiter() {
    for in_database in [false, true] {
        let (app, _, key) = capped_tenant(in_database).await;
        assert_eq!(last_used_at(&app).await, None);

        expect_status(
            verify(&app, ("x-api-key", key.clone())).await,
            StatusCode::OK,
        )
        .await;
        let first = last_used_at(&app).await.expect("the first use is noted");
        app.advance_clock(59);
        expect_status(
            verify(&app, ("x-api-key", key.clone())).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            last_used_at(&app).await,
            Some(first),
            "in database: {in_database}"
        );
        app.advance_clock(1);
        expect_status(
            verify(&app, ("x-api-key", key.clone())).await,
            StatusCode::OK,
        )
        .await;

        assert_eq!(
            last_used_at(&app).await,
            Some(first + 60),
            "in database: {in_database}"
        );
    }
}
