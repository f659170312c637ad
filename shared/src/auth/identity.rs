//! Telling callers (and a reverse proxy) who they are.

use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{
        principal::{Credential, Principal, authenticate},
        rbac::{Permission, Scope},
    },
    error::ApiResult,
    sql,
    tenancy::{tenants, users},
};

/// `GET /api/v1/auth/me`: the caller, its tenant, role and scopes.
pub async fn me(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::OwnProfile)?;
    let results = env
        .db
        .batch(vec![
            sql!(
                format!("SELECT {} FROM users WHERE id = ?", users::USER_COLUMNS),
                &principal.user_id
            ),
            sql!(
                format!(
                    "SELECT {} FROM tenants WHERE id = ?",
                    tenants::TENANT_COLUMNS
                ),
                &principal.tenant_id
            ),
        ])
        .await?;
    let (Some(user), Some(tenant)) = (results[0].first(), results[1].first()) else {
        return Err(ApiError::unauthorized("the caller no longer exists"));
    };
    let key_id = match &principal.credential {
        Credential::ApiKey { key_id, .. } => Some(key_id.clone()),
        Credential::Session { .. } => None,
    };
    Ok(ok(&json!({
        "user": users::user_json(&user)?,
        "tenant": tenants::tenant_json(&tenant)?,
        "role": principal.role,
        "scopes": principal.scopes().to_vec(),
        "auth": principal.auth_kind(),
        "api_key_id": key_id,
    })))
}

/// `GET /api/v1/auth/verify`: forward authentication for a reverse proxy (Traefik
/// `forwardAuth`, Caddy `forward_auth`, nginx `auth_request`).
///
/// 200 with `X-Tollgate-*` headers naming tenant, user, role and scopes when the credential
/// is good and its scopes cover `X-Forwarded-Method` on `X-Forwarded-Uri`; 401 with
/// `WWW-Authenticate` when there is no good credential; 403 when the scopes fall short.
pub async fn verify(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let principal = authenticate(env, request).await?;
    let method = request
        .header("x-forwarded-method")
        .or_else(|| request.header("x-original-method"))
        .unwrap_or(request.method.as_str());
    let uri = request
        .header("x-forwarded-uri")
        .or_else(|| request.header("x-original-uri"));
    if let Some(uri) = uri {
        let needed = Scope::for_request(method, uri).ok_or_else(|| {
            ApiError::forbidden("the forwarded URI names no resource a scope can cover")
        })?;
        if !principal.covers(&needed) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this credential lacks the scope {needed} for {method} {uri}"),
            )
            .with_details(json!({ "required_scope": needed.to_string() })));
        }
    }
    let scopes = principal.scopes().to_string();
    let mut response = ok(&json!({
        "tenant_id": principal.tenant_id,
        "tenant": principal.tenant_slug,
        "user_id": principal.user_id,
        "role": principal.role,
        "scopes": scopes,
        "auth": principal.auth_kind(),
    }));
    let headers = [
        (
            "x-tollgate-tenant-id",
            principal.tenant_id.as_str().to_owned(),
        ),
        ("x-tollgate-tenant", principal.tenant_slug.clone()),
        ("x-tollgate-user-id", principal.user_id.as_str().to_owned()),
        ("x-tollgate-role", principal.role.to_string()),
        ("x-tollgate-scopes", scopes),
        ("x-tollgate-auth", principal.auth_kind().to_owned()),
    ];
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    if let Credential::ApiKey { key_id, .. } = &principal.credential
        && let Ok(value) = HeaderValue::from_str(key_id)
    {
        response
            .headers_mut()
            .insert("x-tollgate-api-key-id", value);
    }
    principal.rate.apply(&mut response);
    Ok(response)
}
