//! Small steps the auth tests share, written as a client would take them.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_status};

/// The base domain the test server serves tenant subdomains under.
pub const BASE_DOMAIN: &str = "tollgate.test";

/// A header of the response, as text.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// A header of the response that must be a whole number.
pub fn number_header(response: &Response, name: &str) -> i64 {
    header(response, name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// `POST` with a raw body, as a client that does not (or cannot) send JSON.
pub async fn post_raw(app: &TestApp, path: &str, body: &'static str) -> Response {
    app.request(Method::POST, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `POST /auth/refresh` with `refresh_token`.
pub async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post_public("auth/refresh", &json!({ "refresh_token": refresh_token }))
        .await
}

/// Signs in through `Host: host`, naming no tenant in the body.
pub async fn login_at_host(app: &TestApp, host: &str, email: &str, password: &str) -> Response {
    app.request(Method::POST, "auth/login")
        .header("host", host)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

/// Signs `user` in from client address `ip` with `password`.
pub async fn login_from(app: &TestApp, ip: &str, user: &TestUser, password: &str) -> Response {
    app.request(Method::POST, "auth/login")
        .header("x-forwarded-for", ip)
        .json(&json!({
            "tenant": user.tenant_slug,
            "email": user.email,
            "password": password,
        }))
        .send()
        .await
        .unwrap()
}

/// `GET /auth/me` with the bearer `token`: 200 or the error.
pub async fn me(app: &TestApp, token: &str) -> Response {
    app.get("auth/me", token).await
}

/// The access and refresh tokens of a token-pair answer.
pub fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Has a platform admin suspend the tenant.
pub async fn suspend(app: &TestApp, tenant_id: &str) {
    let admin = app.platform_admin("ops@platform.test").await;
    let response = app
        .post(
            &format!("admin/tenants/{tenant_id}/suspend"),
            &admin,
            &json!({}),
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;
}

/// How many rows `table` holds.
pub async fn count(app: &TestApp, table: &str) -> i64 {
    app.query(&format!("SELECT COUNT(*) FROM {table}"), vec![])
        .await[0][0]
        .as_i64()
        .unwrap()
}
