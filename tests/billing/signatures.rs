use reqwest::StatusCode;
use serde_json::json;
use tollgate::clock::Clock;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{
    SECRET, count, credit_purchase, deliver, deliver_with, event, object, spawn_billing_app,
    stripe_signature,
};

#[tokio::test]
async fn a_correctly_signed_event_is_accepted() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    let event = event(
        "evt_1",
        "checkout.session.completed",
        1,
        credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 10),
    );

    expect_status(deliver(&app, &event).await, StatusCode::OK).await;
}

#[tokio::test]
async fn bad_signatures_answer_400_and_change_nothing() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    let body = event(
        "evt_1",
        "checkout.session.completed",
        1,
        credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 10),
    )
    .to_string();
    let now = app.clock.now();
    let good = stripe_signature(now, &body, SECRET);
    let several = format!(
        "t={now},v1={},v1={}",
        "0".repeat(64),
        good.split("v1=").nth(1).unwrap()
    );

    let cases = [
        None,
        Some(stripe_signature(now, &body, "whsec_wrong")),
        Some(stripe_signature(now - 301, &body, SECRET)),
        Some(stripe_signature(now + 301, &body, SECRET)),
        Some(format!("t={now},v1=")),
        Some(format!("v1={}", good.split("v1=").nth(1).unwrap())),
        Some(stripe_signature(now, &body.replace("cs_1", "cs_2"), SECRET)),
    ];
    for signature in cases {
        let response = deliver_with(&app, &body, signature.clone()).await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_signature").await;
    }
    assert_eq!(
        app.query("SELECT COUNT(*) FROM stripe_events", vec![])
            .await[0][0],
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM credit_ledger WHERE tenant_id = ?",
            &owner.tenant_id
        )
        .await,
        0
    );

    let accepted = deliver_with(&app, &body, Some(several)).await;
    expect_status(accepted, StatusCode::OK).await;
}

#[tokio::test]
async fn without_a_configured_secret_the_endpoint_does_not_exist() {
    let app = spawn_app().await;
    let body = event("evt_1", "invoice.paid", 1, object("invoice", json!({}))).to_string();

    let response = deliver_with(
        &app,
        &body,
        Some(stripe_signature(app.clock.now(), &body, SECRET)),
    )
    .await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_event_type_tollgate_does_not_handle_is_acknowledged() {
    let app = spawn_billing_app().await;

    let response = deliver(
        &app,
        &event("evt_1", "plan.created", 1, object("plan", json!({}))),
    )
    .await;

    assert_eq!(
        expect_status(response, StatusCode::OK).await["handled"],
        false
    );
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_event_is_a_bad_request() {
    let app = spawn_billing_app().await;
    let body = r#"{"hello":"world"}"#;

    let response = deliver_with(
        &app,
        body,
        Some(stripe_signature(app.clock.now(), body, SECRET)),
    )
    .await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_event").await;
}
