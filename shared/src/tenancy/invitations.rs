//! Invitations: an admin invites an email with a role; the token travels by mail; accepting
//! it creates the user (email verified by the act) and signs them in.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{self, Action, Actor, Target},
    auth::{
        password::Password,
        principal::Principal,
        rbac::{Permission, Role},
        sessions::{self, SessionUser},
    },
    clock::rfc3339,
    db::Row,
    error::ApiResult,
    ids::new_id,
    mail, sql,
    tenancy::{Email, parse_display_name, plans, users},
    tokens::{random_token, sha256_hex},
    webhooks,
};

fn invitation_json(row: &Row<'_>, now: i64) -> ApiResult<Json> {
    let status = if row.get::<Option<i64>>("accepted_at")?.is_some() {
        "accepted"
    } else if row.get::<Option<i64>>("revoked_at")?.is_some() {
        "revoked"
    } else if row.get::<i64>("expires_at")? <= now {
        "expired"
    } else {
        "pending"
    };
    Ok(json!({
        "id": row.get::<String>("id")?,
        "email": row.get::<String>("email")?,
        "role": row.get::<String>("role")?,
        "status": status,
        "expires_at": rfc3339(row.get("expires_at")?),
        "created_at": rfc3339(row.get("created_at")?),
    }))
}

const INVITATION_COLUMNS: &str = "id, email, role, expires_at, accepted_at, revoked_at, created_at";

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Invite {
    email: String,
    role: String,
}

/// `POST /api/v1/invitations`
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::InvitationsManage)?;
    let body: Invite = request.json()?;
    let email = Email::parse("email", &body.email)?;
    let role = match Role::parse(&body.role) {
        Some(Role::Owner) => {
            return Err(ApiError::invalid_field(
                "role",
                "owners are made by a role change, not invited",
            ));
        }
        Some(role) => role,
        None => {
            return Err(ApiError::invalid_field(
                "role",
                "must be admin, member or viewer",
            ));
        }
    };
    let now = env.now();
    let id = new_id();
    let token = random_token(32);
    let expires_at = now + env.config.invitation_ttl;
    let tenant = principal.tenant_id.as_str();
    let no_such_user = sql!(
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM users WHERE tenant_id = ? AND email = ? AND status = 'active')",
        tenant,
        &email
    );
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO invitations (id, tenant_id, email, role, token_hash, invited_by, expires_at, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &id,
                tenant,
                &email,
                role.as_str(),
                sha256_hex(&token),
                &principal.user_id,
                expires_at,
                now
            )
            .only_if_exists(&no_such_user),
            mail::enqueue(
                tenant,
                email.as_str(),
                mail::TEMPLATE_INVITATION,
                &json!({
                    "token": token,
                    "tenant": principal.tenant_slug,
                    "role": role,
                    "link": format!("{}/console/accept-invitation?token={token}", env.config.public_url),
                }),
                now,
            )
            .only_if_exists(&no_such_user),
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::InvitationCreated,
                Target::new("invitation", &id),
                json!({ "email": email.as_str(), "role": role, "expires_at": rfc3339(expires_at) }),
                now,
            )
            .only_if_exists(&sql!("SELECT 1 FROM invitations WHERE id = ?", &id)),
            // For tenant webhooks; the token stays in the mail.
            webhooks::events::emit_from(
                "user.invited",
                sql!(
                    "SELECT tenant_id, json_object('invitation_id', id, 'email', email, 'role', role,
                            'invited_by', invited_by, 'expires_at', expires_at) AS payload, created_at
                     FROM invitations WHERE id = ?",
                    &id
                ),
            ),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(users::email_in_use());
    }
    audit::try_seal(env, tenant).await;
    Ok(created(&json!({
        "id": id,
        "email": email.as_str(),
        "role": role,
        "status": "pending",
        "expires_at": rfc3339(expires_at),
        "created_at": rfc3339(now),
    })))
}

/// `GET /api/v1/invitations`
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::InvitationsManage)?;
    let page = request.page()?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations WHERE tenant_id = ?
                 ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
            ),
            &principal.tenant_id,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let now = env.now();
    let items = rows
        .iter()
        .map(|row| invitation_json(&row, now))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(items)))
}

/// `DELETE /api/v1/invitations/{id}`: a pending invitation can no longer be accepted.
pub async fn revoke(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::InvitationsManage)?;
    let now = env.now();
    let pending = sql!(
        "SELECT 1 FROM invitations WHERE id = ? AND tenant_id = ? AND accepted_at IS NULL AND revoked_at IS NULL",
        id,
        &principal.tenant_id
    );
    let results = env
        .db
        .batch(vec![
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::InvitationRevoked,
                Target::new("invitation", id),
                json!({}),
                now,
            )
            .only_if_exists(&pending),
            sql!(
                "UPDATE invitations SET revoked_at = COALESCE(revoked_at, ?)
                 WHERE id = ? AND tenant_id = ? AND accepted_at IS NULL",
                now,
                id,
                &principal.tenant_id
            ),
        ])
        .await?;
    if results[1].rows_affected == 0 {
        return Err(ApiError::not_found("invitation"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Accept {
    token: String,
    name: String,
    password: String,
}

fn invalid_invitation() -> ApiError {
    ApiError::bad_request(
        "invalid_token",
        "the invitation is not valid, used, revoked or expired",
    )
}

/// `POST /api/v1/invitations/accept`: no credentials but the mailed token.
pub async fn accept(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: Accept = request.json()?;
    let name = parse_display_name("name", &body.name)?;
    let password = Password::parse("password", body.password)?;
    let now = env.now();
    let token_hash = sha256_hex(body.token.trim());
    let rows = env
        .db
        .execute(sql!(
            "SELECT i.id, i.tenant_id, i.email, i.role, t.slug FROM invitations i JOIN tenants t ON t.id = i.tenant_id
             WHERE i.token_hash = ? AND i.accepted_at IS NULL AND i.revoked_at IS NULL
               AND i.expires_at > ? AND t.status = 'active'",
            &token_hash,
            now
        ))
        .await?;
    let invitation = rows.first().ok_or_else(invalid_invitation)?;
    let tenant_id: String = invitation.get("tenant_id")?;
    let email = Email::parse("email", &invitation.get::<String>("email")?)?;
    let role = invitation.get::<Role>("role")?;
    let user_id = new_id();
    let claim = sql!(
        "UPDATE invitations SET accepted_at = ? WHERE token_hash = ? AND accepted_at IS NULL AND revoked_at IS NULL",
        now,
        &token_hash
    );
    let mut statements = vec![
        claim,
        users::insert_within_seats(
            &user_id,
            &tenant_id,
            &email,
            &name,
            &password.hash(),
            role,
            now,
        ),
        sql!(
            "UPDATE users SET email_verified_at = ? WHERE id = ?",
            now,
            &user_id
        ),
    ];
    let user = SessionUser {
        tenant_id: &tenant_id,
        user_id: &user_id,
        role,
    };
    let (session, pair) = sessions::open(env, &user, request);
    let user_exists = sql!("SELECT 1 FROM users WHERE id = ?", &user_id);
    statements.extend(
        session
            .into_iter()
            .map(|statement| statement.only_if_exists(&user_exists)),
    );
    statements.push(
        audit::entry(
            &tenant_id,
            &Actor::user(&user_id, request.client()),
            Action::InvitationAccepted,
            Target::new("invitation", invitation.get::<String>("id")?),
            json!({ "user_id": user_id, "email": email.as_str(), "role": role }),
            now,
        )
        .only_if_exists(&user_exists),
    );
    // With no seat left the user is not inserted; this gives the invitation back, so it
    // can still be accepted once a seat frees up.
    statements.push(sql!(
        "UPDATE invitations SET accepted_at = NULL WHERE token_hash = ? AND NOT EXISTS (SELECT 1 FROM users WHERE id = ?)",
        &token_hash,
        &user_id
    ));
    let results = env.db.batch(statements).await.map_err(users::email_taken)?;
    if results[0].rows_affected == 0 {
        return Err(invalid_invitation());
    }
    if results[1].rows_affected == 0 {
        return Err(plans::limit_reached("max_users", "users"));
    }
    audit::try_seal(env, &tenant_id).await;
    let mut body = pair.json();
    body["user"] = json!({
        "id": user_id,
        "email": email.as_str(),
        "name": name,
        "role": role,
    });
    body["tenant"] = json!({ "id": tenant_id, "slug": invitation.get::<String>("slug")? });
    Ok(created(&body))
}
