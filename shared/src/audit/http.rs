//! `GET audit-logs` and `GET audit-logs/verify`, for a tenant's owners and admins
//! (`AuditRead`, scope `audit:read`) and for platform admins under `admin/tenants/{id}/`.

use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    audit::{
        Action,
        chain::{COLUMNS, Stored},
        seal::try_seal,
        verify,
    },
    auth::{principal::Principal, rbac::Permission},
    clock::{parse_rfc3339, rfc3339},
    db::{Statement, Value},
    error::ApiResult,
    sql,
    tenancy::admin,
};

const ACTOR_TYPES: &[&str] = &["user", "api_key", "platform_admin", "system", "anonymous"];
/// The filters a list takes besides its page; any other parameter is refused.
const FILTERS: &[&str] = &[
    "user_id",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "since",
    "until",
];

/// `GET /api/v1/audit-logs`
pub async fn list(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::AuditRead)?;
    Ok(ok(&page(env, request, principal.tenant_id.as_str()).await?))
}

/// `GET /api/v1/audit-logs/verify`
pub async fn verify(env: &Env, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::AuditRead)?;
    Ok(ok(&verify::verify(env, principal.tenant_id.as_str()).await?))
}

/// `GET /api/v1/admin/tenants/{id}/audit-logs` (platform admin)
pub async fn admin_list(env: &Env, request: &ApiRequest, tenant_id: &str) -> ApiResult<Response> {
    admin::authenticate(env, request).await?;
    require_tenant(env, tenant_id).await?;
    Ok(ok(&page(env, request, tenant_id).await?))
}

/// `GET /api/v1/admin/tenants/{id}/audit-logs/verify` (platform admin)
pub async fn admin_verify(env: &Env, request: &ApiRequest, tenant_id: &str) -> ApiResult<Response> {
    admin::authenticate(env, request).await?;
    require_tenant(env, tenant_id).await?;
    Ok(ok(&verify::verify(env, tenant_id).await?))
}

/// `GET /api/v1/admin/audit-logs` (platform admin): the changes platform admins made
/// outside every tenant, newest first; `?action=` takes an action or a category.
pub async fn admin_platform_list(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    admin::authenticate(env, request).await?;
    let page = request.page()?;
    let action = request.query_param("action");
    if let Some(action) = &action
        && !Action::is_known_filter(action)
    {
        return Err(invalid_query(
            "action must name an action (llm_model.created) or a category (llm_model.*)",
        ));
    }
    let (exact, category) = match action
        .as_deref()
        .map(|action| (action, action.strip_suffix('*')))
    {
        Some((_, Some(prefix))) => (None, Some(prefix.to_owned())),
        Some((action, None)) => (Some(action.to_owned()), None),
        None => (None, None),
    };
    let rows = env
        .db
        .execute(sql!(
            "SELECT id, action, actor_id, target_type, target_id, ip, user_agent, metadata, created_at
             FROM platform_audit_log
             WHERE (? IS NULL OR action = ?) AND (? IS NULL OR substr(action, 1, length(?)) = ?)
             ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            exact.clone(),
            exact,
            category.clone(),
            category.clone(),
            category,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let entries = rows
        .iter()
        .map(|row| {
            let target_type: Option<String> = row.get("target_type")?;
            Ok(json!({
                "id": row.get::<String>("id")?,
                "action": row.get::<String>("action")?,
                "actor": { "type": "platform_admin", "id": row.get::<String>("actor_id")? },
                "target": match target_type {
                    Some(kind) => json!({ "type": kind, "id": row.get::<Option<String>>("target_id")? }),
                    None => Json::Null,
                },
                "ip": row.get::<Option<String>>("ip")?,
                "user_agent": row.get::<Option<String>>("user_agent")?,
                "metadata": serde_json::from_str::<Json>(&row.get::<String>("metadata")?)
                    .unwrap_or(Json::Null),
                "created_at": rfc3339(row.get("created_at")?),
            }))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(&page.body(entries)))
}

/// A deleted tenant's log stays readable to the operator.
async fn require_tenant(env: &Env, tenant_id: &str) -> ApiResult<()> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT 1 AS found FROM tenants WHERE id = ?",
            tenant_id
        ))
        .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(())
}

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// The list's filters as SQL conditions over `audit_log`, with their parameters.
fn filters(request: &ApiRequest) -> ApiResult<(String, Vec<Value>)> {
    let mut conditions = String::new();
    let mut params = Vec::new();
    let text = |name: &str| -> ApiResult<Option<String>> {
        match request.query_param(name) {
            Some(value) if value.is_empty() || value.len() > 200 => {
                Err(invalid_query(format!("{name} must be 1 to 200 characters")))
            }
            other => Ok(other),
        }
    };
    for (name, column) in [
        ("user_id", "actor_user_id"),
        ("actor_id", "actor_id"),
        ("target_type", "target_type"),
        ("target_id", "target_id"),
    ] {
        if let Some(value) = text(name)? {
            conditions.push_str(&format!(" AND {column} = ?"));
            params.push(value.into());
        }
    }
    if let Some(kind) = text("actor_type")? {
        if !ACTOR_TYPES.contains(&kind.as_str()) {
            return Err(invalid_query(format!(
                "actor_type must be one of {}",
                ACTOR_TYPES.join(", ")
            )));
        }
        conditions.push_str(" AND actor_type = ?");
        params.push(kind.into());
    }
    if let Some(action) = text("action")? {
        if !Action::is_known_filter(&action) {
            return Err(invalid_query(
                "action must name an action (apikey.revoked) or a category (apikey.*)",
            ));
        }
        match action.strip_suffix('*') {
            Some(prefix) => {
                conditions.push_str(" AND substr(action, 1, length(?)) = ?");
                params.push(prefix.into());
                params.push(prefix.into());
            }
            None => {
                conditions.push_str(" AND action = ?");
                params.push(action.into());
            }
        }
    }
    let time = |name: &str| -> ApiResult<Option<i64>> {
        request
            .query_param(name)
            .map(|text| {
                parse_rfc3339(&text)
                    .ok_or_else(|| invalid_query(format!("{name} must be an RFC 3339 time")))
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        return Err(invalid_query("since must be before until"));
    }
    if let Some(since) = since {
        conditions.push_str(" AND created_at >= ?");
        params.push(since.into());
    }
    if let Some(until) = until {
        conditions.push_str(" AND created_at < ?");
        params.push(until.into());
    }
    Ok((conditions, params))
}

/// One page of the tenant's entries, newest first.
async fn page(env: &Env, request: &ApiRequest, tenant_id: &str) -> ApiResult<Json> {
    let page = request.filtered_page(FILTERS)?;
    let (conditions, params) = filters(request)?;
    // Best effort, so the page shows hashes; the entries are listed sealed or not.
    try_seal(env, tenant_id).await;
    let mut statement = Statement::new(format!(
        "SELECT {COLUMNS} FROM audit_log WHERE tenant_id = ?{conditions}
         ORDER BY seq DESC LIMIT ? OFFSET ?"
    ))
    .bind(tenant_id);
    for param in params {
        statement = statement.bind(param);
    }
    let rows = env
        .db
        .execute(statement.bind(page.fetch_limit()).bind(page.offset))
        .await?;
    let entries = rows
        .iter()
        .map(|row| Ok(entry_json(&Stored::from_row(&row)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(page.body(entries))
}

fn entry_json(entry: &Stored) -> Json {
    let content = &entry.content;
    json!({
        "id": content.id,
        "sequence": content.seq,
        "action": content.action,
        "actor": {
            "type": content.actor_type,
            "id": content.actor_id,
            "user_id": content.actor_user_id,
        },
        "target": content.target_type.as_ref().map(|kind| json!({
            "type": kind,
            "id": content.target_id,
        })),
        "ip": content.ip,
        "user_agent": content.user_agent,
        "metadata": serde_json::from_str::<Json>(&content.metadata).unwrap_or(Json::Null),
        "created_at": rfc3339(content.created_at),
        "previous_hash": entry.prev_hash,
        "hash": entry.hash,
    })
}
