//! What a tenant decides about its users' LLM calls, on top of the catalogue and the plans:
//!
//! - which models its users see (`visible_models`): a model left out is, to the tenant's
//!   users, as if it did not exist (404 `model_not_found`, absent from `GET /v1/models`);
//! - which models one user may call (a per-user allow-list): any other answers 403
//!   `model_not_allowed`, and `GET /v1/models` lists only the allowed ones;
//! - each user's calls and tokens per minute (enforced by [`super::limits`]);
//! - whether the text of each call (the request's messages or input, the answer's
//!   messages) is kept beside its record, and for how many days ([`purge_expired_content`]
//!   drops it after that, on every cron run).
//!
//! A call reads the whole policy in the batch that resolves its model ([`Policy::read`]), so
//! the rules cost no round trip of their own.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{
    Editor,
    models::{self, Model},
};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok, present},
    audit::{Action, Target, if_changed},
    auth::{principal::Principal, rbac::Permission},
    db::{Rows, Statement},
    error::ApiResult,
    ids::TenantId,
    sql,
    tenancy::plans,
};

/// Days the text of a call is kept when the tenant turns content logging on and names no
/// retention.
const DEFAULT_RETENTION_DAYS: i64 = 30;
const MAX_RETENTION_DAYS: i64 = 3_650;
/// The most names one list (visible models, a user's allow-list) may hold.
const MAX_LISTED_MODELS: usize = 256;
/// Contents dropped per cron run; the next run carries on.
const PURGED_PER_RUN: i64 = 5_000;

/// The tenant's and the caller's rules for one call.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Policy {
    visible: Option<Vec<String>>,
    allowed: Option<Vec<String>>,
    /// Whether the text of the call is kept.
    pub keeps_content: bool,
}

impl Policy {
    /// The statement that reads the policy of `user`'s calls in `tenant`: always one row.
    pub(super) fn read(tenant: &TenantId, user: &str) -> Statement {
        sql!(
            "SELECT s.visible_models, COALESCE(s.content_logging, 0) AS content_logging,
                    u.models AS allowed_models
             FROM (SELECT 1) one
             LEFT JOIN llm_tenant_settings s ON s.tenant_id = ?
             LEFT JOIN llm_user_models u ON u.tenant_id = ? AND u.user_id = ?",
            tenant,
            tenant,
            user
        )
    }

    /// The policy [`Policy::read`]'s rows hold.
    pub(super) fn from_rows(rows: &Rows) -> ApiResult<Self> {
        let Some(row) = rows.first() else {
            return Ok(Policy::default());
        };
        let names = |column: &str| -> ApiResult<Option<Vec<String>>> {
            row.get::<Option<String>>(column)?
                .map(|text| {
                    serde_json::from_str(&text).map_err(|error| {
                        ApiError::internal().caused_by(format!("{column} is not a list: {error}"))
                    })
                })
                .transpose()
        };
        Ok(Policy {
            visible: names("visible_models")?,
            allowed: names("allowed_models")?,
            keeps_content: row.get::<i64>("content_logging")? == 1,
        })
    }

    /// Whether the tenant shows its users the model named `name` (the catalogue's name).
    pub(super) fn shows(&self, name: &str) -> bool {
        listed(&self.visible, name)
    }

    /// Whether the caller may call the model named `name`: shown by the tenant and on the
    /// caller's allow-list, if they have one.
    pub(super) fn lets_call(&self, name: &str) -> bool {
        self.shows(name) && listed(&self.allowed, name)
    }

    /// Refuses a call of `model` (as the client named it, `requested`) the policy does not
    /// allow: 404 for a model the tenant hides, 403 for one off the caller's allow-list.
    pub(super) fn check(&self, model: &str, requested: &str) -> ApiResult<()> {
        if !self.shows(model) {
            return Err(models::not_found(requested));
        }
        if !listed(&self.allowed, model) {
            return Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                "model_not_allowed",
                format!("you may not call the model `{requested}`: ask your tenant's admin"),
            )
            .with_details(json!({ "param": "model" })));
        }
        Ok(())
    }
}

/// `GET /v1/models`: the models the caller may use, in OpenAI's list shape.
pub async fn list_usable(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::LlmRead)?;
    let tenant = &principal.tenant_id;
    let read = env
        .db
        .batch(vec![
            models::usable_on_plan(tenant),
            Policy::read(tenant, principal.user_id.as_str()),
        ])
        .await?;
    let policy = Policy::from_rows(&read[1])?;
    let mut listed = Vec::new();
    for row in read[0].iter() {
        let model = Model::from_row(&row)?;
        if policy.lets_call(&model.name) {
            listed.push(model.to_openai(&principal.tenant_slug));
        }
    }
    Ok(ok(&json!({ "object": "list", "data": listed })))
}

/// `GET /v1/models/{model}`: a model the caller may use, by name or alias.
pub async fn get_usable(env: &Env, principal: &Principal, name: &str) -> ApiResult<Response> {
    principal.require(Permission::LlmRead)?;
    let tenant = &principal.tenant_id;
    let read = env
        .db
        .batch(vec![
            models::resolve(tenant, name),
            Policy::read(tenant, principal.user_id.as_str()),
        ])
        .await?;
    let model = models::usable(&read[0])?.ok_or_else(|| models::not_found(name))?;
    Policy::from_rows(&read[1])?.check(&model.name, name)?;
    Ok(ok(&model.to_openai(&principal.tenant_slug)))
}

/// Whether `name` is on `list`; no list admits every name.
fn listed(list: &Option<Vec<String>>, name: &str) -> bool {
    list.as_ref()
        .is_none_or(|names| names.iter().any(|listed| listed == name))
}

/// `PUT llm/settings`: the whole policy of the tenant; an absent field takes its default.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// The catalogue's names of the models the tenant's users see; `null` or absent: all.
    #[serde(default)]
    visible_models: Option<Vec<String>>,
    /// Keep the text of each call (prompts and completions).
    #[serde(default)]
    content_logging: bool,
    /// Days the text is kept (1 to 3650); 30 when absent.
    #[serde(default)]
    content_retention_days: Option<i64>,
    /// Each user's LLM calls per minute; `null` or absent: no limit of their own.
    #[serde(default)]
    user_requests_per_minute: Option<i64>,
    /// Each user's LLM tokens (prompt and completion) per minute; `null` or absent: none.
    #[serde(default)]
    user_tokens_per_minute: Option<i64>,
}

/// `PUT llm/users/{id}/models`: a user's allow-list.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct UserModels {
    /// The catalogue's names of the only models the user may call; `null` removes the list.
    #[serde(default, deserialize_with = "present")]
    models: Option<Option<Vec<String>>>,
}

/// `names` without repeats, each one of the tenant's catalogue's names, or 422 naming
/// `field`.
async fn checked_names(
    env: &Env,
    tenant: &TenantId,
    field: &str,
    names: Vec<String>,
) -> ApiResult<Vec<String>> {
    if names.len() > MAX_LISTED_MODELS {
        return Err(ApiError::invalid_field(
            field,
            format!("at most {MAX_LISTED_MODELS} models"),
        ));
    }
    let mut unique = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    let unknown = env
        .db
        .execute(models::unknown_names(tenant, &json!(unique).to_string()))
        .await?;
    if let Some(row) = unknown.first() {
        let name: String = row.get("name")?;
        return Err(ApiError::invalid_field(
            field,
            format!("`{name}` is not the name of a model of this tenant's catalogue"),
        ));
    }
    Ok(unique)
}

fn settings_json(rows: &Rows) -> ApiResult<Json> {
    let row = rows.first();
    let visible: Option<String> = row
        .as_ref()
        .map(|row| row.get("visible_models"))
        .transpose()?
        .flatten();
    let get = |column: &str, default: i64| -> ApiResult<i64> {
        Ok(match &row {
            Some(row) => row.get(column)?,
            None => default,
        })
    };
    let limit = |column: &str| -> ApiResult<Option<i64>> {
        Ok(row
            .as_ref()
            .map(|row| row.get(column))
            .transpose()?
            .flatten())
    };
    Ok(json!({
        "visible_models": visible.map(|text| serde_json::from_str::<Json>(&text).unwrap_or(Json::Null)),
        "content_logging": get("content_logging", 0)? == 1,
        "content_retention_days": get("content_retention_days", DEFAULT_RETENTION_DAYS)?,
        "user_requests_per_minute": limit("user_requests_per_minute")?,
        "user_tokens_per_minute": limit("user_tokens_per_minute")?,
    }))
}

fn read_settings(tenant: &TenantId) -> Statement {
    sql!(
        "SELECT visible_models, content_logging, content_retention_days, user_requests_per_minute,
                user_tokens_per_minute
         FROM llm_tenant_settings WHERE tenant_id = ?",
        tenant
    )
}

/// `GET /api/v1/llm/settings`
pub async fn settings(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::LlmManage)?;
    let rows = env.db.execute(read_settings(&principal.tenant_id)).await?;
    Ok(ok(&settings_json(&rows)?))
}

/// `PUT /api/v1/llm/settings`: replaces the tenant's policy; 200 with it.
pub async fn set_settings(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    let editor = Editor::tenant(principal)?;
    let body: Settings = request.json()?;
    let retention = body
        .content_retention_days
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(1..=MAX_RETENTION_DAYS).contains(&retention) {
        return Err(ApiError::invalid_field(
            "content_retention_days",
            format!("must be a whole number from 1 to {MAX_RETENTION_DAYS}"),
        ));
    }
    for (field, limit) in [
        ("user_requests_per_minute", body.user_requests_per_minute),
        ("user_tokens_per_minute", body.user_tokens_per_minute),
    ] {
        if limit.is_some_and(|limit| !(1..=plans::MAX_LIMIT).contains(&limit)) {
            return Err(ApiError::invalid_field(
                field,
                format!(
                    "must be from 1 to {}, or null for no limit",
                    plans::MAX_LIMIT
                ),
            ));
        }
    }
    let tenant = &principal.tenant_id;
    let visible = match body.visible_models {
        Some(names) => Some(checked_names(env, tenant, "visible_models", names).await?),
        None => None,
    };
    let visible_json = visible.as_ref().map(|names| json!(names).to_string());
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO llm_tenant_settings (tenant_id, visible_models, content_logging,
                                                  content_retention_days, user_requests_per_minute,
                                                  user_tokens_per_minute, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (tenant_id) DO UPDATE SET
                     visible_models = excluded.visible_models,
                     content_logging = excluded.content_logging,
                     content_retention_days = excluded.content_retention_days,
                     user_requests_per_minute = excluded.user_requests_per_minute,
                     user_tokens_per_minute = excluded.user_tokens_per_minute,
                     updated_at = excluded.updated_at",
                tenant,
                visible_json,
                i64::from(body.content_logging),
                retention,
                body.user_requests_per_minute,
                body.user_tokens_per_minute,
                now
            ),
            editor
                .audit(
                    Action::LlmSettingsUpdated,
                    Target::new("tenant", tenant.as_str()),
                    json!({
                        "visible_models": visible,
                        "content_logging": body.content_logging,
                        "content_retention_days": retention,
                        "user_requests_per_minute": body.user_requests_per_minute,
                        "user_tokens_per_minute": body.user_tokens_per_minute,
                    }),
                    now,
                )
                .only_if_exists(&if_changed()),
            read_settings(tenant),
        ])
        .await?;
    editor.seal(env).await;
    Ok(ok(&settings_json(&results[2])?))
}

fn user_models_json(user_id: &str, rows: &Rows) -> ApiResult<Json> {
    let models: Option<String> = match rows.first() {
        Some(row) => row.get("models")?,
        None => None,
    };
    Ok(json!({
        "user_id": user_id,
        "models": models.map(|text| serde_json::from_str::<Json>(&text).unwrap_or(Json::Null)),
    }))
}

fn read_user_models(tenant: &TenantId, user_id: &str) -> Statement {
    sql!(
        "SELECT models FROM llm_user_models WHERE tenant_id = ? AND user_id = ?",
        tenant,
        user_id
    )
}

fn user_of_tenant(tenant: &TenantId, user_id: &str) -> Statement {
    sql!(
        "SELECT 1 FROM users WHERE id = ? AND tenant_id = ? AND status != 'deleted'",
        user_id,
        tenant
    )
}

/// `GET /api/v1/llm/users/{id}/models`: the user's allow-list (`null`: none).
pub async fn user_models(env: &Env, principal: &Principal, user_id: &str) -> ApiResult<Response> {
    principal.require(Permission::LlmManage)?;
    let tenant = &principal.tenant_id;
    let results = env
        .db
        .batch(vec![
            user_of_tenant(tenant, user_id),
            read_user_models(tenant, user_id),
        ])
        .await?;
    if results[0].is_empty() {
        return Err(ApiError::not_found("user"));
    }
    Ok(ok(&user_models_json(user_id, &results[1])?))
}

/// `PUT /api/v1/llm/users/{id}/models`: sets (or with `null` removes) the user's
/// allow-list; 200 with it.
pub async fn set_user_models(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    let editor = Editor::tenant(principal)?;
    let body: UserModels = request.json()?;
    let models = body.models.ok_or_else(|| {
        ApiError::invalid_field("models", "is required: a list of model names, or null")
    })?;
    let tenant = &principal.tenant_id;
    let models = match models {
        Some(names) => Some(checked_names(env, tenant, "models", names).await?),
        None => None,
    };
    let exists = user_of_tenant(tenant, user_id);
    let now = env.now();
    let write = match &models {
        Some(names) => {
            let mut upsert = sql!(
                format!(
                    "INSERT INTO llm_user_models (tenant_id, user_id, models, updated_at)
                     SELECT ?, ?, ?, ? WHERE EXISTS ({})
                     ON CONFLICT (tenant_id, user_id) DO UPDATE SET
                         models = excluded.models, updated_at = excluded.updated_at",
                    exists.sql
                ),
                tenant,
                user_id,
                json!(names).to_string(),
                now
            );
            upsert.params.extend(exists.params.iter().cloned());
            upsert
        }
        // Scoped to the tenant: nothing of another tenant's user can go.
        None => sql!(
            "DELETE FROM llm_user_models WHERE tenant_id = ? AND user_id = ?",
            tenant,
            user_id
        ),
    };
    let results = env
        .db
        .batch(vec![
            exists.clone(),
            write,
            editor
                .audit(
                    Action::LlmUserModelsUpdated,
                    Target::new("user", user_id),
                    json!({ "models": models }),
                    now,
                )
                .only_if_exists(&exists),
            read_user_models(tenant, user_id),
        ])
        .await?;
    if results[0].is_empty() {
        return Err(ApiError::not_found("user"));
    }
    editor.seal(env).await;
    Ok(ok(&user_models_json(user_id, &results[3])?))
}

/// Keeps the text of interaction `interaction_id`, in the batch that records it (`recorded`
/// holds once it is).
pub(super) fn keep_content(
    interaction_id: &str,
    tenant: &TenantId,
    request: &str,
    response: Option<&str>,
    now: i64,
    recorded: &Statement,
) -> Statement {
    sql!(
        "INSERT INTO llm_interaction_contents (interaction_id, tenant_id, request, response, created_at)
         VALUES (?, ?, ?, ?, ?)",
        interaction_id,
        tenant,
        request,
        response,
        now
    )
    .only_if_exists(recorded)
}

/// The text kept of interaction `id` of `tenant`, if any.
pub(super) fn read_content(tenant: &str, id: &str) -> Statement {
    sql!(
        "SELECT request, response FROM llm_interaction_contents
         WHERE tenant_id = ? AND interaction_id = ?",
        tenant,
        id
    )
}

/// Drops the text of calls older than their tenant's retention (30 days for a tenant that
/// has since removed its settings), for cron's housekeeping batch.
pub fn purge_expired_content(now: i64) -> Statement {
    sql!(
        "DELETE FROM llm_interaction_contents WHERE interaction_id IN (
             SELECT c.interaction_id FROM llm_interaction_contents c
             LEFT JOIN llm_tenant_settings s ON s.tenant_id = c.tenant_id
             WHERE c.created_at <= ? - 86400 * COALESCE(s.content_retention_days, ?)
             LIMIT ?)",
        now,
        DEFAULT_RETENTION_DAYS,
        PURGED_PER_RUN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(visible: Option<&[&str]>, allowed: Option<&[&str]>) -> Policy {
        let owned = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
        Policy {
            visible: visible.map(owned),
            allowed: allowed.map(owned),
            keeps_content: false,
        }
    }

    #[test]
    fn no_lists_let_every_model_through() {
        let open = Policy::default();
        assert!(open.shows("any") && open.lets_call("any"));
        assert!(open.check("any", "alias").is_ok());
    }

    #[test]
    fn a_hidden_model_does_not_exist_and_one_off_the_allow_list_is_forbidden() {
        let policy = policy(Some(&["chat", "embed"]), Some(&["chat"]));
        let hidden = policy.check("secret", "secret").unwrap_err();
        assert_eq!(hidden.status, http::StatusCode::NOT_FOUND);
        let forbidden = policy.check("embed", "embedder").unwrap_err();
        assert_eq!(forbidden.status, http::StatusCode::FORBIDDEN);
        assert_eq!(forbidden.code, "model_not_allowed");
        assert!(forbidden.message.contains("embedder"));
        assert!(policy.check("chat", "chat").is_ok());
        // An allow-list never shows what the tenant hides.
        let wider = self::policy(Some(&["chat"]), Some(&["chat", "secret"]));
        assert!(!wider.lets_call("secret"));
    }
}
