//! Arrangements the credit tests share, all made through the API.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
pub use tollgate_tests::account_and_ledger;
use tollgate_tests::{TestApp, TestUser, expect_status};

/// A tenant whose owner holds `credits` in the pool, granted by a platform admin, with the
/// per-minute request limit lifted so that load tests measure credits, not rate limits.
pub async fn funded_tenant(app: &TestApp, slug: &str, credits: i64) -> TestUser {
    let owner = app.register(slug).await;
    let admin = app
        .platform_admin(&format!("ops@{slug}.platform.test"))
        .await;
    let lifted = json!({ "plan": "FREE", "overrides": { "requests_per_minute": 1_000_000 } });
    app.assign_plan(&admin, &owner, &lifted).await;
    if credits > 0 {
        grant_pool(app, &admin, &owner.tenant_id, credits, None).await;
    }
    owner
}

/// A platform admin's grant into a tenant's pool.
pub async fn grant_pool(
    app: &TestApp,
    admin: &str,
    tenant_id: &str,
    amount: i64,
    key: Option<&str>,
) -> Value {
    let response = app
        .post(
            &format!("admin/tenants/{tenant_id}/credits/grants"),
            admin,
            &json!({ "amount": amount, "reason": "test grant", "idempotency_key": key }),
        )
        .await;
    assert!(
        response.status().is_success(),
        "grant failed: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// `POST credits/reservations` with an optional `Idempotency-Key`.
pub async fn reserve(app: &TestApp, user: &TestUser, amount: i64, key: Option<&str>) -> Response {
    let mut request = app
        .request(Method::POST, "credits/reservations")
        .bearer_auth(&user.access_token)
        .json(&json!({ "amount": amount, "reason": "render", "model": "sdxl" }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

/// Reserves and expects success; returns the reservation.
pub async fn reserved(app: &TestApp, user: &TestUser, amount: i64) -> Value {
    expect_status(reserve(app, user, amount, None).await, StatusCode::CREATED).await
}

pub async fn settle(app: &TestApp, user: &TestUser, id: &str, actual: i64) -> Response {
    app.post(
        &format!("credits/reservations/{id}/settle"),
        &user.access_token,
        &json!({ "actual": actual }),
    )
    .await
}

pub async fn release(app: &TestApp, user: &TestUser, id: &str) -> Response {
    app.post(
        &format!("credits/reservations/{id}/release"),
        &user.access_token,
        &json!({}),
    )
    .await
}

/// The caller's `GET credits` answer.
pub async fn balances(app: &TestApp, user: &TestUser) -> Value {
    expect_status(app.get("credits", &user.access_token).await, StatusCode::OK).await
}
