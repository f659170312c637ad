//! The delivery log a tenant reads to debug its receiver (deliveries with every attempt's
//! status and the start of the body it answered), and the two ways to send right now: a
//! manual redelivery and a test message.
//!
//! Both sends go through the same claim and record steps as cron, so a manual send and a
//! cron run never send the same delivery at once, and a manual failure joins the retry
//! schedule like any other.

use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    db::{Row, Rows},
    error::ApiResult,
    ids::{TenantId, new_id},
    sql,
    webhooks::{
        delivery::{self, lease, read_claimed, select_claimed},
        events::{TEST_EVENT, envelope},
    },
};

const DELIVERY_COLUMNS: &str = "id, endpoint_id, message_id, event_type, payload, status, attempts, \
     next_attempt_at, last_status_code, last_error, succeeded_at, created_at, updated_at";

const ATTEMPT_COLUMNS: &str = "delivery_id, attempt, source, status_code, error, error_message, response_excerpt, attempted_at";

fn attempt_json(row: &Row<'_>) -> ApiResult<Json> {
    Ok(json!({
        "attempt": row.get::<i64>("attempt")?,
        "source": row.get::<String>("source")?,
        "status_code": row.get::<Option<i64>>("status_code")?,
        "error": row.get::<Option<String>>("error")?,
        "error_message": row.get::<Option<String>>("error_message")?,
        "response_excerpt": row.get::<Option<String>>("response_excerpt")?,
        "attempted_at": rfc3339(row.get("attempted_at")?),
    }))
}

/// Deliveries with their attempts (oldest attempt first), from two result sets.
fn deliveries_json(deliveries: &Rows, attempts: &Rows) -> ApiResult<Vec<Json>> {
    deliveries
        .iter()
        .map(|row| {
            let id: String = row.get("id")?;
            let mut attempts_of = Vec::new();
            for attempt in attempts.iter() {
                if attempt.get::<String>("delivery_id")? == id {
                    attempts_of.push(attempt_json(&attempt)?);
                }
            }
            let payload: Json =
                serde_json::from_str(&row.get::<String>("payload")?).unwrap_or(Json::Null);
            Ok(json!({
                "id": id,
                "endpoint_id": row.get::<String>("endpoint_id")?,
                "message_id": row.get::<String>("message_id")?,
                "event_type": row.get::<String>("event_type")?,
                "status": row.get::<String>("status")?,
                "attempt_count": row.get::<i64>("attempts")?,
                "next_attempt_at": row.get::<Option<i64>>("next_attempt_at")?.map(rfc3339),
                "last_status_code": row.get::<Option<i64>>("last_status_code")?,
                "last_error": row.get::<Option<String>>("last_error")?,
                "succeeded_at": row.get::<Option<i64>>("succeeded_at")?.map(rfc3339),
                "created_at": rfc3339(row.get("created_at")?),
                "payload": payload,
                "attempts": attempts_of,
            }))
        })
        .collect()
}

fn parse_status_filter(request: &ApiRequest) -> ApiResult<Option<String>> {
    match request.query_param("status") {
        None => Ok(None),
        Some(status) if matches!(status.as_str(), "pending" | "succeeded" | "failed") => {
            Ok(Some(status))
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "status must be pending, succeeded or failed",
        )),
    }
}

/// `GET /api/v1/webhooks/endpoints/{id}/deliveries[?status=]`: newest first, with attempts.
pub async fn list(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    endpoint_id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::WebhooksRead)?;
    let page = request.page()?;
    let status = parse_status_filter(request)?;
    let tenant = &principal.tenant_id;
    let page_query = "FROM webhook_deliveries WHERE endpoint_id = ? AND tenant_id = ?
                      AND (? IS NULL OR status = ?)
                      ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?";
    let bind_page = |statement: crate::db::Statement| {
        statement
            .bind(endpoint_id)
            .bind(tenant)
            .bind(status.clone())
            .bind(status.clone())
            .bind(page.fetch_limit())
            .bind(page.offset)
    };
    let results = env
        .db
        .batch(vec![
            sql!(
                "SELECT 1 FROM webhook_endpoints WHERE id = ? AND tenant_id = ?",
                endpoint_id,
                tenant
            ),
            bind_page(sql!(format!("SELECT {DELIVERY_COLUMNS} {page_query}"))),
            bind_page(sql!(format!(
                "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts
                 WHERE delivery_id IN (SELECT id {page_query}) ORDER BY attempt"
            ))),
        ])
        .await?;
    if results[0].is_empty() {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(ok(&page.body(deliveries_json(&results[1], &results[2])?)))
}

async fn fetch(env: &Env, tenant: &TenantId, delivery_id: &str) -> ApiResult<Json> {
    let results = env
        .db
        .batch(vec![
            sql!(
                format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ? AND tenant_id = ?"),
                delivery_id,
                tenant
            ),
            sql!(
                format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = ? AND tenant_id = ?
                     ORDER BY attempt"
                ),
                delivery_id,
                tenant
            ),
        ])
        .await?;
    deliveries_json(&results[0], &results[1])?
        .pop()
        .ok_or_else(|| ApiError::not_found("webhook delivery"))
}

/// `GET /api/v1/webhooks/deliveries/{id}`
pub async fn get(env: &Env, principal: &Principal, delivery_id: &str) -> ApiResult<Response> {
    principal.require(Permission::WebhooksRead)?;
    Ok(ok(&fetch(env, &principal.tenant_id, delivery_id).await?))
}

/// Sends the delivery a lease holds, now, and answers with the delivery as recorded.
async fn send_claimed(
    env: &Env,
    tenant: &TenantId,
    delivery_id: &str,
    claimed: &Rows,
) -> ApiResult<Response> {
    let delivery = claimed
        .first()
        .map(|row| read_claimed(&row))
        .transpose()?
        .ok_or_else(ApiError::internal)?;
    delivery::attempt(env, &delivery, "manual").await?;
    Ok(ok(&fetch(env, tenant, delivery_id).await?))
}

/// Why a delivery or endpoint could not be claimed for a manual send.
async fn explain_unclaimed(env: &Env, tenant: &TenantId, endpoint_id: &str) -> ApiError {
    let rows = env
        .db
        .execute(sql!(
            "SELECT enabled FROM webhook_endpoints WHERE id = ? AND tenant_id = ?",
            endpoint_id,
            tenant
        ))
        .await;
    match rows.as_ref().ok().and_then(|rows| rows.first()) {
        None => ApiError::not_found("webhook endpoint"),
        Some(row) if row.get::<bool>("enabled").unwrap_or(false) => ApiError::conflict(
            "delivery_in_progress",
            "this delivery is being sent right now; try again in a moment",
        ),
        Some(_) => ApiError::conflict(
            "endpoint_disabled",
            "the endpoint is disabled; enable it first",
        ),
    }
}

/// `POST /api/v1/webhooks/deliveries/{id}/redeliver`: sends the same message (same
/// `webhook-id`, fresh timestamp and signature) now, and restarts its retry schedule.
pub async fn redeliver(env: &Env, principal: &Principal, delivery_id: &str) -> ApiResult<Response> {
    principal.require(Permission::WebhooksManage)?;
    let tenant = &principal.tenant_id;
    let now = env.now();
    let (lease_id, locked_until) = lease(&new_id(), now);
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE webhook_deliveries SET status = 'pending', failures = 0, next_attempt_at = ?,
                     lease_id = ?, locked_until = ?, updated_at = ?
                 WHERE id = ? AND tenant_id = ? AND (locked_until IS NULL OR locked_until <= ?)
                   AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE tenant_id = ? AND enabled = 1)",
                now,
                &lease_id,
                locked_until,
                now,
                delivery_id,
                tenant,
                now,
                tenant
            ),
            select_claimed(&lease_id, now),
            sql!(
                "SELECT endpoint_id FROM webhook_deliveries WHERE id = ? AND tenant_id = ?",
                delivery_id,
                tenant
            ),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        let endpoint = results[2]
            .first()
            .ok_or_else(|| ApiError::not_found("webhook delivery"))?
            .get::<String>("endpoint_id")?;
        return Err(explain_unclaimed(env, tenant, &endpoint).await);
    }
    send_claimed(env, tenant, delivery_id, &results[1]).await
}

/// `POST /api/v1/webhooks/endpoints/{id}/test`: a `webhook.test` message to this endpoint
/// only, sent now; answers with its delivery and the attempt's result.
pub async fn send_test(env: &Env, principal: &Principal, endpoint_id: &str) -> ApiResult<Response> {
    principal.require(Permission::WebhooksManage)?;
    let tenant = &principal.tenant_id;
    let now = env.now();
    let delivery_id = new_id();
    let message_id = format!("msg_test_{}", new_id().replace('-', ""));
    let body = envelope(
        &message_id,
        TEST_EVENT,
        now,
        &json!({ "endpoint_id": endpoint_id, "message": "A test message from Tollgate." })
            .to_string(),
    );
    let (lease_id, locked_until) = lease(&new_id(), now);
    // The delivery is born claimed, so cron cannot pick it up before this request sends it.
    let results = env
        .db
        .batch(vec![
            sql!(
                "INSERT INTO webhook_deliveries
                     (id, tenant_id, endpoint_id, message_id, event_type, payload, next_attempt_at,
                      lease_id, locked_until, created_at, updated_at)
                 SELECT ?, tenant_id, id, ?, ?, ?, ?, ?, ?, ?, ?
                 FROM webhook_endpoints WHERE id = ? AND tenant_id = ? AND enabled = 1",
                &delivery_id,
                &message_id,
                TEST_EVENT,
                body,
                now,
                &lease_id,
                locked_until,
                now,
                now,
                endpoint_id,
                tenant
            ),
            select_claimed(&lease_id, now),
        ])
        .await?;
    if results[0].rows_affected == 0 {
        return Err(explain_unclaimed(env, tenant, endpoint_id).await);
    }
    send_claimed(env, tenant, &delivery_id, &results[1]).await
}
