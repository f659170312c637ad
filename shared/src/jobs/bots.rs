//! Bots: saved, named workflow templates, each assigned to a worker (the tenant's own or a
//! shared pool). A job of a bot runs on the bot's worker; moving the bot moves its later
//! jobs. A tenant sees and changes only its own bots.
//!
//! Deleting a bot marks it deleted (`deleted_at`): its jobs keep their `bot_id` as history,
//! while to the API the bot is gone — not listed, read, changed or used for new jobs (404).
//! Creating, changing, moving and deleting a bot are audited in the batch of the change.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{workers, workflow};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{self, Action, Actor, Target},
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
    pub name: String,
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

/// The tenant's bot `id`, or 404 (also for a deleted one).
pub async fn load(env: &Env, tenant_id: &str, id: &str) -> ApiResult<Bot> {
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {COLUMNS} FROM bots WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL"
            ),
            id,
            tenant_id
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("bot"))?;
    Ok(Bot {
        id: row.get("id")?,
        worker_id: row.get("worker_id")?,
        name: row.get("name")?,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBot {
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
    let name = body.name.trim();
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO bots (id, tenant_id, worker_id, name, workflow, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                &id,
                tenant,
                &worker,
                name,
                body.workflow.to_string(),
                now,
                now
            ),
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::BotCreated,
                Target::new("bot", &id),
                json!({ "name": name, "worker_id": worker }),
                now,
            ),
            sql!(format!("SELECT {COLUMNS} FROM bots WHERE id = ?"), &id),
        ])
        .await?;
    let row = results[2]
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("bot vanished"))?;
    audit::try_seal(env, tenant).await;
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
                "SELECT {COLUMNS} FROM bots
                 WHERE tenant_id = ? AND deleted_at IS NULL AND (? IS NULL OR worker_id = ?)
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
            format!(
                "SELECT {COLUMNS} FROM bots WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL"
            ),
            id,
            &principal.tenant_id
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("bot"))?;
    Ok(ok(&bot_json(&row)?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct BotChange {
    name: Option<String>,
    workflow: Option<Json>,
    worker_id: Option<String>,
}

/// How often a move is tried again when another request moved the bot meanwhile.
const MOVE_ATTEMPTS: usize = 3;

/// `PATCH /api/v1/bots/{id}`: rename, change the template, or move to another worker. Each
/// is audited when it changes something: `bot.updated` (name, template) and `bot.moved`
/// (from and to which worker); a change that changes nothing writes nothing.
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
    // The worker a move starts from: the move's statement requires it, so that `bot.moved`
    // names the worker the bot really left.
    let mut from_worker = load(env, tenant, id).await?.worker_id;
    let to_worker = match &body.worker_id {
        Some(worker) => Some(workers::usable(env, tenant, worker).await?),
        None => None,
    };
    let name = body.name.as_deref().map(str::trim);
    let workflow = body.workflow.as_ref().map(Json::to_string);
    let actor = Actor::of(principal);
    for _ in 0..MOVE_ATTEMPTS {
        let now = env.now();
        let mut statements = Vec::new();
        if name.is_some() || workflow.is_some() {
            statements.push(sql!(
                "UPDATE bots SET name = COALESCE(?, name), workflow = COALESCE(?, workflow),
                        updated_at = ?
                 WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL
                   AND (name IS NOT COALESCE(?, name) OR workflow IS NOT COALESCE(?, workflow))",
                name,
                workflow.clone(),
                now,
                id,
                tenant,
                name,
                workflow.clone()
            ));
            statements.push(
                audit::entry(
                    tenant,
                    &actor,
                    Action::BotUpdated,
                    Target::new("bot", id),
                    json!({ "name": name, "workflow_changed": workflow.is_some() }),
                    now,
                )
                .only_if_exists(&audit::if_changed()),
            );
        }
        if let Some(to) = &to_worker {
            let from = &from_worker;
            statements.push(sql!(
                "UPDATE bots SET worker_id = ?, updated_at = ?
                 WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL AND worker_id = ? AND worker_id != ?",
                to,
                now,
                id,
                tenant,
                from,
                to
            ));
            statements.push(
                audit::entry(
                    tenant,
                    &actor,
                    Action::BotMoved,
                    Target::new("bot", id),
                    json!({ "from_worker_id": from, "to_worker_id": to }),
                    now,
                )
                .only_if_exists(&audit::if_changed()),
            );
        }
        statements.push(sql!(
            format!(
                "SELECT {COLUMNS} FROM bots WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL"
            ),
            id,
            tenant
        ));
        let results = env.db.batch(statements).await?;
        let (select, writes) = results.split_last().expect("the batch ends in a SELECT");
        let row = select.first().ok_or_else(|| ApiError::not_found("bot"))?;
        if writes.iter().any(|result| result.rows_affected > 0) {
            audit::try_seal(env, tenant).await;
        }
        // Moved by another request between the read and the move: retry from where it is.
        let now_on: String = row.get("worker_id")?;
        if to_worker.as_ref().is_some_and(|to| *to != now_on) {
            from_worker = now_on;
            continue;
        }
        return Ok(ok(&bot_json(&row)?));
    }
    Err(ApiError::conflict(
        "bot_changed",
        "the bot was moved concurrently; try again",
    ))
}

/// `DELETE /api/v1/bots/{id}`: the bot is gone from the API; jobs already queued or running
/// for it run on, and every job keeps its `bot_id`.
pub async fn delete(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::WorkersManage)?;
    let tenant = principal.tenant_id.as_str();
    let bot = load(env, tenant, id).await?;
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE bots SET deleted_at = ?, updated_at = ?
                 WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
                now,
                now,
                id,
                tenant
            ),
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::BotDeleted,
                Target::new("bot", id),
                json!({ "name": bot.name, "worker_id": bot.worker_id }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(ApiError::not_found("bot"));
    }
    audit::try_seal(env, tenant).await;
    Ok(no_content())
}
