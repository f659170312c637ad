//! End to end: the real Tollgate server (in-process, `tollgate_tests::spawn_app`), the
//! runner's job loop and the ComfyUI double replaying recorded traffic. Every scenario runs
//! over each queue transport: Tollgate's runner endpoints with a runner token (`::http`),
//! the server's database file through the same shared queue functions (`::direct`), and
//! the same over Hrana HTTP, as with Turso or sqld (`::direct_hrana`).
//! Every wait is on a condition with a deadline.

#[allow(dead_code)]
#[macro_use]
mod support;

use std::time::Duration;

use gpu_runner::queue::QueueError;
use gpu_runner::worker::Summary;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::comfyui_double::{ComfyDouble, Faults, Run};
use support::tollgate::*;
use tollgate_tests::{expect_status, spawn_app};

over_every_transport!(
    a_job_runs_end_to_end_and_settles_once,
    a_workflow_comfyui_rejects_fails_with_the_node_errors_and_releases,
    a_cancel_while_running_interrupts_comfyui_and_ends_cancelled,
    comfyui_failing_after_the_claim_hands_the_attempt_back_and_a_retry_settles_once,
    a_stop_past_the_grace_interrupts_the_job_and_hands_it_back,
    a_runner_claims_only_its_tokens_worker_and_stops_when_revoked,
    the_binary_runs_until_sigterm_and_exits_zero,
    a_cancel_while_queued_behind_another_prompt_ends_cancelled_and_charges_nothing,
    a_time_limit_while_queued_behind_another_prompt_fails_the_job_and_charges_nothing,
    a_runtime_error_tells_the_tenant_the_node_and_exception_and_the_log_the_traceback,
    comfyui_going_away_mid_job_hands_the_attempt_back_saying_so_once,
);

async fn a_job_runs_end_to_end_and_settles_once(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-success").await;
    let token = runner_token(&app, &owner).await.token;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "success.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, reserved_before) = pool(&app, &owner).await;
    assert!(reserved_before > 0, "the estimate is held while queued");

    let worker = RunningWorker::start(&app, transport, &token, &double.url()).await;
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

async fn a_workflow_comfyui_rejects_fails_with_the_node_errors_and_releases(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-rejected").await;
    let token = runner_token(&app, &owner).await.token;
    // EmptyImage without `height`: Tollgate queues it, ComfyUI refuses it with node errors.
    let run = Run::load("invalid-workflow.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "invalid-workflow.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, transport, &token, &double.url()).await;
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

async fn a_cancel_while_running_interrupts_comfyui_and_ends_cancelled(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-cancel").await;
    let token = runner_token(&app, &owner).await.token;
    // The recording holds the run after node 2 starts until an interrupt.
    let run = Run::load("interrupted.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "interrupted.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, transport, &token, &double.url()).await;
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

async fn comfyui_failing_after_the_claim_hands_the_attempt_back_and_a_retry_settles_once(
    transport: Transport,
) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-unavailable").await;
    let token = runner_token(&app, &owner).await.token;
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

    let worker = RunningWorker::start(&app, transport, &token, &broken.url()).await;
    let back = wait_for_job(&app, &owner, &id, "the attempt to be handed back", |j| {
        j["status"] == "queued" && j["attempts"] == 1
    })
    .await;
    let summary = worker.stop().await;
    let error = back["error"].as_str().unwrap();
    assert_eq!(error.matches("ComfyUI unavailable").count(), 1, "{back}");
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
    let worker = RunningWorker::start(&app, transport, &token, &healthy.url()).await;
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

async fn a_stop_past_the_grace_interrupts_the_job_and_hands_it_back(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-stop").await;
    let token = runner_token(&app, &owner).await.token;
    let run = Run::load("interrupted.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "interrupted.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, held) = pool(&app, &owner).await;

    let worker = RunningWorker::with_grace(
        &app,
        transport,
        &token,
        &double.url(),
        Duration::from_millis(200),
    )
    .await;
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

/// A runner sees only its own worker's queue, and a revoked token stops it at once: the
/// direct transport resolves the token on every call, as the endpoints do.
async fn a_runner_claims_only_its_tokens_worker_and_stops_when_revoked(transport: Transport) {
    let app = spawn_app().await;
    let ours = funded_tenant(&app, "e2e-ours").await;
    let theirs = funded_tenant(&app, "e2e-theirs").await;
    let our_runner = runner_token(&app, &ours).await;
    let their_runner = runner_token(&app, &theirs).await;
    let workflow = Run::load("success.json", 0).workflow;
    let their_job = submit(&app, &theirs, &workflow).await;

    let our_queue = queue(&app, transport, &our_runner.token).await;
    assert_eq!(
        our_queue.claim(1_000_000, Duration::ZERO).await,
        Ok(None),
        "another tenant's job"
    );
    let their_queue = queue(&app, transport, &their_runner.token).await;
    let claimed = their_queue
        .claim(1_000_000, Duration::ZERO)
        .await
        .unwrap()
        .expect("its own job");
    assert_eq!(claimed.job_id, their_job);
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.workflow, workflow);
    // Our runner cannot touch their job's lease either.
    assert_eq!(
        our_queue.renew(&claimed.lease()).await,
        Err(QueueError::LeaseLost)
    );
    assert!(
        !their_queue
            .renew(&claimed.lease())
            .await
            .unwrap()
            .cancel_requested
    );

    let response = app
        .delete(
            &format!(
                "workers/{}/runner-tokens/{}",
                their_runner.worker_id, their_runner.token_id
            ),
            &theirs.access_token,
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;
    match their_queue.renew(&claimed.lease()).await {
        Err(QueueError::Refused { status: 401, .. }) => {}
        other => panic!("a revoked token still renews: {other:?}"),
    }
    assert!(matches!(
        their_queue.claim(1_000_000, Duration::ZERO).await,
        Err(QueueError::Refused { status: 401, .. })
    ));
    if transport != Transport::Http {
        // A revoked or unknown token does not even connect.
        let url = gpu_runner::direct::DatabaseUrl::File(app.db_path.to_str().unwrap().into());
        for token in [
            their_runner.token.as_str(),
            "tgr_unknown",
            "not-a-runner-token",
        ] {
            match gpu_runner::direct::DbQueue::connect(&url, None, token).await {
                Err(QueueError::Refused { status: 401, .. }) => {}
                Err(e) => panic!("{token}: {e}"),
                Ok(_) => panic!("{token}: connected"),
            }
        }
    }
}

async fn the_binary_runs_until_sigterm_and_exits_zero(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-binary").await;
    let token = runner_token(&app, &owner).await.token;
    let double = ComfyDouble::start(
        Run::load("success.json", 0),
        "success.json",
        Faults::default(),
    )
    .await;
    let dir =
        std::env::temp_dir().join(format!("gpu-runner-bin-{}", uuid::Uuid::new_v4().simple()));
    let (flags, _libsql_server) = queue_flags(&app, transport).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
        .arg("run")
        .args(&flags)
        .args(["--comfyui", &double.url()])
        .arg("--output-dir")
        .arg(&dir)
        .args([
            "--name",
            "bin-host",
            "--idle-min-ms",
            "10",
            "--idle-max-ms",
            "50",
            "--claim-wait-s",
            "2",
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

/// A ComfyUI busy with another client's prompt (the slow recorded chain, held until an
/// interrupt) when the job's prompt arrives: the job's prompt waits in the queue behind it.
async fn busy_comfyui() -> (ComfyDouble, Value) {
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    let faults = Faults {
        busy_with: Some(Run::load("interrupted.json", 0)),
        ..Faults::default()
    };
    (
        ComfyDouble::start(run, "success.json", faults).await,
        workflow,
    )
}

/// The job's prompt, once it waits behind the other one.
async fn waiting_prompt(double: &ComfyDouble) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let (Some(_), pending) = double.queue()
            && let [waiting] = pending.as_slice()
        {
            return waiting.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job's prompt never waited in the queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Once the runner has stopped the job's `prompt`, the other client's prompt ends, and
/// ComfyUI takes whatever waits behind it.
async fn after_the_stop_the_other_prompt_ends(double: &ComfyDouble, prompt: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let stop = json!({ "prompt_id": prompt });
    while !double
        .seen()
        .iter()
        .any(|s| s.method == "POST" && s.path == "/interrupt" && s.body == stop)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner never stopped the job's prompt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gpu_runner::comfyui::ComfyClient::new(&double.url())
        .interrupt("someone-else")
        .await
        .unwrap();
}

/// Nothing moved for the job: its hold released, no settle, no GPU time counted.
async fn assert_charged_nothing(
    app: &tollgate_tests::TestApp,
    owner: &tollgate_tests::TestUser,
    id: &str,
    total: i64,
) {
    assert_eq!(pool(app, owner).await, (total, 0, 0), "released");
    assert!(ledger(app, id, "settle").await.is_empty(), "{id}: settled");
    assert_eq!(
        ledger(app, id, "release").await.len(),
        2,
        "{id}: pool and user released"
    );
    let counted = app
        .query(
            "SELECT COALESCE(SUM(value), 0) FROM usage_counters WHERE metric = 'gpu_seconds'",
            vec![],
        )
        .await;
    assert_eq!(counted[0][0], 0, "no GPU time counted");
}

async fn a_cancel_while_queued_behind_another_prompt_ends_cancelled_and_charges_nothing(
    transport: Transport,
) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-queued-cancel").await;
    let token = runner_token(&app, &owner).await.token;
    let (double, workflow) = busy_comfyui().await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, transport, &token, &double.url()).await;
    let prompt = waiting_prompt(&double).await;
    let response = app
        .post(
            &format!("jobs/{id}/cancel"),
            &owner.access_token,
            &json!({}),
        )
        .await;
    assert_eq!(
        expect_status(response, StatusCode::OK).await["cancel_requested"],
        true
    );
    after_the_stop_the_other_prompt_ends(&double, &prompt).await;
    let done = wait_for_job(&app, &owner, &id, "the cancel", ended).await;
    let summary = worker.stop().await;

    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["gpu_seconds"], 0, "{done}");
    // Deleted from ComfyUI's queue: it never ran and never will.
    let deletes: Vec<Value> = double
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == "/queue")
        .map(|s| s.body)
        .collect();
    assert_eq!(
        deletes.first(),
        Some(&json!({ "delete": [prompt] })),
        "{deletes:?}"
    );
    let history = gpu_runner::comfyui::ComfyClient::new(&double.url())
        .history(&prompt)
        .await
        .unwrap();
    assert!(history.is_none(), "the deleted prompt ran");
    assert_charged_nothing(&app, &owner, &id, total).await;
    assert_eq!(events(&app, &owner, "job.cancelled").await.len(), 1);
    assert_eq!(Summary::get(&summary.cancelled), 1);
}

async fn a_time_limit_while_queued_behind_another_prompt_fails_the_job_and_charges_nothing(
    transport: Transport,
) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-queued-limit").await;
    let token = runner_token(&app, &owner).await.token;
    let (double, workflow) = busy_comfyui().await;
    let response = app
        .post(
            "jobs",
            &owner.access_token,
            &json!({ "workflow": workflow, "time_limit_seconds": 1 }),
        )
        .await;
    let id = expect_status(response, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (total, _, _) = pool(&app, &owner).await;

    let worker = RunningWorker::start(&app, transport, &token, &double.url()).await;
    let prompt = waiting_prompt(&double).await;
    after_the_stop_the_other_prompt_ends(&double, &prompt).await;
    let done = wait_for_job(&app, &owner, &id, "the time limit", ended).await;
    let summary = worker.stop().await;

    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "not retried");
    let error: Value = serde_json::from_str(done["error"].as_str().unwrap()).unwrap();
    assert_eq!(error["kind"], "time_limit", "{error}");
    assert_eq!(done["gpu_seconds"], 0, "{done}");
    let history = gpu_runner::comfyui::ComfyClient::new(&double.url())
        .history(&prompt)
        .await
        .unwrap();
    assert!(history.is_none(), "the withdrawn prompt ran");
    assert_charged_nothing(&app, &owner, &id, total).await;
    assert_eq!(events(&app, &owner, "job.failed").await.len(), 1);
    assert!(events(&app, &owner, "job.succeeded").await.is_empty());
    assert_eq!(Summary::get(&summary.failed), 1);
}

/// The recorded `SaveImage` with a prefix outside the output folder: ComfyUI's error names
/// the host's folders and carries its Python traceback. The tenant reads the node, the
/// exception and its message with the paths taken out, in the job and in `job.failed`; the
/// runner's own log (the binary's stderr, every line timestamped) keeps the traceback.
async fn a_runtime_error_tells_the_tenant_the_node_and_exception_and_the_log_the_traceback(
    transport: Transport,
) {
    use support::comfyui_double::COMFYUI_ROOT;

    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-runtime-error").await;
    let token = runner_token(&app, &owner).await.token;
    let run = Run::load("runtime-error.json", 1);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "runtime-error.json", Faults::default()).await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let dir =
        std::env::temp_dir().join(format!("gpu-runner-err-{}", uuid::Uuid::new_v4().simple()));
    let (flags, _libsql_server) = queue_flags(&app, transport).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
        .arg("run")
        .args(&flags)
        .args(["--comfyui", &double.url(), "--token", &token])
        .arg("--output-dir")
        .arg(&dir)
        .args([
            "--idle-min-ms",
            "10",
            "--idle-max-ms",
            "50",
            "--claim-wait-s",
            "1",
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let done = wait_for_job(&app, &owner, &id, "the job to fail", ended).await;
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the binary exits after SIGTERM")
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(done["status"], "failed", "{done}");
    let text = done["error"].as_str().unwrap();
    let error: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        (
            &error["kind"],
            &error["node_id"],
            &error["node_type"],
            &error["exception_type"]
        ),
        (
            &json!("execution_error"),
            &json!("2"),
            &json!("SaveImage"),
            &json!("Exception")
        ),
        "{error}"
    );
    let message = error["exception_message"].as_str().unwrap();
    assert!(
        message.starts_with("**** ERROR: Saving image outside the output folder is not allowed."),
        "{message}"
    );
    assert!(message.contains("output_dir: <path>"), "{message}");
    for leak in [COMFYUI_ROOT, "traceback", "execution.py", "File \""] {
        assert!(
            !text.contains(leak),
            "{leak:?} in the tenant's error: {text}"
        );
    }
    let failed = events(&app, &owner, "job.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["error"], done["error"],
        "the webhook says what the job says"
    );
    // The GPU time it used before failing is charged, and counted.
    let gpu_seconds = done["gpu_seconds"].as_i64().unwrap();
    assert_eq!(
        pool(&app, &owner).await,
        (total, charge(gpu_seconds), 0),
        "{done}"
    );

    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(log.contains("raised Exception"), "{log}");
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    assert!(
        log.contains(&format!("{COMFYUI_ROOT}/folder_paths.py")),
        "{log}"
    );
    // Every line starts with its UTC time (a traceback's lines continue their entry).
    let entries: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("gpu-runner: "))
        .collect();
    assert!(entries.len() >= 3, "{log}");
    for line in entries {
        let (stamp, _) = line.split_once(' ').unwrap();
        assert_eq!(stamp.len(), "2026-11-23T09:23:14.820Z".len(), "{line}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{line}"
        );
        assert!(line[stamp.len()..].starts_with(" gpu-runner: "), "{line}");
    }
}

async fn comfyui_going_away_mid_job_hands_the_attempt_back_saying_so_once(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "e2e-comfyui-gone").await;
    let token = runner_token(&app, &owner).await.token;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    // ComfyUI takes the prompt, runs node 1 and holds it; then it is gone.
    let faults = Faults {
        hold_after: Some(7),
        ..Faults::default()
    };
    let double = ComfyDouble::start(run, "success.json", faults).await;
    let id = submit(&app, &owner, &workflow).await;
    let worker = RunningWorker::start(&app, transport, &token, &double.url()).await;
    wait_for_job(&app, &owner, &id, "node 1 to run", |j| {
        j["status"] == "running" && j["current_node"] == "1"
    })
    .await;
    drop(double);
    let back = wait_for_job(&app, &owner, &id, "the hand-back", |j| {
        j["status"] == "queued"
    })
    .await;
    let summary = worker.stop().await;
    let error = back["error"].as_str().unwrap();
    assert!(error.starts_with("ComfyUI unavailable: "), "{back}");
    assert_eq!(error.matches("ComfyUI unavailable").count(), 1, "{back}");
    assert_eq!(
        back["progress"], 0,
        "a re-queued job keeps no progress: {back}"
    );
    assert_eq!(back["current_node"], Value::Null, "{back}");
    assert_eq!(Summary::get(&summary.released), 1);
}
