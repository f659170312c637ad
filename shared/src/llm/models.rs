//! The model catalogue. Global rows (platform admins, `admin/llm/models`) serve every
//! tenant; a tenant's rows (its owners and admins, `llm/models`) add models or override the
//! global one of the same name, which that tenant then no longer sees (the tenant's row
//! wins, as with plans). A client names a model by its name or one of its aliases; the
//! model answers only callers whose plan it lists (every plan when it lists none).
//!
//! A global model deploys on the platform's provider keys only; a tenant's on the
//! platform's or its own. Names and aliases are unique among one owner's models.

use std::collections::BTreeSet;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{Editor, errors::invalid_param, owner_of};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{Action, Target, if_changed},
    auth::principal::Principal,
    clock::rfc3339,
    db::{DbError, Row, Statement},
    error::ApiResult,
    ids::{TenantId, new_id},
    sql,
    tenancy::plans,
};

const MODEL_COLUMNS: &str = "m.id, m.tenant_id, m.name, m.aliases, m.deployments, m.context_window, \
     m.max_output_tokens, m.input_price, m.output_price, m.cached_input_price, m.plans, m.created_at";

/// The rows tenant `?` (bound twice) sees: its own, and the global ones it does not
/// override.
const VISIBLE_TO_TENANT: &str = "(m.tenant_id = ? OR (m.tenant_id IS NULL AND NOT EXISTS \
     (SELECT 1 FROM llm_models o WHERE o.tenant_id = ? AND o.name = m.name)))";

/// Rows whose plans admit tenant `?`'s plan.
const USABLE_ON_PLAN: &str = "(m.plans IS NULL OR EXISTS (SELECT 1 FROM json_each(m.plans) p \
     WHERE p.value = (SELECT t.plan_code FROM tenants t WHERE t.id = ?)))";

/// The most aliases and deployments one model may have.
const MAX_ALIASES: usize = 16;
const MAX_DEPLOYMENTS: usize = 8;
/// Far past any real model's window, and small enough that no bound of a call overflows.
const MAX_TOKENS: i64 = 100_000_000;
/// Credits per million tokens: far past any real price.
const MAX_PRICE: i64 = 1_000_000_000;

/// One place a model runs: a provider account and the provider's name of the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub provider_key_id: String,
    pub model: String,
}

/// A model of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub id: String,
    /// `None` for a global model.
    pub tenant_id: Option<String>,
    pub name: String,
    pub aliases: Vec<String>,
    /// In fallback order.
    pub deployments: Vec<Deployment>,
    pub context_window: i64,
    pub max_output_tokens: i64,
    /// Credits per million tokens.
    pub input_price: i64,
    pub output_price: i64,
    pub cached_input_price: i64,
    /// Plan codes that may use it; `None`: every plan.
    pub plans: Option<Vec<String>>,
    pub created_at: i64,
}

impl Model {
    pub(crate) fn from_row(row: &Row<'_>) -> ApiResult<Self> {
        let json_column = |column: &str, text: String| {
            serde_json::from_str::<Json>(&text).map_err(|error| {
                ApiError::internal().caused_by(format!("llm_models.{column}: {error}"))
            })
        };
        let aliases = json_column("aliases", row.get("aliases")?)?;
        let deployments = json_column("deployments", row.get("deployments")?)?;
        let plans = row
            .get::<Option<String>>("plans")?
            .map(|text| json_column("plans", text))
            .transpose()?;
        let strings = |value: &Json| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Model {
            id: row.get("id")?,
            tenant_id: row.get("tenant_id")?,
            name: row.get("name")?,
            aliases: strings(&aliases),
            deployments: serde_json::from_value(deployments).map_err(|error| {
                ApiError::internal().caused_by(format!("llm_models.deployments: {error}"))
            })?,
            context_window: row.get("context_window")?,
            max_output_tokens: row.get("max_output_tokens")?,
            input_price: row.get("input_price")?,
            output_price: row.get("output_price")?,
            cached_input_price: row.get("cached_input_price")?,
            plans: plans.as_ref().map(strings),
            created_at: row.get("created_at")?,
        })
    }

    fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "owner": owner_of(self.tenant_id.as_deref()),
            "name": self.name,
            "aliases": self.aliases,
            "deployments": self.deployments.iter().map(|deployment| json!({
                "provider_key_id": deployment.provider_key_id,
                "model": deployment.model,
            })).collect::<Vec<_>>(),
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "input_price": self.input_price,
            "output_price": self.output_price,
            "cached_input_price": self.cached_input_price,
            "plans": self.plans,
            "created_at": rfc3339(self.created_at),
        })
    }

    /// The model as OpenAI's `GET /v1/models` lists it, with the names it also answers to.
    pub(crate) fn to_openai(&self, tenant_slug: &str) -> Json {
        json!({
            "id": self.name,
            "object": "model",
            "created": self.created_at,
            "owned_by": if self.tenant_id.is_some() { tenant_slug } else { "tollgate" },
            "aliases": self.aliases,
        })
    }
}

/// A model as an editor writes it; `cached_input_price` defaults to `input_price`.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelBody {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    /// In fallback order: the first is called first, the next on a 429, 5xx or timeout.
    deployments: Vec<Deployment>,
    context_window: i64,
    max_output_tokens: i64,
    /// Credits per million prompt tokens.
    input_price: i64,
    /// Credits per million completion tokens.
    output_price: i64,
    /// Credits per million prompt tokens served from the provider's cache.
    cached_input_price: Option<i64>,
    /// Plan codes that may use the model; `null` or absent: every plan.
    plans: Option<Vec<String>>,
}

/// A name or alias: what clients write in `model`.
fn parse_model_name(field: &str, text: &str) -> ApiResult<String> {
    let valid = (1..=128).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:/@+".contains(c))
        && !text.starts_with('/')
        && !text.ends_with('/')
        && !text.contains("//");
    if !valid {
        return Err(ApiError::invalid_field(
            field,
            "must be 1 to 128 letters, digits or - . _ : / @ +, not starting or ending with /",
        ));
    }
    Ok(text.to_owned())
}

fn bounded(field: &str, value: i64, min: i64, max: i64) -> ApiResult<i64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("must be a whole number from {min} to {max}"),
        ))
    }
}

impl ModelBody {
    /// The model this body describes, checked field by field (422 naming the first bad one).
    fn parse(self, id: String, tenant_id: Option<String>, now: i64) -> ApiResult<Model> {
        let name = parse_model_name("name", &self.name)?;
        if self.aliases.len() > MAX_ALIASES {
            return Err(ApiError::invalid_field(
                "aliases",
                format!("at most {MAX_ALIASES} aliases"),
            ));
        }
        let mut names = BTreeSet::from([name.clone()]);
        let mut aliases = Vec::new();
        for (index, alias) in self.aliases.iter().enumerate() {
            let alias = parse_model_name(&format!("aliases[{index}]"), alias)?;
            if !names.insert(alias.clone()) {
                return Err(ApiError::invalid_field(
                    &format!("aliases[{index}]"),
                    "repeats the name or another alias",
                ));
            }
            aliases.push(alias);
        }
        if self.deployments.is_empty() || self.deployments.len() > MAX_DEPLOYMENTS {
            return Err(ApiError::invalid_field(
                "deployments",
                format!("must list 1 to {MAX_DEPLOYMENTS} deployments"),
            ));
        }
        for (index, deployment) in self.deployments.iter().enumerate() {
            if deployment.model.trim().is_empty() || deployment.model.len() > 200 {
                return Err(ApiError::invalid_field(
                    &format!("deployments[{index}].model"),
                    "must be 1 to 200 characters",
                ));
            }
        }
        let context_window = bounded("context_window", self.context_window, 1, MAX_TOKENS)?;
        let max_output_tokens = bounded(
            "max_output_tokens",
            self.max_output_tokens,
            1,
            context_window,
        )?;
        let input_price = bounded("input_price", self.input_price, 0, MAX_PRICE)?;
        let plans = self
            .plans
            .map(|codes| {
                if codes.is_empty() {
                    return Err(ApiError::invalid_field(
                        "plans",
                        "must name at least one plan, or be null for every plan",
                    ));
                }
                let mut parsed = BTreeSet::new();
                for (index, code) in codes.iter().enumerate() {
                    parsed.insert(plans::parse_code(&format!("plans[{index}]"), code)?.to_owned());
                }
                Ok(parsed.into_iter().collect::<Vec<_>>())
            })
            .transpose()?;
        Ok(Model {
            id,
            tenant_id,
            name,
            aliases,
            deployments: self.deployments,
            context_window,
            max_output_tokens,
            input_price,
            output_price: bounded("output_price", self.output_price, 0, MAX_PRICE)?,
            cached_input_price: bounded(
                "cached_input_price",
                self.cached_input_price.unwrap_or(input_price),
                0,
                MAX_PRICE,
            )?,
            plans,
            created_at: now,
        })
    }
}

/// Every name `model` answers to, as a JSON array.
fn names_json(model: &Model) -> String {
    json!(
        std::iter::once(&model.name)
            .chain(&model.aliases)
            .collect::<Vec<_>>()
    )
    .to_string()
}

/// The distinct provider keys `model` deploys on, as a JSON array.
fn key_ids_json(model: &Model) -> (String, i64) {
    let ids: BTreeSet<&str> = model
        .deployments
        .iter()
        .map(|deployment| deployment.provider_key_id.as_str())
        .collect();
    (json!(ids).to_string(), ids.len() as i64)
}

/// True (one row) when another model of the same owner answers to one of `model`'s names.
fn name_taken(model: &Model) -> Statement {
    let names = names_json(model);
    sql!(
        "SELECT 1 FROM llm_models x WHERE x.tenant_id IS ? AND x.id <> ?
           AND (x.name IN (SELECT value FROM json_each(?))
                OR EXISTS (SELECT 1 FROM json_each(x.aliases) a WHERE a.value IN (SELECT value FROM json_each(?))))",
        model.tenant_id.clone(),
        &model.id,
        names.clone(),
        names
    )
}

/// The keys of `model`'s deployments it may not use: unknown, another tenant's, or (for a
/// global model) a tenant's.
fn unusable_keys(model: &Model) -> Statement {
    sql!(
        "SELECT j.value AS id FROM json_each(?) j
         WHERE j.value NOT IN (SELECT k.id FROM llm_provider_keys k
                               WHERE k.tenant_id IS NULL OR k.tenant_id IS ?)",
        key_ids_json(model).0,
        model.tenant_id.clone()
    )
}

/// `WHERE` conditions a write of `model` needs: its names free and its keys usable.
fn write_guard(model: &Model) -> (String, Vec<crate::db::Value>) {
    let taken = name_taken(model);
    let (ids, count) = key_ids_json(model);
    let sql = format!(
        "NOT EXISTS ({}) AND (SELECT COUNT(*) FROM llm_provider_keys k
                              WHERE k.id IN (SELECT value FROM json_each(?))
                                AND (k.tenant_id IS NULL OR k.tenant_id IS ?)) = ?",
        taken.sql
    );
    let mut params = taken.params;
    params.extend([ids.into(), model.tenant_id.clone().into(), count.into()]);
    (sql, params)
}

/// Why a guarded write of `model` wrote nothing, from the diagnosis rows of its batch: a key
/// it may not use (422) or a name another model answers to (409).
fn refusal(unusable: &crate::db::Rows, model: &Model) -> ApiResult<ApiError> {
    if let Some(row) = unusable.first() {
        let id: String = row.get("id")?;
        let index = model
            .deployments
            .iter()
            .position(|deployment| deployment.provider_key_id == id)
            .unwrap_or(0);
        return Ok(ApiError::invalid_field(
            &format!("deployments[{index}].provider_key_id"),
            format!("no provider key {id} that this model may use"),
        ));
    }
    Ok(name_taken_error())
}

fn name_taken_error() -> ApiError {
    ApiError::conflict(
        "model_name_taken",
        "another model of the same catalogue already answers to this name or one of these aliases",
    )
}

/// A unique-index refusal from a concurrent write of the same name.
fn concurrent_name(error: DbError) -> ApiError {
    if error.is_unique_violation("llm_models") {
        name_taken_error()
    } else {
        error.into()
    }
}

fn audit_metadata(model: &Model) -> Json {
    let mut metadata = model.to_json();
    if let Some(fields) = metadata.as_object_mut() {
        fields.remove("id");
        fields.remove("created_at");
    }
    metadata
}

async fn create(env: &Env, request: &ApiRequest, editor: &Editor) -> ApiResult<Response> {
    let body: ModelBody = request.json()?;
    let now = env.now();
    let model = body.parse(new_id(), editor.tenant_id().map(str::to_owned), now)?;
    let (guard, guard_params) = write_guard(&model);
    let mut insert = sql!(
        format!(
            "INSERT INTO llm_models (id, tenant_id, name, aliases, deployments, context_window, max_output_tokens,
                                     input_price, output_price, cached_input_price, plans, created_at, updated_at)
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE {guard}"
        ),
        &model.id,
        model.tenant_id.clone(),
        &model.name,
        json!(model.aliases).to_string(),
        deployments_json(&model),
        model.context_window,
        model.max_output_tokens,
        model.input_price,
        model.output_price,
        model.cached_input_price,
        model.plans.as_ref().map(|codes| json!(codes).to_string()),
        now,
        now
    );
    insert.params.extend(guard_params);
    let results = env
        .db
        .batch(vec![
            insert,
            editor
                .audit(
                    Action::LlmModelCreated,
                    Target::new("llm_model", &model.id),
                    audit_metadata(&model),
                    now,
                )
                .only_if_exists(&if_changed()),
            unusable_keys(&model),
        ])
        .await
        .map_err(concurrent_name)?;
    if results[0].rows_affected == 0 {
        return Err(refusal(&results[2], &model)?);
    }
    editor.seal(env).await;
    Ok(created(&model.to_json()))
}

fn deployments_json(model: &Model) -> String {
    json!(model
        .deployments
        .iter()
        .map(|deployment| json!({ "provider_key_id": deployment.provider_key_id, "model": deployment.model }))
        .collect::<Vec<_>>())
    .to_string()
}

async fn update(env: &Env, request: &ApiRequest, editor: &Editor, id: &str) -> ApiResult<Response> {
    let body: ModelBody = request.json()?;
    let now = env.now();
    let mut model = body.parse(id.to_owned(), editor.tenant_id().map(str::to_owned), now)?;
    let (guard, guard_params) = write_guard(&model);
    let mut write = sql!(
        format!(
            "UPDATE llm_models SET name = ?, aliases = ?, deployments = ?, context_window = ?, max_output_tokens = ?,
                 input_price = ?, output_price = ?, cached_input_price = ?, plans = ?, updated_at = ?
             WHERE id = ? AND tenant_id IS ? AND {guard}"
        ),
        &model.name,
        json!(model.aliases).to_string(),
        deployments_json(&model),
        model.context_window,
        model.max_output_tokens,
        model.input_price,
        model.output_price,
        model.cached_input_price,
        model.plans.as_ref().map(|codes| json!(codes).to_string()),
        now,
        id,
        model.tenant_id.clone()
    );
    write.params.extend(guard_params);
    let results = env
        .db
        .batch(vec![
            write,
            editor
                .audit(
                    Action::LlmModelUpdated,
                    Target::new("llm_model", id),
                    audit_metadata(&model),
                    now,
                )
                .only_if_exists(&if_changed()),
            unusable_keys(&model),
            sql!(
                "SELECT created_at FROM llm_models WHERE id = ? AND tenant_id IS ?",
                id,
                model.tenant_id.clone()
            ),
        ])
        .await
        .map_err(concurrent_name)?;
    let Some(existing) = results[3].first() else {
        return Err(ApiError::not_found("model"));
    };
    if results[0].rows_affected == 0 {
        return Err(refusal(&results[2], &model)?);
    }
    model.created_at = existing.get("created_at")?;
    editor.seal(env).await;
    Ok(ok(&model.to_json()))
}

async fn delete(env: &Env, editor: &Editor, id: &str) -> ApiResult<Response> {
    let exists = sql!(
        "SELECT 1 FROM llm_models WHERE id = ? AND tenant_id IS ?",
        id,
        editor.tenant_id()
    );
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            editor
                .audit(
                    Action::LlmModelDeleted,
                    Target::new("llm_model", id),
                    json!({}),
                    now,
                )
                .only_if_exists(&exists),
            sql!(
                "DELETE FROM llm_models WHERE id = ? AND tenant_id IS ?",
                id,
                editor.tenant_id()
            ),
        ])
        .await?;
    if results[1].rows_affected == 0 {
        return Err(ApiError::not_found("model"));
    }
    editor.seal(env).await;
    Ok(no_content())
}

/// The editor's catalogue: the global rows for a platform admin; for a tenant, its own
/// rows and the global ones it does not override, by name.
async fn list(env: &Env, request: &ApiRequest, editor: &Editor) -> ApiResult<Response> {
    let page = request.page()?;
    let statement = match editor.tenant_id() {
        None => sql!(
            format!(
                "SELECT {MODEL_COLUMNS} FROM llm_models m WHERE m.tenant_id IS NULL
                 ORDER BY m.name LIMIT ? OFFSET ?"
            ),
            page.fetch_limit(),
            page.offset
        ),
        Some(tenant) => sql!(
            format!(
                "SELECT {MODEL_COLUMNS} FROM llm_models m WHERE {VISIBLE_TO_TENANT}
                 ORDER BY m.name, m.tenant_id IS NULL LIMIT ? OFFSET ?"
            ),
            tenant,
            tenant,
            page.fetch_limit(),
            page.offset
        ),
    };
    let rows = env.db.execute(statement).await?;
    let models = rows
        .iter()
        .map(|row| Ok(Model::from_row(&row)?.to_json()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(models)))
}

/// The model `name` (a name or an alias) resolves to for tenant `tenant`, `?`-bound in this
/// order: the tenant's rows before the global ones it does not override, a name before an
/// alias. Yields its id.
fn resolution(tenant: &TenantId, name: &str) -> Statement {
    sql!(
        format!(
            "SELECT m.id FROM llm_models m
             WHERE {VISIBLE_TO_TENANT}
               AND (m.name = ? OR EXISTS (SELECT 1 FROM json_each(m.aliases) a WHERE a.value = ?))
             ORDER BY m.tenant_id IS NULL, m.name <> ? LIMIT 1"
        ),
        tenant,
        tenant,
        name,
        name,
        name
    )
}

/// The model a call names, read with the caller's plan: `plan_code` beside the model's
/// columns. No row when no model answers to `name` for the tenant.
pub(crate) fn resolve(tenant: &TenantId, name: &str) -> Statement {
    let inner = resolution(tenant, name);
    let mut statement = sql!(
        format!(
            "SELECT {MODEL_COLUMNS}, (SELECT t.plan_code FROM tenants t WHERE t.id = ?) AS plan_code
             FROM llm_models m WHERE m.id = ({})",
            inner.sql
        ),
        tenant
    );
    statement.params.extend(inner.params);
    statement
}

/// The deployments of the model a call names, in fallback order, each with the provider
/// key it may use (a deployment whose key is gone, or is not one the model may use, is left
/// out).
pub(crate) fn deployments(tenant: &TenantId, name: &str) -> Statement {
    let inner = resolution(tenant, name);
    let mut statement = sql!(format!(
        "SELECT json_extract(d.value, '$.model') AS deployment_model, k.id AS provider_key_id,
                k.kind, k.base_url, k.api_key_sealed
         FROM llm_models m, json_each(m.deployments) d
         JOIN llm_provider_keys k ON k.id = json_extract(d.value, '$.provider_key_id')
                                 AND (k.tenant_id IS NULL OR k.tenant_id = m.tenant_id)
         WHERE m.id = ({})
         ORDER BY d.key",
        inner.sql
    ));
    statement.params.extend(inner.params);
    statement
}

/// The names of JSON array `names` (`?`) that are not the name of a model tenant `tenant`
/// sees, as `name`.
pub(crate) fn unknown_names(tenant: &TenantId, names: &str) -> Statement {
    sql!(
        format!(
            "SELECT j.value AS name FROM json_each(?) j
             WHERE NOT EXISTS (SELECT 1 FROM llm_models m WHERE {VISIBLE_TO_TENANT} AND m.name = j.value)
             ORDER BY j.key LIMIT 1"
        ),
        names,
        tenant,
        tenant
    )
}

/// The resolved model from [`resolve`]'s rows, when the caller's plan may use it; `None`
/// answers 404 `model_not_found`, whether no such model exists or the plan lacks it.
pub(crate) fn usable(rows: &crate::db::Rows) -> ApiResult<Option<Model>> {
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let model = Model::from_row(&row)?;
    let plan: Option<String> = row.get("plan_code")?;
    let allowed = match (&model.plans, plan) {
        (None, _) => true,
        (Some(codes), Some(plan)) => codes.contains(&plan),
        (Some(_), None) => false,
    };
    Ok(allowed.then_some(model))
}

/// The 404 for a model the caller cannot use, in OpenAI's words.
pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "model_not_found",
        format!("The model `{name}` does not exist or you do not have access to it."),
    )
    .with_details(json!({ "param": "model" }))
}

/// The models tenant `tenant`'s plan may use, by name.
pub(crate) fn usable_on_plan(tenant: &TenantId) -> Statement {
    sql!(
        format!(
            "SELECT {MODEL_COLUMNS} FROM llm_models m
             WHERE {VISIBLE_TO_TENANT} AND {USABLE_ON_PLAN} ORDER BY m.name"
        ),
        tenant,
        tenant,
        tenant
    )
}

/// The body's `model`, or 400.
pub(crate) fn requested_name(body: &serde_json::Map<String, Json>) -> ApiResult<&str> {
    body.get("model")
        .and_then(Json::as_str)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| invalid_param("model", "you must name a model"))
}

/// `GET /api/v1/admin/llm/models` (platform admin)
pub async fn admin_list(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    list(env, request, &Editor::platform(env, request).await?).await
}

/// `POST /api/v1/admin/llm/models` (platform admin)
pub async fn admin_create(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    create(env, request, &Editor::platform(env, request).await?).await
}

/// `PUT /api/v1/admin/llm/models/{id}` (platform admin)
pub async fn admin_update(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    update(env, request, &Editor::platform(env, request).await?, id).await
}

/// `DELETE /api/v1/admin/llm/models/{id}` (platform admin)
pub async fn admin_delete(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    delete(env, &Editor::platform(env, request).await?, id).await
}

/// `GET /api/v1/llm/models` (owner, admin)
pub async fn tenant_list(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    list(env, request, &Editor::tenant(principal)?).await
}

/// `POST /api/v1/llm/models` (owner, admin)
pub async fn tenant_create(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    create(env, request, &Editor::tenant(principal)?).await
}

/// `PUT /api/v1/llm/models/{id}` (owner, admin)
pub async fn tenant_update(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> ApiResult<Response> {
    update(env, request, &Editor::tenant(principal)?, id).await
}

/// `DELETE /api/v1/llm/models/{id}` (owner, admin)
pub async fn tenant_delete(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    delete(env, &Editor::tenant(principal)?, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Json) -> ModelBody {
        serde_json::from_value(value).unwrap()
    }

    fn valid() -> Json {
        json!({
            "name": "acme-chat", "aliases": ["chat"],
            "deployments": [{"provider_key_id": "k1", "model": "gpt-4o"}],
            "context_window": 128000, "max_output_tokens": 4096,
            "input_price": 2500000, "output_price": 10000000,
        })
    }

    fn refused_field(change: impl FnOnce(&mut Json)) -> String {
        let mut value = valid();
        change(&mut value);
        let error = body(value).parse("id".into(), None, 0).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        error.details["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_valid_model_takes_the_input_price_for_cached_tokens_by_default() {
        let model = body(valid()).parse("id".into(), None, 0).unwrap();
        assert_eq!(model.cached_input_price, 2_500_000);
        assert_eq!(model.plans, None);
    }

    #[test]
    fn each_rule_names_the_field_it_refuses() {
        assert_eq!(refused_field(|v| v["name"] = json!("has space")), "name");
        assert_eq!(
            refused_field(|v| v["aliases"] = json!(["acme-chat"])),
            "aliases[0]"
        );
        assert_eq!(
            refused_field(|v| v["deployments"] = json!([])),
            "deployments"
        );
        assert_eq!(
            refused_field(|v| v["deployments"][0]["model"] = json!(" ")),
            "deployments[0].model"
        );
        assert_eq!(
            refused_field(|v| v["context_window"] = json!(0)),
            "context_window"
        );
        assert_eq!(
            refused_field(|v| v["max_output_tokens"] = json!(200000)),
            "max_output_tokens"
        );
        assert_eq!(
            refused_field(|v| v["output_price"] = json!(-1)),
            "output_price"
        );
        assert_eq!(refused_field(|v| v["plans"] = json!(["GOLD"])), "plans[0]");
        assert_eq!(refused_field(|v| v["plans"] = json!([])), "plans");
    }

    #[test]
    fn names_may_carry_a_providers_namespace() {
        assert!(parse_model_name("name", "meta-llama/Llama-3.1-8B-Instruct").is_ok());
        assert!(parse_model_name("name", "claude-3-5-sonnet@20240620").is_ok());
        for bad in ["", "/x", "x/", "a//b", "tab\there"] {
            assert!(parse_model_name("name", bad).is_err(), "{bad:?}");
        }
    }
}
