//! A tenant's webhook endpoints: create (the secret is shown once), list, read, change,
//! delete, and rotate the secret with an overlap during which both secrets sign.

use serde::Deserialize;
use serde_json::{Value as Json, json};

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
    webhooks::{
        events::{EVENT_TYPES, TEST_EVENT, parse_subscriptions},
        signing::new_secret,
        urls::parse_endpoint_url,
    },
};

/// Endpoints per tenant: enough for every integration, few enough that one event cannot
/// fan out into a flood.
pub const MAX_ENDPOINTS_PER_TENANT: i64 = 20;

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, enabled, disabled_reason, \
     disabled_at, previous_secret_expires_at, created_at, updated_at";

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEndpoint {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateEndpoint {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

fn parse_description(text: &str) -> ApiResult<String> {
    let text = text.trim();
    if text.chars().count() > 200 {
        return Err(ApiError::invalid_field(
            "description",
            "must be at most 200 characters",
        ));
    }
    Ok(text.to_owned())
}

fn endpoint_json(row: &Row<'_>, now: i64) -> ApiResult<Json> {
    let event_types: Json =
        serde_json::from_str(&row.get::<String>("event_types")?).unwrap_or_else(|_| json!([]));
    let rotation_ends = row
        .get::<Option<i64>>("previous_secret_expires_at")?
        .filter(|expiry| *expiry > now);
    Ok(json!({
        "id": row.get::<String>("id")?,
        "url": row.get::<String>("url")?,
        "description": row.get::<String>("description")?,
        "event_types": event_types,
        "enabled": row.get::<bool>("enabled")?,
        "disabled_reason": row.get::<Option<String>>("disabled_reason")?,
        "disabled_at": row.get::<Option<i64>>("disabled_at")?.map(rfc3339),
        "previous_secret_expires_at": rotation_ends.map(rfc3339),
        "created_at": rfc3339(row.get("created_at")?),
        "updated_at": rfc3339(row.get("updated_at")?),
    }))
}

/// `POST /api/v1/webhooks/endpoints`: 201 with the secret, which is never shown again.
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::WebhooksManage)?;
    let body: CreateEndpoint = request.json()?;
    let url = parse_endpoint_url(&body.url, env.config.webhooks_allow_private)?;
    let event_types = parse_subscriptions(&body.event_types)?;
    let description = parse_description(body.description.as_deref().unwrap_or_default())?;
    let enabled = body.enabled.unwrap_or(true);
    let now = env.now();
    let id = new_id();
    let secret = new_secret();
    let tenant = &principal.tenant_id;
    // The count is checked by the insert itself, so concurrent creations cannot overshoot.
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO webhook_endpoints
                     (id, tenant_id, url, description, event_types, enabled, disabled_reason, disabled_at, secret, created_at, updated_at)
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
                 WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = ?) < ?",
                &id,
                tenant,
                &url,
                &description,
                json!(event_types).to_string(),
                enabled,
                (!enabled).then_some("manual"),
                (!enabled).then_some(now),
                &secret,
                now,
                now,
                tenant,
                MAX_ENDPOINTS_PER_TENANT
            ),
            audit::entry(
                tenant.as_str(),
                &Actor::of(principal),
                Action::WebhookCreated,
                Target::new("webhook_endpoint", &id),
                json!({ "url": url, "event_types": event_types, "enabled": enabled }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
            sql!(
                format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?"),
                &id
            ),
        ])
        .await?;
    let row = results[2].first().ok_or_else(|| {
        ApiError::conflict(
            "endpoint_limit_reached",
            format!("a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"),
        )
        .with_details(json!({ "limit": MAX_ENDPOINTS_PER_TENANT }))
    })?;
    let mut endpoint = endpoint_json(&row, now)?;
    endpoint["secret"] = json!(secret);
    audit::try_seal(env, tenant.as_str()).await;
    Ok(created(&endpoint))
}

/// `GET /api/v1/webhooks/endpoints`
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::WebhooksRead)?;
    let page = request.page()?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ?
                 ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
            ),
            &principal.tenant_id,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let now = env.now();
    let items = rows
        .iter()
        .map(|row| endpoint_json(&row, now))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(items)))
}

async fn fetch(env: &Env, principal: &Principal, id: &str) -> ApiResult<Json> {
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ? AND tenant_id = ?"
            ),
            id,
            &principal.tenant_id
        ))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    endpoint_json(&row, env.now())
}

/// `GET /api/v1/webhooks/endpoints/{id}`
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::WebhooksRead)?;
    Ok(ok(&fetch(env, principal, id).await?))
}

/// `PATCH /api/v1/webhooks/endpoints/{id}`: url, event types, description, enabled.
/// Enabling an endpoint that delivery switched off resumes its pending deliveries.
pub async fn update(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::WebhooksManage)?;
    let body: UpdateEndpoint = request.json()?;
    let url = body
        .url
        .as_deref()
        .map(|url| parse_endpoint_url(url, env.config.webhooks_allow_private))
        .transpose()?;
    let event_types = body
        .event_types
        .as_deref()
        .map(parse_subscriptions)
        .transpose()?
        .map(|types| json!(types).to_string());
    let description = body
        .description
        .as_deref()
        .map(parse_description)
        .transpose()?;
    let now = env.now();
    let metadata = json!({ "url": url, "event_types": event_types, "enabled": body.enabled });
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE webhook_endpoints SET
                 url = COALESCE(?, url),
                 event_types = COALESCE(?, event_types),
                 description = COALESCE(?, description),
                 disabled_reason = CASE WHEN ? IS NULL THEN disabled_reason
                                        WHEN ? THEN NULL
                                        ELSE COALESCE(disabled_reason, 'manual') END,
                 disabled_at = CASE WHEN ? IS NULL THEN disabled_at
                                    WHEN ? THEN NULL
                                    ELSE COALESCE(disabled_at, ?) END,
                 enabled = COALESCE(?, enabled),
                 updated_at = ?
             WHERE id = ? AND tenant_id = ?",
                url,
                event_types,
                description,
                body.enabled,
                body.enabled,
                body.enabled,
                body.enabled,
                now,
                body.enabled,
                now,
                id,
                &principal.tenant_id
            ),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::WebhookUpdated,
                Target::new("webhook_endpoint", id),
                metadata,
                now,
            )
            .only_if_exists(&audit::if_changed()),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(ok(&fetch(env, principal, id).await?))
}

/// `DELETE /api/v1/webhooks/endpoints/{id}`: the endpoint and its delivery log go.
pub async fn delete(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::WebhooksManage)?;
    let tenant = &principal.tenant_id;
    let exists = sql!(
        "SELECT 1 FROM webhook_endpoints WHERE id = ? AND tenant_id = ?",
        id,
        tenant
    );
    let results = env
        .db
        .batch(vec![
            audit::entry(
                tenant.as_str(),
                &Actor::of(principal),
                Action::WebhookDeleted,
                Target::new("webhook_endpoint", id),
                json!({}),
                env.now(),
            )
            .only_if_exists(&exists),
            sql!(
                "DELETE FROM webhook_attempts WHERE delivery_id IN
                     (SELECT id FROM webhook_deliveries WHERE endpoint_id = ? AND tenant_id = ?)",
                id,
                tenant
            ),
            sql!(
                "DELETE FROM webhook_deliveries WHERE endpoint_id = ? AND tenant_id = ?",
                id,
                tenant
            ),
            sql!(
                "DELETE FROM webhook_endpoints WHERE id = ? AND tenant_id = ?",
                id,
                tenant
            ),
        ])
        .await?;
    if results[3].rows_affected == 0 {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    audit::try_seal(env, tenant.as_str()).await;
    Ok(no_content())
}

/// `POST /api/v1/webhooks/endpoints/{id}/rotate-secret`: a new secret (shown once); the
/// old one keeps signing alongside it for the configured overlap, so a receiver can
/// switch without rejecting a message. Rotating again within the overlap retires the
/// oldest secret at once.
pub async fn rotate_secret(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::WebhooksManage)?;
    let now = env.now();
    let secret = new_secret();
    let expires_at = now + env.config.webhook_secret_overlap_seconds;
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = ?,
                     secret = ?, updated_at = ?
                 WHERE id = ? AND tenant_id = ?",
                expires_at,
                &secret,
                now,
                id,
                &principal.tenant_id
            ),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::WebhookSecretRotated,
                Target::new("webhook_endpoint", id),
                json!({ "previous_secret_expires_at": rfc3339(expires_at) }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    let mut endpoint = fetch(env, principal, id).await?;
    endpoint["secret"] = json!(secret);
    Ok(ok(&endpoint))
}

/// `GET /api/v1/webhooks/event-types`: what `event_types` may name.
pub async fn event_types(principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::WebhooksRead)?;
    Ok(ok(&json!({
        "data": EVENT_TYPES,
        "wildcards": ["*", "<group>.*"],
        "test_event": TEST_EVENT,
    })))
}
