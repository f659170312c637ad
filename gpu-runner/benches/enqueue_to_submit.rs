//! Enqueue-to-submit latency: from a client's `POST jobs` to the moment ComfyUI (the test
//! double replaying recorded traffic) has read the runner's `POST /prompt` for that job.
//! The real server runs in-process on a fresh embedded libSQL file, one runner loop polls
//! it over each transport (runner endpoints over HTTP; the database file directly), and
//! each job is submitted once the previous one has ended, so the runner is idle and
//! polling, as on a quiet queue.
//!
//! Two settings: polling every 10 ms without waiting claims (the floor: claim, ComfyUI
//! health and queue checks, submit) and the binary's defaults (a claim held by the server
//! up to 20 s and woken by the enqueue over the runner endpoints; the direct transport
//! polling from 100 ms, doubling to 1 s, jittered).
//!
//! The defaults run twice: jobs submitted right after the previous one ended, and jobs
//! submitted after the queue stayed empty for 12 s, when a backing-off poll has reached its
//! longest interval.
//!
//! `cargo bench -p gpu-runner --bench enqueue_to_submit` (`BENCH_JOBS` sets the count for
//! the 10 ms setting, default 100; the defaults run a fifth of it, after 12 s idle a
//! twentieth).

#[allow(dead_code)]
#[macro_use]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use gpu_runner::worker::WorkerOptions;
use serde_json::json;
use support::comfyui_double::{ComfyDouble, Faults, Run};
use support::tollgate::*;
use tollgate_tests::spawn_app;

/// How the runner waits for work: the claim's wait and the idle polling; and how long the
/// queue stays empty before each job.
#[derive(Clone, Copy)]
struct Waiting {
    claim_wait: Duration,
    idle_min: Duration,
    idle_max: Duration,
    idle_before_each: Duration,
}

async fn measure(transport: Transport, waiting: Waiting, count: usize) -> Vec<Duration> {
    let app = spawn_app().await;
    let owner = funded_tenant_with_credits(
        &app,
        "bench",
        json!({ "daily_jobs": null, "monthly_jobs": null, "daily_gpu_seconds": null, "monthly_gpu_seconds": null }),
        1_000_000,
    )
    .await;
    let token = runner_token(&app, &owner).await.token;
    let run = Run::load("success.json", 0);
    let workflow = run.workflow.clone();
    let double = ComfyDouble::start(run, "success.json", Faults::default()).await;
    let dir = std::env::temp_dir().join(format!("gpu-runner-bench-{}", std::process::id()));
    let mut opts = options(Duration::from_secs(10));
    opts.claim_wait = waiting.claim_wait;
    opts.idle_poll_min = waiting.idle_min;
    opts.idle_poll_max = waiting.idle_max;
    opts.heartbeat_interval = Duration::from_secs(30);
    opts.progress_interval = Duration::from_secs(2);
    let worker = RunningWorker::with_store(
        queue(&app, transport, &token).await,
        &double.url(),
        std::sync::Arc::new(gpu_runner::store::LocalDirStore::new(&dir)),
        opts,
    );
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        tokio::time::sleep(waiting.idle_before_each).await;
        let before = double.prompts_posted();
        let sent = Instant::now();
        let id = submit(&app, &owner, &workflow).await;
        let done = wait_for_job(&app, &owner, &id, "the job to end", ended).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let seen = double.seen();
        let prompts: Vec<_> = seen
            .iter()
            .filter(|s| s.method == "POST" && s.path.trim_start_matches("/api") == "/prompt")
            .collect();
        assert_eq!(prompts.len(), before + 1);
        samples.push(prompts[before].at.duration_since(sent));
    }
    worker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let count: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let defaults = WorkerOptions::default();
    let default_waiting = Waiting {
        claim_wait: defaults.claim_wait,
        idle_min: defaults.idle_poll_min,
        idle_max: defaults.idle_poll_max,
        idle_before_each: Duration::ZERO,
    };
    let settings = [
        (
            "poll 10 ms, no claim wait",
            Waiting {
                claim_wait: Duration::ZERO,
                idle_min: Duration::from_millis(10),
                idle_max: Duration::from_millis(10),
                idle_before_each: Duration::ZERO,
            },
            count,
        ),
        ("defaults", default_waiting, count / 5),
        (
            "defaults, after 12 s idle",
            Waiting {
                idle_before_each: Duration::from_secs(12),
                ..default_waiting
            },
            (count / 20).max(3),
        ),
    ];
    println!("enqueue-to-submit latency (POST jobs -> ComfyUI reads POST /prompt)");
    for (label, waiting, n) in settings {
        for transport in [Transport::Http, Transport::Direct] {
            let mut samples = runtime.block_on(measure(transport, waiting, n));
            samples.sort();
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            println!(
                "{label:<30} {:<7} n={:<4} p50 {:>9}  p99 {:>9}  mean {:>9}  max {:>9}",
                format!("{transport:?}").to_lowercase(),
                samples.len(),
                ms(percentile(&samples, 0.50)),
                ms(percentile(&samples, 0.99)),
                ms(mean),
                ms(*samples.last().unwrap()),
            );
        }
    }
}
