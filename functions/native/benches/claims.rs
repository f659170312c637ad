//! Claims per second on embedded libSQL: several claimers (one thread and runtime each, as
//! several runners' requests on several server workers) race the one claim statement
//! (`UPDATE jobs ... WHERE id = (SELECT ... ORDER BY effective priority) RETURNING ...`)
//! over a deep queue until it is empty. Prints claims/s and the latency spread of a claim,
//! and checks that no job was claimed twice.
//!
//! `cargo bench -p tollgate-server --bench claims`

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use tollgate::{
    Env,
    db::Statement,
    jobs::{queue, runners::Runner},
};
use tollgate_server::{db::LibsqlDb, server};

mod support;

use support::{create_tenant, env, percentile, runtime};

const JOBS: usize = 2_000;

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

/// Fills the queue with `JOBS` jobs of mixed priorities (the previous run's are finished).
async fn fill(env: &Env, tenant: &str, user: &str, worker: &str) {
    env.db
        .execute(Statement::new(
            "UPDATE jobs SET status = 'succeeded' WHERE status = 'running'",
        ))
        .await
        .unwrap();
    let now = env.now();
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        let statements = chunk
            .iter()
            .map(|index| {
                let id = tollgate::ids::new_id();
                Statement::new(
                    "INSERT INTO jobs (id, tenant_id, user_id, worker_id, status, priority, workflow, request_hash,
                                       estimated_cost, estimated_vram_mb, reservation_id, idempotency_key,
                                       time_limit_seconds, max_attempts, available_at, created_at, updated_at)
                     VALUES (?, ?, ?, ?, 'queued', ?, '{}', '', 2, 6400, ?, ?, 600, 3, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(tenant)
                .bind(user)
                .bind(worker)
                .bind((*index % 7) as i64 - 3)
                .bind(id.as_str())
                .bind(id.as_str())
                .bind(now)
                .bind(now)
                .bind(now)
            })
            .collect();
        env.db.batch(statements).await.unwrap();
    }
}

/// `threads` claimers drain the queue; prints the figures.
fn run(db: &LibsqlDb, worker: &str, threads: usize) {
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
                        loop {
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
    let elapsed = started.elapsed();
    let ids: Vec<&String> = results.iter().flat_map(|(ids, _)| ids).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(ids.len(), JOBS, "every job claimed");
    assert_eq!(unique.len(), JOBS, "no job claimed twice");
    let mut latencies: Vec<Duration> = results.into_iter().flat_map(|(_, l)| l).collect();
    latencies.sort_unstable();
    println!(
        "job claims, {threads} claimer(s) over {JOBS} jobs: {:.0} claims/s, p50 {:?}, p99 {:?}, max {:?}",
        JOBS as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
    );
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
    for threads in [1, 2, 4] {
        runtime.block_on(fill(&env, &tenant, &owner, &worker));
        run(&db, &worker, threads);
    }
}
