//! Workers, bots, runner tokens and runners' health, and their isolation.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{Runner, default_worker, free_tenant, queued, sdxl};

#[tokio::test]
async fn a_tenant_starts_with_a_default_worker_and_sees_the_shared_pool() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let body = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let workers = body["data"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{body}");
    assert_eq!(workers[0]["default"], true);
    assert_eq!(workers[0]["shared"], false);
    assert_eq!(workers[1]["id"], "shared");
    assert_eq!(workers[1]["shared"], true);
    // The shared pool is visible, not the tenant's to change.
    expect_error(
        app.patch(
            "workers/shared",
            &owner.access_token,
            &json!({ "name": "mine" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_tenants_plan_override_raises_its_worker_limit() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let admin = app.platform_admin("ops-workers@tollgate.test").await;
    let raised = json!({ "plan": "FREE", "overrides": { "max_workers": 2 } });
    let response = app
        .put(
            &format!("admin/tenants/{}/plan", owner.tenant_id),
            &admin,
            &raised,
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;

    for name in ["Finance", "Support"] {
        let response = app
            .post("workers", &owner.access_token, &json!({ "name": name }))
            .await;
        expect_status(response, StatusCode::CREATED).await;
    }
    let third = app
        .post("workers", &owner.access_token, &json!({ "name": "Legal" }))
        .await;
    expect_error(third, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
}

#[tokio::test]
async fn dedicated_workers_are_limited_by_the_plan_and_changeable() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let finance = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Finance", "gpu_type": "A100", "min_vram_mb": 40960, "max_concurrency": 2 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(finance["gpu_type"], "A100");
    assert_eq!(finance["max_concurrency"], 2);
    // FREE allows one dedicated worker.
    let body = expect_error(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Support" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "plan_limit_exceeded",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], "max_workers");
    let id = finance["id"].as_str().unwrap();
    let changed = expect_status(
        app.patch(
            &format!("workers/{id}"),
            &owner.access_token,
            &json!({ "max_concurrency": null, "name": "Finance EU" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["name"], "Finance EU");
    assert_eq!(changed["max_concurrency"], serde_json::Value::Null);
    assert_eq!(changed["gpu_type"], "A100");
    expect_error(
        app.patch(
            &format!("workers/{id}"),
            &owner.access_token,
            &json!({ "min_vram_mb": -1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let member = app.add_user(&owner, "Mel", "member").await;
    expect_error(
        app.post("workers", &member.access_token, &json!({ "name": "Mine" }))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn another_tenants_workers_bots_and_tokens_are_404() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let other = free_tenant(&app, "globex").await;
    let worker = default_worker(&app, &owner).await;
    let bot = expect_status(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Portraits", "workflow": sdxl(512, 20) }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let bot_id = bot["id"].as_str().unwrap();
    for response in [
        app.get(&format!("workers/{worker}"), &other.access_token)
            .await,
        app.patch(
            &format!("workers/{worker}"),
            &other.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        app.post(
            &format!("workers/{worker}/runner-tokens"),
            &other.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        app.get(
            &format!("workers/{worker}/runner-tokens"),
            &other.access_token,
        )
        .await,
        app.get(&format!("bots/{bot_id}"), &other.access_token)
            .await,
        app.patch(
            &format!("bots/{bot_id}"),
            &other.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        app.post("jobs", &other.access_token, &json!({ "bot_id": bot_id }))
            .await,
        app.post(
            "jobs",
            &other.access_token,
            &json!({ "workflow": sdxl(512, 20), "worker_id": worker }),
        )
        .await,
        app.post(
            "bots",
            &other.access_token,
            &json!({ "name": "b", "workflow": sdxl(512, 20), "worker_id": worker }),
        )
        .await,
    ] {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = expect_status(app.get("bots", &other.access_token).await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_job_runs_on_its_bots_worker_and_follows_the_bot_when_moved() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let default = default_worker(&app, &owner).await;
    let finance = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Finance" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bot = expect_status(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Invoices", "workflow": sdxl(512, 20), "worker_id": finance }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(bot["worker_id"], finance);
    let bot_id = bot["id"].as_str().unwrap();
    let job = queued(&app, &owner, json!({ "bot_id": bot_id })).await;
    assert_eq!(job["worker_id"], finance);
    assert_eq!(job["bot_id"], bot_id);
    let moved = expect_status(
        app.patch(
            &format!("bots/{bot_id}"),
            &owner.access_token,
            &json!({ "worker_id": default }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["worker_id"], default);
    let later = queued(&app, &owner, json!({ "bot_id": bot_id })).await;
    assert_eq!(later["worker_id"], default);
    // A runner of the Finance pool sees only Finance's job.
    let runner = Runner::on(&app, &owner, &finance, "gpu-fin").await;
    let claimed = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(claimed["job_id"], job["id"]);
    assert!(runner.claim(&app, 24576).await.is_none());
    let filtered = expect_status(
        app.get(&format!("jobs?bot={bot_id}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 2);
    expect_error(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Bad", "workflow": { "1": {} } }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    )
    .await;
}

#[tokio::test]
async fn runner_tokens_authenticate_until_revoked_and_runners_go_stale() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    assert!(runner.token.starts_with("tgr_"));
    let stored = app
        .query("SELECT token_hash FROM runner_tokens", vec![])
        .await;
    assert_ne!(stored[0][0], runner.token.as_str(), "hashed at rest");
    let details = expect_status(
        app.get(&format!("workers/{worker}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(details["runners"][0]["host"], "gpu-1");
    assert_eq!(details["runners"][0]["vram_mb"], 24576);
    assert_eq!(details["runners"][0]["health"], "online");
    app.advance_clock(91);
    let details = expect_status(
        app.get(&format!("workers/{worker}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(details["runners"][0]["health"], "stale");
    expect_status(
        runner
            .post(&app, "runner/heartbeat", json!({ "host": "gpu-1" }))
            .await,
        StatusCode::OK,
    )
    .await;
    let details = expect_status(
        app.get(&format!("workers/{worker}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(details["runners"][0]["health"], "online");

    let tokens = expect_status(
        app.get(
            &format!("workers/{worker}/runner-tokens"),
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let token_id = tokens["data"][0]["id"].as_str().unwrap();
    assert!(tokens["data"][0].get("token").is_none());
    let response = app
        .delete(
            &format!("workers/{worker}/runner-tokens/{token_id}"),
            &owner.access_token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_error(
        runner
            .post(&app, "runner/claim", json!({ "free_vram_mb": 1000 }))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // A user's session is no runner token.
    let response = app
        .request(reqwest::Method::POST, "runner/claim")
        .bearer_auth(&owner.access_token)
        .json(&json!({ "free_vram_mb": 1000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn runner_tokens_are_audited_when_created_and_revoked() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let path = format!("workers/{worker}/runner-tokens");
    let token = expect_status(
        app.post(&path, &owner.access_token, &json!({ "name": "gpu-1" }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let token_path = format!("{path}/{}", token["id"].as_str().unwrap());

    let revoked = app.delete(&token_path, &owner.access_token).await;
    let again = app.delete(&token_path, &owner.access_token).await;

    expect_status(revoked, StatusCode::NO_CONTENT).await;
    expect_status(again, StatusCode::NO_CONTENT).await;
    let actions: Vec<String> = app
        .query(
            "SELECT action FROM audit_log WHERE tenant_id = ? AND action LIKE 'runner_token.%' ORDER BY seq",
            vec![owner.tenant_id.clone().into()],
        )
        .await
        .into_iter()
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["runner_token.created", "runner_token.revoked"]);
}
