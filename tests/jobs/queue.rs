//! The queue through the runner endpoints: claim order, concurrency, leases, finish applied
//! once, retries, cancel, the reaper and racing runners.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{
    Runner, default_worker, events, free_tenant, job, pool, queued, sdxl, tenant,
};

fn id(value: &Value) -> &str {
    value["job_id"].as_str().or(value["id"].as_str()).unwrap()
}

#[tokio::test]
async fn a_claimed_job_finishes_once_with_credits_counters_and_event() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let before = pool(&app, &owner).await;
    let queued_job = queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    // Not enough free VRAM for SDXL: nothing to claim.
    assert!(runner.claim(&app, 4096).await.is_none());
    let claimed = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(claimed["job_id"], queued_job["id"]);
    assert_eq!(claimed["attempt"], 1);
    assert_eq!(claimed["workflow"]["3"]["class_type"], "KSampler");
    let running = job(&app, &owner, id(&claimed)).await;
    assert_eq!(running["status"], "running");
    assert!(running["started_at"].is_string());

    let progress = runner
        .post(
            &app,
            &format!("runner/jobs/{}/progress", id(&claimed)),
            json!({ "lease_id": claimed["lease_id"], "progress": 40, "current_node": "3" }),
        )
        .await;
    assert_eq!(
        expect_status(progress, StatusCode::OK).await["cancel_requested"],
        false
    );
    let seen = job(&app, &owner, id(&claimed)).await;
    assert_eq!(seen["progress"], 40);
    assert_eq!(seen["current_node"], "3");

    let done = expect_status(
        runner.finish(&app, &claimed, "succeeded", 14).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["gpu_seconds"], 14);
    assert_eq!(done["peak_vram_mb"], 7000);
    assert_eq!(done["outputs"][0]["filename"], "out_00001_.png");
    // 14 GPU-seconds: 1 + ceil(14 / 10) = 3, within the 10 % overage bound of 2 → 3.
    let after = pool(&app, &owner).await;
    assert_eq!(after.2, before.2, "nothing held any more");
    assert_eq!(after.1, before.1 + 3);

    // A retried finish answers the same job and moves nothing again.
    let again = expect_status(
        runner.finish(&app, &claimed, "succeeded", 14).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["status"], "succeeded");
    assert_eq!(pool(&app, &owner).await, after);
    assert_eq!(events(&app, &owner, "job.succeeded").await.len(), 1);
    let gpu = app
        .query(
            "SELECT value FROM usage_counters WHERE metric = 'gpu_seconds' AND user_id = '' AND period = 'day'",
            vec![],
        )
        .await;
    assert_eq!(gpu[0][0], 14);
    // Another ending of a finished job is refused.
    expect_error(
        runner.finish(&app, &claimed, "failed", 14).await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
    expect_error(
        runner.renew(&app, &claimed).await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
    let event = &events(&app, &owner, "job.succeeded").await[0];
    assert_eq!(event["job_id"], queued_job["id"]);
}

#[tokio::test]
async fn a_queued_job_is_cancelled_at_once_and_its_hold_released() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let before = pool(&app, &owner).await;
    let queued_job = queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let path = format!("jobs/{}/cancel", id(&queued_job));
    let cancelled = expect_status(
        app.post(&path, &owner.access_token, &json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(pool(&app, &owner).await, before);
    assert_eq!(events(&app, &owner, "job.cancelled").await.len(), 1);
    expect_error(
        app.post(&path, &owner.access_token, &json!({})).await,
        StatusCode::CONFLICT,
        "job_finished",
    )
    .await;
    assert_eq!(events(&app, &owner, "job.cancelled").await.len(), 1);
    let audited = app
        .query(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'job.cancelled'",
            vec![],
        )
        .await;
    assert_eq!(audited[0][0], 1);
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    assert!(
        runner.claim(&app, 24576).await.is_none(),
        "a cancelled job is never claimed"
    );
}

#[tokio::test]
async fn a_running_job_is_cancelled_by_its_runner_when_asked() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let before = pool(&app, &owner).await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let claimed = runner.claim(&app, 24576).await.unwrap();
    let renewed = expect_status(runner.renew(&app, &claimed).await, StatusCode::OK).await;
    assert_eq!(renewed["cancel_requested"], false);
    let asked = expect_status(
        app.post(
            &format!("jobs/{}/cancel", id(&claimed)),
            &owner.access_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(asked["status"], "running");
    assert_eq!(asked["cancel_requested"], true);
    let renewed = expect_status(runner.renew(&app, &claimed).await, StatusCode::OK).await;
    assert_eq!(renewed["cancel_requested"], true);
    let done = expect_status(
        runner.finish(&app, &claimed, "cancelled", 3).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "cancelled");
    let after = pool(&app, &owner).await;
    assert_eq!(after.2, before.2);
    assert_eq!(after.1, before.1 + 2, "the GPU time used is charged");
    assert_eq!(events(&app, &owner, "job.cancelled").await.len(), 1);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_backoff_then_fails_and_releases() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let before = pool(&app, &owner).await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    for (attempt, backoff) in [(1, 30), (2, 60)] {
        let claimed = runner.claim(&app, 24576).await.unwrap();
        assert_eq!(claimed["attempt"], attempt);
        let back = expect_status(
            runner.fail(&app, &claimed, "CUDA out of memory").await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(back["status"], "queued");
        assert_eq!(back["error"], "CUDA out of memory");
        assert!(runner.claim(&app, 24576).await.is_none(), "backing off");
        app.advance_clock(backoff - 1);
        assert!(
            runner.claim(&app, 24576).await.is_none(),
            "still backing off"
        );
        app.advance_clock(1);
    }
    let last = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(last["attempt"], 3);
    let failed = expect_status(
        runner.fail(&app, &last, "CUDA out of memory").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 3);
    assert_eq!(
        pool(&app, &owner).await,
        before,
        "released, nothing charged"
    );
    assert_eq!(events(&app, &owner, "job.failed").await.len(), 1);
    expect_error(
        runner.fail(&app, &last, "again").await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_reaped_once_and_rerun_with_credits_settled_once() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let dead = Runner::on(&app, &owner, &worker, "gpu-dead").await;
    let alive = Runner::on(&app, &owner, &worker, "gpu-alive").await;
    let before = pool(&app, &owner).await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let lost = dead.claim(&app, 24576).await.unwrap();
    app.advance_clock(60);
    assert_eq!(
        app.run_cron().await.jobs_reaped.requeued,
        0,
        "the lease runs to its end"
    );
    app.advance_clock(1);
    let (first, second) = futures::join!(app.run_cron(), app.run_cron());
    assert_eq!(first.jobs_reaped.requeued + second.jobs_reaped.requeued, 1);
    assert_eq!(job(&app, &owner, id(&lost)).await["error"], "lease expired");
    // The dead runner's late finish is refused; the job waits out its backoff.
    expect_error(
        dead.finish(&app, &lost, "succeeded", 14).await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
    assert!(alive.claim(&app, 24576).await.is_none());
    app.advance_clock(30);
    let rerun = alive.claim(&app, 24576).await.unwrap();
    assert_eq!(rerun["job_id"], lost["job_id"]);
    assert_eq!(rerun["attempt"], 2);
    expect_status(
        alive.finish(&app, &rerun, "succeeded", 14).await,
        StatusCode::OK,
    )
    .await;
    expect_error(
        dead.finish(&app, &lost, "succeeded", 14).await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
    let after = pool(&app, &owner).await;
    assert_eq!(after.2, before.2);
    assert_eq!(after.1, before.1 + 3, "charged once");
    let settled = app
        .query(
            "SELECT COUNT(*) FROM credit_ledger WHERE kind = 'settle'",
            vec![],
        )
        .await;
    assert_eq!(
        settled[0][0], 2,
        "one settle row for the pool and one for the user"
    );
}

#[tokio::test]
async fn a_lease_expiring_on_the_last_attempt_fails_the_job_and_releases() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let before = pool(&app, &owner).await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    for attempt in 1..=3 {
        let claimed = runner.claim(&app, 24576).await.unwrap();
        assert_eq!(claimed["attempt"], attempt);
        app.advance_clock(61);
        let report = app.run_cron().await.jobs_reaped;
        if attempt < 3 {
            assert_eq!(report.requeued, 1);
            app.advance_clock(60);
        } else {
            assert_eq!(report.failed, 1);
            assert_eq!(report.released, 1);
        }
    }
    let jobs = expect_status(app.get("jobs", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(jobs["data"][0]["status"], "failed");
    assert_eq!(pool(&app, &owner).await, before);
    assert_eq!(events(&app, &owner, "job.failed").await.len(), 1);
    let report = app.run_cron().await.jobs_reaped;
    assert_eq!((report.requeued, report.failed, report.released), (0, 0, 0));
}

#[tokio::test]
async fn renewing_keeps_the_lease_alive() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let claimed = runner.claim(&app, 24576).await.unwrap();
    for _ in 0..3 {
        app.advance_clock(45);
        expect_status(runner.renew(&app, &claimed).await, StatusCode::OK).await;
        assert_eq!(app.run_cron().await.jobs_reaped.requeued, 0);
    }
    expect_status(
        runner.finish(&app, &claimed, "succeeded", 5).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn claims_follow_user_priority_and_ageing() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1000).await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let low = queued(
        &app,
        &owner,
        json!({ "workflow": sdxl(512, 20), "priority": -2 }),
    )
    .await;
    let normal = queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let high = queued(
        &app,
        &owner,
        json!({ "workflow": sdxl(512, 20), "priority": 5 }),
    )
    .await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let claimed = runner.claim(&app, 24576).await.unwrap();
        order.push(claimed["job_id"].clone());
        expect_status(
            runner.finish(&app, &claimed, "succeeded", 1).await,
            StatusCode::OK,
        )
        .await;
    }
    assert_eq!(
        order,
        vec![high["id"].clone(), normal["id"].clone(), low["id"].clone()]
    );

    // Ten minutes of waiting outweighs a priority of 5: nobody starves.
    let old = queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    app.advance_clock(600);
    let fresh = queued(
        &app,
        &owner,
        json!({ "workflow": sdxl(512, 20), "priority": 5 }),
    )
    .await;
    let first = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(first["job_id"], old["id"]);
    expect_status(
        runner.finish(&app, &first, "succeeded", 1).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        runner.claim(&app, 24576).await.unwrap()["job_id"],
        fresh["id"]
    );
}

#[tokio::test]
async fn on_a_shared_pool_plan_priority_and_tenant_concurrency_decide() {
    let app = spawn_app().await;
    let free = free_tenant(&app, "small").await;
    let pro = tenant(
        &app,
        "big",
        "PRO",
        json!({ "max_concurrent_jobs": 2 }),
        1000,
    )
    .await;
    let admin = app.platform_admin("ops@pool.platform.test").await;
    let token = expect_status(
        app.post(
            "admin/workers/shared/runner-tokens",
            &admin,
            &json!({ "name": "pool-1" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let runner = Runner {
        token: token["token"].as_str().unwrap().to_owned(),
    };
    // Tenants cannot mint tokens for the shared pool.
    expect_error(
        app.post(
            "workers/shared/runner-tokens",
            &pro.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let on_shared = json!({ "workflow": sdxl(512, 20), "worker_id": "shared" });
    let free_1 = queued(&app, &free, on_shared.clone()).await;
    let free_2 = queued(&app, &free, on_shared.clone()).await;
    let pro_1 = queued(&app, &pro, on_shared.clone()).await;
    let pro_2 = queued(&app, &pro, on_shared.clone()).await;
    let pro_3 = queued(&app, &pro, on_shared.clone()).await;
    let mut claimed = Vec::new();
    while let Some(job) = runner.claim(&app, 80_000).await {
        claimed.push(job);
    }
    let ids: Vec<&str> = claimed.iter().map(id).collect();
    // PRO (priority 10) first, up to its 2 concurrent jobs; FREE (1 concurrent) next.
    assert_eq!(
        ids,
        vec![id(&pro_1), id(&pro_2), id(&free_1)],
        "claim order by plan priority within each tenant's concurrency"
    );
    expect_status(
        runner.finish(&app, &claimed[0], "succeeded", 1).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        runner.claim(&app, 80_000).await.unwrap()["job_id"],
        pro_3["id"]
    );
    assert!(runner.claim(&app, 80_000).await.is_none());
    expect_status(
        runner.finish(&app, &claimed[2], "succeeded", 1).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        runner.claim(&app, 80_000).await.unwrap()["job_id"],
        free_2["id"]
    );
}

#[tokio::test]
async fn a_worker_runs_at_most_its_max_concurrency() {
    let app = spawn_app().await;
    let owner = tenant(&app, "acme", "PRO", json!({}), 1000).await;
    let pool_worker = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Narrow", "max_concurrency": 1 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let runner = Runner::on(&app, &owner, &pool_worker, "gpu-1").await;
    for _ in 0..2 {
        queued(
            &app,
            &owner,
            json!({ "workflow": sdxl(512, 20), "worker_id": pool_worker }),
        )
        .await;
    }
    let first = runner.claim(&app, 24576).await.unwrap();
    assert!(runner.claim(&app, 24576).await.is_none());
    expect_status(
        runner.finish(&app, &first, "succeeded", 1).await,
        StatusCode::OK,
    )
    .await;
    assert!(runner.claim(&app, 24576).await.is_some());
}

#[tokio::test]
async fn racing_runners_claim_every_job_exactly_once() {
    const RUNNERS: usize = 8;
    const JOBS: usize = 24;
    let app = spawn_app().await;
    // ENTERPRISE runs 32 jobs at once: the tenant's concurrency never stops a claim here.
    let owner = tenant(&app, "acme", "ENTERPRISE", json!({}), 100_000).await;
    let worker = default_worker(&app, &owner).await;
    let mut runners = Vec::new();
    for index in 0..RUNNERS {
        runners.push(Runner::on(&app, &owner, &worker, &format!("gpu-{index}")).await);
    }
    let mut queued_ids = HashSet::new();
    for _ in 0..JOBS {
        queued_ids.insert(
            id(&queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await).to_owned(),
        );
    }
    let mut claimed = Vec::new();
    loop {
        let round =
            futures::future::join_all(runners.iter().map(|runner| runner.claim(&app, 24576))).await;
        let got: Vec<Value> = round.into_iter().flatten().collect();
        if got.is_empty() {
            break;
        }
        claimed.extend(got);
    }
    let ids: Vec<String> = claimed.iter().map(|job| id(job).to_owned()).collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), JOBS, "every job claimed once");
    assert_eq!(unique, queued_ids, "none lost, none twice");
    let running = app
        .query(
            "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND attempts = 1",
            vec![],
        )
        .await;
    assert_eq!(running[0][0], JOBS as i64);
}

/// The running jobs the claim reads from counters (tenant and worker) against a count of
/// the jobs themselves: the tenants and workers whose counter says otherwise.
async fn running_counts_astray(app: &tollgate_tests::TestApp) -> Vec<Value> {
    app.query(
        "SELECT 'tenant', t.id FROM tenants t
         WHERE COALESCE((SELECT running FROM tenant_running_jobs WHERE tenant_id = t.id), 0)
            <> (SELECT COUNT(*) FROM jobs WHERE tenant_id = t.id AND status = 'running')
         UNION ALL
         SELECT 'worker', w.id FROM workers w
         WHERE COALESCE((SELECT running FROM worker_running_jobs WHERE worker_id = w.id), 0)
            <> (SELECT COUNT(*) FROM jobs WHERE worker_id = w.id AND status = 'running')",
        vec![],
    )
    .await
    .into_iter()
    .map(Value::from)
    .collect()
}

#[tokio::test]
async fn racing_runners_never_run_more_than_the_plan_allows_and_the_counts_stay_true() {
    const RUNNERS: usize = 8;
    let app = spawn_app().await;
    let owner = tenant(
        &app,
        "acme",
        "PRO",
        json!({ "max_concurrent_jobs": 3 }),
        100_000,
    )
    .await;
    let worker = default_worker(&app, &owner).await;
    let mut runners = Vec::new();
    for index in 0..RUNNERS {
        runners.push(Runner::on(&app, &owner, &worker, &format!("gpu-{index}")).await);
    }
    for _ in 0..12 {
        queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    }
    let race = async |runners: &[Runner]| -> Vec<(usize, Value)> {
        let round =
            futures::future::join_all(runners.iter().map(|runner| runner.claim(&app, 24576))).await;
        round
            .into_iter()
            .enumerate()
            .filter_map(|(index, job)| job.map(|job| (index, job)))
            .collect()
    };
    let running = race(&runners).await;
    assert_eq!(
        running.len(),
        3,
        "eight runners at once, three jobs: the plan's cap"
    );
    assert_eq!(running_counts_astray(&app).await, Vec::<Value>::new());

    // One finishes, one fails (and is queued again); the third's runner goes silent.
    let (finished, failed) = (&running[0], &running[1]);
    expect_status(
        runners[finished.0]
            .finish(&app, &finished.1, "succeeded", 3)
            .await,
        StatusCode::OK,
    )
    .await;
    expect_status(
        runners[failed.0]
            .fail(&app, &failed.1, "CUDA out of memory")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(running_counts_astray(&app).await, Vec::<Value>::new());
    let refilled = race(&runners).await;
    assert_eq!(refilled.len(), 2, "two slots freed, two claims");
    app.advance_clock(3_600);
    let reaped = app.run_cron().await.jobs_reaped;
    assert_eq!(reaped.requeued + reaped.failed, 3, "every lease ran out");
    assert_eq!(running_counts_astray(&app).await, Vec::<Value>::new());
    let again = race(&runners).await;
    assert_eq!(again.len(), 3, "the reaped slots are free again");
    assert_eq!(running_counts_astray(&app).await, Vec::<Value>::new());
}

#[tokio::test]
async fn work_done_past_the_gpu_seconds_quota_is_still_settled() {
    let app = spawn_app().await;
    let owner = tenant(
        &app,
        "acme",
        "FREE",
        json!({ "daily_gpu_seconds": 10 }),
        100,
    )
    .await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let before = pool(&app, &owner).await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let claimed = runner.claim(&app, 24576).await.unwrap();
    let done = expect_status(
        runner.finish(&app, &claimed, "succeeded", 14).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["gpu_seconds"], 14);
    let after = pool(&app, &owner).await;
    assert_eq!((after.1, after.2), (before.1 + 3, before.2));
    assert_eq!(events(&app, &owner, "job.succeeded").await.len(), 1);
}

#[tokio::test]
async fn another_tenants_runner_neither_claims_nor_finishes_a_job() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let other = free_tenant(&app, "globex").await;
    let mine = Runner::on(&app, &owner, &default_worker(&app, &owner).await, "gpu-a").await;
    let theirs = Runner::on(&app, &other, &default_worker(&app, &other).await, "gpu-b").await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    assert!(theirs.claim(&app, 24576).await.is_none());
    let claimed = mine.claim(&app, 24576).await.unwrap();
    expect_error(
        theirs.finish(&app, &claimed, "succeeded", 1).await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
    expect_error(
        theirs.renew(&app, &claimed).await,
        StatusCode::CONFLICT,
        "lease_lost",
    )
    .await;
    assert_eq!(job(&app, &owner, id(&claimed)).await["status"], "running");
}

#[tokio::test]
async fn gpu_seconds_past_the_daily_limit_fill_the_counter_to_its_limit() {
    let app = spawn_app().await;
    let owner = tenant(
        &app,
        "acme",
        "FREE",
        json!({ "daily_gpu_seconds": 100 }),
        100,
    )
    .await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let claimed = runner.claim(&app, 24576).await.unwrap();

    let finished = runner.finish(&app, &claimed, "succeeded", 250).await;

    expect_status(finished, StatusCode::OK).await;
    let counted = app
        .query(
            "SELECT value FROM usage_counters WHERE tenant_id = ? AND user_id = '' AND metric = 'gpu_seconds' AND period = 'day'",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(counted[0][0], 100, "counted up to the limit, not dropped");
    assert_eq!(job(&app, &owner, id(&claimed)).await["gpu_seconds"], 250);
}

#[tokio::test]
async fn the_cron_endpoint_reaps_for_its_secret_only_and_exists_only_with_one() {
    let without = spawn_app().await;
    expect_error(
        without.post("cron/run", "anything", &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let app = tollgate_tests::spawn_app_with(|config| {
        config.cron_secret = Some("cron-secret".into());
    })
    .await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let lost = runner.claim(&app, 24576).await.unwrap();
    app.advance_clock(61);
    expect_error(
        app.post("cron/run", "wrong-secret", &json!({})).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(job(&app, &owner, id(&lost)).await["status"], "running");
    let report = expect_status(
        app.post("cron/run", "cron-secret", &json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["jobs_reaped"]["requeued"], 1, "{report}");
    assert_eq!(job(&app, &owner, id(&lost)).await["status"], "queued");
}

/// `POST runner/jobs/{id}/progress`.
async fn report_progress(
    app: &tollgate_tests::TestApp,
    runner: &Runner,
    claimed: &Value,
    percent: i64,
    node: &str,
) {
    let response = runner
        .post(
            app,
            &format!("runner/jobs/{}/progress", id(claimed)),
            json!({ "lease_id": claimed["lease_id"], "progress": percent, "current_node": node }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn a_requeued_job_keeps_no_progress_and_a_reclaimed_one_no_earlier_error() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;

    let first = runner.claim(&app, 24576).await.unwrap();
    report_progress(&app, &runner, &first, 60, "3").await;
    let back = expect_status(
        runner.fail(&app, &first, "CUDA out of memory").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["status"], "queued");
    assert_eq!(
        (&back["progress"], &back["current_node"]),
        (&json!(0), &Value::Null),
        "{back}"
    );
    assert_eq!(back["error"], "CUDA out of memory", "why it waits");

    app.advance_clock(30);
    let second = runner.claim(&app, 24576).await.unwrap();
    let running = job(&app, &owner, id(&second)).await;
    assert_eq!(running["status"], "running");
    assert_eq!(running["error"], Value::Null, "{running}");

    // The reaper's re-queue clears it the same way.
    report_progress(&app, &runner, &second, 40, "3").await;
    app.advance_clock(61);
    assert_eq!(app.run_cron().await.jobs_reaped.requeued, 1);
    let reaped = job(&app, &owner, id(&second)).await;
    assert_eq!(reaped["status"], "queued");
    assert_eq!(
        (&reaped["progress"], &reaped["current_node"]),
        (&json!(0), &Value::Null),
        "{reaped}"
    );
    assert_eq!(reaped["error"], "lease expired");
}

/// GPU-seconds the tenant's counter holds today.
async fn gpu_seconds_counted(
    app: &tollgate_tests::TestApp,
    owner: &tollgate_tests::TestUser,
) -> i64 {
    app.query(
        "SELECT COALESCE(SUM(value), 0) FROM usage_counters
         WHERE tenant_id = ? AND user_id = '' AND metric = 'gpu_seconds' AND period = 'day'",
        vec![owner.tenant_id.clone().into()],
    )
    .await[0][0]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_job_that_ran_is_charged_and_counted_its_gpu_time_whatever_its_end_and_one_that_never_ran_nothing()
 {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    // (status, GPU-seconds, credits charged): 14 s cost 1 + ceil(14 / 10) = 3, within the
    // hold's 10 % bound; a job that used no GPU time and did not succeed never ran.
    for (status, gpu_seconds, charged) in [
        ("failed", 14, 3),
        ("cancelled", 14, 3),
        ("failed", 0, 0),
        ("cancelled", 0, 0),
        ("succeeded", 0, 1),
    ] {
        let (_, used, reserved) = pool(&app, &owner).await;
        let counted = gpu_seconds_counted(&app, &owner).await;
        queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
        let claimed = runner.claim(&app, 24576).await.unwrap();
        let done = expect_status(
            runner.finish(&app, &claimed, status, gpu_seconds).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(done["status"], status);
        let after = pool(&app, &owner).await;
        assert_eq!(
            (after.1 - used, after.2),
            (charged, reserved),
            "{status} {gpu_seconds}"
        );
        assert_eq!(
            gpu_seconds_counted(&app, &owner).await - counted,
            gpu_seconds,
            "{status} {gpu_seconds}: counted as charged"
        );
        let kind = if charged > 0 { "settle" } else { "release" };
        let moved = app
            .query(
                "SELECT l.kind FROM credit_ledger l JOIN jobs j ON j.reservation_id = l.reservation_id
                 WHERE j.id = ? AND l.kind IN ('settle', 'release')",
                vec![id(&claimed).into()],
            )
            .await;
        assert!(
            !moved.is_empty() && moved.iter().all(|row| row[0] == kind),
            "{status} {gpu_seconds}: {moved:?}"
        );
    }
}

/// `POST runner/claim` waiting up to `wait_seconds`: the answer and how long it took.
async fn waiting_claim(
    app: &tollgate_tests::TestApp,
    runner: &Runner,
    wait_seconds: i64,
) -> (reqwest::Response, std::time::Duration) {
    let started = std::time::Instant::now();
    let response = runner
        .post(
            app,
            "runner/claim",
            json!({ "free_vram_mb": 24576, "wait_seconds": wait_seconds }),
        )
        .await;
    (response, started.elapsed())
}

#[tokio::test]
async fn a_waiting_claim_answers_as_soon_as_a_job_is_queued_on_its_worker() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let enqueue = async {
        // Time for the claim to settle into its wait, past its first few looks at the queue.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let job = queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
        (job, std::time::Instant::now())
    };
    let ((response, _), (queued_job, enqueued_at)) =
        tokio::join!(waiting_claim(&app, &runner, 20), enqueue);
    let answered_after = enqueued_at.elapsed();
    let claimed = expect_status(response, StatusCode::OK).await;
    assert_eq!(claimed["job_id"], queued_job["id"]);
    // Woken by the enqueue, not by its next look at the queue (1.75 s after the wait began,
    // then 3.75 s).
    assert!(
        answered_after < std::time::Duration::from_secs(1),
        "answered {answered_after:?} after the enqueue"
    );
}

#[tokio::test]
async fn a_waiting_claim_takes_a_job_that_comes_due_and_answers_204_when_none_does() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;

    let (nothing, waited) = waiting_claim(&app, &runner, 1).await;
    assert_eq!(nothing.status(), StatusCode::NO_CONTENT);
    assert!(waited >= std::time::Duration::from_secs(1), "{waited:?}");

    // A retry's backoff ends while a claim waits: no enqueue announces it, the claim finds it.
    queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    let first = runner.claim(&app, 24576).await.unwrap();
    expect_status(
        runner.fail(&app, &first, "CUDA out of memory").await,
        StatusCode::OK,
    )
    .await;
    let backoff_over = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        app.advance_clock(30);
    };
    let ((response, waited), ()) = tokio::join!(waiting_claim(&app, &runner, 20), backoff_over);
    let retry = expect_status(response, StatusCode::OK).await;
    assert_eq!(retry["job_id"], first["job_id"]);
    assert_eq!(retry["attempt"], 2);
    assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");
}

#[tokio::test]
async fn a_claim_waits_at_most_twenty_seconds() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    for wait_seconds in [21, -1] {
        let (response, _) = waiting_claim(&app, &runner, wait_seconds).await;
        let body = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "wait_seconds", "{body}");
    }
}
