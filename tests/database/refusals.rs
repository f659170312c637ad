//! A database that refuses Tollgate answers 503 `database_unavailable`, and `GET health`
//! says so, since it writes. One that only refuses writes still serves the requests that
//! only read: a signed-in read and forward-auth, whose per-minute limit the native server
//! counts in its memory.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{
    PASSWORD, TestApp, TestUser, expect_status,
    hrana_server::{Access, HranaSettings},
};

use crate::support::{app_over_hrana, expect_unavailable, health};

/// A signed-in read, a sign-in, forward-auth and health, each answered 503
/// `database_unavailable`.
async fn everything_is_unavailable(app: &TestApp, owner: &TestUser) {
    expect_unavailable(
        app.get("auth/me", &owner.access_token).await,
        "database_unavailable",
    )
    .await;
    expect_unavailable(
        app.login(&owner.tenant_slug, &owner.email, PASSWORD).await,
        "database_unavailable",
    )
    .await;
    expect_unavailable(verify(app, owner).await, "database_unavailable").await;
    expect_unavailable(health(app).await, "database_unavailable").await;
}

/// A sign-in and health answered 503 `database_unavailable`; a signed-in read and
/// forward-auth, which write nothing, answered.
async fn only_reads_are_served(app: &TestApp, owner: &TestUser) {
    expect_status(
        app.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    expect_status(verify(app, owner).await, StatusCode::OK).await;
    expect_unavailable(
        app.login(&owner.tenant_slug, &owner.email, PASSWORD).await,
        "database_unavailable",
    )
    .await;
    expect_unavailable(health(app).await, "database_unavailable").await;
}

async fn verify(app: &TestApp, owner: &TestUser) -> reqwest::Response {
    app.request(reqwest::Method::GET, "auth/verify")
        .bearer_auth(&owner.access_token)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/comfy/queue")
        .send()
        .await
        .unwrap()
}

async fn serves_again(app: &TestApp, owner: &TestUser) {
    app.hrana().set_access(Access::Full);
    expect_status(health(app).await, StatusCode::OK).await;
    expect_status(
        app.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_rejected_token_makes_every_request_answer_503_not_500() {
    for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
        let app = app_over_hrana(HranaSettings::default()).await;
        let owner = app.register("acme").await;
        app.hrana().set_access(Access::Refused(status));

        everything_is_unavailable(&app, &owner).await;

        serves_again(&app, &owner).await;
    }
}

#[tokio::test]
async fn a_read_only_token_makes_requests_that_write_answer_503_and_health_tells() {
    let app = app_over_hrana(HranaSettings::default()).await;
    let owner = app.register("acme").await;
    app.hrana().set_access(Access::ReadOnlyToken);

    only_reads_are_served(&app, &owner).await;

    serves_again(&app, &owner).await;
}

#[tokio::test]
async fn blocked_writes_make_requests_answer_503_and_health_tells_though_reads_work() {
    let app = app_over_hrana(HranaSettings::default()).await;
    let owner = app.register("acme").await;
    app.hrana().set_access(Access::WritesBlocked(
        "SQL write operations are forbidden".into(),
    ));

    only_reads_are_served(&app, &owner).await;
    // Nothing was written meanwhile: the one session is still the registration's.
    let sessions = app.query("SELECT COUNT(*) FROM sessions", vec![]).await;
    assert_eq!(sessions[0][0], json!(1));

    serves_again(&app, &owner).await;
}
