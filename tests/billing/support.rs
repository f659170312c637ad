//! Stripe events built from Stripe's published fixtures (`testdata/stripe/fixtures3.json`)
//! and signed exactly as Stripe signs them.

use reqwest::{Method, Response};
use serde_json::{Value, json};
use tollgate::{clock::Clock, tokens::hmac_sha256};
use tollgate_tests::{TestApp, spawn_app_with};

pub const SECRET: &str = "whsec_tollgate_test_endpoint_secret";

pub async fn spawn_billing_app() -> TestApp {
    spawn_app_with(|config| config.stripe_webhook_secret = Some(SECRET.into())).await
}

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/stripe/fixtures3.json"
    );
    let text = std::fs::read_to_string(path).expect("Stripe's fixtures in testdata/stripe");
    serde_json::from_str(&text).unwrap()
}

/// Stripe's fixture object of `resource` with `changes` merged in at the top level.
pub fn object(resource: &str, changes: Value) -> Value {
    let mut object = fixtures()["resources"][resource].clone();
    assert!(object.is_object(), "no fixture for {resource}");
    for (key, value) in changes.as_object().unwrap() {
        object[key] = value.clone();
    }
    object
}

/// Stripe's fixture event with `type`, `id`, `created` and `data.object` set.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    let mut event = fixtures()["resources"]["event"].clone();
    event["id"] = json!(id);
    event["type"] = json!(kind);
    event["created"] = json!(created);
    event["data"] = json!({ "object": object });
    event
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed with the secret's bytes.
pub fn stripe_signature(timestamp: i64, body: &str, secret: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac))
}

pub async fn deliver_with(app: &TestApp, body: &str, signature: Option<String>) -> Response {
    let mut request = app
        .request(Method::POST, "webhooks/stripe")
        // What Stripe sends.
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.unwrap()
}

/// Delivers `event` signed now, as Stripe would.
pub async fn deliver(app: &TestApp, event: &Value) -> Response {
    let body = event.to_string();
    let signature = stripe_signature(app.clock.now(), &body, SECRET);
    deliver_with(app, &body, Some(signature)).await
}

pub async fn count(app: &TestApp, sql: &str, tenant_id: &str) -> i64 {
    app.query(sql, vec![tenant_id.into()]).await[0][0]
        .as_i64()
        .unwrap()
}

pub async fn pool_total(app: &TestApp, tenant_id: &str) -> i64 {
    count(
        app,
        "SELECT COALESCE((SELECT total FROM credit_accounts WHERE id = 'pool:' || ?), 0)",
        tenant_id,
    )
    .await
}

pub async fn plan(app: &TestApp, tenant_id: &str) -> String {
    app.query(
        "SELECT plan_code FROM tenants WHERE id = ?",
        vec![tenant_id.into()],
    )
    .await[0][0]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A completed Checkout Session buying `credits` for the tenant.
pub fn credit_purchase(
    tenant_id: &str,
    session: &str,
    payment_intent: &str,
    credits: i64,
) -> Value {
    object(
        "checkout.session",
        json!({
            "id": session,
            "mode": "payment",
            "status": "complete",
            "payment_status": "paid",
            "customer": "cus_acme",
            "payment_intent": payment_intent,
            "metadata": { "tenant_id": tenant_id, "credits": credits.to_string() },
        }),
    )
}
