//! Telling callers (and a reverse proxy) who they are.

use std::borrow::Cow;

use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{
        browser,
        forwarded::ForwardedPath,
        principal::{Credential, Principal, authenticate_forwarded},
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
/// is good and its scopes cover `X-Forwarded-Method` on `X-Forwarded-Uri` (or the
/// `X-Original-*` pair), the URI's path read as the proxy routes it ([`ForwardedPath`]);
/// 401 with `WWW-Authenticate` when there is no good credential; 403 when the scopes fall
/// short, when the URI is one proxies may read differently (`invalid_forwarded_uri`), and
/// when the two names of a header disagree (`conflicting_forwarded_headers`). Every refusal
/// is a 401 or 403 because nginx's `auth_request` turns any other status into a 500; the
/// one exception is a browser without credentials, which Traefik and Caddy pass a redirect
/// to the sign-in page ([`browser::sign_in_redirect`]; nginx configurations send their 401
/// there themselves). A browser's session cookie counts as a credential.
pub async fn verify(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let principal = match authenticate_forwarded(env, request).await {
        Ok(principal) => principal,
        Err(refused) if refused.status == StatusCode::UNAUTHORIZED => {
            return browser::sign_in_redirect(&env.config, request).ok_or(refused);
        }
        Err(refused) => return Err(refused),
    };
    let method = forwarded_value(request, ["x-forwarded-method", "x-original-method"])?.map_or(
        Cow::Borrowed(request.method.as_str()),
        String::from_utf8_lossy,
    );
    if let Some(uri) = forwarded_value(request, ["x-forwarded-uri", "x-original-uri"])? {
        let path = ForwardedPath::parse(uri).map_err(|rejection| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_forwarded_uri",
                format!("the forwarded URI is refused: {rejection}"),
            )
            .with_details(json!({ "reason": rejection.reason() }))
        })?;
        let needed = Scope::for_request(&method, &path).ok_or_else(|| {
            ApiError::forbidden("the forwarded URI names no resource a scope can cover")
        })?;
        if !principal.covers(&needed) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this credential lacks the scope {needed} for {method} {path}"),
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

/// The value a proxy gave under either name of a forwarded header (`X-Forwarded-*` as
/// Traefik and Caddy send it, `X-Original-*` as nginx configurations do), as raw bytes: a
/// proxy passes the client's bytes on, text or not. Values that differ are refused, since a
/// client can send the name its proxy does not set and so choose what is checked.
fn forwarded_value<'a>(request: &'a ApiRequest, names: [&str; 2]) -> ApiResult<Option<&'a [u8]>> {
    let mut values = names
        .iter()
        .flat_map(|name| request.headers.get_all(*name))
        .map(HeaderValue::as_bytes);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|other| other != first) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "conflicting_forwarded_headers",
            format!(
                "the request carries different values of {} and {}",
                names[0], names[1]
            ),
        )
        .with_details(json!({ "headers": names })));
    }
    Ok(Some(first))
}
