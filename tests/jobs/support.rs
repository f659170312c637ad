//! Arrangements the job tests share, all made through the API: funded tenants, workflows,
//! and a runner that speaks the runner endpoints with its token.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
pub use tollgate_tests::sdxl;
use tollgate_tests::{TestApp, TestUser, expect_status};

/// A tenant on `plan` (with `overrides`) whose pool holds `credits`, with the per-minute
/// request limit lifted.
pub async fn tenant(
    app: &TestApp,
    slug: &str,
    plan: &str,
    overrides: Value,
    credits: i64,
) -> TestUser {
    let owner = app.register(slug).await;
    let admin = app
        .platform_admin(&format!("ops@{slug}.platform.test"))
        .await;
    let mut overrides = overrides;
    overrides["requests_per_minute"] = json!(1_000_000);
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": plan, "overrides": overrides }),
    )
    .await;
    if credits > 0 {
        app.grant_pool_credits(&admin, &owner, credits).await;
    }
    owner
}

/// A FREE tenant with 100 credits.
pub async fn free_tenant(app: &TestApp, slug: &str) -> TestUser {
    tenant(app, slug, "FREE", json!({}), 100).await
}

/// A recorded workflow from the project's ComfyUI test data (`testdata/comfyui/workflows`).
pub fn recorded(name: &str) -> Value {
    let path = format!(
        "{}/../testdata/comfyui/workflows/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path}")))
        .unwrap()
}

/// `POST jobs` with an optional `Idempotency-Key`.
pub async fn submit(app: &TestApp, user: &TestUser, body: &Value, key: Option<&str>) -> Response {
    let mut request = app
        .request(Method::POST, "jobs")
        .bearer_auth(&user.access_token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

/// A queued job of `workflow`; its JSON.
pub async fn queued(app: &TestApp, user: &TestUser, body: Value) -> Value {
    expect_status(submit(app, user, &body, None).await, StatusCode::CREATED).await
}

/// The tenant's default worker id.
pub async fn default_worker(app: &TestApp, user: &TestUser) -> String {
    let body = expect_status(app.get("workers", &user.access_token).await, StatusCode::OK).await;
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["default"] == true)
        .expect("a default worker")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The pool: (total, used, reserved) of the tenant's credits.
pub async fn pool(app: &TestApp, user: &TestUser) -> (i64, i64, i64) {
    let rows = app
        .query(
            "SELECT total, used, reserved FROM credit_accounts WHERE tenant_id = ? AND user_id IS NULL",
            vec![user.tenant_id.clone().into()],
        )
        .await;
    let row = &rows[0];
    (
        row[0].as_i64().unwrap(),
        row[1].as_i64().unwrap(),
        row[2].as_i64().unwrap(),
    )
}

/// A runner: a token on a worker, speaking the runner endpoints.
#[derive(Clone)]
pub struct Runner {
    pub token: String,
}

impl Runner {
    /// A token on `worker` (created by its owner) and the runner's first heartbeat.
    pub async fn on(app: &TestApp, owner: &TestUser, worker: &str, host: &str) -> Runner {
        let response = app
            .post(
                &format!("workers/{worker}/runner-tokens"),
                &owner.access_token,
                &json!({ "name": host }),
            )
            .await;
        let body = expect_status(response, StatusCode::CREATED).await;
        let runner = Runner {
            token: body["token"].as_str().unwrap().to_owned(),
        };
        let response = runner
            .post(
                app,
                "runner/heartbeat",
                json!({ "host": host, "gpu": "RTX 4090", "vram_mb": 24576, "version": "0.1.0" }),
            )
            .await;
        expect_status(response, StatusCode::OK).await;
        runner
    }

    pub async fn post(&self, app: &TestApp, path: &str, body: Value) -> Response {
        app.request(Method::POST, path)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The claimed job (`job_id`, `lease_id`, ...), or `None` on 204.
    pub async fn claim(&self, app: &TestApp, free_vram_mb: i64) -> Option<Value> {
        let response = self
            .post(app, "runner/claim", json!({ "free_vram_mb": free_vram_mb }))
            .await;
        match response.status() {
            StatusCode::NO_CONTENT => None,
            _ => Some(expect_status(response, StatusCode::OK).await),
        }
    }

    pub async fn finish(
        &self,
        app: &TestApp,
        claimed: &Value,
        status: &str,
        gpu_seconds: i64,
    ) -> Response {
        self.post(
            app,
            &format!("runner/jobs/{}/finish", claimed["job_id"].as_str().unwrap()),
            json!({
                "lease_id": claimed["lease_id"],
                "status": status,
                "outputs": [{"filename": "out_00001_.png", "type": "output"}],
                "gpu_seconds": gpu_seconds,
                "peak_vram_mb": 7000,
            }),
        )
        .await
    }

    pub async fn fail(&self, app: &TestApp, claimed: &Value, error: &str) -> Response {
        self.post(
            app,
            &format!("runner/jobs/{}/fail", claimed["job_id"].as_str().unwrap()),
            json!({ "lease_id": claimed["lease_id"], "error": error }),
        )
        .await
    }

    pub async fn renew(&self, app: &TestApp, claimed: &Value) -> Response {
        self.post(
            app,
            &format!("runner/jobs/{}/renew", claimed["job_id"].as_str().unwrap()),
            json!({ "lease_id": claimed["lease_id"] }),
        )
        .await
    }
}

/// The job as its tenant sees it.
pub async fn job(app: &TestApp, user: &TestUser, id: &str) -> Value {
    expect_status(
        app.get(&format!("jobs/{id}"), &user.access_token).await,
        StatusCode::OK,
    )
    .await
}

/// The outbox events of the tenant of `type`.
pub async fn events(app: &TestApp, user: &TestUser, event_type: &str) -> Vec<Value> {
    app.query(
        "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = ? ORDER BY created_at",
        vec![user.tenant_id.clone().into(), event_type.into()],
    )
    .await
    .into_iter()
    .map(|row| serde_json::from_str(row[0].as_str().unwrap()).unwrap())
    .collect()
}

/// The tenant's audit entries matching `action` (one action or a `category.*`), oldest
/// first, as its owner lists them.
pub async fn audit_entries(app: &TestApp, owner: &TestUser, action: &str) -> Vec<Value> {
    let page = expect_status(
        app.get(
            &format!("audit-logs?limit=100&action={action}"),
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mut entries = page["data"].as_array().unwrap().clone();
    entries.reverse();
    entries
}

/// Asserts an audit entry's action, acting user and target.
pub fn assert_audited(entry: &Value, action: &str, user: &TestUser, target: (&str, &str)) {
    assert_eq!(entry["action"], action, "{entry:#}");
    assert_eq!(entry["actor"]["type"], "user", "{entry:#}");
    assert_eq!(entry["actor"]["id"], user.user_id.as_str(), "{entry:#}");
    assert_eq!(
        entry["target"],
        json!({ "type": target.0, "id": target.1 }),
        "{entry:#}"
    );
}
