//! API keys: `tg_…` secrets shown once, stored as SHA-256, scoped, expiring, revocable.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{self, Action, Actor, Target},
    auth::{
        principal::Principal,
        rbac::{Permission, Scopes},
    },
    clock::{parse_rfc3339, rfc3339},
    db::{Row, Statement},
    error::ApiResult,
    ids::new_id,
    sql,
    tenancy::plans,
    tokens::{random_token, sha256_hex},
    webhooks::events,
};

const KEY_PREFIX: &str = "tg_";
/// `tg_` and the first 8 characters of the secret: enough to tell keys apart in a list.
const DISPLAY_PREFIX_LEN: usize = 11;
/// `last_used_at` is written at most this often per key, so a busy key does not turn every
/// request into a write of its own; the value may be this stale.
const LAST_USED_RESOLUTION_SECONDS: i64 = 60;

pub fn looks_like_key(secret: &str) -> bool {
    secret.starts_with(KEY_PREFIX)
}

/// Reads a presented key (by hash) with its owner, tenant, plan rate and when it was last
/// noted in use.
pub(crate) fn find(key_hash: &str) -> Statement {
    sql!(
        format!(
            "SELECT k.id, k.tenant_id, k.user_id, k.scopes, k.expires_at, k.revoked_at,
                    k.last_used_at, u.role, u.status AS user_status, t.slug,
                    t.status AS tenant_status, {rpm} AS rpm
             FROM api_keys k
             JOIN users u ON u.id = k.user_id
             JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = ?",
            rpm = plans::REQUESTS_PER_MINUTE_OF_T
        ),
        key_hash
    )
}

/// Whether a key last noted in use at `last_used_at` is due a new note at `now`.
pub(crate) fn use_is_stale(last_used_at: Option<i64>, now: i64) -> bool {
    last_used_at.is_none_or(|noted| noted <= now - LAST_USED_RESOLUTION_SECONDS)
}

/// Notes the use of a good key, unless it was noted within the resolution: the condition
/// holds in the statement itself, so concurrent requests write it once.
pub(crate) fn note_use(key_hash: &str, now: i64) -> Statement {
    sql!(
        "UPDATE api_keys SET last_used_at = ?
         WHERE key_hash = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
           AND (last_used_at IS NULL OR last_used_at <= ?)
           AND user_id IN (SELECT id FROM users WHERE status = 'active')",
        now,
        key_hash,
        now,
        now - LAST_USED_RESOLUTION_SECONDS
    )
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    name: String,
    scopes: Vec<String>,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateKey {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    /// Absent: unchanged; `null`: never expires.
    #[serde(default, deserialize_with = "crate::api::present")]
    expires_at: Option<Option<String>>,
}

fn parse_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    Ok(name.to_owned())
}

fn parse_scopes(principal: &Principal, scopes: &[String]) -> ApiResult<Scopes> {
    if scopes.is_empty() {
        return Err(ApiError::invalid_field("scopes", "name at least one scope"));
    }
    let scopes = Scopes::parse_list(scopes.iter().map(String::as_str)).map_err(|bad| {
        ApiError::invalid_field(
            "scopes",
            format!(
                "{bad:?} is not a scope (resource:read, resource:write, resource:*, *:read or *)"
            ),
        )
    })?;
    let held = principal.scopes();
    if let Some(beyond) = scopes.0.iter().find(|scope| !held.covers(scope)) {
        return Err(ApiError::invalid_field(
            "scopes",
            format!("{beyond} goes beyond what you hold ({held})"),
        ));
    }
    Ok(scopes)
}

fn parse_expiry(text: &str, now: i64) -> ApiResult<i64> {
    let expiry = parse_rfc3339(text)
        .ok_or_else(|| ApiError::invalid_field("expires_at", "must be an RFC 3339 time"))?;
    if expiry <= now {
        return Err(ApiError::invalid_field(
            "expires_at",
            "must be in the future",
        ));
    }
    Ok(expiry)
}

fn key_json(row: &Row<'_>) -> ApiResult<Json> {
    let time = |column: &str| -> ApiResult<Option<String>> {
        Ok(row.get::<Option<i64>>(column)?.map(rfc3339))
    };
    Ok(json!({
        "id": row.get::<String>("id")?,
        "name": row.get::<String>("name")?,
        "prefix": row.get::<String>("prefix")?,
        "user_id": row.get::<String>("user_id")?,
        "scopes": Scopes::parse_stored(&row.get::<String>("scopes")?).to_vec(),
        "expires_at": time("expires_at")?,
        "last_used_at": time("last_used_at")?,
        "revoked_at": time("revoked_at")?,
        "created_at": time("created_at")?,
    }))
}

const KEY_COLUMNS: &str =
    "id, name, prefix, user_id, scopes, expires_at, last_used_at, revoked_at, created_at";

/// `POST /api/v1/api-keys`
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::OwnApiKeys)?;
    let body: CreateKey = request.json()?;
    let now = env.now();
    let name = parse_name(&body.name)?;
    let scopes = parse_scopes(principal, &body.scopes)?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| parse_expiry(text, now))
        .transpose()?;
    let id = new_id();
    let secret = format!("{KEY_PREFIX}{}", random_token(30));
    let prefix = &secret[..DISPLAY_PREFIX_LEN];
    // The plan's key limit is checked by the insert itself, so concurrent creations
    // cannot overshoot it.
    let inserted = sql!(
            format!(
                "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, key_hash, scopes, expires_at, created_at, updated_at)
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
                 WHERE (SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL
                          AND (expires_at IS NULL OR expires_at > ?))
                     < (SELECT {max_keys} FROM tenants t WHERE t.id = ?)",
                max_keys = plans::MAX_API_KEYS_OF_T
            ),
            &id,
            &principal.tenant_id,
            &principal.user_id,
            &name,
            prefix,
            sha256_hex(&secret),
            scopes.to_string(),
            expires_at,
            now,
            now,
            &principal.tenant_id,
            now,
            &principal.tenant_id
        );
    let audited = audit::entry(
        principal.tenant_id.as_str(),
        &Actor::of(principal),
        Action::ApiKeyCreated,
        Target::new("api_key", &id),
        json!({
            "name": name,
            "prefix": prefix,
            "user_id": principal.user_id,
            "scopes": scopes.to_vec(),
            "expires_at": expires_at.map(rfc3339),
        }),
        now,
    )
    .only_if_exists(&sql!("SELECT 1 FROM api_keys WHERE id = ?", &id));
    // Tenant webhooks hear of the key in the same batch (no key, no event).
    let event = events::emit_from(
        "apikey.created",
        sql!(
            "SELECT tenant_id, ? AS payload, created_at FROM api_keys WHERE id = ?",
            json!({
                "id": id,
                "name": name,
                "prefix": prefix,
                "user_id": principal.user_id,
                "scopes": scopes.to_vec(),
                "expires_at": expires_at,
            })
            .to_string(),
            &id
        ),
    );
    let results = env.db.batch(vec![inserted, audited, event]).await?;
    if results[0].rows_affected == 0 {
        return Err(plans::limit_reached("max_api_keys", "active API keys"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(created(&json!({
        "id": id,
        "name": name,
        "prefix": prefix,
        "key": secret,
        "user_id": principal.user_id,
        "scopes": scopes.to_vec(),
        "expires_at": expires_at.map(rfc3339),
        "created_at": rfc3339(now),
    })))
}

/// Which keys a caller may see: its own, or with `AllApiKeys` every key of its tenant.
fn visible_to(principal: &Principal) -> (&'static str, Option<String>) {
    if principal.require(Permission::AllApiKeys).is_ok() {
        ("", None)
    } else {
        (
            " AND user_id = ?",
            Some(principal.user_id.as_str().to_owned()),
        )
    }
}

/// `GET /api/v1/api-keys`
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::OwnApiKeysRead)?;
    let page = request.page()?;
    let (only_own, user) = visible_to(principal);
    let mut statement = sql!(
        format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?{only_own} ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
        ),
        &principal.tenant_id
    );
    if let Some(user) = user {
        statement = statement.bind(user);
    }
    let rows = env
        .db
        .execute(statement.bind(page.fetch_limit()).bind(page.offset))
        .await?;
    let keys = rows
        .iter()
        .map(|row| key_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(keys)))
}

async fn fetch(env: &Env, principal: &Principal, id: &str) -> ApiResult<Json> {
    let (only_own, user) = visible_to(principal);
    let mut statement = sql!(
        format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ? AND tenant_id = ?{only_own}"),
        id,
        &principal.tenant_id
    );
    if let Some(user) = user {
        statement = statement.bind(user);
    }
    let rows = env.db.execute(statement).await?;
    rows.first()
        .map(|row| key_json(&row))
        .ok_or_else(|| ApiError::not_found("API key"))?
}

/// `GET /api/v1/api-keys/{id}`
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::OwnApiKeysRead)?;
    Ok(ok(&fetch(env, principal, id).await?))
}

/// `PATCH /api/v1/api-keys/{id}`: name, scopes, expiry, of a key still in force.
pub async fn update(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::OwnApiKeys)?;
    let body: UpdateKey = request.json()?;
    let now = env.now();
    let name = body.name.as_deref().map(parse_name).transpose()?;
    let scopes = body
        .scopes
        .as_deref()
        .map(|scopes| parse_scopes(principal, scopes))
        .transpose()?;
    let expiry = match &body.expires_at {
        Some(Some(text)) => Some(Some(parse_expiry(text, now)?)),
        Some(None) => Some(None),
        None => None,
    };
    let metadata = json!({
        "name": name,
        "scopes": scopes.as_ref().map(Scopes::to_vec),
        "expires_at": expiry.map(|expiry| expiry.map(rfc3339)),
    });
    let (only_own, user) = visible_to(principal);
    let mut statement = sql!(
        format!(
            "UPDATE api_keys SET
                 name = COALESCE(?, name),
                 scopes = COALESCE(?, scopes),
                 expires_at = CASE WHEN ? THEN ? ELSE expires_at END,
                 updated_at = ?
             WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?){only_own}"
        ),
        name,
        scopes.map(|scopes| scopes.to_string()),
        expiry.is_some(),
        expiry.flatten(),
        now,
        id,
        &principal.tenant_id,
        now
    );
    if let Some(user) = user {
        statement = statement.bind(user);
    }
    let audited = audit::entry(
        principal.tenant_id.as_str(),
        &Actor::of(principal),
        Action::ApiKeyUpdated,
        Target::new("api_key", id),
        metadata,
        now,
    )
    .only_if_exists(&audit::if_changed());
    let results = env.db.batch(vec![statement, audited]).await?;
    if results[0].rows_affected == 0 {
        // Revoked and expired keys stay listed but cannot change: a key revived by a new
        // expiry would be one more than the plan's key limit counted when it was created.
        let key = fetch(env, principal, id).await?;
        return Err(if key["revoked_at"].is_null() {
            ApiError::conflict(
                "api_key_expired",
                "an expired API key cannot be changed; create a new one",
            )
        } else {
            ApiError::conflict("api_key_revoked", "a revoked API key cannot be changed")
        });
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(ok(&fetch(env, principal, id).await?))
}

/// `DELETE /api/v1/api-keys/{id}`: revokes; revoking again changes nothing (and is not
/// audited again).
pub async fn revoke(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::OwnApiKeys)?;
    let (only_own, user) = visible_to(principal);
    let mut still_active = sql!(
        format!(
            "SELECT 1 FROM api_keys WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL{only_own}"
        ),
        id,
        &principal.tenant_id
    );
    if let Some(user) = &user {
        still_active = still_active.bind(user);
    }
    let audited = audit::entry(
        principal.tenant_id.as_str(),
        &Actor::of(principal),
        Action::ApiKeyRevoked,
        Target::new("api_key", id),
        json!({}),
        env.now(),
    )
    .only_if_exists(&still_active);
    let mut statement = sql!(
        format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?), updated_at = ?
             WHERE id = ? AND tenant_id = ?{only_own}"
        ),
        env.now(),
        env.now(),
        id,
        &principal.tenant_id
    );
    if let Some(user) = user {
        statement = statement.bind(user);
    }
    // Before the update, so that only the call that revokes the key emits the event.
    let mut event = sql!(
        format!(
            "SELECT tenant_id, json_object('id', id, 'name', name, 'prefix', prefix, 'user_id', user_id) AS payload,
                    ? AS created_at
             FROM api_keys WHERE id = ? AND EXISTS ({})",
            still_active.sql
        ),
        env.now(),
        id
    );
    event.params.extend(still_active.params.iter().cloned());
    let event = events::emit_from("apikey.revoked", event);
    let results = env.db.batch(vec![event, audited, statement]).await?;
    if results[2].rows_affected == 0 {
        return Err(ApiError::not_found("API key"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(no_content())
}
