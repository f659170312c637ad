//! End to end: the real Tollgate server (in-process, `tollgate_tests::spawn_app`), the
//! runner's job loop over the HTTP transport with a runner token, and the ComfyUI double
//! replaying recorded traffic. Every wait is on a condition with a deadline.

#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gpu_runner::comfyui::ComfyClient;
use gpu_runner::execute;
use gpu_runner::queue::HttpQueue;
use gpu_runner::store::LocalDirStore;
use gpu_runner::worker::{Identity, Summary, Worker, WorkerOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::comfyui_double::{ComfyDouble, Faults, Run};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_tests::{TestApp, TestUser, expect_status, spawn_app};

const DEADLINE: Duration = Duration::from_secs(30);

/// A tenant whose pool holds 100 credits, with limits that let the recorded workflows in.
async fn funded_tenant(app: &TestApp, slug: &str) -> TestUser {
    let owner = app.register(slug).await;
    let admin = app
        .platform_admin(&format!("ops@{slug}.platform.test"))
        .await;
    let plan = json!({ "plan": "FREE", "overrides": {
        "requests_per_minute": 1_000_000,
        "max_width": null, "max_height": null, "max_pixels": null,
        "max_batch_size": null, "max_vram_mb": null,
    }});
    let response = app
        .put(
            &format!("admin/tenants/{}/plan", owner.tenant_id),
            &admin,
            &plan,
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;
    let response = app
        .post(
            &format!("admin/tenants/{}/credits/grants", owner.tenant_id),
            &admin,
            &json!({ "amount": 100, "reason": "test grant" }),
        )
        .await;
    assert!(
        response.status().is_success(),
        "grant: {}",
        response.status()
    );
    owner
}

/// A runner token on the tenant's default worker: (worker id, token).
async fn runner_token(app: &TestApp, owner: &TestUser) -> (String, String) {
    let workers = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let worker = workers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["default"] == true)
        .expect("a default worker")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .post(
            &format!("workers/{worker}/runner-tokens"),
            &owner.access_token,
            &json!({ "name": "gpu-host-1" }),
        )
        .await;
    let token = expect_status(response, StatusCode::CREATED).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (worker, token)
}

async fn submit(app: &TestApp, owner: &TestUser, workflow: &Value) -> String {
    let response = app
        .post(
            "jobs",
            &owner.access_token,
            &json!({ "workflow": workflow }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn job(app: &TestApp, owner: &TestUser, id: &str) -> Value {
    expect_status(
        app.get(&format!("jobs/{id}"), &owner.access_token).await,
        StatusCode::OK,
    )
    .await
}

/// Polls the job until `done` holds, or panics at the deadline.
async fn wait_for_job(
    app: &TestApp,
    owner: &TestUser,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let j = job(app, owner, id).await;
        if done(&j) {
            return j;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; job: {j}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (total, used, reserved) of the tenant's pool.
async fn pool(app: &TestApp, owner: &TestUser) -> (i64, i64, i64) {
    let rows = app
        .query(
            "SELECT total, used, reserved FROM credit_accounts WHERE tenant_id = ? AND user_id IS NULL",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    let r = &rows[0];
    (
        r[0].as_i64().unwrap(),
        r[1].as_i64().unwrap(),
        r[2].as_i64().unwrap(),
    )
}

async fn events(app: &TestApp, owner: &TestUser, event_type: &str) -> Vec<Value> {
    app.query(
        "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = ? ORDER BY created_at",
        vec![owner.tenant_id.clone().into(), event_type.into()],
    )
    .await
    .into_iter()
    .map(|row| serde_json::from_str(row[0].as_str().unwrap()).unwrap())
    .collect()
}

/// What a job is charged for its GPU seconds (the queue's `actual_cost`).
fn charge(gpu_seconds: i64) -> i64 {
    1 + (gpu_seconds + 9) / 10
}

/// The runner's job loop, in-process, until stopped.
struct RunningWorker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Summary>,
    dir: PathBuf,
}

impl RunningWorker {
    fn start(app: &TestApp, token: &str, comfyui: &str) -> RunningWorker {
        Self::with_grace(app, token, comfyui, Duration::from_secs(10))
    }

    fn with_grace(
        app: &TestApp,
        token: &str,
        comfyui: &str,
        shutdown_grace: Duration,
    ) -> RunningWorker {
        let dir =
            std::env::temp_dir().join(format!("gpu-runner-e2e-{}", uuid::Uuid::new_v4().simple()));
        let worker = Worker {
            queue: Arc::new(HttpQueue::new(&app.base_url, token).unwrap()),
            comfyui: vec![ComfyClient::new(comfyui)],
            store: Arc::new(LocalDirStore::new(&dir)),
            identity: Identity {
                host: "gpu-host-1".into(),
                version: "0.1.0-test".into(),
            },
            options: WorkerOptions {
                heartbeat_interval: Duration::from_millis(100),
                renew_interval: Duration::from_millis(100),
                progress_interval: Duration::from_millis(20),
                idle_poll_min: Duration::from_millis(10),
                idle_poll_max: Duration::from_millis(100),
                shutdown_grace,
                report_attempts: 3,
                min_free_vram_mb: 1,
                execute: execute::Options {
                    poll_interval: Duration::from_millis(50),
                    poll_interval_no_ws: Duration::from_millis(5),
                    interrupt_grace: Duration::from_secs(10),
                    max_poll_failures: 5,
                    use_websocket: true,
                },
            },
        };
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(async move { worker.run(stop_rx).await });
        RunningWorker { stop, handle, dir }
    }

    /// Stops the loop (as SIGTERM does) and waits for it; its summary.
    async fn stop(self) -> Summary {
        self.stop.send_replace(true);
        let summary = tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the worker stops")
            .expect("the worker does not panic");
        let _ = std::fs::remove_dir_all(&self.dir);
        summary
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_runs_end_to_end_and_settles_once() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-success").await;
    let (_worker_id, token) = runner_token(&app, &owner).await;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "success.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, reserved_before) = pool(&app, &owner).await;
    assert!(reserved_before > 0, "the estimate is held while queued");

    let worker = RunningWorker::start(&app, &token, &double.url());
    let done = wait_for_job(&app, &owner, &id, "the job to end", |j| {
        !["queued", "running"].contains(&j["status"].as_str().unwrap())
    })
    .await;
    // The heartbeat registered the runner with the GPU ComfyUI reports.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let runner = loop {
        let rows = app
            .query("SELECT host, gpu, vram_mb, version FROM runners", vec![])
            .await;
        if let Some(row) = rows.into_iter().next() {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let dir = worker.dir.clone();
    let outputs_on_disk: Vec<bool> = done["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| std::path::Path::new(o["location"].as_str().unwrap()).is_file())
        .collect();
    let summary = worker.stop().await;

    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["attempts"], 1);
    let outputs = done["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{done}");
    assert_eq!(outputs[0]["node_id"], "2");
    assert_eq!(outputs[0]["content_type"], "image/png");
    assert!(
        outputs[0]["filename"]
            .as_str()
            .unwrap()
            .starts_with("success"),
        "{done}"
    );
    assert!(
        outputs[0]["location"]
            .as_str()
            .unwrap()
            .starts_with(dir.join(&id).to_str().unwrap()),
        "{done}"
    );
    assert_eq!(outputs_on_disk, [true]);
    assert!(done["peak_vram_mb"].as_i64().unwrap() > 0, "{done}");

    // Settled once: the pool paid the charge for the GPU time, nothing stays held.
    let gpu_seconds = done["gpu_seconds"].as_i64().unwrap();
    assert_eq!(
        pool(&app, &owner).await,
        (total, charge(gpu_seconds), 0),
        "{done}"
    );
    let succeeded = events(&app, &owner, "job.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0]["job_id"], id.as_str());
    assert_eq!(succeeded[0]["outputs"].as_array().unwrap().len(), 1);

    assert_eq!(runner[0], "gpu-host-1");
    assert!(
        runner[1].as_str().is_some_and(|g| !g.is_empty()),
        "{runner:?}"
    );
    assert!(runner[2].as_i64().unwrap() > 0);
    assert_eq!(runner[3], "0.1.0-test");
    assert_eq!(Summary::get(&summary.claimed), 1);
    assert_eq!(Summary::get(&summary.succeeded), 1);
    assert_eq!(Summary::get(&summary.lost), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_comfyui_rejects_fails_with_the_node_errors_and_releases() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-rejected").await;
    let (_worker_id, token) = runner_token(&app, &owner).await;
    // EmptyImage without `height`: Tollgate queues it, ComfyUI refuses it with node errors.
    let run = Run::load("invalid-workflow.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "invalid-workflow.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, &token, &double.url());
    let done = wait_for_job(&app, &owner, &id, "the job to end", |j| {
        !["queued", "running"].contains(&j["status"].as_str().unwrap())
    })
    .await;
    let summary = worker.stop().await;

    // Failed for good on its first attempt: a rejection is not retried.
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 1);
    let error: Value = serde_json::from_str(done["error"].as_str().unwrap()).unwrap();
    assert_eq!(error["kind"], "rejected");
    assert_eq!(error["error"]["type"], "prompt_outputs_failed_validation");
    let node = &error["node_errors"]["1"];
    assert_eq!(node["class_type"], "EmptyImage");
    assert_eq!(node["errors"][0]["type"], "required_input_missing");
    assert_eq!(node["errors"][0]["details"], "height");
    assert_eq!(done["outputs"], json!([]));

    assert_eq!(pool(&app, &owner).await, (total, 0, 0), "released");
    let failed = events(&app, &owner, "job.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["job_id"], id.as_str());
    // Nothing was queued in ComfyUI, so nothing was polled or interrupted.
    assert!(
        !double
            .seen()
            .iter()
            .any(|s| s.path.starts_with("/history") || s.path == "/interrupt")
    );
    assert_eq!(Summary::get(&summary.failed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_while_running_interrupts_comfyui_and_ends_cancelled() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-cancel").await;
    let (_worker_id, token) = runner_token(&app, &owner).await;
    // The recording holds the run after node 2 starts until an interrupt.
    let run = Run::load("interrupted.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "interrupted.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, &token, &double.url());
    let running = wait_for_job(&app, &owner, &id, "node 2 to run", |j| {
        j["status"] == "running" && j["current_node"] == "2"
    })
    .await;
    assert!(running["progress"].as_i64().unwrap() < 100, "{running}");
    let response = app
        .post(
            &format!("jobs/{id}/cancel"),
            &owner.access_token,
            &json!({}),
        )
        .await;
    let asked = expect_status(response, StatusCode::OK).await;
    assert_eq!(asked["cancel_requested"], true);
    let done = wait_for_job(&app, &owner, &id, "the cancel", |j| {
        j["status"] != "running"
    })
    .await;
    let summary = worker.stop().await;

    assert_eq!(done["status"], "cancelled", "{done}");
    let interrupts: Vec<Value> = double
        .seen()
        .into_iter()
        .filter(|s| s.path == "/interrupt")
        .map(|s| s.body)
        .collect();
    assert_eq!(interrupts.len(), 1, "{interrupts:?}");
    assert!(interrupts[0]["prompt_id"].is_string());
    // The GPU time used is charged once; nothing stays held.
    let gpu_seconds = done["gpu_seconds"].as_i64().unwrap();
    assert_eq!(pool(&app, &owner).await, (total, charge(gpu_seconds), 0));
    assert_eq!(events(&app, &owner, "job.cancelled").await.len(), 1);
    assert_eq!(Summary::get(&summary.cancelled), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn comfyui_failing_after_the_claim_hands_the_attempt_back_and_a_retry_settles_once() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-unavailable").await;
    let (_worker_id, token) = runner_token(&app, &owner).await;
    let workflow = Run::load("success.json", 0).workflow;
    // Healthy for the claim, then a 5xx on `POST /prompt` (this double answers 500 to any
    // workflow but its recording's).
    let broken = ComfyDouble::start(
        Run::load("invalid-workflow.json", 0),
        "success.json",
        Faults::default(),
    )
    .await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, held) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, &token, &broken.url());
    let back = wait_for_job(&app, &owner, &id, "the attempt to be handed back", |j| {
        j["status"] == "queued" && j["attempts"] == 1
    })
    .await;
    let summary = worker.stop().await;
    assert!(
        back["error"]
            .as_str()
            .unwrap()
            .contains("ComfyUI unavailable"),
        "{back}"
    );
    assert_eq!(Summary::get(&summary.released), 1);
    assert_eq!(pool(&app, &owner).await, (total, 0, held), "still held");
    assert!(events(&app, &owner, "job.failed").await.is_empty());

    // After the backoff (30 s for a first retry) another runner (a healthy ComfyUI) runs it to the end.
    app.advance_clock(31);
    let healthy = ComfyDouble::start(
        Run::load("success.json", 0),
        "success.json",
        Faults::default(),
    )
    .await;
    let worker = RunningWorker::start(&app, &token, &healthy.url());
    let done = wait_for_job(&app, &owner, &id, "the retry to end", |j| {
        !["queued", "running"].contains(&j["status"].as_str().unwrap())
    })
    .await;
    worker.stop().await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    let gpu_seconds = done["gpu_seconds"].as_i64().unwrap();
    assert_eq!(pool(&app, &owner).await, (total, charge(gpu_seconds), 0));
    assert_eq!(events(&app, &owner, "job.succeeded").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_past_the_grace_interrupts_the_job_and_hands_it_back() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-stop").await;
    let (_worker_id, token) = runner_token(&app, &owner).await;
    let run = Run::load("interrupted.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "interrupted.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, held) = pool(&app, &owner).await;

    let worker = RunningWorker::with_grace(&app, &token, &double.url(), Duration::from_millis(200));
    wait_for_job(&app, &owner, &id, "node 2 to run", |j| {
        j["status"] == "running" && j["current_node"] == "2"
    })
    .await;
    // SIGTERM: no new claim; the held job outlives the grace, so it is interrupted and
    // handed back to be run elsewhere, and the loop ends.
    let summary = worker.stop().await;
    let back = job(&app, &owner, &id).await;
    assert_eq!(back["status"], "queued", "{back}");
    assert_eq!(back["attempts"], 1);
    assert!(
        back["error"].as_str().unwrap().contains("shut down"),
        "{back}"
    );
    assert_eq!(
        double
            .seen()
            .iter()
            .filter(|s| s.path == "/interrupt")
            .count(),
        1
    );
    assert_eq!(pool(&app, &owner).await, (total, 0, held));
    assert_eq!(Summary::get(&summary.released), 1);
    assert_eq!(Summary::get(&summary.claimed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_runs_until_sigterm_and_exits_zero() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-binary").await;
    let (_worker_id, token) = runner_token(&app, &owner).await;
    let double = ComfyDouble::start(
        Run::load("success.json", 0),
        "success.json",
        Faults::default(),
    )
    .await;
    let dir =
        std::env::temp_dir().join(format!("gpu-runner-bin-{}", uuid::Uuid::new_v4().simple()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
        .args(["run", "--server", &app.base_url, "--comfyui", &double.url()])
        .arg("--output-dir")
        .arg(&dir)
        .args([
            "--name",
            "bin-host",
            "--idle-min-ms",
            "10",
            "--idle-max-ms",
            "50",
        ])
        .env("GPU_RUNNER_TOKEN", &token)
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    // Its first heartbeat registers it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let rows = app.query("SELECT host FROM runners", vec![]).await;
        if rows.first().is_some_and(|r| r[0] == "bin-host") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat from the binary"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the binary exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
