//! `POST /auth/change-password`: a signed-in user proves the current password and sets a new
//! one; the user's other sessions end.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;
use tollgate_tests::{PASSWORD, TestApp, expect_error, expect_status, spawn_app};

use crate::support::{me, refresh, tokens};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn change_password(app: &TestApp, token: &str, current: &str, new: &str) -> Response {
    app.post(
        "auth/change-password",
        token,
        &json!({ "current_password": current, "new_password": new }),
    )
    .await
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let other = tokens(
        &expect_status(
            app.login("acme", &owner.email, PASSWORD).await,
            StatusCode::OK,
        )
        .await,
    );

    let response = change_password(&app, &owner.access_token, PASSWORD, NEW_PASSWORD).await;

    expect_status(response, StatusCode::OK).await;
    expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
    expect_status(refresh(&app, &owner.refresh_token).await, StatusCode::OK).await;
    expect_error(
        me(&app, &other.0).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        refresh(&app, &other.1).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    expect_error(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    expect_status(
        app.login("acme", &owner.email, NEW_PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_wrong_current_password_answers_403_and_changes_nothing() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = change_password(
        &app,
        &owner.access_token,
        "not the password at all",
        NEW_PASSWORD,
    )
    .await;

    expect_error(response, StatusCode::FORBIDDEN, "wrong_password").await;
    expect_status(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_too_short_new_password_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = change_password(&app, &owner.access_token, PASSWORD, "short").await;

    let error = expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "new_password");
}

#[tokio::test]
async fn an_api_key_cannot_change_a_password() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;

    let response =
        change_password(&app, key["key"].as_str().unwrap(), PASSWORD, NEW_PASSWORD).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    expect_status(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn changing_the_password_without_credentials_answers_401() {
    let app = spawn_app().await;

    let response = app
        .request(Method::POST, "auth/change-password")
        .json(&json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .unwrap();

    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
