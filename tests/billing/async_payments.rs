//! Checkout Sessions paid by a delayed method (bank debits, vouchers): they complete
//! unpaid, and `checkout.session.async_payment_succeeded` or `…_failed` settles them later.
//! What a session buys comes with its payment, once, whatever order the events arrive in.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_status};

use crate::support::{
    count, credit_purchase, deliver, event, object, plan, pool_total, spawn_billing_app,
};

const COMPLETED: &str = "checkout.session.completed";
const SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
const FAILED: &str = "checkout.session.async_payment_failed";

/// A Checkout Session buying 500 credits whose payment stands at `payment_status`.
fn purchase(tenant: &TestUser, payment_status: &str) -> Value {
    let mut session = credit_purchase(&tenant.tenant_id, "cs_1", "pi_1", 500);
    session["payment_status"] = json!(payment_status);
    session
}

async fn delivered(app: &TestApp, id: &str, kind: &str, created: i64, session: Value) {
    expect_status(
        deliver(app, &event(id, kind, created, session)).await,
        StatusCode::OK,
    )
    .await;
}

async fn tenant_count(app: &TestApp, tenant: &TestUser, sql: &str) -> i64 {
    count(app, sql, &tenant.tenant_id).await
}

async fn purchase_status(app: &TestApp) -> String {
    app.query(
        "SELECT status FROM credit_purchases WHERE checkout_session_id = 'cs_1'",
        vec![],
    )
    .await[0][0]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn purchased_events(app: &TestApp, tenant: &TestUser) -> i64 {
    tenant_count(
        app,
        tenant,
        "SELECT COUNT(*) FROM outbox_events WHERE tenant_id = ? AND type = 'credits.purchased'",
    )
    .await
}

#[tokio::test]
async fn an_unpaid_completed_checkout_grants_nothing_until_its_payment_succeeds() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;

    delivered(&app, "evt_1", COMPLETED, 100, purchase(&owner, "unpaid")).await;

    assert_eq!(pool_total(&app, &owner.tenant_id).await, 0);
    assert_eq!(purchase_status(&app).await, "pending");
    assert_eq!(purchased_events(&app, &owner).await, 0);

    delivered(&app, "evt_2", SUCCEEDED, 200, purchase(&owner, "paid")).await;

    assert_eq!(pool_total(&app, &owner.tenant_id).await, 500);
    assert_eq!(purchase_status(&app).await, "paid");
    assert_eq!(purchased_events(&app, &owner).await, 1);
}

#[tokio::test]
async fn a_session_is_granted_once_whatever_order_and_however_often_its_events_come() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;

    delivered(&app, "evt_2", SUCCEEDED, 200, purchase(&owner, "paid")).await;
    delivered(&app, "evt_1", COMPLETED, 100, purchase(&owner, "unpaid")).await;
    delivered(&app, "evt_2", SUCCEEDED, 200, purchase(&owner, "paid")).await;
    delivered(&app, "evt_3", SUCCEEDED, 300, purchase(&owner, "paid")).await;
    delivered(&app, "evt_4", COMPLETED, 400, purchase(&owner, "paid")).await;

    assert_eq!(pool_total(&app, &owner.tenant_id).await, 500);
    assert_eq!(purchase_status(&app).await, "paid");
    assert_eq!(purchased_events(&app, &owner).await, 1);
    let purchases = tenant_count(
        &app,
        &owner,
        "SELECT COUNT(*) FROM credit_ledger WHERE tenant_id = ? AND kind = 'purchase'",
    )
    .await;
    assert_eq!(purchases, 1);
    let audited = tenant_count(
        &app,
        &owner,
        "SELECT COUNT(*) FROM audit_log WHERE tenant_id = ? AND action = 'credits.purchased'",
    )
    .await;
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn a_checkout_that_needs_no_payment_grants_at_once() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;

    delivered(
        &app,
        "evt_1",
        COMPLETED,
        100,
        purchase(&owner, "no_payment_required"),
    )
    .await;

    assert_eq!(pool_total(&app, &owner.tenant_id).await, 500);
}

#[tokio::test]
async fn a_failed_delayed_payment_grants_nothing_and_the_tenant_hears_of_it() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    delivered(&app, "evt_1", COMPLETED, 100, purchase(&owner, "unpaid")).await;

    delivered(&app, "evt_2", FAILED, 200, purchase(&owner, "unpaid")).await;
    delivered(&app, "evt_2", FAILED, 200, purchase(&owner, "unpaid")).await;
    delivered(&app, "evt_3", COMPLETED, 300, purchase(&owner, "unpaid")).await;

    assert_eq!(pool_total(&app, &owner.tenant_id).await, 0);
    assert_eq!(purchase_status(&app).await, "failed");
    let notices = app
        .query(
            "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = 'billing.payment_failed'",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(notices.len(), 1, "one notice, however often Stripe retries");
    let notice: Value = serde_json::from_str(notices[0][0].as_str().unwrap()).unwrap();
    assert_eq!(
        notice,
        json!({ "checkout_session": "cs_1", "credits": 500 })
    );
    let audited = app
        .query(
            "SELECT actor_type, actor_id, target_type, target_id FROM audit_log
             WHERE tenant_id = ? AND action = 'billing.payment_failed'",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(
        audited,
        vec![vec![
            json!("system"),
            json!("stripe"),
            json!("checkout_session"),
            json!("cs_1")
        ]]
    );
}

#[tokio::test]
async fn tenant_webhooks_can_subscribe_to_failed_payments_by_name() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            "webhooks/endpoints",
            &owner.access_token,
            &json!({ "url": "https://hooks.acme.test/billing", "event_types": ["billing.payment_failed"] }),
        )
        .await;

    let endpoint = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(endpoint["event_types"], json!(["billing.payment_failed"]));
}

#[tokio::test]
async fn an_unpaid_subscription_checkout_changes_the_plan_only_once_paid() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    let subscription = |payment_status: &str| {
        object(
            "checkout.session",
            json!({
                "id": "cs_sub",
                "mode": "subscription",
                "payment_status": payment_status,
                "customer": "cus_acme",
                "subscription": "sub_1",
                "metadata": { "tenant_id": owner.tenant_id, "plan": "PRO" },
            }),
        )
    };

    delivered(&app, "evt_1", COMPLETED, 100, subscription("unpaid")).await;
    assert_eq!(plan(&app, &owner.tenant_id).await, "FREE");

    delivered(&app, "evt_2", SUCCEEDED, 200, subscription("paid")).await;
    assert_eq!(plan(&app, &owner.tenant_id).await, "PRO");
}
