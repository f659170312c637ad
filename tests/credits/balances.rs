use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{balances, funded_tenant, grant_pool, reserved};

#[tokio::test]
async fn a_new_tenant_starts_with_an_empty_pool_and_no_allowance() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let body = balances(&app, &owner).await;

    assert_eq!(body["pool"]["total"], 0);
    assert_eq!(body["pool"]["remaining"], 0);
    assert_eq!(body["user"]["total"], json!(null));
    assert_eq!(body["user"]["remaining"], json!(null));
    assert_eq!(body["pool"]["alert_thresholds"], json!([80, 95, 100]));
}

#[tokio::test]
async fn a_platform_grant_fills_the_pool_once_per_idempotency_key() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let first = grant_pool(&app, &admin, &owner.tenant_id, 500, Some("invoice-1")).await;
    let replay = grant_pool(&app, &admin, &owner.tenant_id, 500, Some("invoice-1")).await;

    assert_eq!(first["applied"], true);
    assert_eq!(replay["applied"], false);
    assert_eq!(balances(&app, &owner).await["pool"]["total"], 500);
}

#[tokio::test]
async fn a_grant_needs_a_positive_amount() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let response = app
        .post(
            &format!("admin/tenants/{}/credits/grants", owner.tenant_id),
            &admin,
            &json!({ "amount": 0 }),
        )
        .await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_tenant_token_cannot_grant_itself_credits() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            &format!("admin/tenants/{}/credits/grants", owner.tenant_id),
            &owner.access_token,
            &json!({ "amount": 100 }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_grant_to_an_unknown_tenant_is_not_found() {
    let app = spawn_app().await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let response = app
        .post(
            "admin/tenants/nope/credits/grants",
            &admin,
            &json!({ "amount": 1 }),
        )
        .await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_admin_reads_any_users_balance_and_a_member_only_its_own() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    reserved(&app, &ada, 30).await;

    let by_admin = app
        .get(
            &format!("users/{}/credits", ada.user_id),
            &owner.access_token,
        )
        .await;
    let by_self = app
        .get(&format!("users/{}/credits", ada.user_id), &ada.access_token)
        .await;
    let by_peer = app
        .get(&format!("users/{}/credits", ada.user_id), &max.access_token)
        .await;

    assert_eq!(
        expect_status(by_admin, StatusCode::OK).await["user"]["reserved"],
        30
    );
    assert_eq!(
        expect_status(by_self, StatusCode::OK).await["pool"]["reserved"],
        30
    );
    expect_error(by_peer, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn another_tenants_user_is_not_found() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;

    let response = app
        .get(
            &format!("users/{}/credits", globex.user_id),
            &acme.access_token,
        )
        .await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_allowance_caps_a_users_spend_below_the_pool() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let set = app
        .put(
            &format!("users/{}/credits/allowance", ada.user_id),
            &owner.access_token,
            &json!({ "allowance": 20 }),
        )
        .await;
    assert_eq!(expect_status(set, StatusCode::OK).await["total"], 20);

    let too_much = crate::support::reserve(&app, &ada, 25, None).await;

    let body = expect_error(
        too_much,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(body["error"]["details"]["remaining"]["user"], 20);
    assert_eq!(body["error"]["details"]["remaining"]["tenant"], 100);
    reserved(&app, &ada, 20).await;
}

#[tokio::test]
async fn an_allowance_below_what_is_spent_is_refused() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    reserved(&app, &ada, 30).await;

    let response = app
        .put(
            &format!("users/{}/credits/allowance", ada.user_id),
            &owner.access_token,
            &json!({ "allowance": 10 }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "allowance_below_spend").await;
    assert_eq!(balances(&app, &ada).await["user"]["total"], json!(null));
}

#[tokio::test]
async fn removing_an_allowance_leaves_only_the_pool_as_limit() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let path = format!("users/{}/credits/allowance", ada.user_id);
    app.put(&path, &owner.access_token, &json!({ "allowance": 5 }))
        .await;

    let cleared = app
        .put(&path, &owner.access_token, &json!({ "allowance": null }))
        .await;

    assert_eq!(
        expect_status(cleared, StatusCode::OK).await["total"],
        json!(null)
    );
    reserved(&app, &ada, 50).await;
}

#[tokio::test]
async fn a_member_cannot_set_allowances() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let ada = app.add_user(&owner, "ada", "member").await;

    let response = app
        .put(
            &format!("users/{}/credits/allowance", ada.user_id),
            &ada.access_token,
            &json!({ "allowance": 1000 }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_tenant_admin_grant_raises_a_users_allowance() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let path = format!("users/{}/credits/grants", ada.user_id);

    let first = app
        .post(&path, &owner.access_token, &json!({ "amount": 10 }))
        .await;
    let second = app
        .post(&path, &owner.access_token, &json!({ "amount": 15 }))
        .await;

    assert_eq!(
        expect_status(first, StatusCode::CREATED).await["account"]["total"],
        10
    );
    assert_eq!(
        expect_status(second, StatusCode::CREATED).await["account"]["total"],
        25
    );
}

#[tokio::test]
async fn a_platform_adjustment_corrects_the_pool_with_a_reason() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let admin = app.platform_admin("ops2@tollgate.test").await;
    let path = format!("admin/tenants/{}/credits/adjustments", owner.tenant_id);

    let down = app
        .post(
            &path,
            &admin,
            &json!({ "amount": -40, "reason": "duplicate invoice" }),
        )
        .await;
    let without_reason = app.post(&path, &admin, &json!({ "amount": 5 })).await;

    assert_eq!(
        expect_status(down, StatusCode::CREATED).await["account"]["total"],
        60
    );
    expect_error(
        without_reason,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn an_adjustment_below_what_is_spent_is_refused() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    reserved(&app, &owner, 70).await;
    let admin = app.platform_admin("ops2@tollgate.test").await;

    let response = app
        .post(
            &format!("admin/tenants/{}/credits/adjustments", owner.tenant_id),
            &admin,
            &json!({ "amount": -40, "reason": "chargeback" }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "adjustment_below_spend").await;
    assert_eq!(balances(&app, &owner).await["pool"]["total"], 100);
}

#[tokio::test]
async fn an_adjustment_below_zero_is_refused_not_a_server_error() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 10).await;
    let admin = app.platform_admin("ops2@tollgate.test").await;

    let response = app
        .post(
            &format!("admin/tenants/{}/credits/adjustments", owner.tenant_id),
            &admin,
            &json!({ "amount": -11, "reason": "chargeback" }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "adjustment_below_spend").await;
    assert_eq!(balances(&app, &owner).await["pool"]["total"], 10);
}
