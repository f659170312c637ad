//! Plan limits: the new limits in `GET plans` and `GET tenant`, a platform admin's overrides
//! of them, and `POST plan-limits/check`, the check every job passes before it is queued.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status};

use crate::support::spawn_quota_app;

const SDXL: &str = "sd_xl_base_1.0.safetensors";

fn work() -> Value {
    json!({
        "width": 1024,
        "height": 768,
        "batch_size": 2,
        "estimated_vram_mb": 12288,
        "models": [SDXL],
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut body = work();
    body[field] = value;
    body
}

async fn check(app: &TestApp, user: &TestUser, body: &Value) -> reqwest::Response {
    app.post("plan-limits/check", &user.access_token, body)
        .await
}

#[tokio::test]
async fn the_plans_list_their_work_limits_and_quotas() {
    let app = spawn_quota_app().await;

    let plans = app.request(Method::GET, "plans").send().await.unwrap();

    let plans = expect_status(plans, StatusCode::OK).await;
    let free = &plans["data"][0]["limits"];
    assert_eq!(free["max_width"], 1024);
    assert_eq!(free["max_pixels"], 1_048_576);
    assert_eq!(free["max_vram_mb"], 12288);
    assert_eq!(free["max_batch_size"], 2);
    assert_eq!(free["max_concurrent_jobs"], 1);
    assert_eq!(free["allowed_models"][0], SDXL);
    assert_eq!(free["daily_jobs"], 50);
    assert_eq!(free["monthly_gpu_seconds"], 18000);
    let pro = &plans["data"][1]["limits"];
    assert_eq!(pro["allowed_models"], Value::Null);
    let enterprise = &plans["data"][2]["limits"];
    assert_eq!(enterprise["daily_jobs"], Value::Null);
}

#[tokio::test]
async fn work_within_the_plan_passes_the_check() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let answer = expect_status(check(&app, &owner, &work()).await, StatusCode::OK).await;

    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["plan"], "FREE");
    assert_eq!(answer["limits"]["max_concurrent_jobs"], 1);
}

#[tokio::test]
async fn a_model_outside_the_plan_is_forbidden() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let response = check(
        &app,
        &owner,
        &with("models", json!([SDXL, "flux1-dev.safetensors"])),
    )
    .await;

    let body = expect_error(response, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
    let details = &body["error"]["details"];
    assert_eq!(details["limit"], "allowed_models");
    assert_eq!(details["requested"], "flux1-dev.safetensors");
    assert_eq!(details["plan"], "FREE");
}

#[tokio::test]
async fn more_vram_than_the_plan_allows_is_forbidden() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let response = check(&app, &owner, &with("estimated_vram_mb", json!(24576))).await;

    let body = expect_error(response, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
    assert_eq!(body["error"]["details"]["limit"], "max_vram_mb");
    assert_eq!(body["error"]["details"]["allowed"], 12288);
    assert_eq!(body["error"]["details"]["requested"], 24576);
}

#[tokio::test]
async fn sizes_beyond_the_plan_are_unprocessable_and_named() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "max_pixels": 500000 } }),
    )
    .await;
    let cases = [
        (with("width", json!(1025)), "max_width", 1025),
        (with("height", json!(2048)), "max_height", 2048),
        (work(), "max_pixels", 1024 * 768),
        (
            json!({ "width": 512, "height": 512, "batch_size": 3, "estimated_vram_mb": 1, "models": [] }),
            "max_batch_size",
            3,
        ),
    ];

    for (body, limit, requested) in cases {
        let response = check(&app, &owner, &body).await;
        let error = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "plan_limit_exceeded",
        )
        .await;
        assert_eq!(error["error"]["details"]["limit"], limit, "{body}");
        assert_eq!(error["error"]["details"]["requested"], requested, "{body}");
    }
}

#[tokio::test]
async fn an_override_lifts_a_limit_for_its_tenant_only() {
    let app = spawn_quota_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &acme,
        &json!({ "plan": "FREE", "overrides": { "allowed_models": null, "max_width": 2048 } }),
    )
    .await;
    let body = json!({
        "width": 2048, "height": 512, "batch_size": 1, "estimated_vram_mb": 8000,
        "models": ["flux1-dev.safetensors"],
    });

    let lifted = check(&app, &acme, &body).await;
    let kept = check(&app, &globex, &body).await;

    expect_status(lifted, StatusCode::OK).await;
    expect_error(kept, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
    let tenant = expect_status(app.get("tenant", &acme.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan_limits"]["allowed_models"], Value::Null);
    assert_eq!(tenant["plan_limits"]["max_width"], 2048);
    assert_eq!(
        tenant["plan_limits"]["max_height"], 1024,
        "the rest keep the plan's"
    );
    let plans = app.request(Method::GET, "plans").send().await.unwrap();
    let plans = expect_status(plans, StatusCode::OK).await;
    assert_eq!(plans["data"][0]["limits"]["max_width"], 1024);
}

#[tokio::test]
async fn an_override_of_other_limits_keeps_the_plans_work_limits_and_quotas() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "requests_per_minute": 120 } }),
    )
    .await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan_limits"]["requests_per_minute"], 120);
    assert_eq!(tenant["plan_limits"]["daily_jobs"], 50);
    assert_eq!(tenant["plan_limits"]["max_vram_mb"], 12288);
    assert_eq!(
        tenant["plan_limits"]["allowed_models"][1],
        "v1-5-pruned-emaonly.safetensors"
    );
    let response = check(
        &app,
        &owner,
        &with("models", json!(["flux1-dev.safetensors"])),
    )
    .await;
    expect_error(response, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
}

#[tokio::test]
async fn a_model_list_can_be_overridden() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "allowed_models": ["flux1-dev.safetensors"] } }),
    )
    .await;

    let flux = check(
        &app,
        &owner,
        &with("models", json!(["flux1-dev.safetensors"])),
    )
    .await;
    let sdxl = check(&app, &owner, &work()).await;

    expect_status(flux, StatusCode::OK).await;
    expect_error(sdxl, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
}

#[tokio::test]
async fn bad_overrides_answer_422_and_change_nothing() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let path = format!("admin/tenants/{}/plan", owner.tenant_id);
    for overrides in [
        json!({ "max_width": 0 }),
        json!({ "max_vram_mb": -1 }),
        json!({ "max_concurrent_jobs": 0 }),
        json!({ "daily_jobs": -1 }),
        json!({ "allowed_models": [""] }),
        json!({ "allowed_models": "sdxl" }),
        json!({ "max_width": "wide" }),
    ] {
        let response = app
            .put(
                &path,
                &admin,
                &json!({ "plan": "FREE", "overrides": overrides }),
            )
            .await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let rows = app
        .query(
            "SELECT COUNT(*) FROM plans WHERE tenant_id IS NOT NULL",
            vec![],
        )
        .await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test]
async fn bad_work_answers_4xx() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    for body in [with("width", json!(0)), with("batch_size", json!(0))] {
        let response = check(&app, &owner, &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    for body in [
        with("width", json!(-1)),
        with("models", json!("sdxl")),
        json!({ "width": 512 }),
        with("steps", json!(20)),
    ] {
        let response = check(&app, &owner, &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let not_json = app
        .request(Method::POST, "plan-limits/check")
        .bearer_auth(&owner.access_token)
        .body("width=1")
        .send()
        .await
        .unwrap();
    expect_error(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn the_check_needs_credentials_and_is_only_posted() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let anonymous = app.post_public("plan-limits/check", &work()).await;
    let read = app.get("plan-limits/check", &owner.access_token).await;

    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(read, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}
