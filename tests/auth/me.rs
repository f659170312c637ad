//! `GET /auth/me`: who the caller is, and when it is nobody.

use reqwest::{Method, Response, StatusCode};
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{header, me};

const ACCESS_TOKEN_TTL: i64 = 900;

/// Asserts a 401 that tells the client how to authenticate.
async fn expect_unauthorized(response: Response) {
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .count();
    assert_eq!(challenges, 1, "one WWW-Authenticate challenge expected");
    let challenge = header(&response, "www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_signed_in_user_reads_its_user_tenant_role_and_scopes() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = me(&app, &owner.access_token).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["user"]["id"], owner.user_id.as_str());
    assert_eq!(body["tenant"]["id"], owner.tenant_id.as_str());
    assert_eq!(body["role"], "owner");
    assert_eq!(body["scopes"], serde_json::json!(["*"]));
    assert_eq!(body["auth"], "session");
    assert!(body["api_key_id"].is_null());
}

#[tokio::test]
async fn an_api_key_reads_its_owner_and_its_own_scopes() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app
        .create_api_key(&owner, &["profile:read", "jobs:read"])
        .await;

    let response = me(&app, key["key"].as_str().unwrap()).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["user"]["id"], owner.user_id.as_str());
    assert_eq!(body["auth"], "api_key");
    assert_eq!(body["api_key_id"], key["id"]);
    assert_eq!(
        body["scopes"],
        serde_json::json!(["profile:read", "jobs:read"])
    );
}

#[tokio::test]
async fn an_api_key_without_the_profile_scope_may_not_read_the_profile() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["jobs:read"]).await;

    let response = me(&app, key["key"].as_str().unwrap()).await;

    let error = expect_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(error["error"]["details"]["required_scope"], "profile:read");
}

#[tokio::test]
async fn a_request_without_credentials_answers_401_with_a_challenge() {
    let app = spawn_app().await;

    let response = app.request(Method::GET, "auth/me").send().await.unwrap();

    expect_unauthorized(response).await;
}

#[tokio::test]
async fn a_garbage_bearer_token_answers_401() {
    let app = spawn_app().await;
    app.register("acme").await;

    for token in ["garbage", "a.b.c", "tg_not_a_key"] {
        expect_unauthorized(me(&app, token).await).await;
    }
}

#[tokio::test]
async fn an_access_token_signed_with_another_secret_answers_401() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let (head_and_claims, signature) = owner.access_token.rsplit_once('.').unwrap();
    let forged_signature: String = signature
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();

    let response = me(&app, &format!("{head_and_claims}.{forged_signature}")).await;

    expect_unauthorized(response).await;
}

#[tokio::test]
async fn an_access_token_works_until_it_expires_and_then_answers_401() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.advance_clock(ACCESS_TOKEN_TTL - 1);
    expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;

    app.advance_clock(2);
    let response = me(&app, &owner.access_token).await;

    let challenge = header(&response, "www-authenticate").unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    expect_unauthorized(response).await;
}

#[tokio::test]
async fn a_platform_admin_token_names_no_tenant_and_answers_401() {
    let app = spawn_app().await;
    let admin = app.platform_admin("ops@platform.test").await;

    let response = me(&app, &admin).await;

    expect_unauthorized(response).await;
}

#[tokio::test]
async fn a_suspended_tenants_access_token_answers_403() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    crate::support::suspend(&app, &owner.tenant_id).await;

    let response = me(&app, &owner.access_token).await;

    expect_error(response, StatusCode::FORBIDDEN, "tenant_suspended").await;
}
