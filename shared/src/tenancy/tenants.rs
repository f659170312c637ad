//! Tenants: registration (tenant and owner at once), reading, settings, soft deletion, and
//! finding the tenant a login names.

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
    db::{Row, Statement},
    error::ApiResult,
    ids::{TenantId, new_id},
    sql,
    tenancy::{
        Email, Slug,
        branding::{self, BrandingUpdate, StoredBranding},
        parse_display_name, parse_domain_name, plans, users,
    },
};

/// How a login names its tenant: a slug (in the body or as a subdomain of the base domain)
/// or a custom domain (the Host header).
pub struct TenantSelector {
    slug: Option<String>,
    domain: Option<String>,
}

impl TenantSelector {
    pub fn from_request(env: &Env, request: &ApiRequest, slug: Option<&str>) -> ApiResult<Self> {
        if let Some(slug) = slug {
            return Ok(Self {
                slug: Some(Slug::parse("tenant", slug)?.as_str().to_owned()),
                domain: None,
            });
        }
        let host = request
            .host()
            .filter(|host| host.contains('.') && host.parse::<std::net::IpAddr>().is_err());
        let selector = match (host, &env.config.base_domain) {
            (Some(host), Some(base)) if host == *base => None,
            (Some(host), Some(base)) => match host.strip_suffix(&format!(".{base}")) {
                Some(label) if !label.contains('.') => Some(Self {
                    slug: Some(label.to_owned()),
                    domain: None,
                }),
                _ => Some(Self {
                    slug: None,
                    domain: Some(host),
                }),
            },
            (Some(host), None) => Some(Self {
                slug: None,
                domain: Some(host),
            }),
            (None, _) => None,
        };
        selector.ok_or_else(|| {
            ApiError::invalid_field(
                "tenant",
                "name the tenant by its slug, or sign in at the tenant's domain",
            )
        })
    }

    /// A stable name for rate-limit buckets.
    pub fn key(&self) -> &str {
        self.slug
            .as_deref()
            .or(self.domain.as_deref())
            .unwrap_or_default()
    }

    /// Binds the two parameters of `(t.slug = ? OR t.custom_domain = ?)`.
    pub fn bind(&self, statement: Statement) -> Statement {
        statement.bind(self.slug.clone()).bind(self.domain.clone())
    }
}

/// A tenant and its owner, about to be created.
pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub plan: &'static str,
    pub owner_email: Email,
    pub owner_name: String,
    pub owner_password: Password,
}

/// What `NewTenant::statements` created.
pub struct CreatedTenant {
    pub tenant_id: String,
    pub owner_id: String,
}

impl NewTenant {
    /// The statements that create the tenant, its owner and the owner's email-verification
    /// mail. A taken slug fails the batch on `tenants.slug`.
    pub fn statements(&self, env: &Env) -> (Vec<Statement>, CreatedTenant) {
        let now = env.now();
        let created = CreatedTenant {
            tenant_id: new_id(),
            owner_id: new_id(),
        };
        let mut statements = vec![
            sql!(
                "INSERT INTO tenants (id, slug, name, plan_code, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                &created.tenant_id,
                &self.slug,
                &self.name,
                self.plan,
                now,
                now
            ),
            sql!(
                "INSERT INTO users (id, tenant_id, email, name, password_hash, role, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, 'owner', ?, ?)",
                &created.owner_id,
                &created.tenant_id,
                &self.owner_email,
                &self.owner_name,
                self.owner_password.hash(),
                now,
                now
            ),
        ];
        statements.push(crate::jobs::workers::default_worker(
            &created.tenant_id,
            now,
        ));
        statements.extend(users::verification_mail(
            env,
            &created.tenant_id,
            &created.owner_id,
            &self.owner_email,
        ));
        (statements, created)
    }
}

impl CreatedTenant {
    /// The `tenant.created` entry that starts the new tenant's audit log.
    fn audit_entry(&self, env: &Env, tenant: &NewTenant, actor: &Actor) -> Statement {
        audit::entry(
            &self.tenant_id,
            actor,
            Action::TenantCreated,
            Target::new("tenant", &self.tenant_id),
            json!({
                "slug": tenant.slug.as_str(),
                "name": tenant.name,
                "plan": tenant.plan,
                "owner_id": self.owner_id,
                "owner_email": tenant.owner_email.as_str(),
            }),
            env.now(),
        )
    }
}

/// Maps the constraint a tenant creation can break to its answer.
pub fn creation_error(error: crate::db::DbError) -> ApiError {
    if error.is_unique_violation("tenants.slug") {
        ApiError::conflict("slug_taken", "that tenant slug is taken")
            .with_details(json!({ "field": "tenant_slug" }))
    } else {
        error.into()
    }
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    tenant_name: String,
    tenant_slug: String,
    email: String,
    password: String,
    name: String,
}

/// `POST /api/v1/auth/register`: a new tenant on the FREE plan, its owner, and a session.
pub async fn register(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let limits = sessions::attempt_limits(env, "register", request, None);
    let hits = env
        .db
        .batch(limits.iter().map(|limit| limit.hit(env.now())).collect())
        .await?;
    sessions::judge_attempts(env, &limits, &hits)?;
    let body: Register = request.json()?;
    let tenant = NewTenant {
        slug: Slug::parse("tenant_slug", &body.tenant_slug)?,
        name: parse_display_name("tenant_name", &body.tenant_name)?,
        plan: "FREE",
        owner_email: Email::parse("email", &body.email)?,
        owner_name: parse_display_name("name", &body.name)?,
        owner_password: Password::parse("password", body.password)?,
    };
    let (mut statements, new) = tenant.statements(env);
    let owner = SessionUser {
        tenant_id: &new.tenant_id,
        user_id: &new.owner_id,
        role: Role::Owner,
    };
    let (session, pair) = sessions::open(env, &owner, request);
    statements.extend(session);
    statements.push(new.audit_entry(env, &tenant, &Actor::user(&new.owner_id, request.client())));
    env.db.batch(statements).await.map_err(creation_error)?;
    audit::try_seal(env, &new.tenant_id).await;
    let mut body = pair.json();
    body["tenant"] = json!({
        "id": new.tenant_id,
        "slug": tenant.slug.as_str(),
        "name": tenant.name,
        "plan": tenant.plan,
    });
    body["user"] = json!({
        "id": new.owner_id,
        "email": tenant.owner_email.as_str(),
        "name": tenant.owner_name,
        "role": Role::Owner,
    });
    Ok(created(&body))
}

pub(crate) const TENANT_COLUMNS: &str = "id, slug, name, plan_code, custom_domain, status, created_at, updated_at, brand_name, brand_logo_url, brand_accent";

pub(crate) fn tenant_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "id": row.get::<String>("id")?,
        "slug": row.get::<String>("slug")?,
        "name": row.get::<String>("name")?,
        "plan": row.get::<String>("plan_code")?,
        "custom_domain": row.get::<Option<String>>("custom_domain")?,
        "status": row.get::<String>("status")?,
        "branding": branding::branding_json(row)?,
        "created_at": rfc3339(row.get("created_at")?),
        "updated_at": rfc3339(row.get("updated_at")?),
    }))
}

async fn fetch(env: &Env, tenant_id: &TenantId) -> ApiResult<Json> {
    let rows = env
        .db
        .execute(sql!(
            format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?"),
            tenant_id
        ))
        .await?;
    let mut tenant = rows
        .first()
        .map(|row| tenant_json(&row))
        .ok_or_else(|| ApiError::not_found("tenant"))??;
    tenant["plan_limits"] = plans::effective(env, tenant_id).await?["limits"].take();
    Ok(tenant)
}

/// `GET /api/v1/tenant`: the caller's tenant and the plan in force.
pub async fn get(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantRead)?;
    Ok(ok(&fetch(env, &principal.tenant_id).await?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTenant {
    name: Option<String>,
    /// `null` removes the custom domain.
    #[serde(default, deserialize_with = "crate::api::present")]
    custom_domain: Option<Option<String>>,
    /// Replaces the brand (display name, logo, accent colour); `null` removes it.
    #[serde(default, deserialize_with = "crate::api::present")]
    branding: Option<Option<BrandingUpdate>>,
}

/// `PUT /api/v1/tenant`: name, custom domain and branding.
pub async fn update(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let body: UpdateTenant = request.json()?;
    let name = body
        .name
        .as_deref()
        .map(|name| parse_display_name("name", name))
        .transpose()?;
    let domain = match &body.custom_domain {
        Some(Some(text)) => Some(Some(parse_domain_name("custom_domain", text)?)),
        Some(None) => Some(None),
        None => None,
    };
    if let (Some(Some(domain)), Some(base)) = (&domain, &env.config.base_domain)
        && (domain == base || domain.ends_with(&format!(".{base}")))
    {
        return Err(ApiError::invalid_field(
            "custom_domain",
            "must lie outside the platform's own domain",
        ));
    }
    let brand = match &body.branding {
        Some(Some(update)) => Some(update.check()?),
        Some(None) => Some(BrandingUpdate::default().check()?),
        None => None,
    };
    let now = env.now();
    let metadata = json!({
        "name": name,
        "custom_domain": domain,
        "branding_changed": brand.is_some(),
    });
    let brand_changed = brand.is_some();
    let brand = brand.unwrap_or(StoredBranding {
        name: None,
        logo_url: None,
        accent: None,
    });
    env.db
        .batch(vec![
            sql!(
                "UPDATE tenants SET name = COALESCE(?, name),
                     custom_domain = CASE WHEN ? THEN ? ELSE custom_domain END,
                     brand_name = CASE WHEN ? THEN ? ELSE brand_name END,
                     brand_logo_url = CASE WHEN ? THEN ? ELSE brand_logo_url END,
                     brand_accent = CASE WHEN ? THEN ? ELSE brand_accent END,
                     updated_at = ?
                 WHERE id = ?",
                name,
                domain.is_some(),
                domain.flatten(),
                brand_changed,
                brand.name,
                brand_changed,
                brand.logo_url,
                brand_changed,
                brand.accent,
                now,
                &principal.tenant_id
            ),
            audit::entry(
                principal.tenant_id.as_str(),
                &Actor::of(principal),
                Action::TenantUpdated,
                Target::new("tenant", principal.tenant_id.as_str()),
                metadata,
                now,
            ),
        ])
        .await
        .map_err(|error| {
            if error.is_unique_violation("tenants.custom_domain") {
                ApiError::conflict("domain_taken", "another tenant uses that domain")
            } else {
                error.into()
            }
        })?;
    audit::try_seal(env, principal.tenant_id.as_str()).await;
    Ok(ok(&fetch(env, &principal.tenant_id).await?))
}

/// `DELETE /api/v1/tenant`: soft deletion by the owner. Its sessions, keys and invitations
/// end with it; the rows stay for audit.
pub async fn delete(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantDelete)?;
    let now = env.now();
    let tenant = &principal.tenant_id;
    env.db
        .batch(vec![
            sql!(
                "UPDATE tenants SET status = 'deleted', deleted_at = ?, custom_domain = NULL, updated_at = ? WHERE id = ?",
                now,
                now,
                tenant
            ),
            sql!(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'tenant_deleted' WHERE tenant_id = ? AND revoked_at IS NULL",
                now,
                tenant
            ),
            sql!(
                "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND revoked_at IS NULL",
                now,
                tenant
            ),
            sql!(
                "UPDATE invitations SET revoked_at = ? WHERE tenant_id = ? AND revoked_at IS NULL AND accepted_at IS NULL",
                now,
                tenant
            ),
            audit::entry(
                tenant.as_str(),
                &Actor::of(principal),
                Action::TenantDeleted,
                Target::new("tenant", tenant.as_str()),
                json!({}),
                now,
            ),
        ])
        .await?;
    audit::try_seal(env, tenant.as_str()).await;
    Ok(no_content())
}

/// Creates a tenant with its owner outside any request: the operator's CLI.
pub async fn create(env: &Env, tenant: &NewTenant) -> ApiResult<CreatedTenant> {
    let (mut statements, created) = tenant.statements(env);
    statements.push(created.audit_entry(env, tenant, &Actor::system("cli")));
    env.db.batch(statements).await.map_err(creation_error)?;
    audit::try_seal(env, &created.tenant_id).await;
    Ok(created)
}
