use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, expect_error, expect_status, spawn_app};

use crate::support::{balances, funded_tenant, grant_pool, release, reserve, reserved};

async fn pool_alerts(app: &TestApp, tenant_id: &str) -> Vec<i64> {
    app.query(
        "SELECT threshold FROM credit_alerts WHERE account_id = ? ORDER BY threshold",
        vec![format!("pool:{tenant_id}").into()],
    )
    .await
    .into_iter()
    .map(|row| row[0].as_i64().unwrap())
    .collect()
}

async fn events(app: &TestApp, tenant_id: &str, kind: &str) -> Vec<Value> {
    app.query(
        "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = ? ORDER BY created_at, rowid",
        vec![tenant_id.into(), kind.into()],
    )
    .await
    .into_iter()
    .map(|row| serde_json::from_str(row[0].as_str().unwrap()).unwrap())
    .collect()
}

#[tokio::test]
async fn seventy_nine_percent_raises_no_alert_and_eighty_raises_one() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    reserved(&app, &owner, 79).await;
    assert!(pool_alerts(&app, &owner.tenant_id).await.is_empty());

    reserved(&app, &owner, 1).await;

    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80]);
    let alerts = events(&app, &owner.tenant_id, "credits.alert").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["threshold"], 80);
}

#[tokio::test]
async fn each_threshold_fires_exactly_at_its_boundary() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    reserved(&app, &owner, 94).await;
    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80]);
    reserved(&app, &owner, 1).await;
    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80, 95]);
    reserved(&app, &owner, 4).await;
    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80, 95]);
    assert_eq!(balances(&app, &owner).await["pool"]["blocked"], false);
    reserved(&app, &owner, 1).await;
    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80, 95, 100]);
    assert_eq!(balances(&app, &owner).await["pool"]["blocked"], true);
}

#[tokio::test]
async fn a_threshold_alerts_once_per_month_however_often_it_is_crossed() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 85).await;
    release(&app, &owner, hold["id"].as_str().unwrap()).await;

    reserved(&app, &owner, 85).await;

    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80]);
    assert_eq!(
        events(&app, &owner.tenant_id, "credits.alert").await.len(),
        1
    );
}

#[tokio::test]
async fn at_one_hundred_percent_the_account_blocks_until_credits_are_added() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 100).await;
    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [80, 95, 100]);
    assert_eq!(balances(&app, &owner).await["pool"]["blocked"], true);
    assert_eq!(
        events(&app, &owner.tenant_id, "credits.blocked")
            .await
            .len(),
        1
    );
    release(&app, &owner, hold["id"].as_str().unwrap()).await;

    let while_blocked = reserve(&app, &owner, 10, None).await;

    expect_error(
        while_blocked,
        StatusCode::PAYMENT_REQUIRED,
        "credits_blocked",
    )
    .await;
    let admin = app.platform_admin("ops2@tollgate.test").await;
    grant_pool(&app, &admin, &owner.tenant_id, 100, None).await;
    assert_eq!(balances(&app, &owner).await["pool"]["blocked"], false);
    reserved(&app, &owner, 10).await;
}

#[tokio::test]
async fn adding_credits_resolves_the_alerts_that_no_longer_hold() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    reserved(&app, &owner, 96).await;
    let admin = app.platform_admin("ops2@tollgate.test").await;

    grant_pool(&app, &admin, &owner.tenant_id, 20, None).await;

    let open = app
        .query(
            "SELECT threshold FROM credit_alerts WHERE account_id = ? AND resolved_at IS NULL",
            vec![format!("pool:{}", owner.tenant_id).into()],
        )
        .await;
    let open: Vec<i64> = open
        .into_iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect();
    assert_eq!(
        open,
        [80],
        "96 of 120 is still past 80 % but no longer past 95 %"
    );
}

#[tokio::test]
async fn thresholds_are_configurable_per_account() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let settings = app
        .put(
            "credits/settings",
            &owner.access_token,
            &json!({ "alert_thresholds": [50, 100] }),
        )
        .await;
    assert_eq!(
        expect_status(settings, StatusCode::OK).await["alert_thresholds"],
        json!([50, 100])
    );

    reserved(&app, &owner, 60).await;

    assert_eq!(pool_alerts(&app, &owner.tenant_id).await, [50]);
}

#[tokio::test]
async fn thresholds_outside_one_to_one_hundred_are_refused() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for thresholds in [json!([]), json!([0, 80]), json!([101])] {
        let response = app
            .put(
                "credits/settings",
                &owner.access_token,
                &json!({ "alert_thresholds": thresholds }),
            )
            .await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn a_member_cannot_change_the_pools_settings() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let ada = app.add_user(&owner, "ada", "member").await;

    let response = app
        .put(
            "credits/settings",
            &ada.access_token,
            &json!({ "alert_thresholds": [50] }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn auto_top_up_requests_once_and_never_more_than_the_monthly_maximum() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let topup = json!({ "auto_topup": { "enabled": true, "threshold": 20, "amount": 50, "max_per_month": 1 } });
    let response = app
        .put("credits/settings", &owner.access_token, &topup)
        .await;
    expect_status(response, StatusCode::OK).await;

    reserved(&app, &owner, 85).await;
    reserved(&app, &owner, 5).await;

    let requested = events(&app, &owner.tenant_id, "credits.topup_requested").await;
    assert_eq!(requested.len(), 1, "one pending request at a time");
    assert_eq!(requested[0]["amount"], 50);
    let requests = app
        .query(
            "SELECT COUNT(*) FROM credit_topup_requests WHERE tenant_id = ?",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(requests[0][0], 1);
}

#[tokio::test]
async fn an_enabled_top_up_needs_an_amount() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let topup = json!({ "auto_topup": { "enabled": true, "threshold": 20, "amount": 0, "max_per_month": 1 } });

    let response = app
        .put("credits/settings", &owner.access_token, &topup)
        .await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}
