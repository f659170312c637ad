//! `GET /api/v1/admin/emails`: the outbox as a platform admin sees it, so that mails
//! waiting for a provider (or failing at one) are visible rather than silently stuck.
//!
//! Payloads are not shown: they hold password-reset links and invitation tokens, which
//! would let whoever reads the list act as the recipient.

use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    clock::rfc3339,
    db::Row,
    error::ApiResult,
    sql,
    tenancy::admin,
};

/// The filters the list takes besides its page; any other parameter is refused.
const FILTERS: &[&str] = &["status", "tenant_id"];

/// `status` values and the condition each selects.
const STATUSES: &[(&str, &str)] = &[
    ("pending", "sent_at IS NULL AND failed_at IS NULL"),
    ("sent", "sent_at IS NOT NULL"),
    ("failed", "failed_at IS NOT NULL"),
];

/// `GET /api/v1/admin/emails?status=pending|sent|failed&tenant_id=…`, newest first.
pub async fn admin_list(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    admin::authenticate(env, request).await?;
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let page = request.filtered_page(FILTERS)?;
    let condition = match request.query_param("status") {
        None => "1 = 1",
        Some(status) => STATUSES
            .iter()
            .find(|(name, _)| *name == status)
            .map(|(_, condition)| *condition)
            .ok_or_else(|| invalid("status must be pending, sent or failed".into()))?,
    };
    let tenant_id = request.query_param("tenant_id");
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT id, tenant_id, recipient, template, attempts,
                        MAX(next_attempt_at, created_at) AS next_attempt_at, last_attempt_at,
                        last_error, provider_message_id, sent_at, failed_at, created_at
                 FROM email_outbox WHERE {condition} AND (? IS NULL OR tenant_id = ?)
                 ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
            ),
            tenant_id.clone(),
            tenant_id,
            page.fetch_limit(),
            page.offset
        ))
        .await?;
    let mails = rows
        .iter()
        .map(|row| mail_json(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut body = page.body(mails);
    body["delivery_configured"] = json!(env.config.email_provider.is_some());
    Ok(ok(&body))
}

fn mail_json(row: &Row<'_>) -> ApiResult<Json> {
    let sent_at: Option<i64> = row.get("sent_at")?;
    let failed_at: Option<i64> = row.get("failed_at")?;
    let status = match (sent_at, failed_at) {
        (Some(_), _) => "sent",
        (None, Some(_)) => "failed",
        (None, None) => "pending",
    };
    let time = |column: &str| -> ApiResult<Option<String>> {
        Ok(row.get::<Option<i64>>(column)?.map(rfc3339))
    };
    Ok(json!({
        "id": row.get::<String>("id")?,
        "tenant_id": row.get::<Option<String>>("tenant_id")?,
        "recipient": row.get::<String>("recipient")?,
        "template": row.get::<String>("template")?,
        "status": status,
        "attempts": row.get::<i64>("attempts")?,
        "next_attempt_at": (status == "pending")
            .then(|| row.get::<i64>("next_attempt_at").map(rfc3339))
            .transpose()?,
        "last_attempt_at": time("last_attempt_at")?,
        "last_error": row.get::<Option<String>>("last_error")?,
        "provider_message_id": row.get::<Option<String>>("provider_message_id")?,
        "sent_at": sent_at.map(rfc3339),
        "failed_at": failed_at.map(rfc3339),
        "created_at": rfc3339(row.get("created_at")?),
    }))
}
