//! Users of a tenant: listing, creation by an admin, profile edits, role changes and soft
//! deletion, under the role rules of `auth::rbac`.

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
    },
    clock::rfc3339,
    db::{DbError, Row, Statement},
    error::ApiResult,
    ids::new_id,
    mail, sql,
    tenancy::{Email, parse_display_name, plans},
    tokens::{random_token, sha256_hex},
};

/// The statements that issue an email-verification token bound to `email` and mail it
/// there, if the user exists once the statements before them in the batch have run.
pub fn verification_mail(
    env: &Env,
    tenant_id: &str,
    user_id: &str,
    email: &Email,
) -> Vec<Statement> {
    let now = env.now();
    let token = random_token(32);
    let user_exists = sql!(
        "SELECT 1 FROM users WHERE id = ? AND status = 'active'",
        user_id
    );
    vec![
        sql!(
            "INSERT INTO one_time_tokens (token_hash, purpose, tenant_id, user_id, email, expires_at, created_at)
             VALUES (?, 'email_verification', ?, ?, ?, ?, ?)",
            sha256_hex(&token),
            tenant_id,
            user_id,
            email,
            now + env.config.email_verification_ttl,
            now
        )
        .only_if_exists(&user_exists),
        mail::enqueue(
            tenant_id,
            email.as_str(),
            mail::TEMPLATE_VERIFY_EMAIL,
            &json!({
                "token": token,
                "link": format!("{}/console/verify-email?token={token}", env.config.public_url),
            }),
            now,
        )
        .only_if_exists(&user_exists),
    ]
}

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, role, status, email_verified_at, last_login_at, created_at";

pub(crate) fn user_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "id": row.get::<String>("id")?,
        "email": row.get::<String>("email")?,
        "name": row.get::<String>("name")?,
        "role": row.get::<String>("role")?,
        "status": row.get::<String>("status")?,
        "email_verified": row.get::<Option<i64>>("email_verified_at")?.is_some(),
        "last_login_at": row.get::<Option<i64>>("last_login_at")?.map(rfc3339),
        "created_at": rfc3339(row.get("created_at")?),
    }))
}

pub(crate) fn email_in_use() -> ApiError {
    ApiError::conflict(
        "email_taken",
        "a user with that email already belongs to this tenant",
    )
    .with_details(json!({ "field": "email" }))
}

pub(crate) fn email_taken(error: DbError) -> ApiError {
    if error.is_unique_violation("users.tenant_id") || error.is_unique_violation("users.email") {
        email_in_use()
    } else {
        error.into()
    }
}

/// The roles an actor may hand out: an owner any, an admin any but owner.
fn may_assign(actor: Role, role: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => role != Role::Owner,
        Role::Member | Role::Viewer => false,
    }
}

fn parse_role(text: &str) -> ApiResult<Role> {
    Role::parse(text)
        .ok_or_else(|| ApiError::invalid_field("role", "must be owner, admin, member or viewer"))
}

/// The user, if it is an active member of the caller's tenant.
async fn fetch(env: &Env, principal: &Principal, user_id: &str) -> ApiResult<Json> {
    let rows = env
        .db
        .execute(sql!(
            format!("SELECT {USER_COLUMNS} FROM users WHERE id = ? AND tenant_id = ? AND status = 'active'"),
            user_id,
            &principal.tenant_id
        ))
        .await?;
    rows.first()
        .map(|row| user_json(&row))
        .ok_or_else(|| ApiError::not_found("user"))?
}

/// `GET /api/v1/users`
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::UsersRead)?;
    let page = request.page()?;
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? AND status = 'active'
                 ORDER BY created_at, id LIMIT ? OFFSET ?"
            ),
            &principal.tenant_id,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let users = rows
        .iter()
        .map(|row| user_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(users)))
}

/// `GET /api/v1/users/{id}`: oneself, or anyone of the tenant with `UsersRead`.
pub async fn get(env: &Env, principal: &Principal, user_id: &str) -> ApiResult<Response> {
    if principal.is_self(user_id) {
        principal.require(Permission::OwnProfile)?;
    } else {
        principal.require(Permission::UsersRead)?;
    }
    Ok(ok(&fetch(env, principal, user_id).await?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    email: String,
    name: String,
    password: String,
    role: String,
}

/// `POST /api/v1/users`: an admin adds a user with a password, within the plan's seats.
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::UsersManage)?;
    let body: CreateUser = request.json()?;
    let email = Email::parse("email", &body.email)?;
    let name = parse_display_name("name", &body.name)?;
    let role = parse_role(&body.role)?;
    if !may_assign(principal.role, role) {
        return Err(ApiError::forbidden(format!(
            "an {} may not create an {role}",
            principal.role
        )));
    }
    let password = Password::parse("password", body.password)?;
    let now = env.now();
    let user_id = new_id();
    let mut statements = vec![
        insert_within_seats(
            &user_id,
            principal.tenant_id.as_str(),
            &email,
            &name,
            &password.hash(),
            role,
            now,
        ),
        audit::entry(
            principal.tenant_id.as_str(),
            &Actor::of(principal),
            Action::UserCreated,
            Target::new("user", &user_id),
            json!({ "email": email.as_str(), "name": name, "role": role }),
            now,
        )
        .only_if_exists(&sql!("SELECT 1 FROM users WHERE id = ?", &user_id)),
    ];
    statements.extend(verification_mail(
        env,
        principal.tenant_id.as_str(),
        &user_id,
        &email,
    ));
    let results = env.db.batch(statements).await.map_err(email_taken)?;
    if results[0].rows_affected == 0 {
        return Err(plans::limit_reached("max_users", "users"));
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(created(&fetch(env, principal, &user_id).await?))
}

/// Inserts an active user if the tenant has a seat left on its plan.
pub(crate) fn insert_within_seats(
    user_id: &str,
    tenant_id: &str,
    email: &Email,
    name: &str,
    password_hash: &str,
    role: Role,
    now: i64,
) -> Statement {
    sql!(
        format!(
            "INSERT INTO users (id, tenant_id, email, name, password_hash, role, created_at, updated_at)
             SELECT ?, ?, ?, ?, ?, ?, ?, ?
             WHERE (SELECT COUNT(*) FROM users WHERE tenant_id = ? AND status = 'active')
                 < (SELECT {max_users} FROM tenants t WHERE t.id = ?)",
            max_users = plans::MAX_USERS_OF_T
        ),
        user_id,
        tenant_id,
        email,
        name,
        password_hash,
        role.as_str(),
        now,
        now,
        tenant_id,
        tenant_id
    )
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    name: Option<String>,
    email: Option<String>,
}

/// `PUT /api/v1/users/{id}`: name and email, by the user or an admin. A new email must be
/// verified again, and the tokens mailed to the old one (verification, password reset)
/// stop working.
pub async fn update(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    if principal.is_self(user_id) {
        principal.require(Permission::OwnProfile)?;
    } else {
        principal.require(Permission::UsersManage)?;
    }
    let body: UpdateUser = request.json()?;
    let name = body
        .name
        .as_deref()
        .map(|name| parse_display_name("name", name))
        .transpose()?;
    let email = body
        .email
        .as_deref()
        .map(|email| Email::parse("email", email))
        .transpose()?;
    let now = env.now();
    let mut statements = vec![sql!(
        "UPDATE users SET name = COALESCE(?, name),
             email_verified_at = CASE WHEN ? IS NOT NULL AND ? != email THEN NULL ELSE email_verified_at END,
             email = COALESCE(?, email),
             updated_at = ?
         WHERE id = ? AND tenant_id = ? AND status = 'active'",
        name.clone(),
        email.as_ref(),
        email.as_ref(),
        email.as_ref(),
        now,
        user_id,
        &principal.tenant_id
    )];
    statements.push(
        audit::entry(
            principal.tenant_id.as_str(),
            &Actor::of(principal),
            Action::UserUpdated,
            Target::new("user", user_id),
            json!({ "name": name, "email": email.as_ref().map(Email::as_str) }),
            now,
        )
        .only_if_exists(&audit::if_changed()),
    );
    if email.is_some() {
        statements.push(sql!(
            "UPDATE one_time_tokens SET used_at = ?
             WHERE user_id = ? AND tenant_id = ? AND used_at IS NULL
               AND email IS NOT (SELECT email FROM users WHERE id = ?)",
            now,
            user_id,
            &principal.tenant_id,
            user_id
        ));
    }
    let current = fetch(env, principal, user_id).await?;
    let current_role = current["role"]
        .as_str()
        .and_then(Role::parse)
        .unwrap_or(Role::Viewer);
    // Whose role an actor may not hand out, it may not edit either: an admin who could
    // change an owner's email could take the owner's account by a password reset.
    if !principal.is_self(user_id) && !may_assign(principal.role, current_role) {
        return Err(ApiError::forbidden(format!(
            "an {} may not edit an {current_role}",
            principal.role
        )));
    }
    if let Some(email) = &email
        && current["email"] != email.as_str()
    {
        statements.extend(verification_mail(
            env,
            principal.tenant_id.as_str(),
            user_id,
            email,
        ));
    }
    env.db.batch(statements).await.map_err(email_taken)?;
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(ok(&fetch(env, principal, user_id).await?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeRole {
    role: String,
}

/// Keeps a tenant from losing its last owner: true for the statement's target row only
/// when it is not an owner or another active owner remains.
const KEEPS_AN_OWNER: &str = "(role != 'owner' OR (SELECT COUNT(*) FROM users o
     WHERE o.tenant_id = users.tenant_id AND o.role = 'owner' AND o.status = 'active') > 1)";

/// `PUT /api/v1/users/{id}/role`
pub async fn change_role(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::UsersManage)?;
    let role = parse_role(&request.json::<ChangeRole>()?.role)?;
    let current = fetch(env, principal, user_id).await?;
    let current_role = current["role"]
        .as_str()
        .and_then(Role::parse)
        .unwrap_or(Role::Viewer);
    if !may_assign(principal.role, role) || !may_assign(principal.role, current_role) {
        return Err(ApiError::forbidden(format!(
            "an {} may not change an {current_role} into an {role}",
            principal.role
        )));
    }
    let now = env.now();
    let mut statements = vec![sql!(
        format!(
            "UPDATE users SET role = ?, updated_at = ?
             WHERE id = ? AND tenant_id = ? AND status = 'active' AND (? = 'owner' OR {KEEPS_AN_OWNER})"
        ),
        role.as_str(),
        now,
        user_id,
        &principal.tenant_id,
        role.as_str()
    )];
    // Setting the role a user already has changes nothing, and is not audited.
    if role != current_role {
        statements.push(
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::UserRoleChanged,
                Target::new("user", user_id),
                json!({ "from": current_role, "to": role }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
        );
    }
    let results = env.db.batch(statements).await?;
    if results[0].rows_affected == 0 {
        return Err(last_owner());
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(ok(&fetch(env, principal, user_id).await?))
}

fn last_owner() -> ApiError {
    ApiError::conflict("last_owner", "a tenant keeps at least one owner")
}

/// `DELETE /api/v1/users/{id}`: soft deletion; the user's sessions and keys end with it.
pub async fn delete(env: &Env, principal: &Principal, user_id: &str) -> ApiResult<Response> {
    principal.require(Permission::UsersManage)?;
    let current = fetch(env, principal, user_id).await?;
    let current_role = current["role"]
        .as_str()
        .and_then(Role::parse)
        .unwrap_or(Role::Viewer);
    if !may_assign(principal.role, current_role) {
        return Err(ApiError::forbidden(format!(
            "an {} may not remove an {current_role}",
            principal.role
        )));
    }
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                format!(
                    "UPDATE users SET status = 'deleted', updated_at = ?
                     WHERE id = ? AND tenant_id = ? AND status = 'active' AND {KEEPS_AN_OWNER}"
                ),
                now,
                user_id,
                &principal.tenant_id
            ),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::UserDeleted,
                Target::new("user", user_id),
                json!({ "email": current["email"], "role": current_role }),
                now,
            )
            .only_if_exists(&audit::if_changed()),
            sql!(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'user_deleted'
                 WHERE user_id = ? AND revoked_at IS NULL
                   AND EXISTS (SELECT 1 FROM users WHERE id = ? AND status = 'deleted')",
                now,
                user_id,
                user_id
            ),
            sql!(
                "UPDATE api_keys SET revoked_at = ?
                 WHERE user_id = ? AND revoked_at IS NULL
                   AND EXISTS (SELECT 1 FROM users WHERE id = ? AND status = 'deleted')",
                now,
                user_id,
                user_id
            ),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(last_owner());
    }
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(no_content())
}
