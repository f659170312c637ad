//! The record of every call the gateway made to the providers: who, which model and
//! deployment, tokens, cost, latency and outcome; the prompt and completion text only when
//! the tenant keeps it ([`super::policy`]). `GET llm/interactions` lists them and
//! `GET llm/interactions/{id}` shows one with its text: a member their own, owners and
//! admins the tenant's.

use serde_json::{Value as Json, json};

use super::{policy, providers::Usage};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::{parse_rfc3339, rfc3339},
    db::{Row, Statement, Value},
    error::ApiResult,
    sql,
};

const COLUMNS: &str = "id, user_id, api_key_id, endpoint, model, requested_model, provider_key_id, deployment_model, \
     attempts, prompt_tokens, completion_tokens, cached_tokens, cost, reservation_id, latency_ms, \
     first_token_ms, status, error, created_at";

/// The filters a list takes besides its page; any other parameter is refused.
const FILTERS: &[&str] = &["endpoint", "model", "status", "since", "until", "user_id"];

/// The OpenAI route a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl Endpoint {
    const ALL: [Endpoint; 2] = [Endpoint::Chat, Endpoint::Embeddings];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

/// One call, as recorded.
pub struct Interaction<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub api_key_id: Option<&'a str>,
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub requested_model: &'a str,
    pub provider_key_id: Option<&'a str>,
    pub deployment_model: Option<&'a str>,
    pub attempts: i64,
    pub usage: Usage,
    /// What the call is charged before the settle's bounds; the settle's own figure
    /// replaces it in the same batch (see [`charged_from`]).
    pub cost: i64,
    pub reservation_id: Option<&'a str>,
    pub latency_ms: i64,
    /// A stream's time to its first event, in milliseconds.
    pub first_token_ms: Option<i64>,
    pub status: Status,
    pub error: Option<&'a str>,
    pub created_at: i64,
}

impl Interaction<'_> {
    /// The insert, run only when `only_if` returns a row at that point of its batch.
    pub fn insert(&self, only_if: Option<&Statement>) -> Statement {
        let insert = sql!(
            "INSERT INTO llm_interactions (id, tenant_id, user_id, api_key_id, endpoint, model, requested_model,
                                           provider_key_id, deployment_model, attempts, prompt_tokens,
                                           completion_tokens, cached_tokens, cost, reservation_id, latency_ms,
                                           first_token_ms, status, error, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.id,
            self.tenant_id,
            self.user_id,
            self.api_key_id,
            self.endpoint.as_str(),
            self.model,
            self.requested_model,
            self.provider_key_id,
            self.deployment_model,
            self.attempts,
            self.usage.prompt_tokens,
            self.usage.completion_tokens,
            self.usage.cached_tokens,
            self.cost,
            self.reservation_id,
            self.latency_ms,
            self.first_token_ms,
            self.status.as_str(),
            self.error,
            self.created_at
        );
        match only_if {
            Some(query) => insert.only_if_exists(query),
            None => insert,
        }
    }
}

/// Sets the recorded cost of interaction `id` to what its reservation charged, which the
/// settle bounds (at most the overage over the hold, at most what the accounts held).
pub fn charged_from(id: &str, reservation_id: &str) -> Statement {
    sql!(
        "UPDATE llm_interactions SET cost = COALESCE(
             (SELECT charged FROM credit_reservations WHERE id = ? AND status = 'settled'), 0)
         WHERE id = ?",
        reservation_id,
        id
    )
}

/// A guard that holds once interaction `id` is recorded.
pub fn recorded(id: &str) -> Statement {
    sql!("SELECT 1 FROM llm_interactions WHERE id = ?", id)
}

fn interaction_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "id": row.get::<String>("id")?,
        "user_id": row.get::<String>("user_id")?,
        "api_key_id": row.get::<Option<String>>("api_key_id")?,
        "endpoint": row.get::<String>("endpoint")?,
        "model": row.get::<String>("model")?,
        "requested_model": row.get::<String>("requested_model")?,
        "provider_key_id": row.get::<Option<String>>("provider_key_id")?,
        "deployment_model": row.get::<Option<String>>("deployment_model")?,
        "attempts": row.get::<i64>("attempts")?,
        "prompt_tokens": row.get::<i64>("prompt_tokens")?,
        "completion_tokens": row.get::<i64>("completion_tokens")?,
        "cached_tokens": row.get::<i64>("cached_tokens")?,
        "cost": row.get::<i64>("cost")?,
        "reservation_id": row.get::<Option<String>>("reservation_id")?,
        "latency_ms": row.get::<i64>("latency_ms")?,
        "first_token_ms": row.get::<Option<i64>>("first_token_ms")?,
        "status": row.get::<String>("status")?,
        "error": row.get::<Option<String>>("error")?,
        "created_at": rfc3339(row.get("created_at")?),
    }))
}

/// `GET /api/v1/llm/interactions/{id}`: one call, with `content` (`request`, `response`)
/// when its text was kept, else `content: null`.
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::LlmRead)?;
    let tenant = principal.tenant_id.as_str();
    let read = env
        .db
        .batch(vec![
            sql!(
                format!("SELECT {COLUMNS} FROM llm_interactions WHERE tenant_id = ? AND id = ?"),
                tenant,
                id
            ),
            policy::read_content(tenant, id),
        ])
        .await?;
    let Some(row) = read[0].first() else {
        return Err(ApiError::not_found("interaction"));
    };
    let owner: String = row.get("user_id")?;
    if !principal.is_self(&owner) && principal.require(Permission::LlmInteractionsAll).is_err() {
        return Err(ApiError::not_found("interaction"));
    }
    let mut interaction = interaction_json(&row)?;
    let parse = |text: Option<String>| {
        text.map(|text| serde_json::from_str::<Json>(&text).unwrap_or(Json::String(text)))
    };
    interaction["content"] = match read[1].first() {
        Some(content) => json!({
            "request": parse(content.get("request")?),
            "response": parse(content.get("response")?),
        }),
        None => Json::Null,
    };
    Ok(ok(&interaction))
}

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// `GET /api/v1/llm/interactions`: newest first, filtered by `endpoint` (`chat`,
/// `embeddings`), `model` (as recorded: the catalogue's name), `status`, `since` / `until` (RFC 3339) and `user_id` (owners and
/// admins; a member sees only their own).
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::LlmRead)?;
    let page = request.filtered_page(FILTERS)?;
    let sees_all = principal.require(Permission::LlmInteractionsAll).is_ok();
    let user_filter = request.query_param("user_id");
    let user = match (sees_all, user_filter) {
        (true, filter) => filter,
        (false, Some(filter)) if !principal.is_self(&filter) => {
            return Err(ApiError::forbidden(
                "only owners and admins read other users' interactions",
            ));
        }
        (false, _) => Some(principal.user_id.as_str().to_owned()),
    };
    let status = request.query_param("status");
    if let Some(status) = &status
        && !["succeeded", "failed"].contains(&status.as_str())
    {
        return Err(invalid_query("status must be succeeded or failed"));
    }
    let time = |name: &str| -> ApiResult<Option<i64>> {
        request
            .query_param(name)
            .map(|text| {
                parse_rfc3339(&text)
                    .ok_or_else(|| invalid_query(format!("{name} must be an RFC 3339 time")))
            })
            .transpose()
    };
    let endpoint = request.query_param("endpoint");
    if let Some(endpoint) = &endpoint
        && !Endpoint::ALL.iter().any(|known| known.as_str() == endpoint)
    {
        return Err(invalid_query("endpoint must be chat or embeddings"));
    }
    let (since, until) = (time("since")?, time("until")?);
    let mut statement = Statement::new(format!(
        "SELECT {COLUMNS} FROM llm_interactions WHERE tenant_id = ?
           AND (? IS NULL OR user_id = ?) AND (? IS NULL OR endpoint = ?) AND (? IS NULL OR model = ?) AND (? IS NULL OR status = ?)
           AND (? IS NULL OR created_at >= ?) AND (? IS NULL OR created_at < ?)
         ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
    ))
    .bind(&principal.tenant_id);
    let model = request.query_param("model");
    for value in [
        Value::from(user),
        Value::from(endpoint),
        Value::from(model),
        Value::from(status),
        Value::from(since),
        Value::from(until),
    ] {
        statement = statement.bind(value.clone()).bind(value);
    }
    let rows = env
        .db
        .execute(statement.bind(page.fetch_limit()).bind(page.offset))
        .await?;
    let items = rows
        .iter()
        .map(|row| interaction_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(items)))
}
