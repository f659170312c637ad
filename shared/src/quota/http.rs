//! The quota routes: metering events, usage reports, limit overrides, and the plan-limit
//! preflight. Each handler checks who may call it, parses the request, and hands over to the
//! module that owns the rule.
//!
//! - `POST usage/events` — a service (say one behind forward-auth) meters work for its
//!   caller: `usage:write`, every role but viewer.
//! - `GET usage` — one's own usage (`usage:read`, every role); `?scope=tenant` and
//!   `GET users/{id}/usage` for another user need a tenant admin.
//! - `PUT users/{id}/quota` — a tenant admin sets or removes one user's limit.
//! - `PUT admin/tenants/{id}/quota` — a platform admin sets or removes a tenant's limit (a
//!   tenant admin may not lift their own plan's ceiling).
//! - `POST plan-limits/check` — would the plan accept this work? The same check the jobs
//!   queue runs before queueing, offered to clients ahead of time.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{
    counters::{self, MAX_AMOUNT},
    limits::{LimitTable, OverrideChange, subject_exists, write_override},
    metrics::{Metric, Period, Scope, TENANT_ROW},
    plan_limits::{self, WorkRequest},
    report::{self, Subject},
};
use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok, present},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    error::ApiResult,
    tenancy::{admin, plans},
};

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageEvent {
    metric: String,
    amount: i64,
}

/// `POST /api/v1/usage/events`: `{"metric": "jobs", "amount": 1}` counts for the caller and
/// its tenant; 201 with the counters after the increment, or 429 with nothing counted.
pub async fn record_event(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::UsageRecord)?;
    let event: UsageEvent = request.json()?;
    let metric = Metric::parse_field("metric", &event.metric)?;
    if !(1..=MAX_AMOUNT).contains(&event.amount) {
        return Err(ApiError::invalid_field(
            "amount",
            format!("must be a whole number from 1 to {MAX_AMOUNT}"),
        ));
    }
    let (tenant, user) = (&principal.tenant_id, &principal.user_id);
    let states = match request.idempotency_key(user.as_str())? {
        None => counters::record(env, tenant, user, metric, event.amount).await?,
        Some(key) => {
            match counters::record_once(env, tenant, user, metric, event.amount, &key).await? {
                counters::Recorded::Counted(states) => states,
                counters::Recorded::Replayed => {
                    return Ok(ok(
                        &json!({ "metric": metric, "amount": event.amount, "replayed": true }),
                    ));
                }
            }
        }
    };
    Ok(created(&json!({
        "metric": metric,
        "amount": event.amount,
        "recorded_at": rfc3339(env.now()),
        "counters": states.iter().map(|state| state.to_json()).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/usage` (the caller's) and `GET /api/v1/usage?scope=tenant` (a tenant admin).
pub async fn usage(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    let subject = match request.query_param("scope").as_deref() {
        None | Some("user") => {
            principal.require(Permission::UsageRead)?;
            Subject::User(principal.user_id.as_str())
        }
        Some("tenant") => {
            principal.require(Permission::UsageReadAll)?;
            Subject::Tenant
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "scope must be user or tenant",
            ));
        }
    };
    Ok(ok(
        &report::report(env, &principal.tenant_id, subject).await?
    ))
}

/// `GET /api/v1/users/{id}/usage`: one's own, or (tenant admin) any user's of the tenant.
pub async fn user_usage(env: &Env, principal: &Principal, user_id: &str) -> ApiResult<Response> {
    principal.require(if principal.is_self(user_id) {
        Permission::UsageRead
    } else {
        Permission::UsageReadAll
    })?;
    let report = report::report(env, &principal.tenant_id, Subject::User(user_id)).await?;
    Ok(ok(&report))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct SetLimit {
    metric: String,
    period: String,
    /// `null` removes the override.
    #[serde(default, deserialize_with = "present")]
    limit: Option<Option<i64>>,
}

impl SetLimit {
    fn parse(request: &ApiRequest) -> ApiResult<OverrideChange> {
        let body: SetLimit = request.json()?;
        let metric = Metric::parse_field("metric", &body.metric)?;
        let period = Period::parse_field("period", &body.period)?;
        let limit = body.limit.ok_or_else(|| {
            ApiError::invalid_field("limit", "is required: a whole number, or null to remove")
        })?;
        if limit.is_some_and(|limit| !(0..=plans::MAX_LIMIT).contains(&limit)) {
            return Err(ApiError::invalid_field(
                "limit",
                format!("must be from 0 to {}", plans::MAX_LIMIT),
            ));
        }
        Ok(OverrideChange {
            metric,
            period,
            limit,
        })
    }
}

/// `PUT /api/v1/users/{id}/quota`: `{"metric": "jobs", "period": "day", "limit": 10}` sets
/// the user's own limit (`null` removes it); 200 with the user's limits in force.
pub async fn set_user_limit(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::QuotaManage)?;
    let change = SetLimit::parse(request)?;
    let body = apply(env, principal.tenant_id.as_str(), user_id, change, "user").await?;
    Ok(ok(&body))
}

/// `PUT /api/v1/admin/tenants/{id}/quota`: the same for the tenant's own limit, which binds
/// the tenant's counters and every user without a limit of their own.
pub async fn set_tenant_limit(
    env: &Env,
    request: &ApiRequest,
    tenant_id: &str,
) -> ApiResult<Response> {
    admin::authenticate(env, request).await?;
    let change = SetLimit::parse(request)?;
    let body = apply(env, tenant_id, TENANT_ROW, change, "tenant").await?;
    Ok(ok(&body))
}

/// Writes the override and reads back the limits in force, in one batch.
async fn apply(
    env: &Env,
    tenant_id: &str,
    user_id: &str,
    change: OverrideChange,
    what: &str,
) -> ApiResult<Json> {
    let results = env
        .db
        .batch(vec![
            subject_exists(tenant_id, user_id),
            write_override(tenant_id, user_id, change, env.now()),
            LimitTable::statement(tenant_id, user_id),
        ])
        .await?;
    if results[0].is_empty() {
        return Err(ApiError::not_found(what));
    }
    let limits = results[2]
        .first()
        .map(|row| LimitTable::from_row(&row))
        .transpose()?
        .unwrap_or_default();
    let scope = if user_id == TENANT_ROW {
        Scope::Tenant
    } else {
        Scope::User
    };
    let mut listed = Vec::new();
    for metric in Metric::ALL {
        for period in Period::ALL {
            let candidates = limits.candidates(metric, period);
            let limit = candidates.resolve(scope);
            listed.push(json!({
                "metric": metric,
                "period": period,
                "override": match scope {
                    Scope::User => candidates.user_override,
                    Scope::Tenant => candidates.tenant_override,
                },
                "limit": limit.value,
                "source": limit.source,
            }));
        }
    }
    Ok(json!({
        "tenant_id": tenant_id,
        "user_id": (scope == Scope::User).then_some(user_id),
        "limits": listed,
    }))
}

/// `POST /api/v1/plan-limits/check`: 200 when the tenant's plan would accept the work,
/// otherwise the 403 or 422 the jobs queue would answer.
pub async fn check_plan_limits(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::PlansRead)?;
    let work: WorkRequest = request.json()?;
    let limits = plan_limits::load(env, &principal.tenant_id).await?;
    limits.check(&work)?;
    Ok(ok(
        &json!({ "allowed": true, "plan": limits.plan, "limits": limits }),
    ))
}
