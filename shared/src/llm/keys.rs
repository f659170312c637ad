//! Provider keys: the accounts the gateway calls providers with. The platform's keys
//! (`admin/llm/provider-keys`) serve global models and any tenant's; a tenant's own keys
//! (`llm/provider-keys`, bring your own key) serve only that tenant's models. The API key is
//! sealed at rest under the configured master key, bound to its row, and never returned:
//! the API shows its last four characters.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{Editor, owner_of, providers::Kind};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{Action, Target},
    auth::principal::Principal,
    clock::rfc3339,
    db::Row,
    error::ApiResult,
    ids::new_id,
    secrets::{self, Keyring},
    sql,
    webhooks::urls::parse_endpoint_url,
};

const KEY_COLUMNS: &str = "id, tenant_id, name, kind, base_url, api_key_last4, created_at";

/// The models deploying on key `?`.
const MODELS_USING_KEY: &str = "SELECT m.id FROM llm_models m, json_each(m.deployments) d
     WHERE json_extract(d.value, '$.provider_key_id') = ?";

/// The longest API key accepted; provider keys are far shorter.
const MAX_API_KEY_CHARS: usize = 4_096;

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProviderKey {
    name: String,
    /// `openai` (any OpenAI-compatible server) or `anthropic`.
    kind: String,
    /// The API base the provider's paths hang off (`…/v1` for OpenAI-compatible servers);
    /// the kind's public API when left out.
    base_url: Option<String>,
    /// Stored sealed; never returned.
    api_key: String,
}

/// The context a key's ciphertext is bound to: its table and row.
fn sealing_context(id: &str) -> String {
    format!("llm_provider_keys/{id}")
}

/// Opens a stored key for a call.
pub(crate) fn open(secrets: &Keyring, id: &str, sealed: &str) -> Result<String, String> {
    let bytes = secrets
        .open(&sealing_context(id), sealed)
        .map_err(|error| format!("provider key {id}: {error}"))?;
    String::from_utf8(bytes).map_err(|_| format!("provider key {id} is not text"))
}

/// A key as the API shows it. A tenant sees the platform's keys it may build models on by
/// id, name and kind only.
fn key_json(row: &Row<'_>, viewer_tenant: Option<&str>) -> ApiResult<Json> {
    let tenant_id: Option<String> = row.get("tenant_id")?;
    let foreign = viewer_tenant.is_some() && tenant_id.is_none();
    Ok(json!({
        "id": row.get::<String>("id")?,
        "owner": owner_of(tenant_id.as_deref()),
        "name": row.get::<String>("name")?,
        "kind": row.get::<String>("kind")?,
        "base_url": if foreign { Json::Null } else { json!(row.get::<String>("base_url")?) },
        "api_key_last4": if foreign { Json::Null } else { json!(row.get::<String>("api_key_last4")?) },
        "created_at": rfc3339(row.get("created_at")?),
    }))
}

fn parse_name(text: &str) -> ApiResult<String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Keys go out in an HTTP header: visible ASCII only.
fn parse_api_key(text: &str) -> ApiResult<&str> {
    if text.is_empty()
        || text.len() > MAX_API_KEY_CHARS
        || !text.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(ApiError::invalid_field(
            "api_key",
            format!("must be 1 to {MAX_API_KEY_CHARS} visible ASCII characters"),
        ));
    }
    Ok(text)
}

/// The last four characters, shown to tell keys apart; a key shorter than eight shows none,
/// so that what is shown is never half of it.
fn last_four(api_key: &str) -> String {
    if api_key.len() < 8 {
        return String::new();
    }
    api_key[api_key.len() - 4..].to_owned()
}

async fn create(env: &Env, request: &ApiRequest, editor: &Editor) -> ApiResult<Response> {
    let body: NewProviderKey = request.json()?;
    let name = parse_name(&body.name)?;
    let kind = Kind::parse("kind", &body.kind)?;
    let base_url = parse_endpoint_url(
        body.base_url.as_deref().unwrap_or(kind.default_base_url()),
        env.config.webhooks_allow_private,
    )
    .map_err(|error| {
        let reason = error.details["reason"].as_str().unwrap_or("is not valid");
        ApiError::invalid_field("base_url", reason)
    })?;
    let api_key = parse_api_key(&body.api_key)?;
    if env.config.secrets.is_empty() {
        return Err(secrets::not_configured("provider keys"));
    }
    let id = new_id();
    let sealed = env
        .config
        .secrets
        .seal(&sealing_context(&id), api_key.as_bytes())
        .map_err(|_| secrets::not_configured("provider keys"))?;
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO llm_provider_keys (id, tenant_id, name, kind, base_url, api_key_sealed, api_key_last4, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &id,
                editor.tenant_id(),
                &name,
                kind.as_str(),
                &base_url,
                sealed,
                last_four(api_key),
                now
            ),
            editor.audit(
                Action::LlmProviderKeyCreated,
                Target::new("llm_provider_key", &id),
                json!({ "name": name, "kind": kind.as_str(), "base_url": base_url }),
                now,
            ),
            sql!(
                format!("SELECT {KEY_COLUMNS} FROM llm_provider_keys WHERE id = ?"),
                &id
            ),
        ])
        .await?;
    let row = results[2]
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("provider key vanished"))?;
    let key = key_json(&row, None)?;
    editor.seal(env).await;
    Ok(created(&key))
}

/// The editor's keys, and for a tenant the platform's too (which its models may use).
async fn list(env: &Env, request: &ApiRequest, editor: &Editor) -> ApiResult<Response> {
    let page = request.page()?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {KEY_COLUMNS} FROM llm_provider_keys
                 WHERE tenant_id IS NULL OR tenant_id = ?
                 ORDER BY tenant_id IS NULL, created_at DESC, id LIMIT ? OFFSET ?"
            ),
            editor.tenant_id(),
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let keys = rows
        .iter()
        .map(|row| key_json(&row, editor.tenant_id()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(keys)))
}

/// Deletes one of the editor's keys, unless a model still deploys on it (409).
async fn delete(env: &Env, editor: &Editor, id: &str) -> ApiResult<Response> {
    let used_by = MODELS_USING_KEY;
    let deletable = sql!(
        format!(
            "SELECT 1 FROM llm_provider_keys WHERE id = ? AND tenant_id IS ?
             AND NOT EXISTS ({used_by})"
        ),
        id,
        editor.tenant_id(),
        id
    );
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            editor
                .audit(
                    Action::LlmProviderKeyDeleted,
                    Target::new("llm_provider_key", id),
                    json!({}),
                    now,
                )
                .only_if_exists(&deletable),
            sql!(
                format!(
                    "DELETE FROM llm_provider_keys WHERE id = ? AND tenant_id IS ?
                     AND NOT EXISTS ({used_by})"
                ),
                id,
                editor.tenant_id(),
                id
            ),
            sql!(
                format!(
                    "SELECT (SELECT COUNT(*) FROM llm_provider_keys WHERE id = ? AND tenant_id IS ?) AS owned,
                            (SELECT COUNT(DISTINCT u.id) FROM ({used_by}) u) AS models"
                ),
                id,
                editor.tenant_id(),
                id
            ),
        ])
        .await?;
    if results[1].rows_affected == 0 {
        let row = results[2]
            .first()
            .ok_or_else(|| ApiError::internal().caused_by("count row missing"))?;
        if row.get::<i64>("owned")? == 0 {
            return Err(ApiError::not_found("provider key"));
        }
        let models: i64 = row.get("models")?;
        return Err(ApiError::conflict(
            "provider_key_in_use",
            format!("{models} model(s) deploy on this key; change or delete them first"),
        )
        .with_details(json!({ "models": models })));
    }
    editor.seal(env).await;
    Ok(no_content())
}

/// `GET /api/v1/admin/llm/provider-keys` (platform admin)
pub async fn admin_list(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    list(env, request, &Editor::platform(env, request).await?).await
}

/// `POST /api/v1/admin/llm/provider-keys` (platform admin)
pub async fn admin_create(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    create(env, request, &Editor::platform(env, request).await?).await
}

/// `DELETE /api/v1/admin/llm/provider-keys/{id}` (platform admin)
pub async fn admin_delete(env: &Env, request: &ApiRequest, id: &str) -> ApiResult<Response> {
    delete(env, &Editor::platform(env, request).await?, id).await
}

/// `GET /api/v1/llm/provider-keys` (owner, admin)
pub async fn tenant_list(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    list(env, request, &Editor::tenant(principal)?).await
}

/// `POST /api/v1/llm/provider-keys` (owner, admin)
pub async fn tenant_create(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    create(env, request, &Editor::tenant(principal)?).await
}

/// `DELETE /api/v1/llm/provider-keys/{id}` (owner, admin)
pub async fn tenant_delete(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    delete(env, &Editor::tenant(principal)?, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_four_characters_of_a_long_key_are_shown() {
        assert_eq!(last_four("sk-proj-abcdefgh1234"), "1234");
        assert_eq!(last_four("short"), "");
    }

    #[test]
    fn keys_must_fit_in_a_header() {
        assert!(parse_api_key("sk-abc_DEF.123").is_ok());
        for bad in ["", "sk abc", "sk-\u{e9}", "sk-\n"] {
            assert!(parse_api_key(bad).is_err(), "{bad:?}");
        }
    }
}
