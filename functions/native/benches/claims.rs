//! Claims per second on embedded libSQL: several claimers (one thread and runtime each, as
//! several runners' requests on several server workers) race the one claim statement
//! (`UPDATE jobs ... WHERE id = (SELECT ... ORDER BY effective priority) RETURNING ...`)
//! over a queue until it is empty. Prints claims/s and the latency spread of a claim, and
//! checks that no job was claimed twice. Then runners as runners claim: over HTTP, each on
//! its own kept-alive connection, against the native server (two workers, one per core of
//! the machine the figures were taken on). Three rounds of both, interleaved, then the median
//! claims/s of each count. Last, 100,000 jobs queued across 1,000 tenants on
//! one shared worker, of which 4 claimers take 2,000: a claim's cost must not grow with the
//! queue.
//!
//! `cargo bench -p tollgate-server --bench claims`

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tollgate::{
    Env,
    db::Statement,
    jobs::{queue, runners::Runner},
};
use tollgate_server::{
    db::LibsqlDb,
    server::{self, ConnectionLimits, ServerClock, ServerSettings},
};

mod support;

use support::{PASSWORD, config, create_tenant, env, percentile, runtime};

const JOBS: usize = 10_000;
/// The deep queue: this many jobs, across this many tenants.
const DEEP_JOBS: usize = 100_000;
const DEEP_TENANTS: usize = 1_000;
/// How many claimers race the claim statement, one run each a round.
const CLAIMERS: [usize; 3] = [1, 2, 4];
/// How many runners claim over HTTP, one run each a round.
const HTTP_RUNNERS: [usize; 4] = [1, 2, 4, 8];
/// Rounds of those runs: single runs on two shared cores vary by ±5 %, more than one
/// claimer more or less changes.
const ROUNDS: usize = 3;

/// An ENTERPRISE tenant without a concurrency cap (so the queue, not the plan, is
/// measured); its default worker.
async fn setup(env: &Env) -> (String, String, String) {
    let created = create_tenant(env, "bench", "ENTERPRISE").await;
    env.db
        .execute(Statement::new(
            "UPDATE plans SET max_concurrent_jobs = NULL WHERE code = 'ENTERPRISE'",
        ))
        .await
        .unwrap();
    let rows = env
        .db
        .execute(
            Statement::new("SELECT id FROM workers WHERE tenant_id = ? AND is_default = 1")
                .bind(created.tenant_id.as_str()),
        )
        .await
        .unwrap();
    let worker = rows.first().unwrap().get::<String>("id").unwrap();
    (created.tenant_id, created.owner_id, worker)
}

/// Fills the queue with `jobs` jobs of mixed priorities, spread over `tenants` and over
/// the last hour, ranked as the enqueue ranks them (the previous run's jobs are finished).
async fn fill(env: &Env, tenants: &[String], user: &str, worker: &str, jobs: usize) {
    env.db
        .execute(Statement::new(
            "UPDATE jobs SET status = 'succeeded' WHERE status IN ('running', 'queued')",
        ))
        .await
        .unwrap();
    let now = env.now();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(500) {
        let statements = chunk
            .iter()
            .map(|index| {
                let id = tollgate::ids::new_id();
                let priority = (*index % 7) as i64 - 3;
                let created_at = now - (*index % 3_600) as i64;
                Statement::new(
                    "INSERT INTO jobs (id, tenant_id, user_id, worker_id, status, priority, workflow, request_hash,
                                       estimated_cost, estimated_vram_mb, reservation_id, idempotency_key,
                                       time_limit_seconds, max_attempts, available_at, created_at, updated_at,
                                       claim_rank)
                     VALUES (?, ?, ?, ?, 'queued', ?, '{}', '', 2, 6400, ?, ?, 600, 3, ?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(tenants[*index % tenants.len()].as_str())
                .bind(user)
                .bind(worker)
                .bind(priority)
                .bind(id.as_str())
                .bind(id.as_str())
                .bind(created_at)
                .bind(created_at)
                .bind(created_at)
                .bind(priority * queue::AGEING_SECONDS - created_at)
            })
            .collect();
        env.db.batch(statements).await.unwrap();
    }
}

/// `count` more tenants on the bench tenant's plan (rows copied: creating each through the
/// domain would hash a password apiece); their ids.
async fn more_tenants(env: &Env, like: &str, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|_| tollgate::ids::new_id()).collect();
    for chunk in ids.chunks(500) {
        let statements = chunk
            .iter()
            .map(|id| {
                Statement::new(
                    "INSERT INTO tenants (id, slug, name, plan_code, status, created_at, updated_at)
                     SELECT ?, ?, name, plan_code, status, created_at, updated_at FROM tenants WHERE id = ?",
                )
                .bind(id.as_str())
                .bind(format!("t-{id}"))
                .bind(like)
            })
            .collect();
        env.db.batch(statements).await.unwrap();
    }
    ids
}

/// The native server on `db`, and as many runner tokens on `worker` (each runner's first
/// heartbeat sent) as `runners`, made through the API as a tenant's owner makes them.
fn serve_runners(
    db: &LibsqlDb,
    worker: &str,
    runners: usize,
) -> (server::RunningServer, String, Vec<String>) {
    let running = server::start(
        ServerSettings {
            address: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            cron_interval: Duration::from_secs(3600),
            config: config(),
            clock: ServerClock::System,
            connections: ConnectionLimits::default(),
        },
        db.clone(),
    )
    .unwrap();
    let api = format!("http://{}/api/v1", running.local_addr);
    let tokens = runtime().block_on(async {
        let client = reqwest::Client::new();
        let post = async |path: &str, bearer: &str, body: Value| -> Value {
            let response = client
                .post(format!("{api}/{path}"))
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.json().await.unwrap()
        };
        let session = post(
            "auth/login",
            "",
            json!({ "email": "owner@bench.bench", "password": PASSWORD, "tenant": "bench" }),
        )
        .await;
        let owner = session["access_token"].as_str().unwrap().to_owned();
        let mut tokens = Vec::new();
        for index in 0..runners {
            let issued = post(
                &format!("workers/{worker}/runner-tokens"),
                &owner,
                json!({ "name": format!("gpu-{index}") }),
            )
            .await;
            let token = issued["token"].as_str().unwrap().to_owned();
            post(
                "runner/heartbeat",
                &token,
                json!({ "host": format!("gpu-{index}"), "gpu": "H100", "vram_mb": 81920, "version": "bench" }),
            )
            .await;
            tokens.push(token);
        }
        tokens
    });
    (running, api, tokens)
}

/// The first `runners` of `tokens` claim over HTTP until the queue is empty, from one client
/// thread (as a load generator on the same machine); prints the figures.
fn run_over_http(api: &str, tokens: &[String], runners: usize, queued: usize) -> f64 {
    let started = Instant::now();
    let results: Vec<(Vec<String>, Vec<Duration>)> = runtime().block_on(async {
        let claimers = tokens[..runners].iter().map(async |token| {
            // A client each: a connection each, kept alive, as separate runners have.
            let client = reqwest::Client::new();
            let (mut ids, mut latencies) = (Vec::new(), Vec::new());
            loop {
                let claim = Instant::now();
                let response = client
                    .post(format!("{api}/runner/claim"))
                    .bearer_auth(token)
                    .json(&json!({ "free_vram_mb": 80_000 }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                latencies.push(claim.elapsed());
                match status.as_u16() {
                    200 => {
                        let job: Value = serde_json::from_slice(&body).unwrap();
                        ids.push(job["job_id"].as_str().unwrap().to_owned());
                    }
                    204 => break,
                    other => panic!(
                        "a claim answered {other}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            (ids, latencies)
        });
        futures_util::future::join_all(claimers).await
    });
    let elapsed = started.elapsed();
    report(
        &format!("job claims over HTTP, {runners} runner(s), {queued} queued"),
        results,
        queued,
        elapsed,
    )
}

/// Prints the median claims/s of each count's runs.
fn print_medians(what: &str, counts: &[usize], runs: Vec<Vec<f64>>) {
    let medians: Vec<String> = counts
        .iter()
        .zip(runs)
        .map(|(count, mut rates)| {
            rates.sort_by(f64::total_cmp);
            format!("{count}: {:.0}", rates[rates.len() / 2])
        })
        .collect();
    println!(
        "median claims/s of {ROUNDS} rounds, {what}: {}",
        medians.join(", ")
    );
}

/// Checks that `expected` jobs were claimed, none twice, and prints claims/s and latencies;
/// answers the claims/s.
fn report(
    what: &str,
    results: Vec<(Vec<String>, Vec<Duration>)>,
    expected: usize,
    elapsed: Duration,
) -> f64 {
    let ids: Vec<&String> = results.iter().flat_map(|(ids, _)| ids).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(ids.len(), expected, "as many jobs claimed as asked");
    assert_eq!(unique.len(), expected, "no job claimed twice");
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|(_, l)| l).collect();
    latencies.sort_unstable();
    let rate = expected as f64 / elapsed.as_secs_f64();
    println!(
        "{what}: {rate:.0} claims/s, p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
    );
    rate
}

/// `threads` claimers take `claims` jobs in all (or drain the queue); prints the figures and
/// answers the claims/s.
fn run(db: &LibsqlDb, worker: &str, threads: usize, queued: usize, claims: usize) -> f64 {
    let started = Instant::now();
    let results: Vec<(Vec<String>, Vec<Duration>)> = std::thread::scope(|scope| {
        let claimers: Vec<_> = (0..threads)
            .map(|index| {
                scope.spawn(move || {
                    let env = env(db);
                    let runner = Runner {
                        token_id: format!("bench-runner-{index}"),
                        worker_id: worker.to_owned(),
                    };
                    runtime().block_on(async {
                        let (mut ids, mut latencies) = (Vec::new(), Vec::new());
                        while ids.len() < claims / threads {
                            let claim = Instant::now();
                            let claimed = queue::claim(&env, &runner, 80_000).await.unwrap();
                            latencies.push(claim.elapsed());
                            match claimed {
                                Some(job) => ids.push(job["job_id"].as_str().unwrap().to_owned()),
                                None => break,
                            }
                        }
                        (ids, latencies)
                    })
                })
            })
            .collect();
        claimers
            .into_iter()
            .map(|claimer| claimer.join().unwrap())
            .collect()
    });
    report(
        &format!("job claims, {threads} claimer(s), {claims} of {queued} queued"),
        results,
        claims,
        started.elapsed(),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let runtime = runtime();
    let db = runtime
        .block_on(server::open_database(path.to_str().unwrap(), 0))
        .unwrap();
    let env = env(&db);
    let (tenant, owner, worker) = runtime.block_on(setup(&env));
    let one = [tenant.clone()];
    // Rounds interleaved, so that the machine's slower moments fall on every count alike.
    let mut direct = vec![Vec::new(); CLAIMERS.len()];
    let mut over_http = vec![Vec::new(); HTTP_RUNNERS.len()];
    let (server, api, tokens) = serve_runners(&db, &worker, *HTTP_RUNNERS.last().unwrap());
    for _ in 0..ROUNDS {
        for (index, threads) in CLAIMERS.into_iter().enumerate() {
            runtime.block_on(fill(&env, &one, &owner, &worker, JOBS));
            direct[index].push(run(&db, &worker, threads, JOBS, JOBS));
        }
        for (index, runners) in HTTP_RUNNERS.into_iter().enumerate() {
            runtime.block_on(fill(&env, &one, &owner, &worker, JOBS));
            over_http[index].push(run_over_http(&api, &tokens, runners, JOBS));
        }
    }
    server.shutdown();
    print_medians("claimer(s) on the database", &CLAIMERS, direct);
    print_medians("runner(s) over HTTP", &HTTP_RUNNERS, over_http);
    let mut tenants = runtime.block_on(more_tenants(&env, &tenant, DEEP_TENANTS - 1));
    tenants.push(tenant);
    runtime.block_on(fill(&env, &tenants, &owner, &worker, DEEP_JOBS));
    run(&db, &worker, 4, DEEP_JOBS, JOBS);
}
