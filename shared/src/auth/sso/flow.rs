//! The sign-in itself: the authorization code flow with PKCE, `state` and `nonce`.
//!
//! `GET auth/sso/{tenant}/start` writes an attempt row (the state's hash, the nonce, the
//! PKCE verifier, where to return) and sends the browser to the provider. The provider
//! sends it back to `GET auth/sso/callback`, which uses the attempt once (a replayed or
//! stale state is refused), trades the code, checks the ID token ([`super::oidc`]) and finds
//! the person: by the provider's subject once linked; else the tenant's user with that
//! verified email, who is linked (never a second account); else, when the email's domain is
//! one the tenant proved it owns, a new user with the tenant's default role (auto-join).
//! Nobody else gets in, and every lookup is within the provider's tenant, so a user of
//! another tenant is never joined. The result is the session and refresh token a password
//! sign-in opens, with the same audit entries, carried to the browser as its cookies.
//!
//! Stateless between the redirects on every runtime: all the flow keeps is the attempt row.

use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    oidc,
    providers::{Provider, SIGN_IN_COLUMNS},
};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, redirect},
    audit::{self, Action, Actor, Target},
    auth::{
        browser,
        rbac::Role,
        sessions::{self, SessionUser},
    },
    error::ApiResult,
    ids::new_id,
    sql,
    tenancy::{Email, users},
    tokens::{base64url, random_token, sha256_hex},
};

/// The password hash of a user who joined through SSO: not a hash, so nothing verifies.
const NO_PASSWORD: &str = "!sso";

/// How long a started sign-in may take at the provider.
pub const ATTEMPT_TTL_SECONDS: i64 = 600;

fn callback_url(env: &Env) -> String {
    format!("{}/api/v1/auth/sso/callback", env.config.public_url)
}

/// `GET /api/v1/auth/sso/{tenant}/start?provider=…&return_to=…`
pub async fn start(env: &Env, request: &ApiRequest, tenant_slug: &str) -> ApiResult<Response> {
    let chosen = request.query_param("provider");
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {SIGN_IN_COLUMNS} FROM sso_providers p JOIN tenants t ON t.id = p.tenant_id
                 WHERE t.slug = ? AND t.status = 'active' AND (? IS NULL OR p.id = ?)
                 ORDER BY p.created_at, p.id"
            ),
            tenant_slug,
            chosen.clone(),
            chosen
        ))
        .await?;
    let mut found = rows.iter();
    let row = found
        .next()
        .ok_or_else(|| ApiError::not_found("sso provider"))?;
    if found.next().is_some() {
        return Err(ApiError::bad_request(
            "provider_required",
            "this tenant has several identity providers: name one with ?provider=",
        ));
    }
    let provider = Provider::from_row(env, &row)?;
    let discovery = oidc::discover(env, &provider.issuer).await?;
    let return_to = request
        .query_param("return_to")
        .and_then(|target| browser::safe_return(&env.config, &target));
    let state = random_token(32);
    let nonce = random_token(32);
    let verifier = random_token(32);
    let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
    let now = env.now();
    env.db
        .execute(sql!(
            "INSERT INTO sso_attempts (state_hash, provider_id, nonce, code_verifier, return_to, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
            sha256_hex(&state),
            &provider.id,
            &nonce,
            &verifier,
            return_to,
            now + ATTEMPT_TTL_SECONDS
        ))
        .await?;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &callback_url(env))
        .append_pair("scope", &provider.scopes)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let separator = if discovery.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(redirect(
        StatusCode::FOUND,
        &format!("{}{separator}{query}", discovery.authorization_endpoint),
        &[],
    ))
}

/// Cron: sign-ins a day past their expiry go (kept that long so a late replay is still
/// told it was used).
pub fn purge_expired(now: i64) -> crate::db::Statement {
    sql!(
        "DELETE FROM sso_attempts WHERE expires_at < ?",
        now - 24 * 3600
    )
}

fn invalid_state() -> ApiError {
    ApiError::bad_request(
        "invalid_state",
        "this sign-in was already used, has expired, or was never started here: start again",
    )
}

/// `GET /api/v1/auth/sso/callback?code=…&state=…`
pub async fn callback(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let state = request.query_param("state").ok_or_else(invalid_state)?;
    let now = env.now();
    let attempts = env
        .db
        .execute(sql!(
            "UPDATE sso_attempts SET used_at = ?
             WHERE state_hash = ? AND used_at IS NULL AND expires_at > ?
             RETURNING provider_id, nonce, code_verifier, return_to",
            now,
            sha256_hex(&state),
            now
        ))
        .await?;
    let attempt = attempts.first().ok_or_else(invalid_state)?;
    if let Some(error) = request.query_param("error") {
        let detail = request.query_param("error_description").unwrap_or(error);
        return Err(oidc::rejected(&format!("the provider said {detail}")));
    }
    let code = request
        .query_param("code")
        .ok_or_else(|| ApiError::bad_request("invalid_request", "the callback has no code"))?;
    let provider_id: String = attempt.get("provider_id")?;
    let nonce: String = attempt.get("nonce")?;
    let verifier: String = attempt.get("code_verifier")?;
    let return_to: Option<String> = attempt.get("return_to")?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {SIGN_IN_COLUMNS} FROM sso_providers p
                 WHERE p.id = ? AND p.tenant_id IN (SELECT id FROM tenants WHERE status = 'active')"
            ),
            &provider_id
        ))
        .await?;
    let row = rows.first().ok_or_else(invalid_state)?;
    let provider = Provider::from_row(env, &row)?;
    let discovery = oidc::discover(env, &provider.issuer).await?;
    let id_token = oidc::exchange_code(
        env,
        &discovery,
        &provider.client_id,
        &provider.client_secret,
        &code,
        &verifier,
        &callback_url(env),
    )
    .await?;
    let identity = oidc::verify_id_token(
        env,
        &discovery,
        &provider.client_id,
        &id_token,
        &nonce,
        provider.kind == "microsoft",
    )
    .await?;
    let (user_id, role) = person(env, &provider, &identity).await?;
    let user = SessionUser {
        tenant_id: &provider.tenant_id,
        user_id: &user_id,
        role,
    };
    let (mut statements, pair) = sessions::open(env, &user, request);
    statements.extend(sessions::signed_in(&user, request, now));
    env.db.batch(statements).await?;
    audit::try_seal(env, &provider.tenant_id).await;
    let cookies = browser::cookies_for_access_token(env, &pair.access_token)?;
    Ok(redirect(
        StatusCode::FOUND,
        return_to.as_deref().unwrap_or("/console"),
        &cookies,
    ))
}

/// The tenant's user `identity` is: linked, found by email and linked, or joined.
async fn person(
    env: &Env,
    provider: &Provider,
    identity: &oidc::VerifiedIdentity,
) -> ApiResult<(String, Role)> {
    let email = Email::parse("email", &identity.email)
        .map_err(|_| oidc::rejected("the provider's email is not an address"))?;
    let domain = email
        .as_str()
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_owned())
        .unwrap_or_default();
    let tenant = provider.tenant_id.as_str();
    let found = env
        .db
        .batch(vec![
            sql!(
                "SELECT u.id, u.role FROM sso_identities i JOIN users u ON u.id = i.user_id
                 WHERE i.provider_id = ? AND i.subject = ? AND u.status = 'active'",
                &provider.id,
                &identity.subject
            ),
            sql!(
                "SELECT id, role FROM users WHERE tenant_id = ? AND email = ? AND status = 'active'",
                tenant,
                &email
            ),
            sql!(
                "SELECT t.sso_default_role FROM tenants t
                 WHERE t.id = ? AND EXISTS (SELECT 1 FROM sso_domains d
                     WHERE d.tenant_id = t.id AND d.domain = ? AND d.verified_at IS NOT NULL)",
                tenant,
                &domain
            ),
        ])
        .await?;
    if let Some(row) = found[0].first() {
        return Ok((row.get("id")?, row.get("role")?));
    }
    let now = env.now();
    // A link left by a user since deleted gives way to the new one.
    let link = |user_id: &str| {
        sql!(
            "INSERT OR REPLACE INTO sso_identities (provider_id, subject, user_id, created_at) VALUES (?, ?, ?, ?)",
            &provider.id,
            &identity.subject,
            user_id,
            now
        )
    };
    let actor = Actor::system("sso");
    if let Some(row) = found[1].first() {
        let user_id: String = row.get("id")?;
        env.db
            .batch(vec![
                link(&user_id),
                // The provider vouched for the address: it is verified here too.
                sql!(
                    "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?) WHERE id = ?",
                    now,
                    &user_id
                ),
                audit::entry(
                    tenant,
                    &actor,
                    Action::SsoIdentityLinked,
                    Target::new("user", &user_id),
                    json!({ "provider_id": provider.id, "email": email.as_str() }),
                    now,
                ),
            ])
            .await?;
        return Ok((user_id, row.get("role")?));
    }
    let Some(row) = found[2].first() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sso_domain_not_allowed",
            format!(
                "{} has no account in this organisation, and {domain} is not one of the domains whose people join it",
                email.as_str()
            ),
        ));
    };
    let role: Role = row.get("sso_default_role")?;
    let user_id = new_id();
    let name = identity
        .name
        .clone()
        .filter(|name| !name.trim().is_empty() && name.chars().count() <= 100)
        .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("").to_owned());
    let exists = sql!("SELECT 1 FROM users WHERE id = ?", &user_id);
    let results = env
        .db
        .batch(vec![
            // No password matches this hash (it is no hash at all): the person signs in
            // through the provider, or sets a password by the reset mail.
            users::insert_within_seats(&user_id, tenant, &email, &name, NO_PASSWORD, role, now),
            sql!(
                "UPDATE users SET email_verified_at = ? WHERE id = ?",
                now,
                &user_id
            ),
            link(&user_id).only_if_exists(&exists),
            audit::entry(
                tenant,
                &actor,
                Action::UserCreated,
                Target::new("user", &user_id),
                json!({ "email": email.as_str(), "name": name, "role": role, "via": "sso", "provider_id": provider.id }),
                now,
            )
            .only_if_exists(&exists),
        ])
        .await
        // Another sign-in of the same person created the user a moment ago.
        .map_err(users::email_taken)?;
    if results[0].rows_affected == 0 {
        return Err(crate::tenancy::plans::limit_reached("max_users", "users"));
    }
    Ok((user_id, role))
}
