//! The jobs routes: the tenant's (`jobs`, signed in) and the runner's (`runner/...`, by
//! runner token).

use serde::Deserialize;
use serde_json::Value as Json;

use super::{
    bots, outputs,
    queue::{self, Finish, JOB_COLUMNS, NewJob, job_json},
    runners, workers, workflow,
};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok},
    audit::Actor,
    auth::{principal::Principal, rbac::Permission},
    error::ApiResult,
    ids::new_id,
    quota::plan_limits,
    sql,
};

/// The time limit when a job names none, and the most it may name.
pub const DEFAULT_TIME_LIMIT_SECONDS: i64 = 600;
pub const MAX_TIME_LIMIT_SECONDS: i64 = 3600;

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateJob {
    workflow: Option<Json>,
    bot_id: Option<String>,
    worker_id: Option<String>,
    #[serde(default)]
    priority: i64,
    time_limit_seconds: Option<i64>,
}

/// `POST /api/v1/jobs` with an optional `Idempotency-Key`.
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::JobsSubmit)?;
    let body: CreateJob = request.json()?;
    if !(-queue::MAX_USER_PRIORITY..=queue::MAX_USER_PRIORITY).contains(&body.priority) {
        return Err(ApiError::invalid_field(
            "priority",
            format!("must be from -{0} to {0}", queue::MAX_USER_PRIORITY),
        ));
    }
    let time_limit = body
        .time_limit_seconds
        .unwrap_or(DEFAULT_TIME_LIMIT_SECONDS);
    if !(1..=MAX_TIME_LIMIT_SECONDS).contains(&time_limit) {
        return Err(ApiError::invalid_field(
            "time_limit_seconds",
            format!("must be from 1 to {MAX_TIME_LIMIT_SECONDS}"),
        ));
    }
    let key = request
        .idempotency_key(principal.user_id.as_str())?
        .unwrap_or_else(new_id);
    let tenant = principal.tenant_id.as_str();
    let bot = match &body.bot_id {
        Some(id) => Some(bots::load(env, tenant, id).await?),
        None => None,
    };
    let workflow = match (body.workflow, &bot) {
        (Some(workflow), _) => workflow,
        (None, Some(bot)) => bot.workflow.clone(),
        (None, None) => {
            return Err(ApiError::invalid_field(
                "workflow",
                "is required unless a bot_id names a saved workflow",
            ));
        }
    };
    let inspection = workflow::inspect(&workflow)?;
    plan_limits::load(env, &principal.tenant_id)
        .await?
        .check(&inspection.work)?;
    let worker_id = match (&body.worker_id, &bot) {
        (Some(worker), _) => workers::usable(env, tenant, worker).await?,
        (None, Some(bot)) => bot.worker_id.clone(),
        (None, None) => workers::default_of(env, tenant).await?,
    };
    let job = NewJob {
        tenant_id: principal.tenant_id.clone(),
        user_id: principal.user_id.clone(),
        worker_id,
        bot_id: bot.map(|bot| bot.id),
        workflow,
        inspection: inspection.clone(),
        priority: body.priority,
        time_limit_seconds: time_limit,
        price: workflow::price(&inspection, time_limit),
        idempotency_key: key,
    };
    let (fresh, job) = queue::enqueue(env, &job).await?;
    Ok(if fresh { created(&job) } else { ok(&job) })
}

/// Whose jobs a caller may see and act on, the same for every verb: its own, or with
/// `AllJobs` every user's of its tenant (`None`). Any other job answers 404, to a read as to
/// a cancel, so that existence does not leak either.
fn visible_to(principal: &Principal) -> Option<String> {
    match principal.require(Permission::AllJobs) {
        Ok(()) => None,
        Err(_) => Some(principal.user_id.as_str().to_owned()),
    }
}

/// The job `id`, if the caller may see it.
async fn visible_job(env: &Env, principal: &Principal, id: &str) -> ApiResult<Json> {
    let owner = visible_to(principal);
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ? AND tenant_id = ? AND (? IS NULL OR user_id = ?)"
            ),
            id,
            &principal.tenant_id,
            owner.clone(),
            owner
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("job"))?;
    job_json(&row)
}

/// `GET /api/v1/jobs?status=&worker=&bot=&limit=&offset=`, newest first.
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::JobsRead)?;
    let page = request.page()?;
    let status = request.query_param("status");
    if let Some(status) = &status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "status must be one of queued, running, succeeded, failed, cancelled",
        ));
    }
    let (worker, bot) = (request.query_param("worker"), request.query_param("bot"));
    let owner = visible_to(principal);
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ? AND (? IS NULL OR user_id = ?)
                   AND (? IS NULL OR status = ?) AND (? IS NULL OR worker_id = ?) AND (? IS NULL OR bot_id = ?)
                 ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
            ),
            &principal.tenant_id,
            owner.clone(),
            owner,
            status.clone(),
            status,
            worker.clone(),
            worker,
            bot.clone(),
            bot,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let now = env.now();
    let items = rows
        .iter()
        .map(|row| {
            let mut job = job_json(&row)?;
            outputs::add_download_links(&mut job, env.config.output_bucket.as_ref(), now);
            Ok(job)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(items)))
}

/// `GET /api/v1/jobs/{id}`
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::JobsRead)?;
    let mut job = visible_job(env, principal, id).await?;
    outputs::add_download_links(&mut job, env.config.output_bucket.as_ref(), env.now());
    Ok(ok(&job))
}

/// `POST /api/v1/jobs/{id}/cancel`
pub async fn cancel(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::JobsSubmit)?;
    // Whose job it is never changes, so checking before the cancel's batch is final.
    visible_job(env, principal, id).await?;
    let job = queue::cancel(env, principal.tenant_id.as_str(), &Actor::of(principal), id).await?;
    Ok(ok(&job))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Claim {
    /// VRAM the runner's GPU has free, in MiB: only jobs that fit are claimed.
    free_vram_mb: i64,
    /// How long to wait for a job when none is due, in seconds (0 to 20, default 0): the
    /// answer comes as soon as a job is queued on the runner's worker. A runtime that
    /// cannot hold a request answers at once.
    #[serde(default)]
    wait_seconds: i64,
}

/// `POST /api/v1/runner/claim` `{"free_vram_mb": n, "wait_seconds": n}`: 200 with the job
/// and its lease, or 204 when nothing was due within the wait.
pub async fn runner_claim(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let runner = runners::authenticate(env, request).await?;
    let body: Claim = request.json()?;
    if body.free_vram_mb < 0 {
        return Err(ApiError::invalid_field(
            "free_vram_mb",
            "must not be negative",
        ));
    }
    if !(0..=queue::MAX_CLAIM_WAIT_SECONDS).contains(&body.wait_seconds) {
        return Err(ApiError::invalid_field(
            "wait_seconds",
            format!("must be from 0 to {}", queue::MAX_CLAIM_WAIT_SECONDS),
        ));
    }
    let wait = std::time::Duration::from_secs(body.wait_seconds.unsigned_abs());
    Ok(
        match queue::claim_waiting(env, &runner, body.free_vram_mb, wait).await? {
            Some(claimed) => ok(&claimed),
            None => crate::api::no_content(),
        },
    )
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Lease {
    lease_id: String,
}

/// `POST /api/v1/runner/jobs/{id}/renew` `{"lease_id"}`
pub async fn runner_renew(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    let runner = runners::authenticate(env, request).await?;
    let body: Lease = request.json()?;
    Ok(ok(
        &queue::renew(env, &runner, id, &body.lease_id, None).await?
    ))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Progress {
    lease_id: String,
    progress: i64,
    current_node: Option<String>,
}

/// `POST /api/v1/runner/jobs/{id}/progress` `{"lease_id", "progress": 0..100, "current_node"}`:
/// also renews the lease.
pub async fn runner_progress(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    let runner = runners::authenticate(env, request).await?;
    let body: Progress = request.json()?;
    if !(0..=100).contains(&body.progress) {
        return Err(ApiError::invalid_field("progress", "must be from 0 to 100"));
    }
    let progress = Some((body.progress, body.current_node));
    Ok(ok(&queue::renew(
        env,
        &runner,
        id,
        &body.lease_id,
        progress,
    )
    .await?))
}

/// `POST /api/v1/runner/jobs/{id}/finish`
pub async fn runner_finish(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    let runner = runners::authenticate(env, request).await?;
    let body: Finish = request.json()?;
    Ok(ok(&queue::finish(env, &runner, id, &body).await?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Failure {
    lease_id: String,
    error: String,
}

/// `POST /api/v1/runner/jobs/{id}/fail` `{"lease_id", "error"}`
pub async fn runner_fail(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    let runner = runners::authenticate(env, request).await?;
    let body: Failure = request.json()?;
    let error: String = body.error.chars().take(2000).collect();
    Ok(ok(
        &queue::fail(env, &runner, id, &body.lease_id, &error).await?
    ))
}
