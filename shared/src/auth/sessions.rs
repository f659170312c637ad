//! Sessions: login, refresh-token rotation with reuse detection, logout.
//!
//! A session is one login; its refresh tokens form a family in which each token is used
//! once. The successor of a token is derived from it (an HMAC), so a refresh that races
//! another within the grace window can answer the very same pair without the database ever
//! holding a token in the clear. A rotated token presented after the window is taken as
//! stolen: the whole family is revoked.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, no_content, ok},
    audit::{self, Action, Actor, Target},
    auth::{
        jwt::{self, Claims},
        password,
        principal::{self, Credential, Principal, check_tenant_status},
        rbac::Role,
    },
    db::Statement,
    error::ApiResult,
    ids::new_id,
    rate_limit::Limit,
    sql,
    tenancy::{Email, tenants::TenantSelector},
    tokens::{base64url, hmac_sha256, random_token, sha256_hex},
};

const REFRESH_PREFIX: &str = "rt_";

/// A fresh access token and refresh token, as the API returns them.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub refresh_expires_in: i64,
}

impl TokenPair {
    pub fn json(&self) -> Json {
        json!({
            "token_type": "Bearer",
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        })
    }
}

/// Who a session is for.
pub struct SessionUser<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub role: Role,
}

fn access_token(env: &Env, user: &SessionUser<'_>, session_id: &str, issued_at: i64) -> String {
    let claims = Claims::new(
        user.user_id,
        user.tenant_id,
        user.role.as_str(),
        session_id,
        user.role.scopes().to_string(),
        issued_at,
        env.config.access_token_ttl,
    );
    jwt::sign(&env.config, &claims)
}

fn successor(env: &Env, refresh_token: &str) -> String {
    let key = hmac_sha256(
        &env.config.jwt_current.secret,
        b"tollgate refresh successor",
    );
    format!(
        "{REFRESH_PREFIX}{}",
        base64url(&hmac_sha256(&key, refresh_token.as_bytes()))
    )
}

/// The row of a new session `session_id` of `user`, opened by `request` at `now`.
pub(crate) fn session_row(
    user: &SessionUser<'_>,
    request: &ApiRequest,
    session_id: &str,
    now: i64,
) -> Statement {
    sql!(
        "INSERT INTO sessions (id, tenant_id, user_id, created_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?)",
        session_id,
        user.tenant_id,
        user.user_id,
        now,
        request.client_ip.clone(),
        request
            .header("user-agent")
            .map(|agent| agent.chars().take(256).collect::<String>())
    )
}

/// The statements that open a session for `user`, and the pair to hand out once they commit.
pub fn open(
    env: &Env,
    user: &SessionUser<'_>,
    request: &ApiRequest,
) -> (Vec<Statement>, TokenPair) {
    let now = env.now();
    let session_id = new_id();
    let refresh_token = format!("{REFRESH_PREFIX}{}", random_token(32));
    let statements = vec![
        session_row(user, request, &session_id, now),
        sql!(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
            sha256_hex(&refresh_token),
            &session_id,
            now,
            now + env.config.refresh_token_ttl
        ),
    ];
    let pair = TokenPair {
        access_token: access_token(env, user, &session_id, now),
        refresh_token,
        expires_in: env.config.access_token_ttl,
        refresh_expires_in: env.config.refresh_token_ttl,
    };
    (statements, pair)
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    email: String,
    password: String,
    /// The tenant's slug; without it the Host header names the tenant.
    tenant: Option<String>,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        http::StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the email, password or tenant is wrong",
    )
}

/// Limits on attempts at the doors a password guesser knocks on.
pub fn attempt_limits(
    env: &Env,
    door: &str,
    request: &ApiRequest,
    account: Option<String>,
) -> Vec<Limit> {
    let ip = request.client_ip.as_deref().unwrap_or("unknown");
    let mut limits = vec![Limit::per_minute(
        format!("{door}-ip:{ip}"),
        env.config.auth_attempts_per_ip,
    )];
    if let Some(account) = account {
        limits.push(Limit::per_minute(
            format!("{door}-account:{account}"),
            env.config.auth_attempts_per_account,
        ));
    }
    limits
}

/// Counts the attempts and refuses the request if any limit is passed; `results` are the
/// outcomes of `limit.hit(now)` for each limit, in order.
pub fn judge_attempts(env: &Env, limits: &[Limit], results: &[crate::db::Rows]) -> ApiResult<()> {
    for (limit, rows) in limits.iter().zip(results) {
        let hits = rows.first().map_or(Ok(1), |row| row.get("hits"))?;
        limit.judge(hits, env.now())?;
    }
    Ok(())
}

/// `POST /api/v1/auth/login`
pub async fn login(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: Login = request.json()?;
    let (tenant_id, user_id, role) = check_password(
        env,
        request,
        &body.email,
        &body.password,
        body.tenant.as_deref(),
    )
    .await?;
    let user = SessionUser {
        tenant_id: &tenant_id,
        user_id: &user_id,
        role,
    };
    let (mut statements, pair) = open(env, &user, request);
    statements.extend(signed_in(&user, request, env.now()));
    env.db.batch(statements).await?;
    audit::try_seal(env, &tenant_id).await;
    let mut body = pair.json();
    body["user_id"] = json!(user_id);
    body["tenant_id"] = json!(tenant_id);
    Ok(ok(&body))
}

/// What a sign-in writes beside its session: the user's last login and the audit entry.
pub(crate) fn signed_in(user: &SessionUser<'_>, request: &ApiRequest, now: i64) -> [Statement; 2] {
    [
        sql!(
            "UPDATE users SET last_login_at = ? WHERE id = ?",
            now,
            user.user_id
        ),
        audit::entry(
            user.tenant_id,
            &Actor::user(user.user_id, request.client()),
            Action::AuthLogin,
            Target::new("user", user.user_id),
            json!({}),
            now,
        ),
    ]
}

/// The account `email` names in the tenant (`tenant`, or the one the Host header names),
/// when `password` is its password and the tenant may sign in: `(tenant id, user id,
/// role)`. Attempts are counted per address and per account; a refusal is audited in the
/// tenant it named and answers the same whatever was wrong.
pub(crate) async fn check_password(
    env: &Env,
    request: &ApiRequest,
    email: &str,
    password: &str,
    tenant: Option<&str>,
) -> ApiResult<(String, String, Role)> {
    let email = Email::parse("email", email)?;
    let tenant = TenantSelector::from_request(env, request, tenant)?;
    let now = env.now();
    let limits = attempt_limits(
        env,
        "login",
        request,
        Some(format!("{}/{}", tenant.key(), email)),
    );
    let mut statements: Vec<Statement> = limits.iter().map(|limit| limit.hit(now)).collect();
    statements.push(
        tenant
            .bind(sql!(
                "SELECT u.id, u.tenant_id, u.password_hash, u.role, t.status AS tenant_status, t.sso_required
         FROM users u JOIN tenants t ON t.id = u.tenant_id
         WHERE (t.slug = ? OR t.custom_domain = ?) AND t.status != 'deleted'
           AND u.email = ? AND u.status = 'active'"
            ))
            .bind(&email),
    );
    // The tenant, even when the user is unknown: its audit log records the failure.
    statements.push(tenant.bind(sql!(
        "SELECT t.id FROM tenants t WHERE (t.slug = ? OR t.custom_domain = ?) AND t.status != 'deleted'"
    )));
    let results = env.db.batch(statements).await?;
    judge_attempts(env, &limits, &results)?;
    let named_tenant = results[limits.len() + 1]
        .first()
        .map(|row| row.get::<String>("id"))
        .transpose()?;
    let failed = |user_id: Option<String>, reason: &'static str| FailedLogin {
        tenant_id: named_tenant.clone(),
        user_id,
        email: email.as_str(),
        reason,
    };
    let Some(row) = results[limits.len()].first() else {
        password::verify_against_nothing(password);
        failed(None, "unknown_user").record(env, request).await?;
        return Err(invalid_credentials());
    };
    let (tenant_id, user_id): (String, String) = (row.get("tenant_id")?, row.get("id")?);
    if !password::verify(password, &row.get::<String>("password_hash")?) {
        failed(Some(user_id), "wrong_password")
            .record(env, request)
            .await?;
        return Err(invalid_credentials());
    }
    if let Err(refused) = check_tenant_status(&row.get::<String>("tenant_status")?) {
        failed(Some(user_id), "tenant_suspended")
            .record(env, request)
            .await?;
        return Err(refused);
    }
    let role: Role = row.get("role")?;
    // A tenant that requires SSO lets only its owners in by password: their way back in.
    if row.get::<i64>("sso_required")? == 1 && role != Role::Owner {
        failed(Some(user_id), "sso_required")
            .record(env, request)
            .await?;
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "sso_required",
            "this organisation signs its members in with single sign-on, not a password",
        ));
    }
    Ok((tenant_id, user_id, role))
}

/// A refused sign-in, for the audit log of the tenant it named.
struct FailedLogin<'a> {
    /// `None` when no such tenant exists: there is no log to write to.
    tenant_id: Option<String>,
    /// The account the attempt was against, when the email names one.
    user_id: Option<String>,
    email: &'a str,
    reason: &'static str,
}

impl FailedLogin<'_> {
    /// A refusal changes nothing, so its entry has no batch to ride with: it is written on
    /// its own, like the attempt counters before it.
    async fn record(self, env: &Env, request: &ApiRequest) -> ApiResult<()> {
        let Some(tenant_id) = self.tenant_id else {
            return Ok(());
        };
        let target = self
            .user_id
            .map_or_else(Target::none, |id| Target::new("user", id));
        env.db
            .execute(audit::entry(
                &tenant_id,
                &Actor::anonymous(request.client()),
                Action::AuthLoginFailed,
                target,
                json!({ "email": self.email, "reason": self.reason }),
                env.now(),
            ))
            .await?;
        audit::try_seal(env, &tenant_id).await;
        Ok(())
    }
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

fn invalid_refresh(message: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        message,
    )
}

/// `POST /api/v1/auth/refresh`: one round trip rotates the token, detects reuse (and then
/// revokes the family) and reads what the answer needs.
pub async fn refresh(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: RefreshBody = request.json()?;
    let presented = body.refresh_token.trim();
    if !presented.starts_with(REFRESH_PREFIX) {
        return Err(invalid_refresh("the refresh token is not valid"));
    }
    let now = env.now();
    let grace = env.config.refresh_grace_seconds;
    let hash = sha256_hex(presented);
    let next = successor(env, presented);
    let next_hash = sha256_hex(&next);
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?
                 WHERE token_hash = ? AND rotated_at IS NULL AND expires_at > ?
                   AND session_id IN (
                       SELECT s.id FROM sessions s
                       JOIN users u ON u.id = s.user_id
                       JOIN tenants t ON t.id = s.tenant_id
                       WHERE s.revoked_at IS NULL AND u.status = 'active' AND t.status = 'active')",
                now,
                &next_hash,
                &hash,
                now
            ),
            sql!(
                "INSERT OR IGNORE INTO refresh_tokens (token_hash, session_id, issued_at, expires_at)
                 SELECT ?, session_id, ?, ? FROM refresh_tokens
                 WHERE token_hash = ? AND successor_hash = ? AND rotated_at = ?",
                &next_hash,
                now,
                now + env.config.refresh_token_ttl,
                &hash,
                &next_hash,
                now
            ),
            sql!(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'refresh_token_reuse'
                 WHERE revoked_at IS NULL AND id = (
                     SELECT session_id FROM refresh_tokens
                     WHERE token_hash = ? AND rotated_at IS NOT NULL AND rotated_at < ?)",
                now,
                &hash,
                now - grace
            ),
            sql!(
                "SELECT r.rotated_at, r.expires_at, r.successor_hash, s.id AS session_id,
                        s.revoked_at, s.revoked_reason, u.id AS user_id, u.tenant_id, u.role,
                        u.status AS user_status, t.status AS tenant_status,
                        (SELECT issued_at FROM refresh_tokens WHERE token_hash = r.successor_hash) AS successor_issued_at
                 FROM refresh_tokens r
                 JOIN sessions s ON s.id = r.session_id
                 JOIN users u ON u.id = s.user_id
                 JOIN tenants t ON t.id = s.tenant_id
                 WHERE r.token_hash = ?",
                &hash
            ),
        ])
        .await?;
    let row = results[3]
        .first()
        .ok_or_else(|| invalid_refresh("the refresh token is not valid"))?;
    if row.get::<Option<i64>>("revoked_at")?.is_some() {
        let reason = row.get::<Option<String>>("revoked_reason")?;
        return Err(match reason.as_deref() {
            Some("refresh_token_reuse") => {
                invalid_refresh("this refresh token was already used: the session has been revoked")
            }
            _ => invalid_refresh("the session has ended"),
        });
    }
    // A refused user or tenant is judged before the rotation's outcome: the rotation did not
    // happen for them, so the token stays usable should the tenant be reinstated.
    if row.get::<String>("user_status")? != "active" {
        return Err(invalid_refresh("the user no longer exists"));
    }
    check_tenant_status(&row.get::<String>("tenant_status")?)?;
    let rotated_at = row.get::<Option<i64>>("rotated_at")?;
    let successor_issued_at = row.get::<Option<i64>>("successor_issued_at")?;
    let (Some(rotated_at), Some(issued_at)) = (rotated_at, successor_issued_at) else {
        return Err(invalid_refresh("the refresh token has expired"));
    };
    if row.get::<Option<String>>("successor_hash")?.as_deref() != Some(next_hash.as_str())
        || rotated_at < now - grace
    {
        return Err(invalid_refresh("the refresh token is not valid"));
    }
    let (tenant_id, user_id, session_id): (String, String, String) = (
        row.get("tenant_id")?,
        row.get("user_id")?,
        row.get("session_id")?,
    );
    let role = row.get::<Role>("role")?;
    let user = SessionUser {
        tenant_id: &tenant_id,
        user_id: &user_id,
        role,
    };
    let pair = TokenPair {
        access_token: access_token(env, &user, &session_id, issued_at),
        refresh_token: next,
        expires_in: issued_at + env.config.access_token_ttl - now,
        refresh_expires_in: issued_at + env.config.refresh_token_ttl - now,
    };
    Ok(ok(&pair.json()))
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutBody {
    refresh_token: Option<String>,
}

/// `POST /api/v1/auth/logout`: ends the session named by the refresh token in the body, or
/// by the access token that authenticates the request.
pub async fn logout(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: LogoutBody = if request.body.is_empty() {
        LogoutBody::default()
    } else {
        request.json()?
    };
    let now = env.now();
    if let Some(token) = body.refresh_token {
        let rows = env
            .db
            .execute(sql!(
                format!("{END_BY_LOGOUT} WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = ?)"),
                now,
                sha256_hex(token.trim())
            ))
            .await?;
        if rows.rows_affected == 0 {
            return Err(invalid_refresh("the refresh token is not valid"));
        }
        return Ok(no_content());
    }
    let principal: Principal = principal::authenticate(env, request).await?;
    let Credential::Session { session_id } = &principal.credential else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "an API key has no session to end; revoke the key instead",
        ));
    };
    env.db.execute(end(session_id, now)).await?;
    Ok(no_content())
}

/// How a logout ends a session: once, keeping the first end's time and reason.
const END_BY_LOGOUT: &str = "UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?), revoked_reason = COALESCE(revoked_reason, 'logout')";

/// The statement that ends session `session_id` at `now`, as a logout does (the API's, or
/// a browser's sign-out).
pub(crate) fn end(session_id: &str, now: i64) -> Statement {
    sql!(format!("{END_BY_LOGOUT} WHERE id = ?"), now, session_id)
}
