//! Runner tokens and runners. A worker's owner creates a token (`tgr_…`, shown once, stored
//! as its SHA-256, revocable); a runner presents it as a bearer token on the runner routes,
//! which act for that token's worker only. One token is one runner: register and heartbeat
//! (the same call) record its host, GPU, VRAM and version.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{self, Action, Actor, Target},
    auth::{
        principal::{Principal, presented_secret},
        rbac::Permission,
    },
    clock::rfc3339,
    error::ApiResult,
    ids::new_id,
    sql,
    tenancy::admin,
    tokens::{random_token, sha256_hex},
};

pub const TOKEN_PREFIX: &str = "tgr_";

/// The runner a request comes from.
#[derive(Debug, Clone)]
pub struct Runner {
    pub token_id: String,
    pub worker_id: String,
}

/// The runner behind the request's bearer token; 401 for anything else.
pub async fn authenticate(env: &Env, request: &ApiRequest) -> ApiResult<Runner> {
    let secret = presented_secret(request)
        .ok_or_else(|| ApiError::unauthorized("a runner token is required"))?;
    runner_for_token(env, secret).await
}

/// The runner a token (`tgr_…`) stands for, unless it is unknown or revoked (401). The
/// runner endpoints and a runner that reaches the database directly both resolve it here.
pub async fn runner_for_token(env: &Env, secret: &str) -> ApiResult<Runner> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Err(ApiError::unauthorized("a runner token is required"));
    }
    let rows = env
        .db
        .execute(sql!(
            "SELECT id, worker_id FROM runner_tokens WHERE token_hash = ? AND revoked_at IS NULL",
            sha256_hex(secret)
        ))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::unauthorized("the runner token is unknown or revoked"))?;
    Ok(Runner {
        token_id: row.get("id")?,
        worker_id: row.get("worker_id")?,
    })
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    name: String,
}

/// `POST /api/v1/workers/{id}/runner-tokens`: the token is in this answer only.
pub async fn create_token(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    worker_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    issue(env, request, worker_id, Some(principal)).await
}

/// `POST /api/v1/admin/workers/{id}/runner-tokens`: a platform admin's token for a shared
/// platform pool.
pub async fn admin_create_token(
    env: &Env,
    request: &ApiRequest,
    worker_id: &str,
) -> ApiResult<Response> {
    admin::authenticate(env, request).await?;
    issue(env, request, worker_id, None).await
}

/// A token on `worker_id` when it belongs to the caller's tenant (`None`: a shared pool,
/// which belongs to no tenant and so has no tenant audit log).
async fn issue(
    env: &Env,
    request: &ApiRequest,
    worker_id: &str,
    owner: Option<&Principal>,
) -> ApiResult<Response> {
    let tenant = owner.map(|principal| principal.tenant_id.as_str());
    let body: NewToken = request.json()?;
    if body.name.trim().is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let (id, now) = (new_id(), env.now());
    let token = format!("{TOKEN_PREFIX}{}", random_token(32));
    let mut statements = vec![sql!(
        "INSERT INTO runner_tokens (id, tenant_id, worker_id, name, token_hash, created_at)
         SELECT ?, tenant_id, id, ?, ?, ? FROM workers WHERE id = ? AND tenant_id IS ?",
        &id,
        body.name.trim(),
        sha256_hex(&token),
        now,
        worker_id,
        tenant
    )];
    if let Some(principal) = owner {
        statements.push(
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::RunnerTokenCreated,
                Target::new("runner_token", &id),
                json!({ "worker_id": worker_id, "name": body.name.trim() }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
        );
    }
    let results = env.db.batch(statements).await?;
    if results[0].rows_affected == 0 {
        return Err(ApiError::not_found("worker"));
    }
    if let Some(tenant) = tenant {
        audit::try_seal(env, tenant).await;
    }
    Ok(created(&json!({
        "id": id,
        "worker_id": worker_id,
        "name": body.name.trim(),
        "token": token,
        "created_at": rfc3339(now),
    })))
}

/// `GET /api/v1/workers/{id}/runner-tokens`
pub async fn list_tokens(env: &Env, principal: &Principal, worker_id: &str) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let results = env
        .db
        .batch(vec![
            sql!(
                "SELECT 1 FROM workers WHERE id = ? AND tenant_id = ?",
                worker_id,
                &principal.tenant_id
            ),
            sql!(
                "SELECT id, name, created_at, revoked_at FROM runner_tokens
                 WHERE worker_id = ? AND tenant_id = ? ORDER BY created_at, id",
                worker_id,
                &principal.tenant_id
            ),
        ])
        .await?;
    if results[0].is_empty() {
        return Err(ApiError::not_found("worker"));
    }
    let data = results[1]
        .iter()
        .map(|row| {
            Ok(json!({
                "id": row.get::<String>("id")?,
                "name": row.get::<String>("name")?,
                "created_at": rfc3339(row.get("created_at")?),
                "revoked_at": row.get::<Option<i64>>("revoked_at")?.map(rfc3339),
            }))
        })
        .collect::<ApiResult<Vec<Json>>>()?;
    Ok(ok(&json!({ "data": data })))
}

/// `DELETE /api/v1/workers/{id}/runner-tokens/{token}`: the runner is refused from now on.
pub async fn revoke_token(
    env: &Env,
    principal: &Principal,
    worker_id: &str,
    token_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE runner_tokens SET revoked_at = ?
                 WHERE id = ? AND worker_id = ? AND tenant_id = ? AND revoked_at IS NULL",
                now,
                token_id,
                worker_id,
                &principal.tenant_id
            ),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::RunnerTokenRevoked,
                Target::new("runner_token", token_id),
                json!({ "worker_id": worker_id }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
            sql!(
                "SELECT 1 FROM runner_tokens WHERE id = ? AND worker_id = ? AND tenant_id = ?",
                token_id,
                worker_id,
                &principal.tenant_id
            ),
        ])
        .await?;
    if results[2].is_empty() {
        return Err(ApiError::not_found("runner token"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(no_content())
}

/// What a runner reports about itself.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub host: String,
    pub gpu: Option<String>,
    pub vram_mb: Option<i64>,
    pub version: Option<String>,
}

/// `POST /api/v1/runner/heartbeat`: registers the runner on its first call, refreshes it
/// on every later one.
pub async fn heartbeat(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let runner = authenticate(env, request).await?;
    let body: Heartbeat = request.json()?;
    Ok(ok(&record_heartbeat(env, &runner, &body).await?))
}

/// Registers or refreshes `runner` with what it reports.
pub async fn record_heartbeat(env: &Env, runner: &Runner, body: &Heartbeat) -> ApiResult<Json> {
    if body.host.trim().is_empty() || body.host.len() > 255 {
        return Err(ApiError::invalid_field(
            "host",
            "must be 1 to 255 characters",
        ));
    }
    if body.vram_mb.is_some_and(|vram| vram < 0) {
        return Err(ApiError::invalid_field("vram_mb", "must not be negative"));
    }
    let now = env.now();
    env.db
        .execute(sql!(
            "INSERT INTO runners (token_id, worker_id, host, gpu, vram_mb, version, registered_at, last_seen_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (token_id) DO UPDATE SET host = excluded.host, gpu = excluded.gpu,
                 vram_mb = excluded.vram_mb, version = excluded.version, last_seen_at = excluded.last_seen_at",
            &runner.token_id,
            &runner.worker_id,
            body.host.trim(),
            body.gpu.clone(),
            body.vram_mb,
            body.version.clone(),
            now,
            now
        ))
        .await?;
    Ok(json!({
        "runner_id": runner.token_id,
        "worker_id": runner.worker_id,
        "last_seen_at": rfc3339(now),
    }))
}
