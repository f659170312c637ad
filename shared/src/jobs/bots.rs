//! Bots: saved, named workflow templates, each assigned to a worker (the tenant's own or a
//! shared pool). A job of a bot runs on the bot's worker; moving the bot moves its later
//! jobs. A tenant sees and changes only its own bots.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{workers, workflow};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    db::Row,
    error::ApiResult,
    ids::new_id,
    sql,
};

const COLUMNS: &str = "id, worker_id, name, workflow, created_at, updated_at";

/// A tenant's bot, as a job needs it.
pub struct Bot {
    pub id: String,
    pub worker_id: String,
    pub workflow: Json,
}

fn bot_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "id": row.get::<String>("id")?,
        "worker_id": row.get::<String>("worker_id")?,
        "name": row.get::<String>("name")?,
        "workflow": serde_json::from_str::<Json>(&row.get::<String>("workflow")?).unwrap_or(Json::Null),
        "created_at": rfc3339(row.get("created_at")?),
        "updated_at": rfc3339(row.get("updated_at")?),
    }))
}

/// The tenant's bot `id`, or 404.
pub async fn load(env: &Env, tenant_id: &str, id: &str) -> ApiResult<Bot> {
    let rows = env
        .db
        .execute(sql!(
            format!("SELECT {COLUMNS} FROM bots WHERE id = ? AND tenant_id = ?"),
            id,
            tenant_id
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("bot"))?;
    Ok(Bot {
        id: row.get("id")?,
        worker_id: row.get("worker_id")?,
        workflow: serde_json::from_str(&row.get::<String>("workflow")?)
            .map_err(|error| ApiError::internal().caused_by(error.to_string()))?,
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBot {
    name: String,
    workflow: Json,
    worker_id: Option<String>,
}

/// `POST /api/v1/bots`: on the given worker, else the tenant's default.
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let body: NewBot = request.json()?;
    check_name(&body.name)?;
    workflow::inspect(&body.workflow)?;
    let tenant = principal.tenant_id.as_str();
    let worker = match &body.worker_id {
        Some(worker) => workers::usable(env, tenant, worker).await?,
        None => workers::default_of(env, tenant).await?,
    };
    let (id, now) = (new_id(), env.now());
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO bots (id, tenant_id, worker_id, name, workflow, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                &id,
                tenant,
                &worker,
                body.name.trim(),
                body.workflow.to_string(),
                now,
                now
            ),
            sql!(format!("SELECT {COLUMNS} FROM bots WHERE id = ?"), &id),
        ])
        .await?;
    let row = results[1]
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("bot vanished"))?;
    Ok(created(&bot_json(&row)?))
}

/// `GET /api/v1/bots`
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::JobsRead)?;
    let page = request.page()?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {COLUMNS} FROM bots WHERE tenant_id = ? AND (? IS NULL OR worker_id = ?)
                 ORDER BY created_at, id LIMIT ? OFFSET ?"
            ),
            &principal.tenant_id,
            request.query_param("worker"),
            request.query_param("worker"),
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let items = rows
        .iter()
        .map(|row| bot_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(items)))
}

/// `GET /api/v1/bots/{id}`
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::JobsRead)?;
    let rows = env
        .db
        .execute(sql!(
            format!("SELECT {COLUMNS} FROM bots WHERE id = ? AND tenant_id = ?"),
            id,
            &principal.tenant_id
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("bot"))?;
    Ok(ok(&bot_json(&row)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotChange {
    name: Option<String>,
    workflow: Option<Json>,
    worker_id: Option<String>,
}

/// `PATCH /api/v1/bots/{id}`: rename, change the template, or move to another worker.
pub async fn update(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let body: BotChange = request.json()?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(workflow) = &body.workflow {
        workflow::inspect(workflow)?;
    }
    let tenant = principal.tenant_id.as_str();
    load(env, tenant, id).await?;
    let worker = match &body.worker_id {
        Some(worker) => Some(workers::usable(env, tenant, worker).await?),
        None => None,
    };
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE bots SET name = COALESCE(?, name), workflow = COALESCE(?, workflow),
                        worker_id = COALESCE(?, worker_id), updated_at = ?
                 WHERE id = ? AND tenant_id = ?",
                body.name.as_deref().map(str::trim),
                body.workflow.as_ref().map(Json::to_string),
                worker,
                env.now(),
                id,
                tenant
            ),
            sql!(
                format!("SELECT {COLUMNS} FROM bots WHERE id = ? AND tenant_id = ?"),
                id,
                tenant
            ),
        ])
        .await?;
    let row = results[1]
        .first()
        .ok_or_else(|| ApiError::not_found("bot"))?;
    Ok(ok(&bot_json(&row)?))
}
