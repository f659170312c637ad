//! Password change, password recovery and email verification. Recovery and verification
//! use single-use, expiring tokens sent by mail and kept only as hashes. Each redemption is
//! one batch whose writes all hinge on the token still being unused, so a token works once
//! even when presented twice at the same moment. A token is bound to the address it was
//! mailed to and works only while the user still has that address; every reset token of a
//! user dies when the user's password changes, however it changes.

use serde::Deserialize;
use serde_json::json;

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, json_response, ok},
    audit::{self, Action, Actor, Target},
    auth::{
        password::{self, Password},
        principal::{Credential, Principal},
        sessions,
    },
    db::Statement,
    error::ApiResult,
    ids::new_id,
    mail, sql,
    tenancy::{Email, tenants::TenantSelector},
    tokens::{random_token, sha256_hex},
};

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Forgot {
    email: String,
    tenant: Option<String>,
}

/// `POST /api/v1/auth/forgot-password`: answers 202 whether or not the account exists, and
/// mails a reset token when it does.
pub async fn forgot_password(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: Forgot = request.json()?;
    let email = Email::parse("email", &body.email)?;
    let tenant = TenantSelector::from_request(env, request, body.tenant.as_deref())?;
    let now = env.now();
    let token = random_token(32);
    // Attempts are counted and judged before anything is written, so a refused request
    // leaves no token and no mail behind.
    let limits = sessions::attempt_limits(
        env,
        "recovery",
        request,
        Some(format!("{}/{}", tenant.key(), email)),
    );
    let hits = env
        .db
        .batch(limits.iter().map(|limit| limit.hit(now)).collect())
        .await?;
    sessions::judge_attempts(env, &limits, &hits)?;
    let mut statements = Vec::with_capacity(2);
    let account = "FROM users u JOIN tenants t ON t.id = u.tenant_id
         WHERE (t.slug = ? OR t.custom_domain = ?) AND t.status = 'active' AND u.email = ? AND u.status = 'active'";
    statements.push(
        tenant
            .bind(sql!(
                format!(
                    "INSERT INTO one_time_tokens (token_hash, purpose, tenant_id, user_id, email, expires_at, created_at)
                     SELECT ?, 'password_reset', u.tenant_id, u.id, u.email, ?, ? {account}"
                ),
                sha256_hex(&token),
                now + env.config.password_reset_ttl,
                now
            ))
            .bind(&email),
    );
    let payload = json!({
        "token": token,
        "link": format!("{}/console/reset-password?token={token}", env.config.public_url),
    });
    statements.push(
        tenant
            .bind(sql!(
                format!(
                    "INSERT INTO email_outbox (id, tenant_id, recipient, template, payload, created_at)
                     SELECT ?, u.tenant_id, u.email, ?, ?, ? {account}"
                ),
                new_id(),
                mail::TEMPLATE_PASSWORD_RESET,
                payload.to_string(),
                now
            ))
            .bind(&email),
    );
    env.db.batch(statements).await?;
    Ok(json_response(
        http::StatusCode::ACCEPTED,
        &json!({ "status": "if the account exists, a reset link is on its way" }),
    ))
}

fn invalid_token() -> ApiError {
    ApiError::bad_request(
        "invalid_token",
        "the token is not valid, already used or expired",
    )
}

/// The subquery naming the user of a live token of `purpose`, mailed to the address the
/// user still has.
fn token_user(purpose: &str) -> String {
    format!(
        "(SELECT t.user_id FROM one_time_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = ? AND t.purpose = '{purpose}' AND t.used_at IS NULL AND t.expires_at > ?
            AND t.email = u.email)"
    )
}

/// Goes with every new password: the user's reset tokens still outstanding die, so a reset
/// link mailed before the change cannot undo it. `user` yields the user's id; the token
/// `spared` is left for its own redemption.
fn end_reset_tokens(user: Statement, spared: Option<&str>, now: i64) -> Statement {
    let mut statement = sql!(
        format!(
            "UPDATE one_time_tokens SET used_at = ?
             WHERE user_id = ({}) AND purpose = 'password_reset' AND used_at IS NULL
               AND token_hash IS NOT ?",
            user.sql
        ),
        now
    );
    statement.params.extend(user.params);
    statement.bind(spared)
}

fn use_token(purpose: &str, token_hash: &str, now: i64) -> Statement {
    sql!(
        format!(
            "UPDATE one_time_tokens SET used_at = ?
             WHERE token_hash = ? AND purpose = '{purpose}' AND used_at IS NULL AND expires_at > ?"
        ),
        now,
        token_hash,
        now
    )
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Reset {
    token: String,
    password: String,
}

/// `POST /api/v1/auth/reset-password`: sets the password and ends every session of the user.
pub async fn reset_password(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: Reset = request.json()?;
    let password = Password::parse("password", body.password)?;
    let now = env.now();
    let token_hash = sha256_hex(body.token.trim());
    let user = token_user("password_reset");
    // Whose token it is, for the audit entry; whether it still works is decided in the batch.
    let holder = env
        .db
        .execute(sql!(
            "SELECT tenant_id, user_id FROM one_time_tokens WHERE token_hash = ? AND purpose = 'password_reset'",
            &token_hash
        ))
        .await?;
    let holder = holder.first().ok_or_else(invalid_token)?;
    let (tenant_id, user_id): (String, String) = (holder.get("tenant_id")?, holder.get("user_id")?);
    let resets = sql!(
        format!("SELECT 1 FROM users WHERE id = {user} AND status = 'active'"),
        &token_hash,
        now
    );
    let results = env
        .db
        .batch(vec![
            audit::entry(
                &tenant_id,
                &Actor::user(&user_id, request.client()),
                Action::AuthPasswordReset,
                Target::new("user", &user_id),
                json!({}),
                now,
            )
            .only_if_exists(&resets),
            sql!(
                format!("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = {user} AND status = 'active'"),
                password.hash(),
                now,
                &token_hash,
                now
            ),
            sql!(
                format!(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = 'password_reset'
                     WHERE user_id = {user} AND revoked_at IS NULL"
                ),
                now,
                &token_hash,
                now
            ),
            end_reset_tokens(
                sql!(format!("SELECT {user}"), &token_hash, now),
                Some(&token_hash),
                now,
            ),
            use_token("password_reset", &token_hash, now),
        ])
        .await?;
    if results[1].rows_affected == 0 {
        return Err(invalid_token());
    }
    audit::try_seal(env, &tenant_id).await;
    Ok(ok(&json!({ "status": "password_changed" })))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Verify {
    token: String,
}

/// `POST /api/v1/auth/verify-email`
pub async fn verify_email(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: Verify = request.json()?;
    let now = env.now();
    let token_hash = sha256_hex(body.token.trim());
    let user = token_user("email_verification");
    let results = env
        .db
        .batch(vec![
            sql!(
                format!("UPDATE users SET email_verified_at = ?, updated_at = ? WHERE id = {user} AND status = 'active'"),
                now,
                now,
                &token_hash,
                now
            ),
            use_token("email_verification", &token_hash, now),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(invalid_token());
    }
    Ok(ok(&json!({ "email_verified": true })))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/auth/change-password`: a signed-in user (not an API key) proves the current
/// password and sets a new one; every other session of the user ends.
pub async fn change_password(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    let Credential::Session { session_id } = &principal.credential else {
        return Err(ApiError::forbidden(
            "an API key cannot change a password; sign in with the password",
        ));
    };
    let body: ChangePassword = request.json()?;
    let new_password = Password::parse("new_password", body.new_password)?;
    let now = env.now();
    let limits = sessions::attempt_limits(
        env,
        "password-change",
        request,
        Some(principal.user_id.as_str().to_owned()),
    );
    let mut statements: Vec<_> = limits.iter().map(|limit| limit.hit(now)).collect();
    statements.push(sql!(
        "SELECT password_hash FROM users WHERE id = ?",
        &principal.user_id
    ));
    let results = env.db.batch(statements).await?;
    sessions::judge_attempts(env, &limits, &results)?;
    let stored = results[limits.len()]
        .first()
        .ok_or_else(|| ApiError::unauthorized("the caller no longer exists"))?
        .get::<String>("password_hash")?;
    if !password::verify(&body.current_password, &stored) {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is wrong",
        ));
    }
    env.db
        .batch(vec![
            sql!(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                new_password.hash(),
                now,
                &principal.user_id
            ),
            sql!(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'password_changed'
                 WHERE user_id = ? AND id != ? AND revoked_at IS NULL",
                now,
                &principal.user_id,
                session_id
            ),
            end_reset_tokens(sql!("SELECT ?", &principal.user_id), None, now),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::AuthPasswordChanged,
                Target::new("user", principal.user_id.as_str()),
                json!({}),
                now,
            ),
        ])
        .await?;
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(ok(&json!({ "status": "password_changed" })))
}
