//! Throughput and latency of the money path on embedded libSQL: one reserve and one settle,
//! each a single atomic batch, as every paid action makes them.
//!
//! `cargo bench -p tollgate-server --bench credits`
//!
//! - `credits/reserve_settle`: criterion's estimate of one reserve + settle pair.
//! - then a printed run of sequential pairs (ops/s, p50, p99), of two threads spending from
//!   the same pool at once, as two server workers would, and of 32 callers at once (16
//!   concurrent tasks on each of the two threads), as a loaded server's requests would.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput};
use tollgate::{
    Env,
    credits::{
        grants::{self, Grant},
        reservations::{self, Hold},
    },
    ids::new_id,
};
use tollgate_server::{db::LibsqlDb, server};

mod support;

use support::{create_tenant, env, percentile, runtime};

const PAIRS_PER_THREAD: usize = 2_000;

/// A tenant with an owner and a pool too deep to run dry during the bench.
async fn funded_tenant(env: &Env, slug: &str) -> (String, String) {
    let created = create_tenant(env, slug, "FREE").await;
    let grant = Grant {
        amount: 1_000_000_000_000,
        reason: Some("bench".into()),
        idempotency_key: None,
    };
    grants::add_to_pool(env, "bench", &created.tenant_id, grant)
        .await
        .unwrap();
    (created.tenant_id, created.owner_id)
}

async fn reserve_and_settle(env: &Env, tenant: &str, user: &str) {
    let hold = Hold {
        amount: 10,
        reason: Some("render".into()),
        model: Some("sdxl".into()),
        job_id: None,
    };
    let (_, reservation) = reservations::reserve(env, tenant, user, &hold, new_id())
        .await
        .unwrap();
    let id = reservation["id"].as_str().unwrap();
    black_box(reservations::settle(env, tenant, id, 9).await.unwrap());
}

/// Runs `PAIRS_PER_THREAD` pairs on each of `threads` threads (one runtime each, one pool
/// shared by all), in `tasks` concurrent callers per thread, and prints ops/s and the
/// latency spread of a pair.
fn latency_report(db: &LibsqlDb, tenant: &str, users: &[String], threads: usize, tasks: usize) {
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = users[..threads]
            .iter()
            .map(|user| {
                scope.spawn(move || {
                    let env = env(db);
                    runtime().block_on(async {
                        let caller = async || {
                            let mut latencies = Vec::with_capacity(PAIRS_PER_THREAD / tasks);
                            for _ in 0..PAIRS_PER_THREAD / tasks {
                                let pair = Instant::now();
                                reserve_and_settle(&env, tenant, user).await;
                                latencies.push(pair.elapsed());
                            }
                            latencies
                        };
                        futures_util::future::join_all((0..tasks).map(|_| caller()))
                            .await
                            .concat()
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pairs = latencies.len() as f64;
    println!(
        "credits reserve+settle, {threads} thread(s) x {tasks} caller(s): {:.0} pairs/s ({:.0} batches/s), p50 {:?}, p99 {:?}, max {:?}",
        pairs / elapsed.as_secs_f64(),
        2.0 * pairs / elapsed.as_secs_f64(),
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
    let (tenant, owner) = runtime.block_on(funded_tenant(&env, "bench"));

    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group("credits");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reserve_settle", |b| {
        b.iter(|| runtime.block_on(reserve_and_settle(&env, &tenant, &owner)))
    });
    group.finish();
    criterion.final_summary();

    let users = [owner.clone(), owner];
    latency_report(&db, &tenant, &users, 1, 1);
    latency_report(&db, &tenant, &users, 2, 1);
    latency_report(&db, &tenant, &users, 2, 16);
}
