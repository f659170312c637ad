//! Plans: the public price list, a platform admin moving a tenant between plans, and
//! per-tenant overrides that bind that tenant only.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::helpers::get_public;

async fn create_key(app: &TestApp, user: &TestUser) -> reqwest::Response {
    app.post(
        "api-keys",
        &user.access_token,
        &json!({ "name": "ci", "scopes": ["*"] }),
    )
    .await
}

#[tokio::test]
async fn anyone_lists_the_three_plans_without_signing_in() {
    let app = spawn_app().await;

    let plans = expect_status(get_public(&app, "plans").await, StatusCode::OK).await;

    let codes: Vec<&str> = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plan| plan["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["FREE", "PRO", "ENTERPRISE"]);
    let free = &plans["data"][0];
    assert_eq!(free["limits"]["max_users"], 3);
    assert_eq!(free["limits"]["max_api_keys"], 5);
    assert_eq!(free["overridden"], false);
}

#[tokio::test]
async fn a_tenants_override_never_shows_in_the_public_list() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "max_api_keys": 1 } }),
    )
    .await;

    let plans = expect_status(get_public(&app, "plans").await, StatusCode::OK).await;

    assert_eq!(plans["data"].as_array().unwrap().len(), 3);
    assert_eq!(plans["data"][0]["limits"]["max_api_keys"], 5);
}

#[tokio::test]
async fn a_platform_admin_moves_a_tenant_to_pro() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    app.assign_plan(&admin, &owner, &json!({ "plan": "PRO" }))
        .await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan"], "PRO");
    assert_eq!(tenant["plan_limits"]["max_users"], 25);
    assert_eq!(tenant["plan_limits"]["requests_per_minute"], 600);
}

#[tokio::test]
async fn the_pro_plan_seats_a_fourth_user() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.add_user(&owner, "ada", "admin").await;
    app.add_user(&owner, "max", "member").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    app.assign_plan(&admin, &owner, &json!({ "plan": "pro" }))
        .await;

    app.add_user(&owner, "vic", "viewer").await;
}

#[tokio::test]
async fn an_override_binds_its_tenant_and_no_other() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    app.assign_plan(
        &admin,
        &acme,
        &json!({ "plan": "FREE", "overrides": { "max_api_keys": 1 } }),
    )
    .await;

    expect_status(create_key(&app, &acme).await, StatusCode::CREATED).await;
    let body = expect_error(
        create_key(&app, &acme).await,
        StatusCode::FORBIDDEN,
        "plan_limit_reached",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], "max_api_keys");
    let keys = crate::helpers::count(
        &app,
        "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ?",
        vec![acme.tenant_id.clone().into()],
    )
    .await;
    assert_eq!(keys, 1);
    let tenant = expect_status(app.get("tenant", &acme.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan_limits"]["max_api_keys"], 1);
    assert_eq!(
        tenant["plan_limits"]["max_users"], 3,
        "limits not overridden keep the plan's value"
    );
    for _ in 0..2 {
        expect_status(create_key(&app, &globex).await, StatusCode::CREATED).await;
    }
    let tenant = expect_status(
        app.get("tenant", &globex.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tenant["plan_limits"]["max_api_keys"], 5);
}

#[tokio::test]
async fn a_revoked_key_frees_its_place_under_the_limit() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "max_api_keys": 1 } }),
    )
    .await;
    let first = expect_status(create_key(&app, &owner).await, StatusCode::CREATED).await;
    let path = format!("api-keys/{}", first["id"].as_str().unwrap());
    expect_status(
        app.delete(&path, &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let response = create_key(&app, &owner).await;

    expect_status(response, StatusCode::CREATED).await;
}

#[tokio::test]
async fn a_second_override_updates_the_first() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "max_api_keys": 1 } }),
    )
    .await;

    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "max_users": 10 } }),
    )
    .await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan_limits"]["max_api_keys"], 1);
    assert_eq!(tenant["plan_limits"]["max_users"], 10);
}

#[tokio::test]
async fn an_unknown_plan_or_a_bad_override_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let path = format!("admin/tenants/{}/plan", owner.tenant_id);

    for body in [
        json!({ "plan": "GOLD" }),
        json!({ "plan": "PRO", "overrides": { "max_api_keys": 0 } }),
        json!({ "plan": "PRO", "overrides": { "monthly_credits": -1 } }),
        json!({ "plan": "PRO", "overrides": { "max_seats": 9 } }),
        json!({ "plan": "PRO", "overrides": { "monthly_credits": i64::MAX } }),
        json!({ "plan": "PRO", "overrides": { "priority": i64::MAX } }),
        json!({ "plan": "PRO", "overrides": { "priority": i64::MIN } }),
        json!({ "plan": "PRO", "overrides": { "requests_per_minute": i64::MAX } }),
        json!({ "plan": "PRO", "overrides": { "daily_jobs": i64::MAX } }),
    ] {
        let response = app.put(&path, &admin, &body).await;

        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan"], "FREE", "a refused change writes nothing");
}

#[tokio::test]
async fn assigning_a_plan_to_an_unknown_tenant_answers_404() {
    let app = spawn_app().await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let response = app
        .put(
            "admin/tenants/no-such-tenant/plan",
            &admin,
            &json!({ "plan": "PRO", "overrides": { "max_users": 5 } }),
        )
        .await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let overrides = crate::helpers::count(
        &app,
        "SELECT COUNT(*) FROM plans WHERE tenant_id IS NOT NULL",
        vec![],
    )
    .await;
    assert_eq!(overrides, 0);
}

#[tokio::test]
async fn a_tenant_owner_cannot_change_its_own_plan() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .put(
            &format!("admin/tenants/{}/plan", owner.tenant_id),
            &owner.access_token,
            &json!({ "plan": "ENTERPRISE" }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan"], "FREE");
}

#[tokio::test]
async fn an_expired_key_frees_its_place_under_the_key_limit() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &acme,
        &json!({ "plan": "FREE", "overrides": { "max_api_keys": 1 } }),
    )
    .await;
    let expiring = json!({
        "name": "short-lived",
        "scopes": ["*"],
        "expires_at": crate::helpers::server_time_in(&app, 60),
    });
    expect_status(
        app.post("api-keys", &acme.access_token, &expiring).await,
        StatusCode::CREATED,
    )
    .await;

    app.advance_clock(61);

    expect_status(create_key(&app, &acme).await, StatusCode::CREATED).await;
}
