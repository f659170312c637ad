//! `POST/GET jobs`, `GET jobs/{id}`: validation, plan limits, credits, quotas, idempotency,
//! listing and isolation.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{default_worker, free_tenant, pool, queued, recorded, sdxl, submit, tenant};

#[tokio::test]
async fn a_job_is_queued_on_the_default_worker_with_its_estimate_held() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let before = pool(&app, &owner).await;
    // 512² = 0.25 Mpx × 20 steps = 5 GPU-seconds: 1 + ceil(5 / 10) = 2 credits.
    let job = queued(
        &app,
        &owner,
        json!({ "workflow": sdxl(512, 20), "priority": 3 }),
    )
    .await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["estimated_cost"], 2);
    assert_eq!(job["estimated_vram_mb"], 6144 + 256);
    assert_eq!(job["priority"], 3);
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["progress"], 0);
    assert_eq!(job["worker_id"], default_worker(&app, &owner).await);
    let after = pool(&app, &owner).await;
    assert_eq!(after.2, before.2 + 2, "the estimate is held");
    let fetched = expect_status(
        app.get(
            &format!("jobs/{}", job["id"].as_str().unwrap()),
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(fetched, job);
    let reservation = app
        .query(
            "SELECT status, amount FROM credit_reservations WHERE id = ?",
            vec![job["reservation_id"].as_str().unwrap().into()],
        )
        .await;
    assert_eq!(reservation[0], vec![json!("held"), json!(2)]);
    let counted = app
        .query(
            "SELECT value FROM usage_counters WHERE tenant_id = ? AND metric = 'jobs' AND user_id = '' AND period = 'day'",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(counted[0][0], 1);
}

#[tokio::test]
async fn a_recorded_workflow_is_accepted() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let job = queued(
        &app,
        &owner,
        json!({ "workflow": recorded("chain-scale-invert") }),
    )
    .await;
    assert_eq!(job["status"], "queued");
}

#[tokio::test]
async fn malformed_workflows_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let before = pool(&app, &owner).await;
    for (body, status, code) in [
        (
            json!({ "workflow": [1, 2, 3] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
        ),
        (
            json!({ "workflow": {} }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
        ),
        (
            json!({ "workflow": recorded("invalid-missing-class-type") }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
        ),
        (
            json!({ "workflow": recorded("invalid-dangling-link") }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
        ),
        (
            json!({ "workflow": { "1": { "class_type": "SaveImage", "inputs": { "images": ["99", 0] } } } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
        ),
        (
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({ "workflow": sdxl(512, 20), "priority": 11 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({ "workflow": sdxl(512, 20), "time_limit_seconds": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({ "workflow": sdxl(512, 20), "bot_id": "nope" }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let body = expect_error(submit(&app, &owner, &body, None).await, status, code).await;
        if code == "invalid_workflow" {
            assert!(body["error"]["details"].get("node").is_some(), "{body}");
        }
    }
    let dangling = expect_error(
        submit(
            &app,
            &owner,
            &json!({ "workflow": recorded("invalid-dangling-link") }),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    )
    .await;
    assert_eq!(dangling["error"]["details"]["missing"], "9");
    assert_eq!(pool(&app, &owner).await, before);
    let jobs = app.query("SELECT COUNT(*) FROM jobs", vec![]).await;
    assert_eq!(jobs[0][0], 0);
}

#[tokio::test]
async fn plan_limits_refuse_models_and_sizes() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let mut flux = sdxl(512, 20);
    flux["4"]["inputs"]["ckpt_name"] = json!("flux1-dev.safetensors");
    let body = expect_error(
        submit(&app, &owner, &json!({ "workflow": flux }), None).await,
        StatusCode::FORBIDDEN,
        "plan_limit_exceeded",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], "allowed_models");
    let body = expect_error(
        submit(&app, &owner, &json!({ "workflow": sdxl(2048, 20) }), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "plan_limit_exceeded",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], "max_width");
    let mut batch = sdxl(512, 20);
    batch["5"]["inputs"]["batch_size"] = json!(3);
    let body = expect_error(
        submit(&app, &owner, &json!({ "workflow": batch }), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "plan_limit_exceeded",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], "max_batch_size");
}

#[tokio::test]
async fn a_job_beyond_the_balance_is_402_and_writes_nothing() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let before = pool(&app, &owner).await;
    // 1 Mpx × 100000 steps: 10001 credits.
    let body = expect_error(
        submit(
            &app,
            &owner,
            &json!({ "workflow": sdxl(1024, 100_000) }),
            None,
        )
        .await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(body["error"]["details"]["requested"], 10_001);
    assert_eq!(pool(&app, &owner).await, before);
    let counted = app
        .query(
            "SELECT COUNT(*) FROM usage_counters WHERE metric = 'jobs'",
            vec![],
        )
        .await;
    assert_eq!(counted[0][0], 0);
    assert_eq!(
        app.query("SELECT COUNT(*) FROM jobs", vec![]).await[0][0],
        0
    );
}

#[tokio::test]
async fn the_daily_job_quota_is_429_with_nothing_held() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "FREE", json!({ "daily_jobs": 1 }), 100).await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let before = pool(&app, &owner).await;
    let body = expect_error(
        submit(&app, &owner, &json!({ "workflow": sdxl(512, 20) }), None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;
    assert!(body["error"]["details"].is_object(), "{body}");
    assert_eq!(pool(&app, &owner).await, before);
    assert_eq!(
        app.query("SELECT COUNT(*) FROM jobs", vec![]).await[0][0],
        1
    );
    assert_eq!(
        app.query("SELECT COUNT(*) FROM credit_reservations", vec![])
            .await[0][0],
        1
    );
}

#[tokio::test]
async fn the_same_idempotency_key_answers_the_first_job_once() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let before = pool(&app, &owner).await;
    let body = json!({ "workflow": sdxl(512, 20) });
    let first = expect_status(
        submit(&app, &owner, &body, Some("render-1")).await,
        StatusCode::CREATED,
    )
    .await;
    let again = expect_status(
        submit(&app, &owner, &body, Some("render-1")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(pool(&app, &owner).await.2, before.2 + 2, "held once");
    let counted = app
        .query(
            "SELECT value FROM usage_counters WHERE metric = 'jobs' AND user_id = '' AND period = 'day'",
            vec![],
        )
        .await;
    assert_eq!(counted[0][0], 1, "counted once");
    let other = json!({ "workflow": sdxl(512, 21) });
    expect_error(
        submit(&app, &owner, &other, Some("render-1")).await,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    )
    .await;
    // Concurrent replays of a fresh key still make one job.
    let replies =
        futures::future::join_all((0..5).map(|_| submit(&app, &owner, &body, Some("render-2"))))
            .await;
    let mut ids = Vec::new();
    for reply in replies {
        assert!(reply.status().is_success(), "{}", reply.status());
        ids.push(reply.json::<serde_json::Value>().await.unwrap()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        app.query("SELECT COUNT(*) FROM jobs", vec![]).await[0][0],
        2
    );
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_pages() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await["id"].clone());
        app.advance_clock(1);
    }
    let page = expect_status(
        app.get("jobs?limit=2", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["id"], ids[2]);
    assert_eq!(page["has_more"], true);
    let rest = expect_status(
        app.get("jobs?limit=2&offset=2", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest["data"][0]["id"], ids[0]);
    assert_eq!(rest["has_more"], false);
    // A cancel carries no body, and so no Content-Type.
    let cancelled = app
        .request(
            reqwest::Method::POST,
            &format!("jobs/{}/cancel", ids[1].as_str().unwrap()),
        )
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    expect_status(cancelled, StatusCode::OK).await;
    let only = expect_status(
        app.get("jobs?status=cancelled", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    assert_eq!(only["data"][0]["id"], ids[1]);
    let worker = default_worker(&app, &owner).await;
    let on_worker = expect_status(
        app.get(
            &format!("jobs?worker={worker}&status=queued"),
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(on_worker["data"].as_array().unwrap().len(), 2);
    let none = expect_status(
        app.get("jobs?bot=nope", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
    expect_error(
        app.get("jobs?status=done", &owner.access_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn another_tenant_sees_no_job_and_cannot_cancel_it() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let other = free_tenant(&app, "globex").await;
    let job = queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let id = job["id"].as_str().unwrap();
    expect_error(
        app.get(&format!("jobs/{id}"), &other.access_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.post(
            &format!("jobs/{id}/cancel"),
            &other.access_token,
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed = expect_status(app.get("jobs", &other.access_token).await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        super::support::job(&app, &owner, id).await["status"],
        "queued"
    );
}

#[tokio::test]
async fn the_routes_need_a_caller_and_the_right_role() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let response = app
        .request(reqwest::Method::POST, "jobs")
        .json(&json!({ "workflow": sdxl(512, 20) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let viewer = app.add_user(&owner, "Vera", "viewer").await;
    expect_error(
        submit(&app, &viewer, &json!({ "workflow": sdxl(512, 20) }), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_status(app.get("jobs", &viewer.access_token).await, StatusCode::OK).await;
    let response = app.delete("jobs", &owner.access_token).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
