//! Who is calling: a user with a session token, or an API key acting for its owner.

use http::StatusCode;

use crate::{
    ApiError, Env,
    api::{ApiRequest, ClientInfo},
    auth::{
        api_keys, browser,
        jwt::{self, JwtError},
        rbac::{Permission, Role, Scope, Scopes},
    },
    db::{Rows, Statement},
    error::ApiResult,
    ids::{TenantId, UserId},
    rate_limit::{Limit, RateStatus},
    sql,
    tenancy::plans,
    tokens::sha256_hex,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// A password login: an access token of this session.
    Session { session_id: String },
    /// An API key with the scopes it was given.
    ApiKey { key_id: String, scopes: Scopes },
}

/// An authenticated caller inside one tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub tenant_slug: String,
    pub user_id: UserId,
    pub role: Role,
    pub credential: Credential,
    pub rate: RateStatus,
    /// Where the request came from, for the audit log.
    pub client: ClientInfo,
}

impl Principal {
    /// The scopes the caller holds: its role's, narrowed by an API key's own.
    pub fn scopes(&self) -> Scopes {
        match &self.credential {
            Credential::Session { .. } => self.role.scopes(),
            Credential::ApiKey { scopes, .. } => Scopes(
                scopes
                    .0
                    .iter()
                    .filter(|scope| self.role.scopes().covers(scope))
                    .cloned()
                    .collect(),
            ),
        }
    }

    pub fn covers(&self, needed: &Scope) -> bool {
        self.role.scopes().covers(needed)
            && match &self.credential {
                Credential::Session { .. } => true,
                Credential::ApiKey { scopes, .. } => scopes.covers(needed),
            }
    }

    /// 403 unless the role holds `permission` and, for an API key, the key's scopes cover
    /// it. A session acts with its role, which the permission table has already judged: a
    /// viewer's session (`*:read`) still manages its own keys.
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if !self.role.holds(permission) {
            return Err(
                ApiError::forbidden(format!("the {} role may not do this", self.role))
                    .with_details(serde_json::json!({ "role": self.role })),
            );
        }
        let needed = permission.scope();
        let covered = match self.credential {
            Credential::Session { .. } => true,
            Credential::ApiKey { .. } => self.covers(&needed),
        };
        if !covered {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this credential lacks the scope {needed}"),
            )
            .with_details(serde_json::json!({ "required_scope": needed.to_string() })));
        }
        Ok(())
    }

    pub fn is_self(&self, user_id: &str) -> bool {
        self.user_id.as_str() == user_id
    }

    pub fn auth_kind(&self) -> &'static str {
        match self.credential {
            Credential::Session { .. } => "session",
            Credential::ApiKey { .. } => "api_key",
        }
    }
}

/// The bearer secret of a request: `Authorization: Bearer …` or `X-API-Key: …`.
pub fn presented_secret(request: &ApiRequest) -> Option<&str> {
    let bearer = request.header("authorization").and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer
        .or_else(|| request.header("x-api-key").map(str::trim))
        .filter(|secret| !secret.is_empty())
}

/// Authenticates the request and counts it against the caller's per-minute limit, in one
/// database round trip. Without a bearer secret, a browser's session cookie counts; a
/// request that changes state with it must carry the session's CSRF token
/// ([`browser::check_csrf`]).
pub async fn authenticate(env: &Env, request: &ApiRequest) -> ApiResult<Principal> {
    let (principal, from_cookie) = authenticate_any(env, request).await?;
    if from_cookie
        && !request.method.is_safe()
        && let Credential::Session { session_id } = &principal.credential
    {
        browser::check_csrf(&env.config, request, session_id)?;
    }
    Ok(principal)
}

/// [`authenticate`] for forward-auth, where the request judged is the one the proxy holds:
/// a session cookie counts whatever its method, because `SameSite=Lax` already keeps the
/// cookie off the state-changing requests other sites make.
pub async fn authenticate_forwarded(env: &Env, request: &ApiRequest) -> ApiResult<Principal> {
    Ok(authenticate_any(env, request).await?.0)
}

/// The principal, and whether it came from the session cookie.
async fn authenticate_any(env: &Env, request: &ApiRequest) -> ApiResult<(Principal, bool)> {
    if let Some(secret) = presented_secret(request) {
        let principal = if api_keys::looks_like_key(secret) {
            authenticate_key(env, secret, request.client()).await?
        } else {
            authenticate_session(env, secret, request.client()).await?
        };
        return Ok((principal, false));
    }
    let token = browser::session_cookie(request)
        .ok_or_else(|| ApiError::unauthorized("send an access token or an API key"))?;
    Ok((
        authenticate_session(env, token, request.client()).await?,
        true,
    ))
}

/// A 401 whose one challenge tells the client its token is bad (RFC 6750), so it refreshes
/// or signs in again.
fn invalid_credential(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).with_header(
        http::header::WWW_AUTHENTICATE,
        format!(
            "Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"{message}\""
        ),
    )
}

async fn authenticate_session(env: &Env, token: &str, client: ClientInfo) -> ApiResult<Principal> {
    let now = env.now();
    let claims = jwt::verify(&env.config, token, now).map_err(|error| match error {
        JwtError::Expired => invalid_credential("the access token has expired"),
        _ => invalid_credential("the access token is not valid"),
    })?;
    if claims.role == jwt::PLATFORM_ADMIN_ROLE {
        return Err(invalid_credential("a platform admin token names no tenant"));
    }
    let limit = Limit::per_minute(format!("user:{}", claims.sub), 0);
    let find = sql!(
        format!(
            "SELECT u.role, t.slug, t.status AS tenant_status, s.revoked_at, {rpm} AS rpm
             FROM users u
             JOIN tenants t ON t.id = u.tenant_id
             JOIN sessions s ON s.id = ? AND s.user_id = u.id
             WHERE u.id = ? AND u.tenant_id = ? AND u.status = 'active'",
            rpm = plans::REQUESTS_PER_MINUTE_OF_T
        ),
        &claims.sid,
        &claims.sub,
        &claims.tid
    );
    let (found, counted) = read_and_count(env, find, None, &limit, now).await?;
    let row = found
        .first()
        .ok_or_else(|| invalid_credential("the access token's user no longer exists"))?;
    if row.get::<Option<i64>>("revoked_at")?.is_some() {
        return Err(invalid_credential("the session has ended"));
    }
    check_tenant_status(&row.get::<String>("tenant_status")?)?;
    let role = row.get::<Role>("role")?;
    let limit = Limit {
        limit: row.get("rpm")?,
        ..limit
    };
    let rate = limit.judge(counted.hits(env, &limit, now)?, now)?;
    Ok(Principal {
        tenant_id: TenantId::trusted(claims.tid),
        tenant_slug: row.get("slug")?,
        user_id: UserId::trusted(claims.sub),
        role,
        credential: Credential::Session {
            session_id: claims.sid,
        },
        rate,
        client,
    })
}

async fn authenticate_key(env: &Env, secret: &str, client: ClientInfo) -> ApiResult<Principal> {
    let now = env.now();
    let key_hash = sha256_hex(secret);
    let limit = Limit::per_minute(format!("key:{}", &key_hash[..32]), 0);
    // With the counters in the database the request writes anyway: its use is noted in the
    // same transaction. Otherwise it is noted apart, and only when the row read shows it
    // stale, so a verify that only reads writes nothing.
    let note_in_batch = env
        .rate_limiter
        .counts_in_database()
        .then(|| api_keys::note_use(&key_hash, now));
    let note_use_apart = note_in_batch.is_none();
    let (found, counted) =
        read_and_count(env, api_keys::find(&key_hash), note_in_batch, &limit, now).await?;
    let row = found
        .first()
        .ok_or_else(|| invalid_credential("the API key is not valid"))?;
    if row.get::<Option<i64>>("revoked_at")?.is_some() {
        return Err(invalid_credential("the API key has been revoked"));
    }
    if row
        .get::<Option<i64>>("expires_at")?
        .is_some_and(|expiry| expiry <= now)
    {
        return Err(invalid_credential("the API key has expired"));
    }
    if row.get::<String>("user_status")? != "active" {
        return Err(invalid_credential("the API key's user no longer exists"));
    }
    check_tenant_status(&row.get::<String>("tenant_status")?)?;
    let role = row.get::<Role>("role")?;
    let limit = Limit {
        limit: row.get("rpm")?,
        ..limit
    };
    let rate = limit.judge(counted.hits(env, &limit, now)?, now)?;
    if note_use_apart && api_keys::use_is_stale(row.get("last_used_at")?, now) {
        env.db.execute(api_keys::note_use(&key_hash, now)).await?;
    }
    Ok(Principal {
        tenant_id: TenantId::trusted(row.get("tenant_id")?),
        tenant_slug: row.get("slug")?,
        user_id: UserId::trusted(row.get("user_id")?),
        role,
        credential: Credential::ApiKey {
            key_id: row.get("id")?,
            scopes: Scopes::parse_stored(&row.get::<String>("scopes")?),
        },
        rate,
        client,
    })
}

/// The hit of a request, counted in the database with its reads or left to the limiter.
enum Counted {
    InDatabase(Rows),
    ByLimiter,
}

impl Counted {
    /// The window's hits, this one included. A limiter outside the database counts only
    /// requests whose credential is good, so its memory holds no bucket per bad secret.
    fn hits(self, env: &Env, limit: &Limit, now: i64) -> ApiResult<i64> {
        Ok(match self {
            Counted::InDatabase(rows) => rows.first().map_or(Ok(1), |hit| hit.get("hits"))?,
            Counted::ByLimiter => env.rate_limiter.hit(limit, now).unwrap_or(1),
        })
    }
}

/// Runs the credential's read (its rows come back) and, when the limiter counts in the
/// database, `write` and the hit with it in one batch: one round trip either way. The read
/// alone goes to the database as one plain query, which takes no write lock.
async fn read_and_count(
    env: &Env,
    read: Statement,
    write: Option<Statement>,
    limit: &Limit,
    now: i64,
) -> ApiResult<(Rows, Counted)> {
    if !env.rate_limiter.counts_in_database() {
        return Ok((env.db.execute(read).await?, Counted::ByLimiter));
    }
    let statements = std::iter::once(read)
        .chain(write)
        .chain([limit.hit(now)])
        .collect();
    let mut results = env.db.batch(statements).await?.into_iter();
    let found = results.next().unwrap_or_default();
    let hit = results.next_back().unwrap_or_default();
    Ok((found, Counted::InDatabase(hit)))
}

/// A suspended tenant's callers are known but refused; a deleted tenant is gone.
pub fn check_tenant_status(status: &str) -> ApiResult<()> {
    match status {
        "active" => Ok(()),
        "suspended" => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_suspended",
            "this tenant is suspended; contact the operator",
        )),
        _ => Err(invalid_credential("the tenant no longer exists")),
    }
}
