//! Amounts are bounded: no single amount past 10^12 credits, no balance past 10^15, and
//! nothing overflows into a REAL, a 500 or a half-written grant.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, expect_error, expect_status, spawn_app};

use crate::support::{account_and_ledger, balances, funded_tenant, reserve};

const MAX_AMOUNT: i64 = 1_000_000_000_000;

async fn grant(app: &TestApp, admin: &str, tenant_id: &str, amount: Value) -> reqwest::Response {
    app.post(
        &format!("admin/tenants/{tenant_id}/credits/grants"),
        admin,
        &json!({ "amount": amount, "reason": "bounds" }),
    )
    .await
}

#[tokio::test]
async fn a_grant_past_the_largest_amount_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    for amount in [json!(MAX_AMOUNT + 1), json!(i64::MAX), json!(i64::MAX - 50)] {
        let response = grant(&app, &admin, &owner.tenant_id, amount.clone()).await;
        let body = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "amount", "{amount}");
    }

    let pool = balances(&app, &owner).await["pool"].clone();
    assert_eq!(pool["total"], 100);
    assert_eq!(pool["remaining"], 100);
}

#[tokio::test]
async fn grants_that_would_carry_a_balance_past_its_bound_are_refused_whole() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 0).await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    for _ in 0..1000 {
        expect_status(
            grant(&app, &admin, &owner.tenant_id, json!(MAX_AMOUNT)).await,
            StatusCode::CREATED,
        )
        .await;
    }

    let response = grant(&app, &admin, &owner.tenant_id, json!(1)).await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "amount_out_of_range",
    )
    .await;
    let pool_id = format!("pool:{}", owner.tenant_id);
    let (account, ledger) = account_and_ledger(&app, &pool_id).await;
    assert_eq!(account, [1000 * MAX_AMOUNT, 0, 0]);
    assert_eq!(account, ledger, "the refused grant left no ledger row");
    // The account is still whole and readable, and still spends.
    let body = balances(&app, &owner).await;
    assert_eq!(body["pool"]["total"], 1000 * MAX_AMOUNT);
    expect_status(
        reserve(&app, &owner, MAX_AMOUNT, None).await,
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn a_reservation_or_a_settle_past_the_largest_amount_is_refused() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    for amount in [i64::MAX, MAX_AMOUNT + 1] {
        let response = reserve(&app, &owner, amount, None).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let held = expect_status(reserve(&app, &owner, 10, None).await, StatusCode::CREATED).await;
    let response = app
        .post(
            &format!(
                "credits/reservations/{}/settle",
                held["id"].as_str().unwrap()
            ),
            &owner.access_token,
            &json!({ "actual": i64::MAX }),
        )
        .await;
    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 10);
}

#[tokio::test]
async fn allowances_and_top_up_settings_are_bounded() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;

    let allowance = app
        .put(
            &format!("users/{}/credits/allowance", ada.user_id),
            &owner.access_token,
            &json!({ "allowance": i64::MAX }),
        )
        .await;
    expect_error(
        allowance,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let settings = app
        .put(
            "credits/settings",
            &owner.access_token,
            &json!({ "auto_topup": { "enabled": true, "threshold": 10, "amount": i64::MAX, "max_per_month": 1 } }),
        )
        .await;
    expect_error(
        settings,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    // The user's balance still reads as before.
    let body = expect_status(
        app.get(
            &format!("users/{}/credits", ada.user_id),
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["total"], Value::Null);
}

#[tokio::test]
async fn paging_far_past_any_list_is_a_clear_error() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    let response = app
        .get(
            &format!("credits/ledger?offset={}", i64::MAX - 10),
            &owner.access_token,
        )
        .await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
}
