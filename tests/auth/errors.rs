//! The one error shape, and the answers of the router and the body limit.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, expect_error, expect_status, spawn_app, spawn_app_with};

use crate::support::{count, header};

const AUTH_POST_ROUTES: &[&str] = &[
    "auth/register",
    "auth/login",
    "auth/refresh",
    "auth/logout",
    "auth/forgot-password",
    "auth/reset-password",
    "auth/verify-email",
];

#[tokio::test]
async fn an_unknown_route_answers_404_not_found() {
    let app = spawn_app().await;

    for path in ["/api/v1/auth/nope", "/api/v1/", "/api/v2/auth/login", "/"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_known_route_with_the_wrong_method_answers_405_with_allow() {
    let app = spawn_app().await;

    for (method, path, allowed) in [
        (Method::GET, "auth/login", "POST"),
        (Method::PUT, "auth/refresh", "POST"),
        (Method::DELETE, "auth/me", "GET"),
        (Method::PATCH, "tenant", "GET, PUT, DELETE"),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        assert_eq!(header(&response, "allow").as_deref(), Some(allowed));
        let error = expect_error(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
        let listed: Vec<Value> = allowed.split(", ").map(|verb| json!(verb)).collect();
        assert_eq!(error["error"]["details"]["allowed"], json!(listed));
    }
}

#[tokio::test]
async fn a_body_over_the_limit_answers_413_and_writes_nothing() {
    let app = spawn_app_with(|config| config.max_body_bytes = 1024).await;
    let body = json!({
        "tenant_name": "Acme",
        "tenant_slug": "acme",
        "email": "owner@acme.test",
        "password": PASSWORD,
        "name": "x".repeat(2048),
    });

    let response = app.post_public("auth/register", &body).await;

    let error = expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(error["error"]["details"]["limit_bytes"], 1024);
    assert_eq!(count(&app, "tenants").await, 0);
}

#[tokio::test]
async fn a_body_within_the_limit_is_read() {
    let app = spawn_app_with(|config| config.max_body_bytes = 1024).await;
    app.register("acme").await;
    let body = json!({ "tenant": "acme", "email": "owner@acme.test", "password": "x".repeat(900) });
    assert!(body.to_string().len() <= 1024);

    let response = app.post_public("auth/login", &body).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn bad_bodies_at_every_auth_route_answer_a_client_error_in_the_one_shape() {
    let app = spawn_app().await;
    app.register("acme").await;

    for path in AUTH_POST_ROUTES {
        for body in [
            "",
            "{",
            "[]",
            "null",
            "\"text\"",
            "42",
            "{}",
            "{\"unexpected\":1}",
        ] {
            let response = app
                .request(Method::POST, path)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(
                [
                    StatusCode::BAD_REQUEST,
                    StatusCode::UNAUTHORIZED,
                    StatusCode::UNPROCESSABLE_ENTITY
                ]
                .contains(&status),
                "POST {path} {body:?} answered {status}"
            );
            let error = expect_status(response, status).await;
            assert!(error["error"]["code"].is_string(), "{error}");
            assert!(error["error"]["message"].is_string(), "{error}");
            assert!(error["error"]["details"].is_object(), "{error}");
        }
    }
    assert_eq!(count(&app, "tenants").await, 1);
}

#[tokio::test]
async fn error_answers_are_json_and_never_cached() {
    let app = spawn_app().await;

    let response = app.request(Method::GET, "auth/me").send().await.unwrap();

    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("no-store")
    );
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_json_array_where_an_object_belongs_is_refused_and_counts_nothing() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .request(Method::POST, "usage/events")
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/json")
        .body(r#"["jobs", 1]"#)
        .send()
        .await
        .unwrap();

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let counters = app
        .query("SELECT COUNT(*) FROM usage_counters", vec![])
        .await;
    assert_eq!(counters[0][0], 0);
}

#[tokio::test]
async fn a_body_not_sent_as_json_answers_415_and_writes_nothing() {
    let app = spawn_app().await;
    let register = json!({
        "tenant_name": "Acme Inc.",
        "tenant_slug": "acme",
        "email": "owner@acme.test",
        "password": PASSWORD,
        "name": "Owner",
    })
    .to_string();

    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=utf-16"),
        None,
    ] {
        let mut request = app
            .request(Method::POST, "auth/register")
            .body(register.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();

        let error = expect_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{error}"
        );
        assert_eq!(
            error["error"]["details"]["content_type"],
            json!(content_type),
            "{error}"
        );
    }
    assert_eq!(count(&app, "tenants").await, 0);
}

#[tokio::test]
async fn json_with_a_charset_or_a_structured_suffix_is_accepted() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for (slug, content_type) in [
        ("beta", "application/json; charset=utf-8"),
        ("gamma", "Application/JSON;charset=\"UTF-8\""),
        ("delta", "application/vnd.tollgate+json"),
    ] {
        let body = json!({
            "tenant_name": "Other Inc.",
            "tenant_slug": slug,
            "email": format!("owner@{slug}.test"),
            "password": PASSWORD,
            "name": "Owner",
        });
        let response = app
            .request(Method::POST, "auth/register")
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::CREATED).await;
    }
    let merge_patch = app
        .request(Method::PUT, "tenant")
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "name": "Acme Renamed" }).to_string())
        .send()
        .await
        .unwrap();
    let tenant = expect_status(merge_patch, StatusCode::OK).await;
    assert_eq!(tenant["name"], "Acme Renamed");
}

#[tokio::test]
async fn bodiless_posts_need_no_content_type() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let logout = app
        .request(Method::POST, "auth/logout")
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    expect_status(logout, StatusCode::NO_CONTENT).await;

    let missing = app
        .request(Method::POST, "auth/login")
        .send()
        .await
        .unwrap();
    expect_error(missing, StatusCode::BAD_REQUEST, "invalid_json").await;
}
