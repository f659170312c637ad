//! `POST /auth/forgot-password` and `POST /auth/reset-password`: single-use, expiring tokens
//! sent by mail.

use reqwest::{Response, StatusCode};
use serde_json::json;
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{count, me, post_raw, refresh};

const NEW_PASSWORD: &str = "a brand new passphrase";
const PASSWORD_RESET_TTL: i64 = 3600;

async fn forgot(app: &TestApp, tenant: &str, email: &str) -> Response {
    app.post_public(
        "auth/forgot-password",
        &json!({ "tenant": tenant, "email": email }),
    )
    .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> Response {
    app.post_public(
        "auth/reset-password",
        &json!({ "token": token, "password": password }),
    )
    .await
}

/// Asks for a reset of `user`'s password and reads the token from the mail.
async fn reset_token(app: &TestApp, user: &TestUser) -> String {
    let response = forgot(app, &user.tenant_slug, &user.email).await;
    expect_status(response, StatusCode::ACCEPTED).await;
    app.mailed_token(&user.email, "password_reset").await
}

#[tokio::test]
async fn forgetting_the_password_of_an_account_answers_202_and_mails_a_reset_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = forgot(&app, "acme", &owner.email).await;

    expect_status(response, StatusCode::ACCEPTED).await;
    let resets: Vec<_> = app
        .mailbox(&owner.email)
        .await
        .into_iter()
        .filter(|(template, _)| template == "password_reset")
        .collect();
    assert_eq!(resets.len(), 1);
    let token = resets[0].1["token"].as_str().unwrap();
    assert!(resets[0].1["link"].as_str().unwrap().ends_with(token));
    let stored = app
        .query(
            "SELECT COUNT(*) FROM one_time_tokens WHERE token_hash = ?",
            vec![token.into()],
        )
        .await;
    assert_eq!(stored[0][0], 0, "only the token's hash is stored");
}

#[tokio::test]
async fn forgetting_the_password_of_an_unknown_account_answers_202_and_mails_nothing() {
    let app = spawn_app().await;
    app.register("acme").await;
    let mails_before = count(&app, "email_outbox").await;

    let unknown_email = forgot(&app, "acme", "nobody@acme.test").await;
    let unknown_tenant = forgot(&app, "globex", "owner@acme.test").await;

    let first = expect_status(unknown_email, StatusCode::ACCEPTED).await;
    let second = expect_status(unknown_tenant, StatusCode::ACCEPTED).await;
    assert_eq!(first, second);
    assert!(app.mailbox("nobody@acme.test").await.is_empty());
    assert_eq!(count(&app, "email_outbox").await, mails_before);
    assert_eq!(
        count(&app, "one_time_tokens").await,
        1,
        "only the registration's verification token"
    );
}

#[tokio::test]
async fn a_reset_token_sets_the_new_password_and_the_old_one_stops_working() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = reset_token(&app, &owner).await;

    let response = reset(&app, &token, NEW_PASSWORD).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["status"], "password_changed");
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
async fn a_reset_token_works_only_once() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = reset_token(&app, &owner).await;
    expect_status(reset(&app, &token, NEW_PASSWORD).await, StatusCode::OK).await;

    let response = reset(&app, &token, "yet another passphrase").await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    expect_status(
        app.login("acme", &owner.email, NEW_PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_reset_ends_every_existing_session_of_the_user() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let second = expect_status(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let token = reset_token(&app, &owner).await;

    expect_status(reset(&app, &token, NEW_PASSWORD).await, StatusCode::OK).await;

    for access_token in [
        owner.access_token.as_str(),
        second["access_token"].as_str().unwrap(),
    ] {
        expect_error(
            me(&app, access_token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    for refresh_token in [
        owner.refresh_token.as_str(),
        second["refresh_token"].as_str().unwrap(),
    ] {
        expect_error(
            refresh(&app, refresh_token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }
}

#[tokio::test]
async fn a_reset_leaves_the_sessions_of_other_users_alone() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "mia", "member").await;
    let token = reset_token(&app, &member).await;

    expect_status(reset(&app, &token, NEW_PASSWORD).await, StatusCode::OK).await;

    expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
    expect_error(
        me(&app, &member.access_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn an_expired_reset_token_answers_400() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = reset_token(&app, &owner).await;
    app.advance_clock(PASSWORD_RESET_TTL + 1);

    let response = reset(&app, &token, NEW_PASSWORD).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    expect_status(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_reset_token_answers_400() {
    let app = spawn_app().await;
    app.register("acme").await;

    let response = reset(&app, "not-a-token-we-sent", NEW_PASSWORD).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn an_email_verification_token_cannot_reset_a_password() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = app.mailed_token(&owner.email, "verify_email").await;

    let response = reset(&app, &token, NEW_PASSWORD).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn a_too_short_new_password_answers_422_and_leaves_the_token_usable() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = reset_token(&app, &owner).await;

    let response = reset(&app, &token, "short").await;

    let error = expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "password");
    expect_status(reset(&app, &token, NEW_PASSWORD).await, StatusCode::OK).await;
}

#[tokio::test]
async fn forgetting_the_password_without_naming_the_tenant_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post_public("auth/forgot-password", &json!({ "email": owner.email }))
        .await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn recovery_bodies_of_the_wrong_shape_or_not_json_are_refused() {
    let app = spawn_app().await;

    for (path, body) in [
        (
            "auth/forgot-password",
            json!({ "tenant": "acme", "email": "not an email" }),
        ),
        ("auth/reset-password", json!({ "token": "abc" })),
    ] {
        let response = app.post_public(path, &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    for path in ["auth/forgot-password", "auth/reset-password"] {
        let response = post_raw(&app, path, "{").await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
}

#[tokio::test]
async fn a_reset_ends_every_other_reset_token_of_the_user() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let earlier = reset_token(&app, &owner).await;
    let later = reset_token(&app, &owner).await;
    expect_status(reset(&app, &later, NEW_PASSWORD).await, StatusCode::OK).await;

    let response = reset(&app, &earlier, "an attacker's passphrase").await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    expect_status(
        app.login("acme", &owner.email, NEW_PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_password_change_ends_the_reset_tokens_mailed_before_it() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = reset_token(&app, &owner).await;
    let changed = app
        .post(
            "auth/change-password",
            &owner.access_token,
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    expect_status(changed, StatusCode::OK).await;

    let response = reset(&app, &token, "an attacker's passphrase").await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    expect_status(
        app.login("acme", &owner.email, NEW_PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_reset_token_mailed_to_a_former_address_no_longer_works() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = reset_token(&app, &owner).await;
    let moved = app
        .put(
            &format!("users/{}", owner.user_id),
            &owner.access_token,
            &json!({ "email": "ada@elsewhere.test" }),
        )
        .await;
    expect_status(moved, StatusCode::OK).await;

    let response = reset(&app, &token, NEW_PASSWORD).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}
