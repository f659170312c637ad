//! The job queue. Each step is one statement or one atomic batch:
//!
//! - **enqueue**: the credit hold, the `jobs` quota counters and the job row in one batch
//!   (a refused hold or counter rolls all of it back); a replayed `Idempotency-Key` moves
//!   nothing and answers the first job.
//! - **claim**: one `UPDATE jobs ... WHERE id = (SELECT ... ORDER BY effective priority)
//!   RETURNING ...` — see [`claim_statement`]. A runner may ask to wait for a job
//!   ([`claim_waiting`]): the request then sleeps until the runtime's notifier says a job
//!   was queued on its worker, looking again at a backing-off interval for jobs that come
//!   due by time.
//! - **renew / progress**: one `UPDATE` guarded by the runner's lease; both answer whether
//!   a cancel was requested.
//! - **finish / fail / cancel / reap**: the status change stamps the job with a fresh
//!   `finish_id`, and everything else of the batch (settle or release, counters, outbox
//!   event, audit entry) is guarded on that stamp, so a retry or a second cron applies
//!   nothing twice.
//!
//! **What a job is charged.** A finished job is charged for the GPU time it used, whatever
//! its end — succeeded, cancelled, failed at run time or stopped at its time limit — and
//! exactly that time counts against the GPU-seconds quota; the settle never takes more than
//! the hold allows. A job that used no GPU time and did not succeed never ran (ComfyUI
//! refused it, or it was stopped before it started): its hold is released and nothing is
//! counted. What the infrastructure failed — ComfyUI unavailable, an output not stored, a
//! runner lost or shut down ([`fail`], the reaper) — is never charged nor counted: the
//! attempt goes back to the queue, and a job out of attempts is released.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{runners::Runner, workflow};
use crate::{
    ApiError, Env,
    audit::{self, Action, Actor, Target},
    clock::rfc3339,
    credits::reservations,
    db::{DbError, Row, Statement},
    error::ApiResult,
    ids::{TenantId, UserId, new_id},
    quota::{counters, metrics::Metric},
    sql,
    tenancy::plans::effective_plan_column,
    webhooks::events,
};

/// A lease lasts this long unless renewed.
pub const LEASE_SECONDS: i64 = 60;
/// Attempts a job gets (first run and retries) before it fails for good.
pub const MAX_ATTEMPTS: i64 = 3;
/// The wait before retry `n` (counting from 1) is `BACKOFF_SECONDS × 2^(n-1)`, at most an hour.
pub const BACKOFF_SECONDS: i64 = 30;
/// Ageing: a queued job gains one point of priority per this many seconds of waiting.
pub const AGEING_SECONDS: i64 = 60;
/// The priority of the plan in force for the tenant aliased `t`.
const PLAN_PRIORITY_OF_T: &str = effective_plan_column!("priority");
/// The user's priority hint is clamped to ± this.
pub const MAX_USER_PRIORITY: i64 = 10;

/// A runner's failure report is kept up to this many characters.
pub const MAX_ERROR_CHARS: usize = 2000;

/// The longest a claim may wait for a job.
pub const MAX_CLAIM_WAIT_SECONDS: i64 = 20;
/// While a claim waits, the queue is looked at again after this long without a
/// notification (jobs that come due by time — a retry's backoff over, a concurrency slot
/// free — are not notified), the interval doubling up to [`CLAIM_RECHECK_MAX`].
const CLAIM_RECHECK_MIN: Duration = Duration::from_millis(250);
const CLAIM_RECHECK_MAX: Duration = Duration::from_secs(2);

/// The backoff (SQL over the job's `attempts`) added to now when a job goes back to the queue.
const BACKOFF_SQL: &str = "MIN(3600, 30 * (1 << MAX(attempts - 1, 0)))";

pub const JOB_COLUMNS: &str = "id, tenant_id, user_id, worker_id, bot_id, status, priority, workflow, request_hash,
     estimated_cost, estimated_vram_mb, reservation_id, idempotency_key, time_limit_seconds, attempts,
     max_attempts, available_at, runner_token_id, lease_id, lease_expires_at, cancel_requested_at, progress,
     current_node, outputs, error, gpu_seconds, peak_vram_mb, created_at, started_at, finished_at, updated_at";

/// The API's view of a job.
pub fn job_json(row: &Row<'_>) -> ApiResult<Json> {
    let parse =
        |text: Option<String>| text.and_then(|text| serde_json::from_str::<Json>(&text).ok());
    Ok(json!({
        "id": row.get::<String>("id")?,
        "status": row.get::<String>("status")?,
        "worker_id": row.get::<String>("worker_id")?,
        "bot_id": row.get::<Option<String>>("bot_id")?,
        "user_id": row.get::<String>("user_id")?,
        "priority": row.get::<i64>("priority")?,
        "progress": row.get::<i64>("progress")?,
        "current_node": row.get::<Option<String>>("current_node")?,
        "estimated_cost": row.get::<i64>("estimated_cost")?,
        "estimated_vram_mb": row.get::<i64>("estimated_vram_mb")?,
        "reservation_id": row.get::<String>("reservation_id")?,
        "time_limit_seconds": row.get::<i64>("time_limit_seconds")?,
        "attempts": row.get::<i64>("attempts")?,
        "max_attempts": row.get::<i64>("max_attempts")?,
        "cancel_requested": row.get::<Option<i64>>("cancel_requested_at")?.is_some(),
        "outputs": parse(row.get("outputs")?).unwrap_or(json!([])),
        "error": row.get::<Option<String>>("error")?,
        "gpu_seconds": row.get::<Option<i64>>("gpu_seconds")?,
        "peak_vram_mb": row.get::<Option<i64>>("peak_vram_mb")?,
        "created_at": rfc3339(row.get("created_at")?),
        "available_at": rfc3339(row.get("available_at")?),
        "started_at": row.get::<Option<i64>>("started_at")?.map(rfc3339),
        "finished_at": row.get::<Option<i64>>("finished_at")?.map(rfc3339),
        "lease_expires_at": row.get::<Option<i64>>("lease_expires_at")?.map(rfc3339),
    }))
}

fn read_job(id: &str) -> Statement {
    sql!(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"), id)
}

fn finished_by(job_id: &str, finish_id: &str) -> Statement {
    sql!(
        "SELECT 1 FROM jobs WHERE id = ? AND finish_id = ?",
        job_id,
        finish_id
    )
}

/// The outbox event of a job finished by `finish_id` (any number of jobs, for the reaper).
fn event(event_type: &str, finish_id: &str) -> Statement {
    events::emit_from(
        event_type,
        sql!(
            "SELECT tenant_id, updated_at AS created_at,
                    json_object('job_id', id, 'status', status, 'worker_id', worker_id, 'bot_id', bot_id,
                                'attempts', attempts, 'error', error, 'gpu_seconds', gpu_seconds,
                                'outputs', json(COALESCE(outputs, '[]'))) AS payload
             FROM jobs WHERE finish_id = ?",
            finish_id
        ),
    )
}

/// A job to enqueue, checked and priced.
pub struct NewJob {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub worker_id: String,
    pub bot_id: Option<String>,
    pub workflow: Json,
    pub inspection: workflow::Inspection,
    pub priority: i64,
    /// The time limit the caller asked for; the job runs under `price`'s.
    pub time_limit_seconds: i64,
    pub price: workflow::Price,
    pub idempotency_key: String,
}

/// Holds the estimate, counts the job and queues it, in one batch. `(fresh, job)`; a replay
/// of the same request answers the first job, another request under the key is 409.
pub async fn enqueue(env: &Env, job: &NewJob) -> ApiResult<(bool, Json)> {
    let now = env.now();
    let (job_id, reservation_id) = (new_id(), new_id());
    let tenant = job.tenant_id.as_str();
    let key = format!("job:{}", job.idempotency_key);
    let request_hash = crate::tokens::sha256_hex(
        &json!([
            job.workflow,
            job.bot_id,
            job.worker_id,
            job.priority,
            job.time_limit_seconds
        ])
        .to_string(),
    );
    let hold = reservations::Hold {
        amount: job.price.hold,
        reason: Some("job".into()),
        model: job.inspection.work.models.first().cloned(),
        job_id: Some(job_id.clone()),
    };
    let fresh_reservation = sql!(
        "SELECT 1 FROM credit_reservations WHERE id = ?",
        &reservation_id
    );
    let mut statements = reservations::reserve_statements(
        tenant,
        job.user_id.as_str(),
        &hold,
        reservations::Owner::Job,
        &key,
        &reservation_id,
        now,
    );
    statements.extend(counters::increment(
        &job.tenant_id,
        &job.user_id,
        Metric::Jobs,
        1,
        now,
        Some(&fresh_reservation),
    ));
    statements.push(sql!(
        format!(
            "INSERT INTO jobs (id, tenant_id, user_id, worker_id, bot_id, status, priority, workflow, request_hash,
                               estimated_cost, estimated_vram_mb, reservation_id, idempotency_key,
                               time_limit_seconds, max_attempts, available_at, created_at, updated_at, claim_rank)
             SELECT ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                    (COALESCE({PLAN_PRIORITY_OF_T}, 0) + ?) * {AGEING_SECONDS} - ?
             FROM tenants t WHERE t.id = ?
               AND EXISTS (SELECT 1 FROM credit_reservations WHERE id = ?)
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING"
        ),
        &job_id,
        tenant,
        &job.user_id,
        &job.worker_id,
        job.bot_id.clone(),
        job.priority,
        job.workflow.to_string(),
        &request_hash,
        job.price.hold,
        i64::try_from(job.inspection.work.estimated_vram_mb).unwrap_or(i64::MAX),
        &reservation_id,
        &job.idempotency_key,
        job.price.time_limit_seconds,
        MAX_ATTEMPTS,
        now,
        now,
        now,
        job.priority,
        now,
        tenant,
        &reservation_id
    ));
    statements.push(sql!(
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ? AND idempotency_key = ?"),
        tenant,
        &job.idempotency_key
    ));
    let results = match env.db.batch(statements).await {
        Ok(results) => results,
        Err(DbError::Constraint(message)) if message.contains("credits_cover_spend") => {
            return Err(
                reservations::insufficient(env, tenant, job.user_id.as_str(), hold.amount).await?,
            );
        }
        Err(error) if counters::is_quota_exceeded(&error) => {
            return Err(counters::exceeded(
                env,
                &job.tenant_id,
                &job.user_id,
                Metric::Jobs,
                1,
                now,
            )
            .await);
        }
        Err(error) => return Err(error.into()),
    };
    let Some(row) = results.last().and_then(|rows| rows.first()) else {
        // No reservation was written: an account is blocked.
        return Err(
            reservations::insufficient(env, tenant, job.user_id.as_str(), hold.amount).await?,
        );
    };
    let stored = job_json(&row)?;
    let fresh = stored["id"] == job_id.as_str();
    if fresh {
        env.notifier.notify(&job.worker_id);
    }
    if !fresh && row.get::<String>("request_hash")? != request_hash {
        return Err(ApiError::conflict(
            "idempotency_conflict",
            "this Idempotency-Key was used for a different job",
        )
        .with_details(json!({ "job_id": stored["id"] })));
    }
    Ok((fresh, stored))
}

/// The claim, in one statement: among the worker's queued jobs that are due, fit the
/// runner's free VRAM, whose tenant is below its plan's `max_concurrent_jobs` and whose
/// worker is below its `max_concurrency`, the one of highest effective priority — the plan
/// priority its tenant had when it was queued + the job's priority + one point per
/// [`AGEING_SECONDS`] waited — oldest first (then in order of arrival) on a tie; it becomes
/// `running` under a new lease, with the progress and the error of an earlier attempt
/// cleared. SQLite runs the whole UPDATE under the write lock, so two claimers can never take
/// the same row.
///
/// Waiting adds the same to every job at one instant, so the order is that of the stored
/// `claim_rank` (priorities in seconds, less the arrival time): the candidates are read from
/// the `jobs_claim` index best first, and the first that fits ends the search. A claim costs
/// the same with a hundred jobs queued or a hundred thousand. The running jobs of each
/// candidate's tenant and of the worker are read from counters the database keeps as jobs
/// start and stop (migration `0017_lighter_claims.sql`), so it also costs the same with ten
/// jobs running or twenty thousand. The index is named (`INDEXED BY`) so that no index
/// added later can make SQLite, which has no statistics here, filter the worker's due jobs
/// through it and sort them all.
pub fn claim_statement(
    worker_id: &str,
    token_id: &str,
    free_vram_mb: i64,
    lease_id: &str,
    now: i64,
) -> Statement {
    sql!(
        "UPDATE jobs SET status = 'running', runner_token_id = ?, lease_id = ?, lease_expires_at = ?,
                attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?,
                progress = 0, current_node = NULL, error = NULL
         WHERE status = 'queued' AND id = (
             SELECT j.id FROM jobs j INDEXED BY jobs_claim
             JOIN tenants t ON t.id = j.tenant_id
             JOIN plans p ON p.id = COALESCE(
                 (SELECT id FROM plans WHERE code = t.plan_code AND tenant_id = t.id),
                 (SELECT id FROM plans WHERE code = t.plan_code AND tenant_id IS NULL))
             WHERE j.worker_id = ? AND j.status = 'queued' AND j.available_at <= ?
               AND j.estimated_vram_mb <= ?
               AND COALESCE((SELECT running FROM tenant_running_jobs WHERE tenant_id = j.tenant_id), 0)
                   < COALESCE(p.max_concurrent_jobs, 1000000000)
               AND COALESCE((SELECT running FROM worker_running_jobs WHERE worker_id = ?), 0)
                   < COALESCE((SELECT max_concurrency FROM workers WHERE id = ?), 1000000000)
             ORDER BY j.claim_rank DESC, j.created_at, j.rowid
             LIMIT 1)
         RETURNING id, tenant_id, workflow, time_limit_seconds, attempts, lease_id, lease_expires_at",
        token_id,
        lease_id,
        now + LEASE_SECONDS,
        now,
        now,
        worker_id,
        now,
        free_vram_mb,
        worker_id,
        worker_id
    )
}

/// Claims the best job for the runner, if any.
pub async fn claim(env: &Env, runner: &Runner, free_vram_mb: i64) -> ApiResult<Option<Json>> {
    let rows = env
        .db
        .execute(claim_statement(
            &runner.worker_id,
            &runner.token_id,
            free_vram_mb,
            &new_id(),
            env.now(),
        ))
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(json!({
        "job_id": row.get::<String>("id")?,
        "lease_id": row.get::<String>("lease_id")?,
        "lease_expires_at": rfc3339(row.get("lease_expires_at")?),
        "attempt": row.get::<i64>("attempts")?,
        "time_limit_seconds": row.get::<i64>("time_limit_seconds")?,
        "workflow": serde_json::from_str::<Json>(&row.get::<String>("workflow")?).unwrap_or(Json::Null),
    })))
}

/// [`claim`], waiting up to `wait` for a job to be queued on the runner's worker where the
/// runtime can hold a request (a notifier that listens); elsewhere it answers at once.
pub async fn claim_waiting(
    env: &Env,
    runner: &Runner,
    free_vram_mb: i64,
    wait: Duration,
) -> ApiResult<Option<Json>> {
    // Listening before the first look: a job queued between a look and the wait still
    // ends the wait.
    let mut listener = if wait.is_zero() {
        None
    } else {
        env.notifier.listen(&runner.worker_id)
    };
    let mut remaining = wait;
    let mut recheck = CLAIM_RECHECK_MIN;
    loop {
        if let Some(job) = claim(env, runner, free_vram_mb).await? {
            return Ok(Some(job));
        }
        let Some(listener) = listener.as_mut() else {
            return Ok(None);
        };
        if remaining.is_zero() {
            return Ok(None);
        }
        let step = recheck.min(remaining);
        let Some(waited) = listener.wait(step).await else {
            return Ok(None);
        };
        remaining = remaining.saturating_sub(waited);
        recheck = if waited < step {
            CLAIM_RECHECK_MIN
        } else {
            (recheck * 2).min(CLAIM_RECHECK_MAX)
        };
    }
}

fn lease_lost() -> ApiError {
    ApiError::conflict(
        "lease_lost",
        "the job is not running under this runner's lease",
    )
}

/// Extends the lease (and records progress when given); answers whether a cancel was
/// requested. 409 when the runner no longer holds the lease.
pub async fn renew(
    env: &Env,
    runner: &Runner,
    job_id: &str,
    lease_id: &str,
    progress: Option<(i64, Option<String>)>,
) -> ApiResult<Json> {
    let now = env.now();
    let (percent, node) = match &progress {
        Some((percent, node)) => (Some(*percent), node.clone()),
        None => (None, None),
    };
    let rows = env
        .db
        .execute(sql!(
            "UPDATE jobs SET lease_expires_at = ?, updated_at = ?, progress = COALESCE(?, progress),
                    current_node = CASE WHEN ? THEN ? ELSE current_node END
             WHERE id = ? AND status = 'running' AND runner_token_id = ? AND lease_id = ?
             RETURNING lease_expires_at, cancel_requested_at",
            now + LEASE_SECONDS,
            now,
            percent,
            progress.is_some(),
            node,
            job_id,
            &runner.token_id,
            lease_id
        ))
        .await?;
    let row = rows.first().ok_or_else(lease_lost)?;
    Ok(json!({
        "lease_expires_at": rfc3339(row.get("lease_expires_at")?),
        "cancel_requested": row.get::<Option<i64>>("cancel_requested_at")?.is_some(),
    }))
}

/// How a runner says a job ended.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Finish {
    pub lease_id: String,
    pub status: String,
    #[serde(default)]
    pub outputs: Vec<Json>,
    #[serde(default)]
    pub gpu_seconds: i64,
    pub peak_vram_mb: Option<i64>,
    pub error: Option<String>,
}

struct JobRef {
    tenant_id: String,
    user_id: String,
    reservation_id: String,
}

async fn job_ref(env: &Env, job_id: &str, tenant: Option<&str>) -> ApiResult<JobRef> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT tenant_id, user_id, reservation_id FROM jobs WHERE id = ? AND (? IS NULL OR tenant_id = ?)",
            job_id,
            tenant,
            tenant
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("job"))?;
    Ok(JobRef {
        tenant_id: row.get("tenant_id")?,
        user_id: row.get("user_id")?,
        reservation_id: row.get("reservation_id")?,
    })
}

/// Ends a running job as the runner reports, in one batch: the job row, the settle of the
/// GPU time used or the release of a job that never ran (see the module's rule), the
/// GPU-seconds counters and the outbox event. A retry of the same finish answers the job
/// and changes nothing; a finish without the lease is 409.
pub async fn finish(env: &Env, runner: &Runner, job_id: &str, body: &Finish) -> ApiResult<Json> {
    if !["succeeded", "failed", "cancelled"].contains(&body.status.as_str()) {
        return Err(ApiError::invalid_field(
            "status",
            "must be succeeded, failed or cancelled",
        ));
    }
    if !(0..=31_536_000).contains(&body.gpu_seconds) {
        return Err(ApiError::invalid_field(
            "gpu_seconds",
            "must be from 0 to 31536000",
        ));
    }
    let job = job_ref(env, job_id, None).await?;
    let now = env.now();
    let finish_id = new_id();
    let guard = finished_by(job_id, &finish_id);
    let base = vec![sql!(
        "UPDATE jobs SET status = ?, outputs = ?, gpu_seconds = ?, peak_vram_mb = ?, error = ?,
                progress = CASE WHEN ? = 'succeeded' THEN 100 ELSE progress END,
                finish_id = ?, finished_at = ?, updated_at = ?, lease_expires_at = NULL
         WHERE id = ? AND status = 'running' AND runner_token_id = ? AND lease_id = ?",
        &body.status,
        Json::from(body.outputs.clone()).to_string(),
        body.gpu_seconds,
        body.peak_vram_mb,
        body.error.clone(),
        &body.status,
        &finish_id,
        now,
        now,
        job_id,
        &runner.token_id,
        &body.lease_id
    )];
    let ran = body.status == "succeeded" || body.gpu_seconds > 0;
    let actual = ran.then(|| workflow::actual_cost(body.gpu_seconds));
    let mut statements = base.clone();
    statements.extend(reservations::finish_statements(
        &job.tenant_id,
        &job.user_id,
        &job.reservation_id,
        actual,
        now,
        &guard,
    ));
    statements.push(event(&format!("job.{}", body.status), &finish_id));
    let tail = read_job(job_id);
    let mut counted = statements.clone();
    if body.gpu_seconds > 0 {
        counted.extend(counters::increment_to_limit(
            &TenantId::trusted(job.tenant_id.clone()),
            &UserId::trusted(job.user_id.clone()),
            Metric::GpuSeconds,
            body.gpu_seconds,
            now,
            Some(&guard),
        ));
    }
    counted.push(tail.clone());
    let results = match env.db.batch(counted).await {
        Ok(results) => results,
        // Work already done is settled whatever the counters say: they fill up to their
        // limit (the next job is refused) and the job row keeps the real figure. Only a
        // limit lowered below what was already used still refuses, and then the job is
        // settled without counting.
        Err(error) if counters::is_quota_exceeded(&error) => {
            statements.push(tail);
            env.db.batch(statements).await?
        }
        Err(error) => return Err(error.into()),
    };
    let row = results
        .last()
        .and_then(|rows| rows.first())
        .ok_or_else(|| ApiError::not_found("job"))?;
    if results[0].rows_affected > 0 {
        // A slot of the worker (and of the tenant) is free again.
        env.notifier.notify(&runner.worker_id);
    } else {
        let replay = row.get::<String>("status")? == body.status
            && row.get::<Option<String>>("lease_id")?.as_deref() == Some(body.lease_id.as_str())
            && row.get::<Option<String>>("runner_token_id")?.as_deref()
                == Some(runner.token_id.as_str());
        if !replay {
            return Err(lease_lost());
        }
    }
    job_json(&row)
}

/// A runner's report that the attempt failed: back to the queue after a backoff (its
/// progress cleared, its error kept until the next claim) while attempts remain and no
/// cancel was asked, else failed with its hold released.
pub async fn fail(
    env: &Env,
    runner: &Runner,
    job_id: &str,
    lease_id: &str,
    error: &str,
) -> ApiResult<Json> {
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    let error = error.as_str();
    let job = job_ref(env, job_id, None).await?;
    let now = env.now();
    let finish_id = new_id();
    let mut statements = vec![
        sql!(
            format!(
                "UPDATE jobs SET status = 'queued', error = ?, available_at = ? + {BACKOFF_SQL},
                        runner_token_id = NULL, lease_expires_at = NULL, updated_at = ?,
                        progress = 0, current_node = NULL
                 WHERE id = ? AND status = 'running' AND runner_token_id = ? AND lease_id = ?
                   AND attempts < max_attempts AND cancel_requested_at IS NULL"
            ),
            error,
            now,
            now,
            job_id,
            &runner.token_id,
            lease_id
        ),
        sql!(
            "UPDATE jobs SET status = 'failed', error = ?, finish_id = ?, finished_at = ?, updated_at = ?,
                    lease_expires_at = NULL
             WHERE id = ? AND status = 'running' AND runner_token_id = ? AND lease_id = ?",
            error,
            &finish_id,
            now,
            now,
            job_id,
            &runner.token_id,
            lease_id
        ),
    ];
    statements.extend(reservations::finish_statements(
        &job.tenant_id,
        &job.user_id,
        &job.reservation_id,
        None,
        now,
        &finished_by(job_id, &finish_id),
    ));
    statements.push(event("job.failed", &finish_id));
    statements.push(read_job(job_id));
    let results = env.db.batch(statements).await?;
    if results[0].rows_affected + results[1].rows_affected == 0 {
        return Err(lease_lost());
    }
    env.notifier.notify(&runner.worker_id);
    let row = results
        .last()
        .and_then(|rows| rows.first())
        .ok_or_else(|| ApiError::not_found("job"))?;
    job_json(&row)
}

/// `cancel` by a tenant's user: a queued job is cancelled and its hold released at once; a
/// running one is marked, and its runner stops it (it learns on its next renew). 409 for a
/// finished job.
pub async fn cancel(env: &Env, tenant: &str, actor: &Actor, job_id: &str) -> ApiResult<Json> {
    let job = job_ref(env, job_id, Some(tenant)).await?;
    let now = env.now();
    let finish_id = new_id();
    let guard = finished_by(job_id, &finish_id);
    let mut statements = vec![sql!(
        "UPDATE jobs SET status = 'cancelled', finish_id = ?, finished_at = ?, updated_at = ?
         WHERE id = ? AND tenant_id = ? AND status = 'queued'",
        &finish_id,
        now,
        now,
        job_id,
        tenant
    )];
    statements.push(
        audit::entry(
            tenant,
            actor,
            Action::JobCancelled,
            Target::new("job", job_id),
            json!({ "while": "queued" }),
            now,
        )
        .only_if_exists(&guard),
    );
    statements.extend(reservations::finish_statements(
        tenant,
        &job.user_id,
        &job.reservation_id,
        None,
        now,
        &guard,
    ));
    statements.push(event("job.cancelled", &finish_id));
    statements.push(sql!(
        "UPDATE jobs SET cancel_requested_at = ?, updated_at = ?
         WHERE id = ? AND tenant_id = ? AND status = 'running' AND cancel_requested_at IS NULL",
        now,
        now,
        job_id,
        tenant
    ));
    statements.push(
        audit::entry(
            tenant,
            actor,
            Action::JobCancelled,
            Target::new("job", job_id),
            json!({ "while": "running" }),
            now,
        )
        .only_if_exists(&audit::if_changed()),
    );
    statements.push(read_job(job_id));
    let results = env.db.batch(statements).await?;
    let row = results
        .last()
        .and_then(|rows| rows.first())
        .ok_or_else(|| ApiError::not_found("job"))?;
    let after = job_json(&row)?;
    audit::try_seal(env, tenant).await;
    let status = after["status"].as_str().unwrap_or_default();
    if results[0].rows_affected == 0 && status != "running" {
        return Err(
            ApiError::conflict("job_finished", format!("the job is already {status}"))
                .with_details(json!({ "job": after })),
        );
    }
    Ok(after)
}

/// What one reaper run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReapReport {
    /// Jobs whose lease expired, queued again after a backoff.
    pub requeued: u64,
    /// Jobs whose lease expired on their last attempt, now failed.
    pub failed: u64,
    /// Holds released for failed or cancelled jobs.
    pub released: u64,
}

/// Puts jobs with an expired lease back in the queue (with backoff) or, on their last
/// attempt, fails them; then releases the holds of failed or cancelled jobs still held.
/// Each statement moves a row only from the state it expects, so two reapers at once do
/// each thing once.
pub async fn reap(env: &Env) -> Result<ReapReport, DbError> {
    let now = env.now();
    let finish_id = new_id();
    let results = env
        .db
        .batch(vec![
            sql!(
                format!(
                    "UPDATE jobs SET status = 'queued', error = 'lease expired', available_at = ? + {BACKOFF_SQL},
                            runner_token_id = NULL, lease_expires_at = NULL, updated_at = ?,
                            progress = 0, current_node = NULL
                     WHERE status = 'running' AND lease_expires_at < ? AND attempts < max_attempts
                       AND cancel_requested_at IS NULL"
                ),
                now,
                now,
                now
            ),
            sql!(
                "UPDATE jobs SET status = CASE WHEN cancel_requested_at IS NULL THEN 'failed' ELSE 'cancelled' END,
                        error = 'lease expired', finish_id = ?, finished_at = ?, updated_at = ?,
                        lease_expires_at = NULL
                 WHERE status = 'running' AND lease_expires_at < ?",
                &finish_id,
                now,
                now,
                now
            ),
            events::emit_from(
                "job.failed",
                sql!(
                    "SELECT tenant_id, updated_at AS created_at,
                            json_object('job_id', id, 'status', status, 'attempts', attempts, 'error', error) AS payload
                     FROM jobs WHERE finish_id = ? AND status = 'failed'",
                    &finish_id
                ),
            ),
            events::emit_from(
                "job.cancelled",
                sql!(
                    "SELECT tenant_id, updated_at AS created_at,
                            json_object('job_id', id, 'status', status, 'attempts', attempts, 'error', error) AS payload
                     FROM jobs WHERE finish_id = ? AND status = 'cancelled'",
                    &finish_id
                ),
            ),
        ])
        .await?;
    let mut report = ReapReport {
        requeued: results[0].rows_affected,
        failed: results[1].rows_affected,
        released: 0,
    };
    let held = env
        .db
        .execute(sql!(
            "SELECT j.id, j.tenant_id, j.user_id, j.reservation_id FROM jobs j
             JOIN credit_reservations r ON r.id = j.reservation_id
             WHERE j.status IN ('failed', 'cancelled') AND r.status = 'held' LIMIT 500"
        ))
        .await?;
    for row in held.iter() {
        let job_id: String = row.get("id")?;
        let guard = sql!(
            "SELECT 1 FROM jobs WHERE id = ? AND status IN ('failed', 'cancelled')",
            &job_id
        );
        let statements = reservations::finish_statements(
            &row.get::<String>("tenant_id")?,
            &row.get::<String>("user_id")?,
            &row.get::<String>("reservation_id")?,
            None,
            now,
            &guard,
        );
        let done = env.db.batch(statements).await?;
        report.released += done[0].rows_affected;
    }
    Ok(report)
}
