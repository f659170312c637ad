//! The OpenID Connect side of a sign-in: the provider's discovery document and key set
//! (fetched through the outbound port and kept for [`DOCUMENT_TTL_SECONDS`]), the code
//! exchange, and the full check of the ID token it answers.
//!
//! An ID token is accepted only when signed with RS256 or ES256 by a key of the provider's
//! key set (a `kid` the kept set lacks fetches the set once more: providers rotate keys),
//! issued by the provider, for this client, not expired (with [`CLOCK_SKEW_SECONDS`] of
//! slack), carrying the nonce the sign-in started with, and vouching for a verified email.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{ApiError, Env, error::ApiResult, outbound::DEFAULT_TIMEOUT, sql};

/// How long a discovery document or key set is kept before it is fetched again.
pub const DOCUMENT_TTL_SECONDS: i64 = 3600;
/// How far the provider's clock may be from ours.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// What a sign-in needs of the provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// The claims Tollgate reads of an ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<Json>,
    #[serde(default)]
    pub name: Option<String>,
    /// Microsoft Entra ID: the directory the user belongs to.
    #[serde(default)]
    pub tid: Option<String>,
    /// Microsoft Entra ID: the email's domain is verified by its owner.
    #[serde(default)]
    pub xms_edov: Option<Json>,
}

/// A provider's refusal or an ID token that fails a check: 401, saying which.
pub fn rejected(reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "sso_rejected",
        format!("the identity provider's answer was refused: {reason}"),
    )
}

fn unreachable_provider(what: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "sso_provider_unavailable",
        format!("the identity provider's {what} could not be read: {detail}"),
    )
}

/// Cron: kept documents no sign-in would use any more go.
pub fn purge_stale(now: i64) -> crate::db::Statement {
    sql!(
        "DELETE FROM oidc_documents WHERE fetched_at < ?",
        now - DOCUMENT_TTL_SECONDS
    )
}

/// `url`'s JSON through the outbound port; `fresh` skips the kept copy.
async fn document(env: &Env, url: &str, fresh: bool) -> ApiResult<Json> {
    let now = env.now();
    if !fresh {
        let kept = env
            .db
            .execute(sql!(
                "SELECT body FROM oidc_documents WHERE url = ? AND fetched_at > ?",
                url,
                now - DOCUMENT_TTL_SECONDS
            ))
            .await?;
        if let Some(row) = kept.first()
            && let Ok(body) = serde_json::from_str(&row.get::<String>("body")?)
        {
            return Ok(body);
        }
    }
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(header::ACCEPT, "application/json")
        .extension(crate::outbound::Timeout(DEFAULT_TIMEOUT))
        .body(Bytes::new())
        .map_err(|error| unreachable_provider(url, error))?;
    let response = env
        .outbound
        .send(request)
        .await
        .map_err(|error| unreachable_provider(url, error))?;
    if !response.status().is_success() {
        return Err(unreachable_provider(url, response.status()));
    }
    let body: Json = serde_json::from_slice(response.body())
        .map_err(|error| unreachable_provider(url, error))?;
    env.db
        .execute(sql!(
            "INSERT INTO oidc_documents (url, body, fetched_at) VALUES (?, ?, ?)
             ON CONFLICT (url) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
            url,
            body.to_string(),
            now
        ))
        .await?;
    Ok(body)
}

/// The provider's discovery document (`{issuer}/.well-known/openid-configuration`).
pub async fn discover(env: &Env, issuer: &str) -> ApiResult<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = document(env, &url, false).await?;
    serde_json::from_value(body).map_err(|error| unreachable_provider(&url, error))
}

/// Trades the authorization code for the provider's tokens; answers the ID token.
pub async fn exchange_code(
    env: &Env,
    discovery: &Discovery,
    client_id: &str,
    client_secret: &str,
    code: &str,
    code_verifier: &str,
    redirect_uri: &str,
) -> ApiResult<String> {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret)
        .append_pair("code_verifier", code_verifier)
        .finish();
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(&discovery.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .extension(crate::outbound::Timeout(DEFAULT_TIMEOUT))
        .body(Bytes::from(form))
        .map_err(|error| unreachable_provider("token endpoint", error))?;
    let response = env
        .outbound
        .send(request)
        .await
        .map_err(|error| unreachable_provider("token endpoint", error))?;
    let body: Json = serde_json::from_slice(response.body()).unwrap_or(Json::Null);
    if !response.status().is_success() {
        let reason = body["error_description"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no reason given");
        return Err(rejected(&format!("the code exchange failed ({reason})")));
    }
    body["id_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| rejected("the token response has no id_token"))
}

/// What a valid ID token says of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub email: String,
    pub name: Option<String>,
}

/// Checks `id_token` fully (see the module's doc) for `client_id` and `nonce`.
/// `microsoft` accepts Entra ID's multi-tenant issuer template and its `xms_edov` claim.
pub async fn verify_id_token(
    env: &Env,
    discovery: &Discovery,
    client_id: &str,
    id_token: &str,
    nonce: &str,
    microsoft: bool,
) -> ApiResult<VerifiedIdentity> {
    let header =
        jsonwebtoken::decode_header(id_token).map_err(|_| rejected("the ID token is not a JWT"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(rejected(&format!(
            "the ID token is signed with {:?}; RS256 or ES256 is required",
            header.alg
        )));
    }
    let keys = signing_keys(env, &discovery.jwks_uri, header.kid.as_deref()).await?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    // Time and issuer are checked below, against Tollgate's clock and the template.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = keys
        .iter()
        .find_map(|key| jsonwebtoken::decode::<IdClaims>(id_token, key, &validation).ok())
        .map(|data| data.claims);
    let Some(claims) = claims else {
        // Tell a wrong audience from a bad signature: the former is the operator's to fix.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Json>(id_token).ok();
        let audience_ok = unverified.is_some_and(|data| match &data.claims["aud"] {
            Json::String(aud) => aud == client_id,
            Json::Array(auds) => auds.iter().any(|aud| aud == client_id),
            _ => false,
        });
        return Err(rejected(if audience_ok {
            "the ID token's signature does not verify"
        } else {
            "the ID token is for another client (aud)"
        }));
    };
    let expected_issuer = match (&claims.tid, microsoft) {
        (Some(tid), true) => discovery.issuer.replace("{tenantid}", tid),
        _ => discovery.issuer.clone(),
    };
    if claims.iss != expected_issuer {
        return Err(rejected("the ID token is from another issuer (iss)"));
    }
    let now = env.now();
    if claims.exp + CLOCK_SKEW_SECONDS < now {
        return Err(rejected("the ID token has expired"));
    }
    if claims.iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECONDS) {
        return Err(rejected("the ID token is issued in the future (iat)"));
    }
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(rejected("the ID token's nonce is not this sign-in's"));
    }
    let is_true = |value: &Option<Json>| match value {
        Some(Json::Bool(flag)) => *flag,
        Some(Json::String(text)) => text == "true",
        _ => false,
    };
    let verified = is_true(&claims.email_verified) || (microsoft && is_true(&claims.xms_edov));
    let email = claims
        .email
        .filter(|_| verified)
        .ok_or_else(|| rejected("the provider does not vouch for a verified email"))?;
    Ok(VerifiedIdentity {
        subject: claims.sub,
        email,
        name: claims.name,
    })
}

/// The keys an ID token may be signed with: the one its `kid` names (the set is fetched
/// again, once, when the kept one lacks it), or every key when it names none.
async fn signing_keys(env: &Env, jwks_uri: &str, kid: Option<&str>) -> ApiResult<Vec<DecodingKey>> {
    for fresh in [false, true] {
        let body = document(env, jwks_uri, fresh).await?;
        let set: JwkSet =
            serde_json::from_value(body).map_err(|error| unreachable_provider("key set", error))?;
        let chosen: Vec<_> = match kid {
            Some(kid) => set.find(kid).into_iter().collect(),
            None => set.keys.iter().collect(),
        };
        if !chosen.is_empty() {
            return Ok(chosen
                .into_iter()
                .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
                .collect());
        }
    }
    Err(rejected(
        "the ID token is signed with a key the provider does not publish",
    ))
}
