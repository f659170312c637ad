//! The tenant's billing API against the Stripe double: checkout, portal, invoices, and the
//! off-session charge of auto top-ups by cron.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app_with};

use crate::{
    stripe_double::{SECRET_KEY, StripeDouble},
    support::{SECRET, credit_purchase, deliver, event, pool_total},
};

async fn spawn_with_stripe() -> (TestApp, StripeDouble) {
    let stripe = StripeDouble::start().await;
    let base = stripe.base_url();
    let app = spawn_app_with(move |config| {
        config.stripe_webhook_secret = Some(SECRET.into());
        config.stripe_secret_key = Some(SECRET_KEY.into());
        config.stripe_api_base = base;
        config.credit_price_cents = 2;
    })
    .await;
    (app, stripe)
}

/// Links the tenant to Stripe customer `cus_acme` the way a first purchase does.
async fn link_customer(app: &TestApp, owner: &TestUser, credits: i64) {
    let purchase = credit_purchase(&owner.tenant_id, "cs_first", "pi_first", credits);
    let response = deliver(
        app,
        &event("evt_link", "checkout.session.completed", 1, purchase),
    )
    .await;
    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn a_credit_pack_checkout_creates_a_payment_session_priced_per_credit() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            "billing/checkout",
            &owner.access_token,
            &json!({ "kind": "credits", "credits": 1000 }),
        )
        .await;

    let session = expect_status(response, StatusCode::CREATED).await;
    assert!(
        session["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );
    let call = &stripe.calls_to("/v1/checkout/sessions")[0];
    assert_eq!(call.form["mode"], "payment");
    assert_eq!(call.form["metadata[credits]"], "1000");
    assert_eq!(call.form["metadata[tenant_id]"], owner.tenant_id);
    assert_eq!(call.form["line_items[0][price_data][unit_amount]"], "2000");
    assert_eq!(call.form["customer_email"], owner.email);
    assert!(call.idempotency_key.is_some());
}

#[tokio::test]
async fn a_plan_is_sold_only_once_the_operator_names_its_price() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;
    let body = json!({ "kind": "subscription", "plan": "PRO" });

    let before = app
        .post("billing/checkout", &owner.access_token, &body)
        .await;
    expect_error(
        before,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let set = app
        .put(
            "admin/plans/PRO/stripe-price",
            &admin,
            &json!({ "price_id": "price_pro_monthly" }),
        )
        .await;
    expect_status(set, StatusCode::NO_CONTENT).await;
    let after = app
        .post("billing/checkout", &owner.access_token, &body)
        .await;

    expect_status(after, StatusCode::CREATED).await;
    let call = &stripe.calls_to("/v1/checkout/sessions")[0];
    assert_eq!(call.form["mode"], "subscription");
    assert_eq!(call.form["line_items[0][price]"], "price_pro_monthly");
    assert_eq!(
        call.form["subscription_data[metadata][tenant_id]"],
        owner.tenant_id
    );
}

#[tokio::test]
async fn bad_checkout_requests_are_refused_before_stripe_is_called() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let by_member = app
        .post(
            "billing/checkout",
            &member.access_token,
            &json!({ "kind": "credits", "credits": 10 }),
        )
        .await;
    let zero = app
        .post(
            "billing/checkout",
            &owner.access_token,
            &json!({ "kind": "credits", "credits": 0 }),
        )
        .await;
    let unknown_kind = app
        .post(
            "billing/checkout",
            &owner.access_token,
            &json!({ "kind": "gift" }),
        )
        .await;

    expect_error(by_member, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(zero, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    expect_error(
        unknown_kind,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(stripe.calls().is_empty());
}

#[tokio::test]
async fn without_a_stripe_key_billing_is_unavailable() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            "billing/checkout",
            &owner.access_token,
            &json!({ "kind": "credits", "credits": 10 }),
        )
        .await;

    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "billing_not_configured",
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_stripe_answers_502() {
    let app = spawn_app_with(|config| {
        config.stripe_secret_key = Some(SECRET_KEY.into());
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        config.stripe_api_base = format!("http://{}", closed.local_addr().unwrap());
    })
    .await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            "billing/checkout",
            &owner.access_token,
            &json!({ "kind": "credits", "credits": 10 }),
        )
        .await;

    expect_error(
        response,
        StatusCode::BAD_GATEWAY,
        "payment_provider_unreachable",
    )
    .await;
}

#[tokio::test]
async fn the_portal_and_invoices_need_a_stripe_customer() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;

    let early = app
        .post("billing/portal", &owner.access_token, &json!({}))
        .await;
    expect_error(early, StatusCode::CONFLICT, "no_billing_account").await;
    link_customer(&app, &owner, 10).await;
    let portal = app
        .post("billing/portal", &owner.access_token, &json!({}))
        .await;
    let invoices = app.get("billing/invoices", &owner.access_token).await;

    assert!(expect_status(portal, StatusCode::CREATED).await["url"].is_string());
    let invoices = expect_status(invoices, StatusCode::OK).await;
    assert_eq!(invoices["data"][0]["status"], "paid");
    assert_eq!(
        stripe.calls_to("/v1/billing_portal/sessions")[0].form["customer"],
        "cus_acme"
    );
    assert_eq!(
        stripe.calls_to("/v1/invoices")[0].form["customer"],
        "cus_acme"
    );
}

async fn enable_top_up(app: &TestApp, owner: &TestUser) {
    let topup = json!({ "auto_topup": { "enabled": true, "threshold": 20, "amount": 50, "max_per_month": 2 } });
    expect_status(
        app.put("credits/settings", &owner.access_token, &topup)
            .await,
        StatusCode::OK,
    )
    .await;
    let hold = app
        .post(
            "credits/reservations",
            &owner.access_token,
            &json!({ "amount": 85 }),
        )
        .await;
    expect_status(hold, StatusCode::CREATED).await;
}

#[tokio::test]
async fn cron_charges_an_auto_top_up_off_session_once() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;
    link_customer(&app, &owner, 100).await;
    enable_top_up(&app, &owner).await;

    let (first, second) = futures::join!(app.run_cron(), app.run_cron());
    let third = app.run_cron().await;

    assert_eq!(
        first.topups_charged + second.topups_charged + third.topups_charged,
        1
    );
    let charges = stripe.calls_to("/v1/payment_intents");
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].form["amount"], "100", "50 credits at 2 cents");
    assert_eq!(charges[0].form["customer"], "cus_acme");
    assert_eq!(charges[0].form["off_session"], "true");
    assert_eq!(pool_total(&app, &owner.tenant_id).await, 150);
}

#[tokio::test]
async fn an_unreadable_answer_from_stripe_is_a_502_not_an_empty_session() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;
    stripe.truncate_answers();

    let response = app
        .post(
            "billing/checkout",
            &owner.access_token,
            &json!({ "kind": "credits", "credits": 1000 }),
        )
        .await;

    expect_error(response, StatusCode::BAD_GATEWAY, "payment_provider_error").await;
}

#[tokio::test]
async fn a_declined_top_up_adds_nothing_and_is_not_retried_blindly() {
    let (app, stripe) = spawn_with_stripe().await;
    let owner = app.register("acme").await;
    link_customer(&app, &owner, 100).await;
    enable_top_up(&app, &owner).await;
    stripe.decline_payments();

    app.run_cron().await;
    app.run_cron().await;

    assert_eq!(stripe.calls_to("/v1/payment_intents").len(), 1);
    assert_eq!(pool_total(&app, &owner.tenant_id).await, 100);
    let status = app
        .query("SELECT status FROM credit_topup_requests", vec![])
        .await;
    assert_eq!(status[0][0], "failed");
}
