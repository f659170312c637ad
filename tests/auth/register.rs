use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{PASSWORD, expect_error, expect_status, spawn_app};

#[tokio::test]
async fn registering_creates_the_tenant_and_signs_the_owner_in() {
    let app = spawn_app().await;

    let owner = app.register("acme").await;

    let me = expect_status(
        app.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["tenant"]["slug"], "acme");
    assert_eq!(me["user"]["email"], "owner@acme.test");
    assert_eq!(me["role"], "owner");
}

#[tokio::test]
async fn a_taken_slug_answers_409_and_creates_nothing() {
    let app = spawn_app().await;
    app.register("acme").await;

    let response = app
        .post_public(
            "auth/register",
            &json!({ "tenant_name": "Other", "tenant_slug": "acme", "email": "x@y.test", "password": PASSWORD, "name": "X" }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "slug_taken").await;
    let users = app.query("SELECT COUNT(*) FROM users", vec![]).await;
    assert_eq!(users[0][0], 1);
}
