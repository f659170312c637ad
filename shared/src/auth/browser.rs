//! Browsers behind the reverse proxy: the session cookie, the sign-in that sets it, the
//! sign-out that ends it, and where forward-auth sends a browser that has none.
//!
//! - **The cookie** `tollgate_session` carries a session token: a JWT naming a session row,
//!   as an access token does, that lives as long as a refresh token. It is `HttpOnly`,
//!   `SameSite=Lax`, `Secure` unless `TOLLGATE_COOKIE_SECURE=false` (plain-HTTP
//!   development), and set for `TOLLGATE_COOKIE_DOMAIN` when that is set, so that every
//!   subdomain behind the proxy shares it. The session row is read on every request, so a
//!   signed-out or revoked session is refused on the next one.
//! - **CSRF.** A state-changing API call authenticated by the cookie must send the
//!   session's CSRF token back in `X-CSRF-Token` (a form, in its `csrf` field). The token is
//!   an HMAC of the session id under the signing key, and the page reads it from the
//!   `tollgate_csrf` cookie: another site can make the browser send the cookies but cannot
//!   read them, so it cannot send the token.
//! - **Forward-auth.** A browser (its request accepts `text/html`) without a valid credential
//!   is redirected to the console's sign-in page, carrying the URL it asked for rebuilt from
//!   `X-Forwarded-Proto`, `-Host` and `-Uri`. Only URLs on Tollgate's own host or under the
//!   cookie domain are ever returned to, so the sign-in is no open redirect.

use http::{StatusCode, header};
use subtle::ConstantTimeEq;

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response},
    auth::{
        jwt::{self, Claims},
        principal::{self, Credential},
        sessions::{self, SessionUser},
    },
    config::Config,
    error::ApiResult,
    ids::new_id,
    tokens::{base64url, hmac_sha256},
};

pub const SESSION_COOKIE: &str = "tollgate_session";
pub const CSRF_COOKIE: &str = "tollgate_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The console's sign-in page, under Tollgate's public URL.
pub const SIGN_IN_PATH: &str = "/console/sign-in";

/// The value of cookie `name` the request carries.
fn cookie<'a>(request: &'a ApiRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value.trim())
        })
        .filter(|value| !value.is_empty())
}

/// The session token of the request's session cookie.
pub fn session_cookie(request: &ApiRequest) -> Option<&str> {
    cookie(request, SESSION_COOKIE)
}

/// The CSRF token of session `session_id` under `secret`.
fn csrf_token_under(secret: &[u8], session_id: &str) -> String {
    base64url(&hmac_sha256(
        secret,
        format!("tollgate csrf {session_id}").as_bytes(),
    ))
}

/// The CSRF token of session `session_id`, as the sign-in sets it.
pub fn csrf_token(config: &Config, session_id: &str) -> String {
    csrf_token_under(&config.jwt_current.secret, session_id)
}

/// Whether `presented` is session `session_id`'s CSRF token under the current signing key
/// or one still accepted, compared in constant time.
fn csrf_matches(config: &Config, session_id: &str, presented: &str) -> bool {
    std::iter::once(&config.jwt_current)
        .chain(&config.jwt_previous)
        .any(|key| {
            csrf_token_under(&key.secret, session_id)
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into()
        })
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "a request that changes state with the session cookie must send the session's CSRF token in X-CSRF-Token",
    )
}

/// Refuses a cookie-authenticated request of session `session_id` that does not send its
/// CSRF token in `X-CSRF-Token`.
pub fn check_csrf(config: &Config, request: &ApiRequest, session_id: &str) -> ApiResult<()> {
    match request.header(CSRF_HEADER) {
        Some(presented) if csrf_matches(config, session_id, presented.trim()) => Ok(()),
        _ => Err(csrf_refused()),
    }
}

/// A `Set-Cookie` value of cookie `name` for every path of the cookie domain.
fn set_cookie(config: &Config, name: &str, value: &str, max_age: i64, http_only: bool) -> String {
    let mut cookie = format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Lax");
    if let Some(domain) = &config.cookie_domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    if config.cookie_secure {
        cookie.push_str("; Secure");
    }
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    cookie
}

/// The `Set-Cookie` values that end a browser session in the browser.
pub fn cleared_cookies(config: &Config) -> Vec<String> {
    vec![
        set_cookie(config, SESSION_COOKIE, "", 0, true),
        set_cookie(config, CSRF_COOKIE, "", 0, false),
    ]
}

/// Signs a browser in with a password (the console's form): opens a session, audited as a
/// login, and answers the `Set-Cookie` values that carry it. Refusals are the API's login's.
pub async fn sign_in(
    env: &Env,
    request: &ApiRequest,
    email: &str,
    password: &str,
    tenant: Option<&str>,
) -> ApiResult<Vec<String>> {
    let (tenant_id, user_id, role) =
        sessions::check_password(env, request, email, password, tenant).await?;
    let user = SessionUser {
        tenant_id: &tenant_id,
        user_id: &user_id,
        role,
    };
    let now = env.now();
    let session_id = new_id();
    let mut statements = vec![sessions::session_row(&user, request, &session_id, now)];
    statements.extend(sessions::signed_in(&user, request, now));
    env.db.batch(statements).await?;
    crate::audit::try_seal(env, &tenant_id).await;
    let claims = Claims::new(
        &user_id,
        &tenant_id,
        role.as_str(),
        &session_id,
        role.scopes().to_string(),
        now,
        0,
    );
    Ok(session_cookies(env, claims))
}

/// The `Set-Cookie` values that carry the session `claims` name, for as long as a refresh
/// token would live: its token, and its CSRF token for the page.
fn session_cookies(env: &Env, claims: Claims) -> Vec<String> {
    let lifetime = env.config.refresh_token_ttl;
    let session = Claims {
        exp: claims.iat + lifetime,
        ..claims
    };
    vec![
        set_cookie(
            &env.config,
            SESSION_COOKIE,
            &jwt::sign(&env.config, &session),
            lifetime,
            true,
        ),
        set_cookie(
            &env.config,
            CSRF_COOKIE,
            &csrf_token(&env.config, &session.sid),
            lifetime,
            false,
        ),
    ]
}

/// The `Set-Cookie` values for the session an access token of the API names (a sign-up or
/// an accepted invitation opens one): the browser carries the same session, for as long as
/// a refresh token would.
pub fn cookies_for_access_token(env: &Env, access_token: &str) -> ApiResult<Vec<String>> {
    let now = env.now();
    let claims = jwt::verify(&env.config, access_token, now)
        .map_err(|_| ApiError::internal().caused_by("a token just issued does not verify"))?;
    Ok(session_cookies(env, Claims { iat: now, ..claims }))
}

/// Signs the browser out: ends the cookie's session when `csrf` is its token, and answers
/// the `Set-Cookie` values that clear the cookies either way.
pub async fn sign_out(
    env: &Env,
    request: &ApiRequest,
    csrf: Option<&str>,
) -> ApiResult<Vec<String>> {
    let Some(token) = session_cookie(request) else {
        return Ok(cleared_cookies(&env.config));
    };
    let Ok(claims) = jwt::verify(&env.config, token, env.now()) else {
        return Ok(cleared_cookies(&env.config));
    };
    if !csrf.is_some_and(|presented| csrf_matches(&env.config, &claims.sid, presented.trim())) {
        return Err(csrf_refused());
    }
    env.db
        .execute(sessions::end(&claims.sid, env.now()))
        .await?;
    Ok(cleared_cookies(&env.config))
}

/// Whether `host` (lower-case, no port) is Tollgate's own or under the cookie domain.
fn trusted_host(config: &Config, host: &str) -> bool {
    let own = config
        .public_url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|authority| {
            authority
                .rsplit_once(':')
                .map_or(authority, |(name, _)| name)
        })
        .is_some_and(|own| own.eq_ignore_ascii_case(host));
    let under_domain = config.cookie_domain.as_deref().is_some_and(|domain| {
        host == domain
            || host
                .strip_suffix(domain)
                .is_some_and(|prefix| prefix.ends_with('.'))
    });
    own || under_domain
}

/// `target` when a browser may be sent there after signing in: a path of Tollgate's own
/// (`/...`, not `//...`), or an http(s) URL on a trusted host, without credentials in it.
pub fn safe_return(config: &Config, target: &str) -> Option<String> {
    if target.starts_with('/') && !target.starts_with("//") && !target.contains('\\') {
        return Some(target.to_owned());
    }
    let uri: http::Uri = target.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let trusted = matches!(scheme, "http" | "https")
        && !authority.as_str().contains('@')
        && trusted_host(config, &authority.host().to_ascii_lowercase());
    trusted.then(|| target.to_owned())
}

/// The URL the proxy's client asked for, from `X-Forwarded-Proto`, `-Host` and `-Uri`.
fn forwarded_url(request: &ApiRequest) -> Option<String> {
    let proto = request.header("x-forwarded-proto")?.trim();
    let host = request.header("x-forwarded-host")?.trim();
    let uri = request.header("x-forwarded-uri").unwrap_or("/").trim();
    Some(format!("{proto}://{host}{uri}"))
}

/// Whether the request comes from a browser navigating, which can follow a sign-in page.
fn wants_html(request: &ApiRequest) -> bool {
    request
        .header("accept")
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The console's sign-in page that returns to `target` afterwards.
pub fn sign_in_url(config: &Config, target: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", target)
        .finish();
    format!("{}{SIGN_IN_PATH}?{query}", config.public_url)
}

/// Forward-auth's answer to a browser that brought no valid credential: a redirect to the
/// sign-in page that comes back to the URL it asked for, when that URL may be returned to.
pub fn sign_in_redirect(config: &Config, request: &ApiRequest) -> Option<Response> {
    if !wants_html(request) {
        return None;
    }
    let target = safe_return(config, &forwarded_url(request)?)?;
    Some(crate::api::redirect(
        StatusCode::FOUND,
        &sign_in_url(config, &target),
        &[],
    ))
}

/// The session a request's cookie names, when it is still good: for the console's pages.
pub async fn session_principal(
    env: &Env,
    request: &ApiRequest,
) -> ApiResult<Option<principal::Principal>> {
    if session_cookie(request).is_none() {
        return Ok(None);
    }
    match principal::authenticate_forwarded(env, request).await {
        Ok(found) if matches!(found.credential, Credential::Session { .. }) => Ok(Some(found)),
        Ok(_) => Ok(None),
        Err(error) if error.status == StatusCode::UNAUTHORIZED => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(domain: Option<&str>) -> Config {
        Config::from_lookup(|name| match name {
            "TOLLGATE_JWT_SECRET" => Some("browser-secret-browser-secret-browser-01".into()),
            "TOLLGATE_PUBLIC_URL" => Some("https://auth.example.test".into()),
            "TOLLGATE_COOKIE_DOMAIN" => domain.map(str::to_owned),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn only_own_paths_and_trusted_hosts_are_returned_to() {
        let config = config(Some("example.test"));
        for good in [
            "/console",
            "https://comfy.example.test/queue?x=1",
            "http://example.test/",
            "https://auth.example.test/console",
        ] {
            assert_eq!(safe_return(&config, good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "//evil.test/",
            "https://evil.test/",
            "https://example.test.evil.test/",
            "https://evilexample.test/",
            "https://user@comfy.example.test/",
            "javascript:alert(1)",
            "ftp://comfy.example.test/",
            "/\\evil.test",
        ] {
            assert_eq!(safe_return(&config, bad), None, "{bad}");
        }
        assert_eq!(
            safe_return(&super::tests::config(None), "https://comfy.example.test/"),
            None,
            "without a cookie domain only Tollgate's own host"
        );
    }

    #[test]
    fn cookies_carry_the_configured_attributes() {
        let config = config(Some("example.test"));
        let cookie = set_cookie(&config, SESSION_COOKIE, "token", 60, true);
        assert_eq!(
            cookie,
            "tollgate_session=token; Path=/; Max-Age=60; SameSite=Lax; Domain=example.test; Secure; HttpOnly"
        );
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session() {
        let config = config(None);
        let token = csrf_token(&config, "session-a");
        assert!(csrf_matches(&config, "session-a", &token));
        assert!(!csrf_matches(&config, "session-b", &token));
        assert!(!csrf_matches(&config, "session-a", ""));
    }
}
