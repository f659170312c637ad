//! `POST /auth/register`: a new tenant on the FREE plan, its owner, and a session.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, TestApp, expect_error, expect_status, spawn_app};

use crate::support::{count, post_raw};

fn registration(slug: &str, email: &str, password: &str) -> Value {
    json!({
        "tenant_name": "Acme Inc.",
        "tenant_slug": slug,
        "email": email,
        "password": password,
        "name": "Ada",
    })
}

/// Asserts the registration is refused as invalid, blaming `field`.
async fn expect_invalid(app: &TestApp, body: &Value, field: &str) {
    let response = app.post_public("auth/register", body).await;
    let error = expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], field, "for {body}");
}

/// Nothing of a refused registration may remain.
async fn assert_nothing_written(app: &TestApp) {
    for table in [
        "tenants",
        "users",
        "sessions",
        "refresh_tokens",
        "email_outbox",
    ] {
        assert_eq!(count(app, table).await, 0, "rows left in {table}");
    }
}

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
async fn registration_answers_201_with_the_tenant_on_the_free_plan_and_a_token_pair() {
    let app = spawn_app().await;

    let response = app
        .post_public(
            "auth/register",
            &registration("acme", "Ada@Acme.TEST", PASSWORD),
        )
        .await;

    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(body["tenant"]["plan"], "FREE");
    assert_eq!(body["user"]["email"], "ada@acme.test");
    assert_eq!(body["user"]["role"], "owner");
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

    let error = expect_error(response, StatusCode::CONFLICT, "slug_taken").await;
    assert_eq!(error["error"]["details"]["field"], "tenant_slug");
    for table in [
        "tenants",
        "users",
        "sessions",
        "refresh_tokens",
        "email_outbox",
    ] {
        assert_eq!(count(&app, table).await, 1, "one row expected in {table}");
    }
}

#[tokio::test]
async fn slugs_are_compared_after_trimming_and_lower_casing() {
    let app = spawn_app().await;
    let response = app
        .post_public(
            "auth/register",
            &registration(" Acme ", "a@acme.test", PASSWORD),
        )
        .await;
    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["tenant"]["slug"], "acme");

    let response = app
        .post_public(
            "auth/register",
            &registration("ACME", "b@acme.test", PASSWORD),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "slug_taken").await;
}

#[tokio::test]
async fn a_malformed_slug_answers_422_and_creates_nothing() {
    let app = spawn_app().await;

    for slug in [
        "ab",
        "2acme",
        "acme-",
        "ac me",
        "acme_co",
        "",
        &"a".repeat(41),
    ] {
        expect_invalid(
            &app,
            &registration(slug, "ada@acme.test", PASSWORD),
            "tenant_slug",
        )
        .await;
    }

    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_slug_the_platform_keeps_for_itself_answers_422() {
    let app = spawn_app().await;

    for slug in ["admin", "api", "www", "Tollgate"] {
        expect_invalid(
            &app,
            &registration(slug, "ada@acme.test", PASSWORD),
            "tenant_slug",
        )
        .await;
    }

    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_malformed_email_answers_422_and_creates_nothing() {
    let app = spawn_app().await;

    for email in ["", "ada", "ada@", "@acme.test", "ada@acme", "a b@acme.test"] {
        expect_invalid(&app, &registration("acme", email, PASSWORD), "email").await;
    }

    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_password_shorter_than_ten_characters_answers_422() {
    let app = spawn_app().await;

    expect_invalid(
        &app,
        &registration("acme", "ada@acme.test", "123456789"),
        "password",
    )
    .await;

    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_password_of_exactly_ten_characters_is_accepted() {
    let app = spawn_app().await;

    let response = app
        .post_public(
            "auth/register",
            &registration("acme", "ada@acme.test", "1234567890"),
        )
        .await;

    expect_status(response, StatusCode::CREATED).await;
    let response = app.login("acme", "ada@acme.test", "1234567890").await;
    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn an_empty_display_name_answers_422() {
    let app = spawn_app().await;
    let mut body = registration("acme", "ada@acme.test", PASSWORD);
    body["tenant_name"] = json!("   ");

    expect_invalid(&app, &body, "tenant_name").await;

    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_missing_or_unknown_field_answers_422() {
    let app = spawn_app().await;
    let mut missing = registration("acme", "ada@acme.test", PASSWORD);
    missing.as_object_mut().unwrap().remove("password");
    let mut unknown = registration("acme", "ada@acme.test", PASSWORD);
    unknown["plan"] = json!("ENTERPRISE");
    let mut mistyped = registration("acme", "ada@acme.test", PASSWORD);
    mistyped["tenant_slug"] = json!(42);

    for body in [missing, unknown, mistyped, json!([])] {
        let response = app.post_public("auth/register", &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }

    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400() {
    let app = spawn_app().await;

    for body in ["{\"tenant_slug\": \"acme\",", "tenant_slug=acme", ""] {
        let response = post_raw(&app, "auth/register", body).await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }

    assert_nothing_written(&app).await;
}
