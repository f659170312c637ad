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
        our_queue.claim(1_000_000).await,
        Ok(None),
        "another tenant's job"
    );
    let their_queue = queue(&app, transport, &their_runner.token).await;
    let claimed = their_queue
        .claim(1_000_000)
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
        their_queue.claim(1_000_000).await,
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
