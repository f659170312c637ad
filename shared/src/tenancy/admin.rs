//! The platform operator: admins outside every tenant who list tenants, suspend and
//! reinstate them, and move them between plans. Used by the admin API and the server's CLI.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::Page,
    api::{ApiRequest, Response, no_content, ok},
    audit::{self, Action, Actor, Target},
    auth::{
        jwt::{self, Claims, PLATFORM_ADMIN_ROLE},
        password::{self, Password},
        principal::presented_secret,
        sessions,
    },
    error::ApiResult,
    ids::new_id,
    sql,
    tenancy::{Email, plans, tenants},
};

/// Adds a platform admin (the CLI's `create-platform-admin`).
pub async fn create_platform_admin(
    env: &Env,
    email: &Email,
    password: &Password,
) -> ApiResult<String> {
    let id = new_id();
    env.db
        .execute(sql!(
            "INSERT INTO platform_admins (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
            &id,
            email,
            password.hash(),
            env.now()
        ))
        .await
        .map_err(|error| {
            if error.is_unique_violation("platform_admins.email") {
                ApiError::conflict("email_taken", "a platform admin with that email exists")
            } else {
                error.into()
            }
        })?;
    Ok(id)
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    email: String,
    password: String,
}

/// `POST /api/v1/admin/login`: an access token for the admin API (no refresh token: an
/// operator signs in again after `access_token_ttl`).
pub async fn login(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let body: Login = request.json()?;
    let email = Email::parse("email", &body.email)?;
    let now = env.now();
    let limits = sessions::attempt_limits(env, "admin-login", request, Some(email.to_string()));
    let mut statements: Vec<_> = limits.iter().map(|limit| limit.hit(now)).collect();
    statements.push(sql!(
        "SELECT id, password_hash FROM platform_admins WHERE email = ?",
        &email
    ));
    let results = env.db.batch(statements).await?;
    sessions::judge_attempts(env, &limits, &results)?;
    let admin = results[limits.len()].first();
    let verified = match admin {
        Some(row) => password::verify(&body.password, &row.get::<String>("password_hash")?),
        None => {
            password::verify_against_nothing(&body.password);
            false
        }
    };
    let Some(admin) = admin.filter(|_| verified) else {
        return Err(ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the email or password is wrong",
        ));
    };
    let claims = Claims::new(
        &admin.get::<String>("id")?,
        "",
        PLATFORM_ADMIN_ROLE,
        "",
        "*".into(),
        now,
        env.config.access_token_ttl,
    );
    Ok(ok(&json!({
        "token_type": "Bearer",
        "access_token": jwt::sign(&env.config, &claims),
        "expires_in": env.config.access_token_ttl,
    })))
}

/// The platform admin calling, or 401/403.
pub(crate) async fn authenticate(env: &Env, request: &ApiRequest) -> ApiResult<String> {
    let token = presented_secret(request)
        .ok_or_else(|| ApiError::unauthorized("sign in as a platform admin"))?;
    let claims = jwt::verify(&env.config, token, env.now())
        .map_err(|_| ApiError::unauthorized("the access token is not valid"))?;
    if claims.role != PLATFORM_ADMIN_ROLE {
        return Err(ApiError::forbidden("only platform admins may do this"));
    }
    let rows = env
        .db
        .execute(sql!(
            "SELECT id FROM platform_admins WHERE id = ?",
            &claims.sub
        ))
        .await?;
    if rows.is_empty() {
        return Err(ApiError::unauthorized(
            "the platform admin no longer exists",
        ));
    }
    Ok(claims.sub)
}

/// Tenants, newest first; with `search`, those whose slug, name or custom domain
/// contains it (ignoring case).
pub async fn tenants(env: &Env, page: Page, search: Option<&str>) -> ApiResult<Json> {
    let search = search
        .map(|text| text.trim().to_lowercase())
        .filter(|text| !text.is_empty());
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {}, (SELECT COUNT(*) FROM users u WHERE u.tenant_id = tenants.id AND u.status = 'active') AS users
                 FROM tenants
                 WHERE ? IS NULL OR instr(slug, ?) > 0 OR instr(lower(name), ?) > 0
                    OR instr(COALESCE(custom_domain, ''), ?) > 0
                 ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                tenants::TENANT_COLUMNS
            ),
            search.clone(),
            search.clone(),
            search.clone(),
            search,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let items = rows
        .iter()
        .map(|row| {
            let mut tenant = tenants::tenant_json(&row)?;
            tenant["users"] = json!(row.get::<i64>("users")?);
            Ok(tenant)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(page.body(items))
}

/// Suspends (`suspended`) or reinstates (`active`) a tenant named by id or slug. A deleted
/// tenant stays deleted. The operator's CLI acts as [`Actor::system`]`("cli")`.
pub async fn set_status(env: &Env, tenant: &str, status: &str) -> ApiResult<()> {
    set_status_as(env, &Actor::system("cli"), tenant, status).await
}

/// [`set_status`] by `actor`; a change of status is audited, a repeated one is not.
pub async fn set_status_as(env: &Env, actor: &Actor, tenant: &str, status: &str) -> ApiResult<()> {
    let found = env
        .db
        .execute(sql!(
            "SELECT id FROM tenants WHERE (id = ? OR slug = ?) AND status != 'deleted'",
            tenant,
            tenant
        ))
        .await?;
    let tenant_id: String = found
        .first()
        .ok_or_else(|| ApiError::not_found("tenant"))?
        .get("id")?;
    let action = match status {
        "suspended" => Action::TenantSuspended,
        _ => Action::TenantReactivated,
    };
    let now = env.now();
    let changes_status = sql!(
        "SELECT 1 FROM tenants WHERE id = ? AND status NOT IN ('deleted', ?)",
        &tenant_id,
        status
    );
    let results = env
        .db
        .batch(vec![
            audit::entry(
                &tenant_id,
                actor,
                action,
                Target::new("tenant", &tenant_id),
                json!({ "status": status }),
                now,
            )
            .only_if_exists(&changes_status),
            sql!(
                "UPDATE tenants SET status = ?, updated_at = ? WHERE id = ? AND status != 'deleted'",
                status,
                now,
                &tenant_id
            ),
        ])
        .await?;
    if results[1].rows_affected == 0 {
        return Err(ApiError::not_found("tenant"));
    }
    audit::try_seal(env, &tenant_id).await;
    Ok(())
}

/// `GET /api/v1/admin/tenants?q=…`
pub async fn list_tenants(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    authenticate(env, request).await?;
    let page = request.filtered_page(&["q"])?;
    let search = request.query_param("q");
    Ok(ok(&tenants(env, page, search.as_deref()).await?))
}

/// `POST /api/v1/admin/tenants/{id}/suspend` and `.../reactivate`
pub async fn change_status(
    env: &Env,
    request: &ApiRequest,
    tenant_id: &str,
    status: &str,
) -> ApiResult<Response> {
    let admin_id = authenticate(env, request).await?;
    let actor = Actor::platform_admin(&admin_id, request.client());
    set_status_as(env, &actor, tenant_id, status).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignPlan {
    plan: String,
    overrides: Option<plans::Overrides>,
}

/// `PUT /api/v1/admin/tenants/{id}/plan`: `{"plan": "PRO", "overrides": {...}}`
pub async fn assign_plan(env: &Env, request: &ApiRequest, tenant_id: &str) -> ApiResult<Response> {
    let admin_id = authenticate(env, request).await?;
    let body: AssignPlan = request.json()?;
    let code = plans::parse_code("plan", &body.plan)?;
    let overrides = request.json::<Json>()?["overrides"].take();
    let actor = Actor::platform_admin(&admin_id, request.client());
    let metadata = json!({ "plan": code, "overrides": overrides });
    plans::assign_as(env, &actor, tenant_id, code, body.overrides, metadata).await?;
    Ok(no_content())
}

/// `POST /api/v1/admin/tenants/{id}/credits/adjustments`: a signed correction of a pool.
pub async fn adjust_credits(
    env: &Env,
    request: &ApiRequest,
    tenant_id: &str,
) -> ApiResult<Response> {
    let admin_id = authenticate(env, request).await?;
    crate::credits::grants::adjust_pool(env, request, &admin_id, tenant_id).await
}

/// `POST /api/v1/admin/tenants/{id}/credits/grants`: credits into a tenant's pool.
pub async fn grant_credits(
    env: &Env,
    request: &ApiRequest,
    tenant_id: &str,
) -> ApiResult<Response> {
    let admin_id = authenticate(env, request).await?;
    crate::credits::grants::grant_to_pool(env, request, &admin_id, tenant_id).await
}

/// `POST /api/v1/admin/tenants/{id}/sso/domains/{domain}/approve`: the operator vouches
/// that the tenant owns the email domain.
pub async fn approve_sso_domain(
    env: &Env,
    request: &ApiRequest,
    tenant_id: &str,
    domain: &str,
) -> ApiResult<Response> {
    let admin_id = authenticate(env, request).await?;
    crate::auth::sso::domains::approve(env, &admin_id, request, tenant_id, domain).await
}

/// `PUT /api/v1/admin/plans/{code}/stripe-price`
pub async fn set_plan_price(env: &Env, request: &ApiRequest, code: &str) -> ApiResult<Response> {
    authenticate(env, request).await?;
    plans::set_stripe_price(env, request, code).await
}
