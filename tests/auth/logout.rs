//! `POST /auth/logout`: ends one session, named by its refresh token or its access token.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{me, refresh, tokens};

#[tokio::test]
async fn logging_out_with_the_refresh_token_ends_the_session() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post_public(
            "auth/logout",
            &json!({ "refresh_token": owner.refresh_token }),
        )
        .await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_error(
        refresh(&app, &owner.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    expect_error(
        me(&app, &owner.access_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn logging_out_with_only_the_access_token_ends_the_session() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .request(Method::POST, "auth/logout")
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();

    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_error(
        me(&app, &owner.access_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        refresh(&app, &owner.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test]
async fn logging_out_ends_the_session_of_every_rotation_of_its_refresh_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let (access_token, refresh_token) =
        tokens(&expect_status(refresh(&app, &owner.refresh_token).await, StatusCode::OK).await);

    let response = app.post("auth/logout", &access_token, &json!({})).await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_error(
        refresh(&app, &refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test]
async fn logging_out_leaves_the_users_other_sessions_alone() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let other = tokens(
        &expect_status(
            app.login("acme", &owner.email, &owner.password).await,
            StatusCode::OK,
        )
        .await,
    );

    let response = app
        .post_public(
            "auth/logout",
            &json!({ "refresh_token": owner.refresh_token }),
        )
        .await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_status(me(&app, &other.0).await, StatusCode::OK).await;
    expect_status(refresh(&app, &other.1).await, StatusCode::OK).await;
}

#[tokio::test]
async fn logging_out_twice_is_harmless() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let body = json!({ "refresh_token": owner.refresh_token });
    expect_status(
        app.post_public("auth/logout", &body).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let response = app.post_public("auth/logout", &body).await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    let reason = app
        .query("SELECT revoked_reason FROM sessions", vec![])
        .await;
    assert_eq!(reason[0][0], "logout");
}

#[tokio::test]
async fn an_api_key_has_no_session_to_end() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let secret = key["key"].as_str().unwrap();

    let response = app
        .request(Method::POST, "auth/logout")
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();

    expect_error(response, StatusCode::BAD_REQUEST, "not_a_session").await;
    expect_status(me(&app, secret).await, StatusCode::OK).await;
}

#[tokio::test]
async fn logging_out_without_any_credential_answers_401() {
    let app = spawn_app().await;

    let response = app
        .request(Method::POST, "auth/logout")
        .send()
        .await
        .unwrap();

    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn logging_out_with_an_unknown_refresh_token_answers_401() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post_public("auth/logout", &json!({ "refresh_token": "rt_unknown" }))
        .await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
}
