//! A soak run of the native server on an embedded database file: mixed load for a while,
//! memory and open files sampled, every answer checked. A bench, not a CI test.
//!
//! ```sh
//! cargo run --release -p tollgate-tests --bin soak          # 10 minutes
//! SOAK_SECONDS=120 cargo run --release -p tollgate-tests --bin soak
//! ```
//!
//! The load, all at once until the time is up: forward-auth checks with an API key (8
//! callers), credit reserve + settle pairs (4 callers), jobs enqueued, claimed by a runner
//! and finished (2 callers), and the server's own cron every minute. Every
//! `SOAK_SAMPLE_SECONDS` (10) it prints this process's resident memory and open files (the
//! server runs in it; the load generator keeps no growing state), the write-ahead log's size,
//! and what each load did.
//! Ends with the first and last samples side by side and exits non-zero when any answer
//! was not the expected one.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tollgate::config::Config;
use tollgate_server::server::{self, ConnectionLimits, ServerClock, ServerSettings};
use tollgate_tests::{PASSWORD, create_platform_admin, file_env, post_json, sdxl};

const JWT_SECRET: &str = "soak-secret-soak-secret-soak-secret-0123";

/// What one kind of load did.
#[derive(Default)]
struct Tally {
    done: AtomicU64,
    failed: AtomicU64,
}

struct Loads {
    verify: Tally,
    money: Tally,
    jobs: Tally,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = setting("SOAK_SECONDS", 600);
    let sample_every = setting("SOAK_SAMPLE_SECONDS", 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soak.db");
    let database = server::open_database(path.to_str().unwrap(), 0)
        .await
        .expect("the database opens");
    let config =
        Config::from_lookup(|name| (name == "TOLLGATE_JWT_SECRET").then(|| JWT_SECRET.into()))
            .unwrap();
    let running = server::start(
        ServerSettings {
            address: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            cron_interval: Duration::from_secs(60),
            config,
            clock: ServerClock::System,
            connections: ConnectionLimits::default(),
        },
        database,
    )
    .unwrap();
    let base = format!("http://{}/api/v1", running.local_addr);
    let client = reqwest::Client::new();
    let arranged = arrange(&client, &base, &path).await;

    let loads = Arc::new(Loads {
        verify: Tally::default(),
        money: Tally::default(),
        jobs: Tally::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(verify_loop(
            client.clone(),
            base.clone(),
            arranged.api_key.clone(),
            loads.clone(),
            stop.clone(),
        )));
    }
    for _ in 0..4 {
        tasks.push(tokio::spawn(money_loop(
            client.clone(),
            base.clone(),
            arranged.api_key.clone(),
            loads.clone(),
            stop.clone(),
        )));
    }
    for _ in 0..2 {
        tasks.push(tokio::spawn(jobs_loop(
            client.clone(),
            base.clone(),
            arranged.api_key.clone(),
            arranged.runner.clone(),
            loads.clone(),
            stop.clone(),
        )));
    }

    println!(
        "== soak: {seconds} s of mixed load on the native server, sampled every {sample_every} s"
    );
    println!(
        "{:>6} {:>9} {:>6} {:>9} {:>10} {:>10} {:>10} {:>7}",
        "s", "rss MiB", "fds", "wal MiB", "verify", "money", "jobs", "failed"
    );
    let wal = path.with_extension("db-wal");
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let sample = Sample::now(started.elapsed().as_secs(), &loads, &wal);
        println!("{sample}");
        samples.push(sample);
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(sample_every)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = task.await;
    }
    running.shutdown();

    let (first, last) = (&samples[1.min(samples.len() - 1)], samples.last().unwrap());
    let peak = samples
        .iter()
        .map(|sample| sample.rss_kib)
        .max()
        .unwrap_or(0);
    println!(
        "\n== after warm-up vs at the end: memory {:.1} -> {:.1} MiB (peak {:.1}), open files {} -> {}",
        first.rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
        peak as f64 / 1024.0,
        first.fds,
        last.fds
    );
    let rate = |count: u64| count as f64 / started.elapsed().as_secs_f64();
    println!(
        "   verify {:.0}/s, reserve+settle {:.0} pairs/s, jobs {:.0}/s; failed answers: {}",
        rate(last.verify),
        rate(last.money),
        rate(last.jobs),
        last.failed
    );
    if last.failed > 0 {
        std::process::exit(1);
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// One sample of the process and the loads.
struct Sample {
    second: u64,
    rss_kib: u64,
    fds: usize,
    /// The write-ahead log's size on disk.
    wal_bytes: u64,
    verify: u64,
    money: u64,
    jobs: u64,
    failed: u64,
}

impl Sample {
    fn now(second: u64, loads: &Loads, wal: &std::path::Path) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        let done = |tally: &Tally| tally.done.load(Ordering::Relaxed);
        let failed = [&loads.verify, &loads.money, &loads.jobs]
            .iter()
            .map(|tally| tally.failed.load(Ordering::Relaxed))
            .sum();
        Sample {
            second,
            rss_kib,
            fds,
            wal_bytes: std::fs::metadata(wal).map_or(0, |metadata| metadata.len()),
            verify: done(&loads.verify),
            money: done(&loads.money),
            jobs: done(&loads.jobs),
            failed,
        }
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6} {:>9.1} {:>6} {:>9.1} {:>10} {:>10} {:>10} {:>7}",
            self.second,
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.wal_bytes as f64 / 1_048_576.0,
            self.verify,
            self.money,
            self.jobs,
            self.failed
        )
    }
}

/// Counts one attempt of a load: done when `ok`, failed (and reported once) otherwise.
fn count(tally: &Tally, ok: bool, what: impl FnOnce() -> String) {
    if ok {
        tally.done.fetch_add(1, Ordering::Relaxed);
    } else if tally.failed.fetch_add(1, Ordering::Relaxed) == 0 {
        eprintln!("first failure: {}", what());
    }
}

async fn verify_loop(
    client: reqwest::Client,
    base: String,
    key: String,
    loads: Arc<Loads>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let response = client
            .get(format!("{base}/auth/verify"))
            .header("X-API-Key", &key)
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", "/comfy/history")
            .send()
            .await;
        let status = response.as_ref().map(reqwest::Response::status);
        count(
            &loads.verify,
            status.as_ref().is_ok_and(|s| s.is_success()),
            || format!("verify: {status:?}"),
        );
    }
}

async fn money_loop(
    client: reqwest::Client,
    base: String,
    token: String,
    loads: Arc<Loads>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let reserved = post(
            &client,
            &format!("{base}/credits/reservations"),
            &token,
            json!({ "amount": 3 }),
        )
        .await;
        let settled = match &reserved {
            Ok(reservation) => {
                let id = reservation["id"].as_str().unwrap_or_default();
                post(
                    &client,
                    &format!("{base}/credits/reservations/{id}/settle"),
                    &token,
                    json!({ "actual": 2 }),
                )
                .await
            }
            Err(error) => Err(error.clone()),
        };
        count(&loads.money, settled.is_ok(), || {
            format!("reserve+settle: {settled:?}")
        });
    }
}

async fn jobs_loop(
    client: reqwest::Client,
    base: String,
    token: String,
    runner: String,
    loads: Arc<Loads>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let outcome = async {
            post(
                &client,
                &format!("{base}/jobs"),
                &token,
                json!({ "workflow": sdxl(512, 4) }),
            )
            .await?;
            // Another caller's job may be the one claimed: every claim is finished.
            let claimed = post(
                &client,
                &format!("{base}/runner/claim"),
                &runner,
                json!({ "free_vram_mb": 24_576 }),
            )
            .await?;
            let id = claimed["job_id"]
                .as_str()
                .ok_or("the claim brought no job")?;
            post(
                &client,
                &format!("{base}/runner/jobs/{id}/finish"),
                &runner,
                json!({ "lease_id": claimed["lease_id"], "status": "succeeded",
                        "outputs": [{ "filename": "out_00001_.png", "type": "output" }],
                        "gpu_seconds": 1, "peak_vram_mb": 7_000 }),
            )
            .await
        }
        .await;
        count(&loads.jobs, outcome.is_ok(), || {
            format!("enqueue+claim+finish: {outcome:?}")
        });
    }
}

/// POSTs `body` with `token`; the answer's JSON when it is a 2xx with one.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> Result<Value, String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|error| format!("POST {url}: {error}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("POST {url}: {status} {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The credentials of the load: an API key (it outlives any access token) and a runner's.
struct Arranged {
    api_key: String,
    runner: String,
}

/// An ENTERPRISE tenant with its limits and quotas lifted and a deep pool, an API key, and
/// a runner token on its default worker.
async fn arrange(client: &reqwest::Client, base: &str, db_path: &std::path::Path) -> Arranged {
    let registered = post_json(
        client,
        format!("{base}/auth/register"),
        None,
        json!({ "tenant_name": "Soak Inc.", "tenant_slug": "soak", "email": "owner@soak.test",
                "password": PASSWORD, "name": "Owner" }),
    )
    .await;
    let owner = registered["access_token"].as_str().unwrap().to_owned();
    let tenant = registered["tenant"]["id"].as_str().unwrap().to_owned();
    create_platform_admin(&file_env(db_path).await, "ops@soak.test").await;
    let admin = post_json(
        client,
        format!("{base}/admin/login"),
        None,
        json!({ "email": "ops@soak.test", "password": PASSWORD }),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let lifted = json!({ "plan": "ENTERPRISE", "overrides": {
        "requests_per_minute": 100_000_000, "max_concurrent_jobs": null,
        "daily_jobs": null, "monthly_jobs": null, "daily_gpu_seconds": null, "monthly_gpu_seconds": null } });
    let response = client
        .put(format!("{base}/admin/tenants/{tenant}/plan"))
        .bearer_auth(&admin)
        .json(&lifted)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "plan: {}",
        response.status()
    );
    post(
        client,
        &format!("{base}/admin/tenants/{tenant}/credits/grants"),
        &admin,
        json!({ "amount": 1_000_000_000_000_i64, "reason": "soak" }),
    )
    .await
    .expect("the grant");
    let api_key = post(
        client,
        &format!("{base}/api-keys"),
        &owner,
        json!({ "name": "soak", "scopes": ["*"] }),
    )
    .await
    .expect("the API key")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let workers = client
        .get(format!("{base}/workers"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let worker = workers["data"]
        .as_array()
        .and_then(|workers| workers.iter().find(|worker| worker["default"] == true))
        .and_then(|worker| worker["id"].as_str())
        .expect("the default worker")
        .to_owned();
    let runner = post(
        client,
        &format!("{base}/workers/{worker}/runner-tokens"),
        &owner,
        json!({ "name": "soak-gpu" }),
    )
    .await
    .expect("the runner token")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        client,
        &format!("{base}/runner/heartbeat"),
        &runner,
        json!({ "host": "soak-gpu", "gpu": "RTX 4090", "vram_mb": 24_576, "version": "0.1.0" }),
    )
    .await
    .expect("the heartbeat");
    Arranged { api_key, runner }
}
