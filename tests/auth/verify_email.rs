//! `POST /auth/verify-email`: the token mailed at registration proves the address.

use reqwest::{Response, StatusCode};
use serde_json::json;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{me, post_raw};

const EMAIL_VERIFICATION_TTL: i64 = 48 * 3600;

async fn verify_email(app: &TestApp, token: &str) -> Response {
    app.post_public("auth/verify-email", &json!({ "token": token }))
        .await
}

#[tokio::test]
async fn registration_mails_the_owner_an_email_verification_token() {
    let app = spawn_app().await;

    let owner = app.register("acme").await;

    let mails = app.mailbox(&owner.email).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0, "verify_email");
    let token = mails[0].1["token"].as_str().unwrap();
    assert!(mails[0].1["link"].as_str().unwrap().ends_with(token));
    let me = expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["email_verified"], false);
}

#[tokio::test]
async fn the_mailed_token_marks_the_email_verified() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = app.mailed_token(&owner.email, "verify_email").await;

    let response = verify_email(&app, &token).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["email_verified"], true);
    let me = expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["email_verified"], true);
}

#[tokio::test]
async fn a_verification_token_works_only_once() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = app.mailed_token(&owner.email, "verify_email").await;
    expect_status(verify_email(&app, &token).await, StatusCode::OK).await;

    let response = verify_email(&app, &token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn an_expired_verification_token_answers_400_and_verifies_nothing() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = app.mailed_token(&owner.email, "verify_email").await;
    app.advance_clock(EMAIL_VERIFICATION_TTL + 1);

    let response = verify_email(&app, &token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    let verified = app
        .query(
            "SELECT email_verified_at FROM users WHERE id = ?",
            vec![owner.user_id.as_str().into()],
        )
        .await;
    assert!(verified[0][0].is_null());
}

#[tokio::test]
async fn a_password_reset_token_cannot_verify_an_email() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let response = app
        .post_public(
            "auth/forgot-password",
            &json!({ "tenant": "acme", "email": owner.email }),
        )
        .await;
    expect_status(response, StatusCode::ACCEPTED).await;
    let token = app.mailed_token(&owner.email, "password_reset").await;

    let response = verify_email(&app, &token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn an_unknown_verification_token_answers_400() {
    let app = spawn_app().await;
    app.register("acme").await;

    let response = verify_email(&app, "not-a-token-we-sent").await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn a_verification_body_of_the_wrong_shape_or_not_json_is_refused() {
    let app = spawn_app().await;

    let response = app.post_public("auth/verify-email", &json!({})).await;
    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let response = post_raw(&app, "auth/verify-email", "token=abc").await;
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
}

async fn change_email(app: &TestApp, owner: &TestUser, email: &str) {
    let response = app
        .put(
            &format!("users/{}", owner.user_id),
            &owner.access_token,
            &json!({ "email": email }),
        )
        .await;
    let user = expect_status(response, StatusCode::OK).await;
    assert_eq!(user["email_verified"], false);
}

async fn email_verified(app: &TestApp, owner: &TestUser) -> bool {
    let me = expect_status(me(app, &owner.access_token).await, StatusCode::OK).await;
    me["user"]["email_verified"].as_bool().unwrap()
}

#[tokio::test]
async fn a_token_mailed_to_the_former_address_does_not_verify_the_new_one() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let old_token = app.mailed_token(&owner.email, "verify_email").await;
    change_email(&app, &owner, "ada@elsewhere.test").await;

    let response = verify_email(&app, &old_token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert!(!email_verified(&app, &owner).await);
    let new_token = app.mailed_token("ada@elsewhere.test", "verify_email").await;
    expect_status(verify_email(&app, &new_token).await, StatusCode::OK).await;
    assert!(email_verified(&app, &owner).await);
}

#[tokio::test]
async fn changing_the_email_again_does_not_revive_a_token_of_the_first_address() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let first_token = app.mailed_token(&owner.email, "verify_email").await;
    change_email(&app, &owner, "ada@elsewhere.test").await;
    change_email(&app, &owner, &owner.email).await;

    let response = verify_email(&app, &first_token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert!(!email_verified(&app, &owner).await);
}

#[tokio::test]
async fn changing_the_email_unverifies_a_verified_address() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = app.mailed_token(&owner.email, "verify_email").await;
    expect_status(verify_email(&app, &token).await, StatusCode::OK).await;

    change_email(&app, &owner, "ada@elsewhere.test").await;

    assert!(!email_verified(&app, &owner).await);
}
