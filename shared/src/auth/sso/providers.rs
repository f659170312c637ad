//! A tenant's identity providers, set by its owners and admins: generic OpenID Connect
//! (an issuer URL), or a preset for Google or Microsoft Entra ID (one directory, or every
//! work account with `organizations`). The client secret is sealed with the master key and
//! never shown again. Also the tenant's SSO settings: whether members must use SSO, and the
//! role people who join through it get.

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
    secrets, sql,
    tenancy::{parse_display_name, tenants::TenantSelector},
    webhooks::urls::parse_endpoint_url,
};

const COLUMNS: &str = "id, tenant_id, name, kind, issuer, client_id, scopes, created_at";
const DEFAULT_SCOPES: &str = "openid email profile";

/// The context a provider's sealed secret is bound to.
pub(crate) fn sealing_context(id: &str) -> String {
    format!("sso_providers:{id}")
}

/// A provider as the sign-in uses it, its secret opened.
pub(crate) struct Provider {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: String,
}

impl Provider {
    /// From a row with [`SIGN_IN_COLUMNS`].
    pub(crate) fn from_row(env: &Env, row: &Row<'_>) -> ApiResult<Self> {
        let id: String = row.get("id")?;
        let secret = env
            .config
            .secrets
            .open(
                &sealing_context(&id),
                &row.get::<String>("client_secret_sealed")?,
            )
            .map_err(|error| ApiError::internal().caused_by(format!("sso secret: {error}")))?;
        Ok(Self {
            tenant_id: row.get("tenant_id")?,
            kind: row.get("kind")?,
            issuer: row.get("issuer")?,
            client_id: row.get("client_id")?,
            client_secret: String::from_utf8(secret)
                .map_err(|_| ApiError::internal().caused_by("sso secret is not text"))?,
            scopes: row.get("scopes")?,
            id,
        })
    }
}

/// The columns [`Provider::from_row`] reads, of `sso_providers p`.
pub(crate) const SIGN_IN_COLUMNS: &str =
    "p.id, p.tenant_id, p.kind, p.issuer, p.client_id, p.scopes, p.client_secret_sealed";

fn provider_json(env: &Env, row: &Row<'_>, slug: &str) -> ApiResult<Json> {
    let id: String = row.get("id")?;
    Ok(json!({
        "id": id,
        "name": row.get::<String>("name")?,
        "kind": row.get::<String>("kind")?,
        "issuer": row.get::<String>("issuer")?,
        "client_id": row.get::<String>("client_id")?,
        "scopes": row.get::<String>("scopes")?.split(' ').collect::<Vec<_>>(),
        "start_url": format!("{}/api/v1/auth/sso/{slug}/start?provider={id}", env.config.public_url),
        "created_at": rfc3339(row.get("created_at")?),
    }))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProvider {
    /// What the sign-in page's button says ("Sign in with …").
    name: String,
    /// `oidc` (give `issuer`), `google`, or `microsoft` (give `microsoft_tenant`: a
    /// directory id or domain, or `organizations` for any work account).
    kind: String,
    issuer: Option<String>,
    microsoft_tenant: Option<String>,
    client_id: String,
    /// Stored sealed; never returned.
    client_secret: String,
    /// `openid email profile` when left out; `openid` and `email` are always asked for.
    scopes: Option<Vec<String>>,
}

fn issuer_of(body: &NewProvider, allow_private: bool) -> ApiResult<String> {
    let issuer = match body.kind.as_str() {
        "google" => "https://accounts.google.com".to_owned(),
        "microsoft" => {
            let directory = body.microsoft_tenant.as_deref().unwrap_or_default().trim();
            let valid = !directory.is_empty()
                && directory.len() <= 100
                && directory
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                return Err(ApiError::invalid_field(
                    "microsoft_tenant",
                    "must be the directory's id or domain, or organizations",
                ));
            }
            format!("https://login.microsoftonline.com/{directory}/v2.0")
        }
        "oidc" => {
            let issuer = body.issuer.as_deref().ok_or_else(|| {
                ApiError::invalid_field("issuer", "is required for an oidc provider")
            })?;
            parse_endpoint_url(issuer, allow_private)
                .map_err(|_| ApiError::invalid_field("issuer", "must be the provider's https URL"))?
                .trim_end_matches('/')
                .to_owned()
        }
        _ => {
            return Err(ApiError::invalid_field(
                "kind",
                "must be oidc, google or microsoft",
            ));
        }
    };
    Ok(issuer)
}

fn scopes_of(scopes: Option<&[String]>) -> ApiResult<String> {
    let mut all: Vec<String> = vec!["openid".into(), "email".into()];
    for scope in scopes.unwrap_or(&["profile".into()]) {
        let valid = !scope.is_empty()
            && scope.len() <= 100
            && scope
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        if !valid {
            return Err(ApiError::invalid_field(
                "scopes",
                "must be OAuth scope names",
            ));
        }
        if !all.contains(scope) {
            all.push(scope.clone());
        }
    }
    if scopes.is_none() {
        return Ok(DEFAULT_SCOPES.into());
    }
    Ok(all.join(" "))
}

/// `POST /api/v1/sso/providers`
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let body: NewProvider = request.json()?;
    let name = parse_display_name("name", &body.name)?;
    let issuer = issuer_of(&body, env.config.webhooks_allow_private)?;
    let client_id = body.client_id.trim();
    if client_id.is_empty() || client_id.len() > 500 {
        return Err(ApiError::invalid_field(
            "client_id",
            "must be 1 to 500 characters",
        ));
    }
    if body.client_secret.is_empty() || body.client_secret.len() > 2000 {
        return Err(ApiError::invalid_field(
            "client_secret",
            "must be 1 to 2000 characters",
        ));
    }
    let scopes = scopes_of(body.scopes.as_deref())?;
    let id = new_id();
    let sealed = env
        .config
        .secrets
        .seal(&sealing_context(&id), body.client_secret.as_bytes())
        .map_err(|_| secrets::not_configured("identity provider secrets"))?;
    let now = env.now();
    let tenant = principal.tenant_id.as_str();
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO sso_providers (id, tenant_id, name, kind, issuer, client_id, client_secret_sealed, scopes, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                &id,
                tenant,
                &name,
                &body.kind,
                &issuer,
                client_id,
                sealed,
                &scopes,
                now,
                now
            ),
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::SsoProviderCreated,
                Target::new("sso_provider", &id),
                json!({ "name": name, "kind": body.kind, "issuer": issuer }),
                now,
            ),
            sql!(format!("SELECT {COLUMNS} FROM sso_providers WHERE id = ?"), &id),
        ])
        .await?;
    audit::try_seal(env, tenant).await;
    let row = results[2]
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("provider vanished"))?;
    Ok(created(&provider_json(env, &row, &principal.tenant_slug)?))
}

/// `GET /api/v1/sso/providers`
pub async fn list(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {COLUMNS} FROM sso_providers WHERE tenant_id = ? ORDER BY created_at, id"
            ),
            &principal.tenant_id
        ))
        .await?;
    let data = rows
        .iter()
        .map(|row| provider_json(env, &row, &principal.tenant_slug))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&json!({ "data": data })))
}

/// `DELETE /api/v1/sso/providers/{id}`: its links to users go with it.
pub async fn delete(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let tenant = principal.tenant_id.as_str();
    let now = env.now();
    let owned = sql!(
        "SELECT 1 FROM sso_providers WHERE id = ? AND tenant_id = ?",
        id,
        tenant
    );
    let results = env
        .db
        .batch(vec![
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::SsoProviderDeleted,
                Target::new("sso_provider", id),
                json!({}),
                now,
            )
            .only_if_exists(&owned),
            sql!(
                "DELETE FROM sso_identities WHERE provider_id IN (SELECT id FROM sso_providers WHERE id = ? AND tenant_id = ?)",
                id,
                tenant
            ),
            sql!(
                "DELETE FROM sso_attempts WHERE provider_id IN (SELECT id FROM sso_providers WHERE id = ? AND tenant_id = ?)",
                id,
                tenant
            ),
            sql!(
                "DELETE FROM sso_providers WHERE id = ? AND tenant_id = ?",
                id,
                tenant
            ),
        ])
        .await?;
    if results[3].rows_affected == 0 {
        return Err(ApiError::not_found("sso provider"));
    }
    audit::try_seal(env, tenant).await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// Members must sign in with SSO; owners keep their password, the way back in.
    required: bool,
    /// The role of people who join through SSO: `admin`, `member` or `viewer`.
    default_role: Option<String>,
}

const SETTINGS: &str = "SELECT sso_required, sso_default_role FROM tenants WHERE id = ?";

fn settings_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "required": row.get::<i64>("sso_required")? == 1,
        "default_role": row.get::<String>("sso_default_role")?,
    }))
}

/// `GET /api/v1/sso/settings`
pub async fn settings(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let rows = env.db.execute(sql!(SETTINGS, &principal.tenant_id)).await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(ok(&settings_json(&row)?))
}

/// `PUT /api/v1/sso/settings`
pub async fn set_settings(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let body: Settings = request.json()?;
    let role = body.default_role.as_deref().unwrap_or("member");
    if !["admin", "member", "viewer"].contains(&role) {
        return Err(ApiError::invalid_field(
            "default_role",
            "must be admin, member or viewer",
        ));
    }
    let tenant = principal.tenant_id.as_str();
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE tenants SET sso_required = ?, sso_default_role = ?, updated_at = ? WHERE id = ?",
                body.required,
                role,
                now,
                tenant
            ),
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::SsoSettingsUpdated,
                Target::new("tenant", tenant),
                json!({ "required": body.required, "default_role": role }),
                now,
            ),
            sql!(
                SETTINGS,
                tenant
            ),
        ])
        .await?;
    audit::try_seal(env, tenant).await;
    let row = results[2]
        .first()
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(ok(&settings_json(&row)?))
}

/// The providers a sign-in page offers: the tenant's that `tenant` (a slug) or the host
/// names, as `(name, start path)`; none when neither names an active tenant.
pub async fn offered(
    env: &Env,
    request: &ApiRequest,
    tenant: Option<&str>,
) -> ApiResult<Vec<(String, String)>> {
    let Ok(selector) = TenantSelector::from_request(env, request, tenant) else {
        return Ok(Vec::new());
    };
    let rows = env
        .db
        .execute(selector.bind(sql!(
            "SELECT p.id, p.name, t.slug FROM sso_providers p JOIN tenants t ON t.id = p.tenant_id
             WHERE (t.slug = ? OR t.custom_domain = ?) AND t.status = 'active'
             ORDER BY p.created_at, p.id"
        )))
        .await?;
    rows.iter()
        .map(|row| {
            let (id, slug): (String, String) = (row.get("id")?, row.get("slug")?);
            Ok((
                row.get("name")?,
                format!("/api/v1/auth/sso/{slug}/start?provider={id}"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_and_email_are_always_asked_for() {
        assert_eq!(scopes_of(None).unwrap(), "openid email profile");
        assert_eq!(
            scopes_of(Some(&["groups".into(), "email".into()])).unwrap(),
            "openid email groups"
        );
        assert!(scopes_of(Some(&["bad scope\"".into()])).is_err());
    }
}
