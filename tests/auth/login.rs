//! `POST /auth/login`: the tenant is named by slug, by subdomain, or by custom domain.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{PASSWORD, expect_error, expect_status, spawn_app};

use crate::support::{BASE_DOMAIN, login_at_host, me, post_raw, suspend, tokens};

#[tokio::test]
async fn a_user_signs_in_with_the_tenant_slug_in_the_body() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app.login("acme", &owner.email, PASSWORD).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user_id"], owner.user_id.as_str());
    assert_eq!(body["tenant_id"], owner.tenant_id.as_str());
    let (access_token, refresh_token) = tokens(&body);
    assert_ne!(
        refresh_token, owner.refresh_token,
        "a login is a new session"
    );
    let me = expect_status(me(&app, &access_token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], owner.user_id.as_str());
    assert!(me["user"]["last_login_at"].is_string());
}

#[tokio::test]
async fn the_email_is_matched_without_regard_to_case() {
    let app = spawn_app().await;
    app.register("acme").await;

    let response = app.login("ACME", "Owner@ACME.test", PASSWORD).await;

    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn a_tenant_subdomain_of_the_base_domain_names_the_tenant() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.register("globex").await;

    let response =
        login_at_host(&app, &format!("acme.{BASE_DOMAIN}"), &owner.email, PASSWORD).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["tenant_id"], owner.tenant_id.as_str());
}

#[tokio::test]
async fn the_subdomain_of_another_tenant_does_not_sign_the_user_in() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.register("globex").await;

    let response = login_at_host(
        &app,
        &format!("globex.{BASE_DOMAIN}"),
        &owner.email,
        PASSWORD,
    )
    .await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_custom_domain_set_by_the_owner_names_the_tenant() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "custom_domain": "app.acme.example" }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;

    let response = login_at_host(&app, "app.acme.example:443", &owner.email, PASSWORD).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["tenant_id"], owner.tenant_id.as_str());
}

#[tokio::test]
async fn an_unknown_custom_domain_does_not_sign_anyone_in() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = login_at_host(&app, "app.acme.example", &owner.email, PASSWORD).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_wrong_password_answers_401_invalid_credentials() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .login("acme", &owner.email, "not the password at all")
        .await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(
        app.query("SELECT COUNT(*) FROM sessions", vec![]).await[0][0],
        1,
        "only the registration's session exists"
    );
}

#[tokio::test]
async fn an_unknown_email_answers_exactly_as_a_wrong_password_does() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let wrong_password = expect_error(
        app.login("acme", &owner.email, "not the password at all")
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    let response = app.login("acme", "nobody@acme.test", PASSWORD).await;

    let unknown_email =
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(unknown_email, wrong_password);
}

#[tokio::test]
async fn an_unknown_tenant_slug_answers_401_invalid_credentials() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app.login("globex", &owner.email, PASSWORD).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_login_that_names_no_tenant_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    // The test client addresses the server by IP, which names no tenant.
    let by_address = app
        .post_public(
            "auth/login",
            &json!({ "email": owner.email, "password": PASSWORD }),
        )
        .await;
    let error = expect_error(
        by_address,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "tenant");

    for host in [BASE_DOMAIN, "localhost"] {
        let response = login_at_host(&app, host, &owner.email, PASSWORD).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn a_user_of_a_suspended_tenant_is_refused_with_403() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    suspend(&app, &owner.tenant_id).await;

    let response = app.login("acme", &owner.email, PASSWORD).await;

    expect_error(response, StatusCode::FORBIDDEN, "tenant_suspended").await;
}

#[tokio::test]
async fn a_wrong_password_at_a_suspended_tenant_does_not_reveal_the_suspension() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    suspend(&app, &owner.tenant_id).await;

    let response = app
        .login("acme", &owner.email, "not the password at all")
        .await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_reactivated_tenant_signs_its_users_in_again() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    suspend(&app, &owner.tenant_id).await;
    let admin = app.platform_admin("ops2@platform.test").await;
    let response = app
        .post(
            &format!("admin/tenants/{}/reactivate", owner.tenant_id),
            &admin,
            &json!({}),
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;

    let response = app.login("acme", &owner.email, PASSWORD).await;

    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn a_login_body_of_the_wrong_shape_answers_422() {
    let app = spawn_app().await;
    app.register("acme").await;

    for body in [
        json!({ "tenant": "acme", "email": "owner@acme.test" }),
        json!({ "tenant": "acme", "email": "not an email", "password": PASSWORD }),
        json!({ "tenant": "a", "email": "owner@acme.test", "password": PASSWORD }),
        json!({ "tenant": "acme", "email": "owner@acme.test", "password": PASSWORD, "remember": true }),
    ] {
        let response = app.post_public("auth/login", &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn a_login_body_that_is_not_json_answers_400() {
    let app = spawn_app().await;

    let response = post_raw(&app, "auth/login", "{\"email\":").await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
}
