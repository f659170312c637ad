//! Workers: named execution pools. Every tenant has a default one (made with the tenant);
//! a tenant creates dedicated ones up to its plan's `max_workers`; shared platform pools
//! (`tenant_id` NULL) are usable by every tenant and managed by no tenant. A tenant sees
//! its own workers and the shared ones, and changes only its own: anything else is 404.

use std::collections::HashMap;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok, present},
    audit::{self, Action, Actor, Target},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    db::{Row, Statement},
    error::ApiResult,
    ids::new_id,
    quota::{metrics::Period, periods::Window},
    sql,
    tenancy::plans,
};

/// A runner unheard of for longer than this is stale.
pub const STALE_AFTER_SECONDS: i64 = 90;

const COLUMNS: &str = "id, tenant_id, name, is_default, gpu_type, min_vram_mb, max_concurrency, created_at, updated_at";

/// The statement that gives a new tenant its default worker.
pub fn default_worker(tenant_id: &str, now: i64) -> Statement {
    sql!(
        "INSERT INTO workers (id, tenant_id, name, is_default, created_at, updated_at)
         VALUES (?, ?, 'default', 1, ?, ?)",
        new_id(),
        tenant_id,
        now,
        now
    )
}

fn worker_json(row: &Row<'_>) -> ApiResult<Json> {
    let tenant: Option<String> = row.get("tenant_id")?;
    Ok(json!({
        "id": row.get::<String>("id")?,
        "name": row.get::<String>("name")?,
        "shared": tenant.is_none(),
        "default": row.get::<i64>("is_default")? == 1,
        "gpu_type": row.get::<Option<String>>("gpu_type")?,
        "min_vram_mb": row.get::<i64>("min_vram_mb")?,
        "max_concurrency": row.get::<Option<i64>>("max_concurrency")?,
        "created_at": rfc3339(row.get("created_at")?),
        "updated_at": rfc3339(row.get("updated_at")?),
    }))
}

/// The worker `id` when the tenant may run jobs on it (its own or a shared one).
pub async fn usable(env: &Env, tenant_id: &str, id: &str) -> ApiResult<String> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT id FROM workers WHERE id = ? AND (tenant_id = ? OR tenant_id IS NULL)",
            id,
            tenant_id
        ))
        .await?;
    rows.first()
        .map(|row| row.get::<String>("id"))
        .transpose()?
        .ok_or_else(|| ApiError::not_found("worker"))
}

/// The tenant's default worker.
pub async fn default_of(env: &Env, tenant_id: &str) -> ApiResult<String> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT id FROM workers WHERE tenant_id = ? AND is_default = 1",
            tenant_id
        ))
        .await?;
    rows.first()
        .map(|row| row.get::<String>("id"))
        .transpose()?
        .ok_or_else(|| ApiError::internal().caused_by("tenant without a default worker"))
}

/// `GET /api/v1/workers`: the tenant's workers, then the shared ones, each with the
/// tenant's own activity on it: jobs waiting and running, runners online, and this
/// month's jobs and GPU seconds. One round trip for the console's workers page.
pub async fn list(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::JobsRead)?;
    let now = env.now();
    let month_start = Window::containing(Period::Month, now).start;
    let tenant = &principal.tenant_id;
    let results = env
        .db
        .batch(vec![
            sql!(
                format!(
                    "SELECT {COLUMNS} FROM workers WHERE tenant_id = ? OR tenant_id IS NULL
                     ORDER BY tenant_id IS NULL, is_default DESC, created_at, id"
                ),
                tenant
            ),
            // The tenant's own jobs and runners only, on shared pools too.
            sql!(
                "SELECT worker_id, SUM(status = 'queued') AS queued, SUM(status = 'running') AS running,
                        SUM(created_at >= ?) AS jobs_this_month,
                        SUM(CASE WHEN created_at >= ? THEN COALESCE(gpu_seconds, 0) ELSE 0 END)
                            AS gpu_seconds_this_month
                 FROM jobs WHERE tenant_id = ? AND (status IN ('queued', 'running') OR created_at >= ?)
                 GROUP BY worker_id",
                month_start,
                month_start,
                tenant,
                month_start
            ),
            sql!(
                "SELECT r.worker_id, COUNT(*) AS online FROM runners r
                 JOIN runner_tokens t ON t.id = r.token_id
                 WHERE t.tenant_id = ? AND t.revoked_at IS NULL AND r.last_seen_at >= ?
                 GROUP BY r.worker_id",
                tenant,
                now - STALE_AFTER_SECONDS
            ),
        ])
        .await?;
    let mut activity: HashMap<String, Json> = HashMap::new();
    for row in results[1].iter() {
        activity.insert(
            row.get("worker_id")?,
            json!({
                "queued": row.get::<i64>("queued")?,
                "running": row.get::<i64>("running")?,
                "jobs_this_month": row.get::<i64>("jobs_this_month")?,
                "gpu_seconds_this_month": row.get::<i64>("gpu_seconds_this_month")?,
            }),
        );
    }
    let mut online: HashMap<String, i64> = HashMap::new();
    for row in results[2].iter() {
        online.insert(row.get("worker_id")?, row.get("online")?);
    }
    let data = results[0]
        .iter()
        .map(|row| {
            let mut worker = worker_json(&row)?;
            let id: String = row.get("id")?;
            let mut usage = activity.remove(&id).unwrap_or_else(|| {
                json!({ "queued": 0, "running": 0, "jobs_this_month": 0, "gpu_seconds_this_month": 0 })
            });
            usage["runners_online"] = json!(online.get(&id).copied().unwrap_or(0));
            worker["activity"] = usage;
            Ok(worker)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&json!({ "data": data })))
}

/// `GET /api/v1/workers/{id}`: the worker and its runners' health.
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::JobsRead)?;
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                format!("SELECT {COLUMNS} FROM workers WHERE id = ? AND (tenant_id = ? OR tenant_id IS NULL)"),
                id,
                &principal.tenant_id
            ),
            // Another tenant's runners on a shared pool are not this tenant's business.
            sql!(
                "SELECT r.token_id, r.host, r.gpu, r.vram_mb, r.version, r.registered_at, r.last_seen_at
                 FROM runners r JOIN runner_tokens t ON t.id = r.token_id
                 WHERE r.worker_id = ? AND t.tenant_id = ? AND t.revoked_at IS NULL
                 ORDER BY r.registered_at, r.token_id",
                id,
                &principal.tenant_id
            ),
        ])
        .await?;
    let row = results[0]
        .first()
        .ok_or_else(|| ApiError::not_found("worker"))?;
    let mut worker = worker_json(&row)?;
    let runners = results[1]
        .iter()
        .map(|row| {
            let last_seen: i64 = row.get("last_seen_at")?;
            Ok(json!({
                "id": row.get::<String>("token_id")?,
                "host": row.get::<String>("host")?,
                "gpu": row.get::<Option<String>>("gpu")?,
                "vram_mb": row.get::<Option<i64>>("vram_mb")?,
                "version": row.get::<Option<String>>("version")?,
                "registered_at": rfc3339(row.get("registered_at")?),
                "last_seen_at": rfc3339(last_seen),
                "health": if now - last_seen <= STALE_AFTER_SECONDS { "online" } else { "stale" },
            }))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    worker["runners"] = json!(runners);
    Ok(ok(&worker))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWorker {
    name: String,
    gpu_type: Option<String>,
    #[serde(default)]
    min_vram_mb: i64,
    max_concurrency: Option<i64>,
}

fn check_settings(
    name: Option<&str>,
    min_vram_mb: Option<i64>,
    max_concurrency: Option<Option<i64>>,
) -> ApiResult<()> {
    if let Some(name) = name
        && (name.trim().is_empty() || name.chars().count() > 100)
    {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    if min_vram_mb.is_some_and(|vram| !(0..=1_048_576).contains(&vram)) {
        return Err(ApiError::invalid_field(
            "min_vram_mb",
            "must be from 0 to 1048576",
        ));
    }
    if max_concurrency
        .flatten()
        .is_some_and(|max| !(1..=10_000).contains(&max))
    {
        return Err(ApiError::invalid_field(
            "max_concurrency",
            "must be from 1 to 10000",
        ));
    }
    Ok(())
}

fn name_taken(error: crate::db::DbError) -> ApiError {
    if error.is_unique_violation("workers.") {
        ApiError::conflict(
            "worker_exists",
            "the tenant already has a worker with this name",
        )
    } else {
        error.into()
    }
}

/// `POST /api/v1/workers`: a dedicated worker, while the plan's `max_workers` allows (the
/// global plan's figure: tenant plan overrides do not change it).
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let body: NewWorker = request.json()?;
    check_settings(
        Some(&body.name),
        Some(body.min_vram_mb),
        Some(body.max_concurrency),
    )?;
    let (id, now) = (new_id(), env.now());
    let tenant = &principal.tenant_id;
    let name = body.name.trim();
    let results = env
        .db
        .batch(vec![
            sql!(
                format!(
                    "INSERT INTO workers (id, tenant_id, name, is_default, gpu_type, min_vram_mb, max_concurrency,
                                      created_at, updated_at)
                 SELECT ?, ?, ?, 0, ?, ?, ?, ?, ?
                 WHERE (SELECT COUNT(*) FROM workers WHERE tenant_id = ? AND is_default = 0)
                       < COALESCE((SELECT {max_workers} FROM tenants t WHERE t.id = ?), 1000000000)",
                    max_workers = plans::MAX_WORKERS_OF_T
                ),
                &id,
                tenant,
                name,
                body.gpu_type.clone(),
                body.min_vram_mb,
                body.max_concurrency,
                now,
                now,
                tenant,
                tenant
            ),
            audit::entry(
                tenant.as_str(),
                &Actor::of(principal),
                Action::WorkerCreated,
                Target::new("worker", &id),
                json!({
                    "name": name,
                    "gpu_type": body.gpu_type,
                    "min_vram_mb": body.min_vram_mb,
                    "max_concurrency": body.max_concurrency,
                }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
            sql!(format!("SELECT {COLUMNS} FROM workers WHERE id = ?"), &id),
        ])
        .await
        .map_err(name_taken)?;
    let Some(row) = results[2].first() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "plan_limit_exceeded",
            "the plan allows no more dedicated workers",
        )
        .with_details(json!({ "limit": "max_workers" })));
    };
    audit::try_seal(env, tenant.as_str()).await;
    Ok(created(&worker_json(&row)?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkerChange {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    gpu_type: Option<Option<String>>,
    min_vram_mb: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    max_concurrency: Option<Option<i64>>,
}

/// `PATCH /api/v1/workers/{id}`: the tenant's own workers only. A change that changes
/// nothing writes nothing (and is not audited).
pub async fn update(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let body: WorkerChange = request.json()?;
    check_settings(body.name.as_deref(), body.min_vram_mb, body.max_concurrency)?;
    let now = env.now();
    let name = body.name.as_deref().map(str::trim);
    let gpu_type = body.gpu_type.clone().flatten();
    let max_concurrency = body.max_concurrency.flatten();
    // What the request sets, as the audit entry records it.
    let mut metadata = serde_json::Map::new();
    if let Some(name) = name {
        metadata.insert("name".into(), json!(name));
    }
    if body.gpu_type.is_some() {
        metadata.insert("gpu_type".into(), json!(gpu_type));
    }
    if let Some(vram) = body.min_vram_mb {
        metadata.insert("min_vram_mb".into(), json!(vram));
    }
    if body.max_concurrency.is_some() {
        metadata.insert("max_concurrency".into(), json!(max_concurrency));
    }
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE workers SET name = COALESCE(?, name),
                        gpu_type = CASE WHEN ? THEN ? ELSE gpu_type END,
                        min_vram_mb = COALESCE(?, min_vram_mb),
                        max_concurrency = CASE WHEN ? THEN ? ELSE max_concurrency END,
                        updated_at = ?
                 WHERE id = ? AND tenant_id = ?
                   AND (name IS NOT COALESCE(?, name)
                        OR (? AND gpu_type IS NOT ?)
                        OR min_vram_mb IS NOT COALESCE(?, min_vram_mb)
                        OR (? AND max_concurrency IS NOT ?))",
                name,
                body.gpu_type.is_some(),
                gpu_type.clone(),
                body.min_vram_mb,
                body.max_concurrency.is_some(),
                max_concurrency,
                now,
                id,
                &principal.tenant_id,
                name,
                body.gpu_type.is_some(),
                gpu_type,
                body.min_vram_mb,
                body.max_concurrency.is_some(),
                max_concurrency
            ),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::WorkerUpdated,
                Target::new("worker", id),
                Json::Object(metadata),
                now,
            )
            .only_if_exists(&audit::if_changed()),
            sql!(
                format!("SELECT {COLUMNS} FROM workers WHERE id = ? AND tenant_id = ?"),
                id,
                &principal.tenant_id
            ),
        ])
        .await
        .map_err(name_taken)?;
    let row = results[2]
        .first()
        .ok_or_else(|| ApiError::not_found("worker"))?;
    if results[0].rows_affected > 0 {
        audit::try_seal(env, principal.tenant_id.as_str()).await;
    }
    Ok(ok(&worker_json(&row)?))
}
