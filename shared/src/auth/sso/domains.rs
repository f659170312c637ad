//! The email domains whose people join a tenant on their first SSO sign-in. A tenant adds
//! a domain and proves it owns it: a TXT record `tollgate-verification=<proof>` at
//! `_tollgate-verification.<domain>`, read through the DNS-over-HTTPS resolver the
//! operator configures (`TOLLGATE_DOH_URL`), or the platform operator's approval. A proven
//! domain belongs to that tenant alone.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, no_content, ok},
    audit::{self, Action, Actor, Target},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    db::Row,
    error::ApiResult,
    outbound::{DEFAULT_TIMEOUT, Timeout},
    sql,
    tenancy::parse_domain_name,
    tokens::random_token,
};

const TXT_PREFIX: &str = "tollgate-verification=";

fn record_name(domain: &str) -> String {
    format!("_tollgate-verification.{domain}")
}

fn domain_json(row: &Row<'_>) -> ApiResult<Json> {
    let domain: String = row.get("domain")?;
    Ok(json!({
        "domain": domain,
        "verified": row.get::<Option<i64>>("verified_at")?.is_some(),
        "verified_at": row.get::<Option<i64>>("verified_at")?.map(rfc3339),
        "verified_by": row.get::<Option<String>>("verified_by")?,
        "txt_name": record_name(&domain),
        "txt_value": format!("{TXT_PREFIX}{}", row.get::<String>("proof")?),
    }))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDomain {
    domain: String,
}

const SELECT: &str =
    "SELECT domain, proof, verified_at, verified_by FROM sso_domains WHERE tenant_id = ?";

fn domain_taken() -> ApiError {
    ApiError::conflict(
        "domain_taken",
        "another organisation has proven it owns that domain",
    )
}

/// `POST /api/v1/sso/domains`: the domain, with the TXT record that proves it.
pub async fn add(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let body: NewDomain = request.json()?;
    let domain = parse_domain_name("domain", &body.domain)?;
    let tenant = principal.tenant_id.as_str();
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "SELECT 1 FROM sso_domains WHERE domain = ? AND verified_at IS NOT NULL AND tenant_id != ?",
                &domain,
                tenant
            ),
            sql!(
                "INSERT INTO sso_domains (tenant_id, domain, proof, created_at)
                 SELECT ?, ?, ?, ?
                 WHERE NOT EXISTS (SELECT 1 FROM sso_domains WHERE domain = ? AND verified_at IS NOT NULL)
                 ON CONFLICT (tenant_id, domain) DO NOTHING",
                tenant,
                &domain,
                random_token(24),
                now,
                &domain
            ),
            audit::entry(
                tenant,
                &Actor::of(principal),
                Action::SsoDomainAdded,
                Target::new("sso_domain", &domain),
                json!({}),
                now,
            )
            .only_if_exists(&sql!(
                "SELECT 1 FROM sso_domains WHERE tenant_id = ? AND domain = ? AND created_at = ?",
                tenant,
                &domain,
                now
            )),
            sql!(format!("{SELECT} AND domain = ?"), tenant, &domain),
        ])
        .await?;
    if !results[0].is_empty() {
        return Err(domain_taken());
    }
    audit::try_seal(env, tenant).await;
    let row = results[3]
        .first()
        .ok_or_else(|| ApiError::internal().caused_by("domain vanished"))?;
    Ok(created(&domain_json(&row)?))
}

/// `GET /api/v1/sso/domains`
pub async fn list(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let rows = env
        .db
        .execute(sql!(
            format!("{SELECT} ORDER BY domain"),
            &principal.tenant_id
        ))
        .await?;
    let data = rows
        .iter()
        .map(|row| domain_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&json!({ "data": data })))
}

/// `DELETE /api/v1/sso/domains/{domain}`: its people keep their accounts; nobody new joins.
pub async fn delete(env: &Env, principal: &Principal, domain: &str) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let tenant = principal.tenant_id.as_str();
    let removed = env
        .db
        .execute(sql!(
            "DELETE FROM sso_domains WHERE tenant_id = ? AND domain = ?",
            tenant,
            domain
        ))
        .await?;
    if removed.rows_affected == 0 {
        return Err(ApiError::not_found("domain"));
    }
    Ok(no_content())
}

/// Marks the tenant's `domain` proven by `who`, audited as `actor`; 409 when another tenant
/// proved it first.
async fn mark_verified(
    env: &Env,
    tenant: &str,
    domain: &str,
    who: &str,
    actor: &Actor,
) -> ApiResult<Json> {
    let now = env.now();
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE sso_domains SET verified_at = COALESCE(verified_at, ?), verified_by = COALESCE(verified_by, ?)
                 WHERE tenant_id = ? AND domain = ?",
                now,
                who,
                tenant,
                domain
            ),
            audit::entry(
                tenant,
                actor,
                Action::SsoDomainVerified,
                Target::new("sso_domain", domain),
                json!({ "by": who }),
                now,
            )
            .only_if_exists(&sql!(
                "SELECT 1 FROM sso_domains WHERE tenant_id = ? AND domain = ? AND verified_at = ?",
                tenant,
                domain,
                now
            )),
            sql!(format!("{SELECT} AND domain = ?"), tenant, domain),
        ])
        .await
        .map_err(|error| {
            if error.is_unique_violation("sso_domains.domain") {
                domain_taken()
            } else {
                error.into()
            }
        })?;
    audit::try_seal(env, tenant).await;
    let row = results[2]
        .first()
        .ok_or_else(|| ApiError::not_found("domain"))?;
    domain_json(&row)
}

/// `POST /api/v1/sso/domains/{domain}/verify`: looks the TXT record up.
pub async fn verify(env: &Env, principal: &Principal, domain: &str) -> ApiResult<Response> {
    principal.require(Permission::TenantUpdate)?;
    let rows = env
        .db
        .execute(sql!(
            format!("{SELECT} AND domain = ?"),
            &principal.tenant_id,
            domain
        ))
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::not_found("domain"))?;
    let expected = format!("{TXT_PREFIX}{}", row.get::<String>("proof")?);
    let Some(resolver) = &env.config.doh_url else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "dns_verification_unavailable",
            "this deployment checks no DNS records (no TOLLGATE_DOH_URL): ask the operator to approve the domain",
        ));
    };
    let records = txt_records(env, resolver, &record_name(domain)).await?;
    if !records.contains(&expected) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "domain_not_verified",
            format!(
                "no TXT record {} with {expected} was found; DNS changes can take a while to show",
                record_name(domain)
            ),
        ));
    }
    let actor = Actor::of(principal);
    let body = mark_verified(env, principal.tenant_id.as_str(), domain, "dns", &actor).await?;
    Ok(ok(&body))
}

/// `POST /api/v1/admin/tenants/{id}/sso/domains/{domain}/approve` (platform admin).
pub async fn approve(
    env: &Env,
    admin_id: &str,
    request: &ApiRequest,
    tenant: &str,
    domain: &str,
) -> ApiResult<Response> {
    let actor = Actor::platform_admin(admin_id, request.client());
    let body = mark_verified(env, tenant, domain, "operator", &actor).await?;
    Ok(ok(&body))
}

/// The TXT strings at `name`, from the DNS-over-HTTPS JSON API at `resolver`.
async fn txt_records(env: &Env, resolver: &str, name: &str) -> ApiResult<Vec<String>> {
    let unavailable = |detail: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "dns_unavailable",
            format!("the DNS resolver could not be asked: {detail}"),
        )
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("type", "TXT")
        .finish();
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(format!("{resolver}?{query}"))
        .header(header::ACCEPT, "application/dns-json")
        .extension(Timeout(DEFAULT_TIMEOUT))
        .body(Bytes::new())
        .map_err(|error| unavailable(error.to_string()))?;
    let response = env
        .outbound
        .send(request)
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("it answered {}", response.status())));
    }
    let body: Json =
        serde_json::from_slice(response.body()).map_err(|error| unavailable(error.to_string()))?;
    Ok(body["Answer"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|answer| answer["type"] == 16)
        .filter_map(|answer| answer["data"].as_str())
        // A TXT record's data is its strings, each quoted; long ones are split.
        .map(|data| {
            data.split('"')
                .enumerate()
                .filter(|(index, _)| index % 2 == 1)
                .map(|(_, part)| part)
                .collect::<String>()
        })
        .collect())
}
