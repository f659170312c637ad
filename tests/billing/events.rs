use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status};

use crate::support::{
    count, credit_purchase, deliver, event, object, plan, pool_total, spawn_billing_app,
};

fn subscription_checkout(tenant_id: &str, plan: &str) -> Value {
    object(
        "checkout.session",
        json!({
            "id": "cs_sub",
            "mode": "subscription",
            "payment_status": "paid",
            "customer": "cus_acme",
            "subscription": "sub_1",
            "metadata": { "tenant_id": tenant_id, "plan": plan },
        }),
    )
}

fn subscription(status: &str, plan: &str) -> Value {
    object(
        "subscription",
        json!({ "id": "sub_1", "customer": "cus_acme", "status": status, "metadata": { "plan": plan } }),
    )
}

fn paid_invoice(id: &str) -> Value {
    object(
        "invoice",
        json!({ "id": id, "customer": "cus_acme", "status": "paid", "subscription": "sub_1", "billing_reason": "subscription_cycle" }),
    )
}

async fn outbox(app: &TestApp, tenant: &TestUser, kind: &str) -> i64 {
    app.query(
        "SELECT COUNT(*) FROM outbox_events WHERE tenant_id = ? AND type = ?",
        vec![tenant.tenant_id.clone().into(), kind.into()],
    )
    .await[0][0]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_credit_purchase_fills_the_pool_once_however_often_it_is_delivered() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    let purchase = credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 500);
    let completed = event("evt_1", "checkout.session.completed", 100, purchase.clone());

    let first = deliver(&app, &completed).await;
    let duplicate = deliver(&app, &completed).await;
    let same_session_other_event = deliver(
        &app,
        &event("evt_2", "checkout.session.completed", 101, purchase),
    )
    .await;

    assert_eq!(
        expect_status(first, StatusCode::OK).await["duplicate"],
        false
    );
    assert_eq!(
        expect_status(duplicate, StatusCode::OK).await["duplicate"],
        true
    );
    expect_status(same_session_other_event, StatusCode::OK).await;
    assert_eq!(pool_total(&app, &owner.tenant_id).await, 500);
    assert_eq!(outbox(&app, &owner, "credits.purchased").await, 1);
    let ledger = count(
        &app,
        "SELECT COUNT(*) FROM credit_ledger WHERE tenant_id = ? AND kind = 'purchase'",
        &owner.tenant_id,
    )
    .await;
    assert_eq!(ledger, 1);
}

#[tokio::test]
async fn a_purchase_without_credits_in_its_metadata_is_refused() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    let mut purchase = credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 500);
    purchase["metadata"] = json!({ "tenant_id": owner.tenant_id });

    let response = deliver(
        &app,
        &event("evt_1", "checkout.session.completed", 100, purchase),
    )
    .await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        app.query("SELECT COUNT(*) FROM stripe_events", vec![])
            .await[0][0],
        0
    );
}

#[tokio::test]
async fn a_subscription_checkout_moves_the_tenant_to_its_plan() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;

    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;

    assert_eq!(plan(&app, &owner.tenant_id).await, "PRO");
    assert_eq!(outbox(&app, &owner, "plan.changed").await, 1);
}

#[tokio::test]
async fn a_late_subscription_update_does_not_undo_a_newer_cancellation() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;

    let deleted = deliver(
        &app,
        &event(
            "evt_3",
            "customer.subscription.deleted",
            300,
            subscription("canceled", "PRO"),
        ),
    )
    .await;
    let late_update = deliver(
        &app,
        &event(
            "evt_2",
            "customer.subscription.updated",
            200,
            subscription("active", "ENTERPRISE"),
        ),
    )
    .await;

    expect_status(deleted, StatusCode::OK).await;
    expect_status(late_update, StatusCode::OK).await;
    assert_eq!(plan(&app, &owner.tenant_id).await, "FREE");
}

#[tokio::test]
async fn in_order_a_subscription_update_changes_the_plan() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;

    deliver(
        &app,
        &event(
            "evt_2",
            "customer.subscription.updated",
            200,
            subscription("active", "ENTERPRISE"),
        ),
    )
    .await;

    assert_eq!(plan(&app, &owner.tenant_id).await, "ENTERPRISE");
}

#[tokio::test]
async fn a_paid_invoice_grants_the_plans_monthly_credits_once() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;

    deliver(
        &app,
        &event("evt_2", "invoice.paid", 200, paid_invoice("in_1")),
    )
    .await;
    deliver(
        &app,
        &event("evt_2", "invoice.paid", 200, paid_invoice("in_1")),
    )
    .await;
    deliver(
        &app,
        &event("evt_3", "invoice.paid", 300, paid_invoice("in_1")),
    )
    .await;

    assert_eq!(
        pool_total(&app, &owner.tenant_id).await,
        10_000,
        "PRO grants 10,000 a month"
    );
    deliver(
        &app,
        &event("evt_4", "invoice.paid", 400, paid_invoice("in_2")),
    )
    .await;
    assert_eq!(pool_total(&app, &owner.tenant_id).await, 20_000);
}

#[tokio::test]
async fn an_invoice_before_its_tenant_is_linked_is_retried_by_stripe_and_then_applied() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    let early = event("evt_2", "invoice.paid", 200, paid_invoice("in_1"));

    let refused = deliver(&app, &early).await;
    expect_error(refused, StatusCode::CONFLICT, "tenant_not_linked").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;
    let retried = deliver(&app, &early).await;

    expect_status(retried, StatusCode::OK).await;
    assert_eq!(pool_total(&app, &owner.tenant_id).await, 10_000);
}

#[tokio::test]
async fn a_failed_payment_downgrades_to_free_when_the_grace_runs_out() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;
    let failed = object(
        "invoice",
        json!({ "id": "in_1", "customer": "cus_acme", "status": "open" }),
    );
    deliver(&app, &event("evt_2", "invoice.payment_failed", 200, failed)).await;

    app.advance_clock(6 * 86_400);
    assert_eq!(app.run_cron().await.tenants_downgraded, 0);
    assert_eq!(plan(&app, &owner.tenant_id).await, "PRO");
    app.advance_clock(86_400 + 1);
    let (first, second) = futures::join!(app.run_cron(), app.run_cron());

    assert_eq!(
        first.tenants_downgraded + second.tenants_downgraded,
        1,
        "downgraded once"
    );
    assert_eq!(plan(&app, &owner.tenant_id).await, "FREE");
    assert_eq!(outbox(&app, &owner, "plan.changed").await, 2);
}

#[tokio::test]
async fn paying_within_the_grace_keeps_the_plan() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;
    let failed = object(
        "invoice",
        json!({ "id": "in_1", "customer": "cus_acme", "status": "open" }),
    );
    deliver(&app, &event("evt_2", "invoice.payment_failed", 200, failed)).await;

    deliver(
        &app,
        &event("evt_3", "invoice.paid", 300, paid_invoice("in_1")),
    )
    .await;
    app.advance_clock(8 * 86_400);
    app.run_cron().await;

    assert_eq!(plan(&app, &owner.tenant_id).await, "PRO");
}

#[tokio::test]
async fn a_refund_claws_back_its_share_of_unspent_credits_only() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 500),
        ),
    )
    .await;
    let hold = app
        .post(
            "credits/reservations",
            &owner.access_token,
            &json!({ "amount": 400 }),
        )
        .await;
    expect_status(hold, StatusCode::CREATED).await;
    let refund = |refunded: i64, id: &str| {
        event(
            id,
            "charge.refunded",
            200,
            object(
                "charge",
                json!({ "id": "ch_1", "customer": "cus_acme", "payment_intent": "pi_1", "amount": 5000, "amount_refunded": refunded, "refunded": true }),
            ),
        )
    };

    deliver(&app, &refund(2_500, "evt_2")).await;
    deliver(&app, &refund(2_500, "evt_2")).await;

    assert_eq!(
        pool_total(&app, &owner.tenant_id).await,
        400,
        "half is 250 but only 100 were unspent"
    );
    let clawed = app
        .query(
            "SELECT clawed_back FROM credit_purchases WHERE checkout_session_id = 'cs_1'",
            vec![],
        )
        .await;
    assert_eq!(clawed[0][0], 250);
}

#[tokio::test]
async fn stripe_effects_are_audited_once_and_skipped_changes_are_not() {
    let app = spawn_billing_app().await;
    let owner = app.register("acme").await;
    deliver(
        &app,
        &event(
            "evt_1",
            "checkout.session.completed",
            100,
            subscription_checkout(&owner.tenant_id, "PRO"),
        ),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_3",
            "customer.subscription.deleted",
            300,
            subscription("canceled", "PRO"),
        ),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_2",
            "customer.subscription.updated",
            200,
            subscription("active", "ENTERPRISE"),
        ),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_4",
            "checkout.session.completed",
            400,
            credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 50),
        ),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_4",
            "checkout.session.completed",
            400,
            credit_purchase(&owner.tenant_id, "cs_1", "pi_1", 50),
        ),
    )
    .await;

    let actions: Vec<String> = app
        .query(
            "SELECT action FROM audit_log WHERE tenant_id = ? AND actor_type = 'system' ORDER BY seq",
            vec![owner.tenant_id.clone().into()],
        )
        .await
        .into_iter()
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();

    assert_eq!(
        actions,
        ["plan.changed", "plan.changed", "credits.purchased"]
    );
}
