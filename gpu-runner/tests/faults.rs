//! Faults through the runner's job loop, over each queue transport: a runner process
//! killed while ComfyUI holds its prompt (the lease expires, the reaper re-queues the job,
//! another runner finishes it, and the credits move once), and several runners racing over
//! a queue of jobs (each runs exactly once, none is lost). The real server, the real
//! `gpu-runner` binary and ComfyUI doubles replaying recorded traffic; every wait is on a
//! condition with a deadline.

#[allow(dead_code)]
#[macro_use]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use gpu_runner::worker::Summary;
use serde_json::json;
use support::comfyui_double::{ComfyDouble, Faults, Run};
use support::tollgate::*;
use tollgate::clock::Clock;
use tollgate_tests::spawn_app;

over_every_transport!(
    a_runner_killed_mid_job_is_replaced_and_the_job_settles_once,
    a_restarted_runner_clears_what_was_left_in_comfyui_before_it_claims,
    racing_runners_run_every_job_exactly_once,
);

async fn a_runner_killed_mid_job_is_replaced_and_the_job_settles_once(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "fault-killed").await;
    let first = runner_token(&app, &owner).await;
    let second = runner_token(&app, &owner).await;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    // ComfyUI starts the prompt, runs node 1, then holds it, as a long node would.
    let holding = ComfyDouble::start(
        run,
        "success.json",
        Faults {
            hold_after: Some(7),
            ..Faults::default()
        },
    )
    .await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, held) = pool(&app, &owner).await;
    assert!(held > 0);

    // The first runner is the real binary, killed with SIGKILL: no goodbye of any kind.
    let dir =
        std::env::temp_dir().join(format!("gpu-runner-kill-{}", uuid::Uuid::new_v4().simple()));
    let (flags, _libsql_server) = queue_flags(&app, transport).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
        .arg("run")
        .args(&flags)
        .args(["--comfyui", &holding.url(), "--token", &first.token])
        .arg("--output-dir")
        .arg(&dir)
        .args([
            "--idle-min-ms",
            "10",
            "--idle-max-ms",
            "50",
            "--renew-s",
            "1",
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while holding.prompts_posted() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the binary never submitted the prompt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let running = job(&app, &owner, &id).await;
    assert_eq!(running["status"], "running", "{running}");
    child.start_kill().expect("SIGKILL");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the killed binary is reaped")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // Nobody renews the lease now. Once it has expired, the reaper hands the job back.
    let expires = app
        .query(
            "SELECT lease_expires_at FROM jobs WHERE id = ?",
            vec![id.clone().into()],
        )
        .await[0][0]
        .as_i64()
        .expect("a lease");
    let report = app.run_cron().await;
    let still = job(&app, &owner, &id).await;
    assert_eq!(still["status"], "running", "not before expiry: {report:?}");
    app.advance_clock(expires - app.clock.now() + 1);
    app.run_cron().await;
    let back = job(&app, &owner, &id).await;
    assert_eq!(back["status"], "queued", "{back}");
    assert_eq!(back["attempts"], 1);
    assert_eq!(back["error"], "lease expired");
    assert_eq!(pool(&app, &owner).await, (total, 0, held), "still held");

    // After the retry's backoff (30 s) the second runner takes it and finishes it.
    app.advance_clock(31);
    let healthy = ComfyDouble::start(
        Run::load("success.json", 0),
        "success.json",
        Faults::default(),
    )
    .await;
    let worker = RunningWorker::start(&app, transport, &second.token, &healthy.url()).await;
    let done = wait_for_job(&app, &owner, &id, "the second runner", ended).await;
    let summary = worker.stop().await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(Summary::get(&summary.succeeded), 1);
    assert_eq!(holding.prompts_posted(), 1);
    assert_eq!(healthy.prompts_posted(), 1);

    // Settled exactly once: one hold, one settle of the GPU time, nothing held, one event.
    let gpu_seconds = done["gpu_seconds"].as_i64().unwrap();
    assert_eq!(pool(&app, &owner).await, (total, charge(gpu_seconds), 0));
    assert_settled_once(&app, &id, charge(gpu_seconds)).await;
    let succeeded = events(&app, &owner, "job.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0]["job_id"], id.as_str());
    assert!(events(&app, &owner, "job.failed").await.is_empty());
    // A later reaper run changes nothing.
    app.advance_clock(3600);
    app.run_cron().await;
    assert_eq!(pool(&app, &owner).await, (total, charge(gpu_seconds), 0));
    let status = app
        .query(
            "SELECT status FROM jobs WHERE id = ?",
            vec![id.clone().into()],
        )
        .await;
    assert_eq!(status[0][0], "succeeded");
    assert_settled_once(&app, &id, charge(gpu_seconds)).await;
}

/// The runner is killed while ComfyUI runs its prompt, and ComfyUI goes on with it (and
/// with a prompt that waits behind it). The runner that starts next on the same ComfyUI
/// interrupts the orphan and deletes what waits before it claims anything, so the retried
/// job runs at once, on its own, and is charged for the time it runs.
async fn a_restarted_runner_clears_what_was_left_in_comfyui_before_it_claims(transport: Transport) {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "fault-orphan").await;
    let first = runner_token(&app, &owner).await;
    let second = runner_token(&app, &owner).await;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    // The first prompt runs node 1, then holds, as a long node would.
    let comfyui = ComfyDouble::start(
        run,
        "success.json",
        Faults {
            hold_after: Some(7),
            ..Faults::default()
        },
    )
    .await;
    let id = submit(&app, &owner, &workflow).await;
    let (total, _, _) = pool(&app, &owner).await;

    let dir = std::env::temp_dir().join(format!(
        "gpu-runner-orphan-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let (flags, _libsql_server) = queue_flags(&app, transport).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpu-runner"))
        .arg("run")
        .args(&flags)
        .args(["--comfyui", &comfyui.url(), "--token", &first.token])
        .arg("--output-dir")
        .arg(&dir)
        .args([
            "--idle-min-ms",
            "10",
            "--idle-max-ms",
            "50",
            "--renew-s",
            "1",
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let orphan = loop {
        if let (Some(running), _) = comfyui.queue() {
            break running;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the binary never submitted the prompt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    child.start_kill().expect("SIGKILL");
    tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the killed binary is reaped")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Something else the dead runner left waits behind the orphan.
    let client = gpu_runner::comfyui::ComfyClient::new(&comfyui.url());
    client
        .submit(&workflow, "left-waiting", None)
        .await
        .expect("queued");
    assert_eq!(
        comfyui.queue(),
        (Some(orphan.clone()), vec!["left-waiting".to_string()])
    );

    // The lease runs out; the reaper hands the job back; its backoff passes.
    let expires = app
        .query(
            "SELECT lease_expires_at FROM jobs WHERE id = ?",
            vec![id.clone().into()],
        )
        .await[0][0]
        .as_i64()
        .expect("a lease");
    app.advance_clock(expires - app.clock.now() + 1);
    app.run_cron().await;
    app.advance_clock(31);
    let worker = RunningWorker::start(&app, transport, &second.token, &comfyui.url()).await;
    let done = wait_for_job(&app, &owner, &id, "the restarted runner", ended).await;
    let summary = worker.stop().await;

    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(Summary::get(&summary.succeeded), 1);
    let seen = comfyui.seen();
    let at = |method: &str, path: &str, body: &serde_json::Value| {
        seen.iter()
            .position(|s| s.method == method && s.path == path && &s.body == body)
            .unwrap_or_else(|| panic!("no {method} {path} {body}"))
    };
    let deleted = at("POST", "/queue", &json!({ "delete": ["left-waiting"] }));
    let interrupted = at("POST", "/interrupt", &json!({ "prompt_id": orphan }));
    let posts: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].method == "POST" && seen[i].path == "/prompt")
        .collect();
    assert_eq!(posts.len(), 3, "the orphan, the stray and the retry");
    assert!(
        deleted < posts[2] && interrupted < posts[2],
        "the restarted runner submitted before clearing what was left"
    );
    // What waited never ran.
    assert!(client.history("left-waiting").await.unwrap().is_none());
    assert_eq!(comfyui.queue(), (None, vec![]));
    // The retry ran on its own and is charged for the time it took, once.
    let gpu_seconds = done["gpu_seconds"].as_i64().unwrap();
    assert_eq!(pool(&app, &owner).await, (total, charge(gpu_seconds), 0));
    assert_settled_once(&app, &id, charge(gpu_seconds)).await;
}

async fn racing_runners_run_every_job_exactly_once(transport: Transport) {
    const RUNNERS: usize = 4;
    const JOBS: usize = 12;
    let app = spawn_app().await;
    // The tenant may run as many jobs at once as there are runners.
    let owner = funded_tenant_with(
        &app,
        "fault-race",
        json!({ "max_concurrent_jobs": RUNNERS }),
    )
    .await;
    let workflow = Run::load("success.json", 0).workflow;
    let mut submitted = HashSet::new();
    for _ in 0..JOBS {
        submitted.insert(submit(&app, &owner, &workflow).await);
    }
    let (total, _, _) = pool(&app, &owner).await;

    let mut doubles = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..RUNNERS {
        tokens.push(runner_token(&app, &owner).await.token);
        doubles.push(
            ComfyDouble::start(
                Run::load("success.json", 0),
                "success.json",
                Faults::default(),
            )
            .await,
        );
    }
    // All set up first, so that the runners start polling together.
    let mut workers = Vec::new();
    for (token, double) in tokens.iter().zip(&doubles) {
        workers.push(RunningWorker::start(&app, transport, token, &double.url()).await);
    }
    wait_for_count(
        &app,
        "every job to end",
        "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('queued', 'running')",
        JOBS as i64,
    )
    .await;
    let mut claimed = 0;
    let mut succeeded = 0;
    for worker in workers {
        let summary = worker.stop().await;
        assert_eq!(Summary::get(&summary.lost), 0, "{summary}");
        assert_eq!(Summary::get(&summary.released), 0, "{summary}");
        claimed += Summary::get(&summary.claimed);
        succeeded += Summary::get(&summary.succeeded);
    }
    assert_eq!((claimed, succeeded), (JOBS as u64, JOBS as u64));
    let busy = doubles.iter().filter(|d| d.prompts_posted() > 0).count();
    assert!(busy >= 2, "the runners did not race: one ran every job");
    let prompts: usize = doubles.iter().map(ComfyDouble::prompts_posted).sum();
    assert_eq!(prompts, JOBS, "one ComfyUI prompt per job");

    let once = app
        .query(
            "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND attempts = 1",
            vec![],
        )
        .await;
    assert_eq!(once[0][0], JOBS as i64, "each job claimed once, none lost");
    let events = events(&app, &owner, "job.succeeded").await;
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events.len(), JOBS);
    assert_eq!(ids, submitted);
    let mut charged = 0;
    for id in &submitted {
        let done = job(&app, &owner, id).await;
        let cost = charge(done["gpu_seconds"].as_i64().unwrap());
        assert_settled_once(&app, id, cost).await;
        charged += cost;
    }
    assert_eq!(pool(&app, &owner).await, (total, charged, 0));
}
