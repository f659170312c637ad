//! The events tenants can subscribe to, how a change records one, and the envelope it is
//! delivered in.
//!
//! Events enter through the transactional outbox (`outbox_events`): the change that causes
//! one writes its row in the same batch, so an event exists exactly when its change does.
//! Delivery reads the outbox later (see `delivery`).

use serde_json::{Value as Json, json};

use crate::{ApiError, clock::rfc3339, db::Statement, error::ApiResult};

/// Every event type a webhook endpoint may subscribe to by name. Producers of the job,
/// plan and report events live with those capabilities.
pub const EVENT_TYPES: &[&str] = &[
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "credits.alert",
    "credits.blocked",
    "credits.purchased",
    "credits.granted",
    "credits.adjusted",
    "credits.topup_requested",
    "plan.changed",
    "billing.payment_failed",
    "apikey.created",
    "apikey.revoked",
    "user.invited",
    "report.daily",
    "report.monthly",
];

/// Sent by `POST webhooks/endpoints/{id}/test` to that endpoint only, whatever it subscribes to.
pub const TEST_EVENT: &str = "webhook.test";

/// The largest body a delivery may have. A bigger event is sent as a thin envelope whose
/// data names the event, so a receiver is told something happened rather than nothing.
pub const MAX_PAYLOAD_BYTES: usize = 20 * 1024;

/// Subscriptions: `*`, an event type, or `group.*` for every type of a group. Unknown names
/// are refused, since a typo would otherwise silently subscribe to nothing.
pub fn parse_subscriptions(items: &[String]) -> ApiResult<Vec<String>> {
    if items.is_empty() || items.len() > EVENT_TYPES.len() + 1 {
        return Err(ApiError::invalid_field(
            "event_types",
            "name 1 or more event types, or \"*\" for all",
        ));
    }
    let mut types: Vec<String> = Vec::new();
    for item in items {
        let item = item.trim();
        let known = item == "*"
            || EVENT_TYPES.contains(&item)
            || item.strip_suffix(".*").is_some_and(|group| {
                EVENT_TYPES
                    .iter()
                    .any(|name| name.split('.').next() == Some(group))
            });
        if !known {
            return Err(ApiError::invalid_field(
                "event_types",
                format!("{item:?} is not an event type (see GET webhooks/event-types)"),
            ));
        }
        if !types.iter().any(|kept| kept == item) {
            types.push(item.to_owned());
        }
    }
    Ok(types)
}

/// The SQL condition that endpoint `e` subscribes to the event type `event_type` (an SQL
/// expression): `*`, the exact name, or its group's `group.*`.
pub(super) fn subscribes(event_type: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM json_each(e.event_types) s
                 WHERE s.value = '*' OR s.value = {event_type}
                    OR (substr(s.value, -2) = '.*'
                        AND substr({event_type}, 1, length(s.value) - 1) = substr(s.value, 1, length(s.value) - 1)))"
    )
}

/// Records an event from the row a batch has just written: `select` yields `tenant_id`,
/// `payload` (JSON text) and `created_at`; when it yields no row there is no event.
pub fn emit_from(event_type: &str, select: Statement) -> Statement {
    let mut params = vec![event_type.into()];
    params.extend(select.params);
    Statement {
        sql: format!(
            "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
             SELECT lower(hex(randomblob(16))), tenant_id, ?, payload, created_at FROM ({})",
            select.sql
        ),
        params,
    }
}

/// The body delivered for an event: `{type, timestamp, data}`, as Standard Webhooks
/// recommends, at most [`MAX_PAYLOAD_BYTES`].
pub fn envelope(event_id: &str, event_type: &str, created_at: i64, data: &str) -> String {
    let data: Json = serde_json::from_str(data).unwrap_or_else(|_| Json::String(data.into()));
    let body = json!({ "type": event_type, "timestamp": rfc3339(created_at), "data": data });
    let text = body.to_string();
    if text.len() <= MAX_PAYLOAD_BYTES {
        return text;
    }
    json!({
        "type": event_type,
        "timestamp": rfc3339(created_at),
        "data": { "event_id": event_id, "truncated": true },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn names_wildcards_and_groups_are_accepted_once_each() {
        let parsed =
            parse_subscriptions(&list(&["credits.alert", "*", "job.*", "credits.alert"])).unwrap();
        assert_eq!(parsed, list(&["credits.alert", "*", "job.*"]));
    }

    #[test]
    fn unknown_names_and_empty_lists_are_refused() {
        for items in [
            list(&[]),
            list(&["credits.alerts"]),
            list(&["nope.*"]),
            list(&["job"]),
        ] {
            assert!(parse_subscriptions(&items).is_err(), "{items:?}");
        }
    }

    #[test]
    fn the_envelope_carries_type_timestamp_and_data() {
        let body = envelope("e1", "credits.alert", 0, r#"{"threshold":80}"#);
        let parsed: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parsed,
            json!({
                "type": "credits.alert",
                "timestamp": "1970-01-01T00:00:00Z",
                "data": { "threshold": 80 },
            })
        );
    }

    #[test]
    fn an_oversized_event_is_sent_thin_and_within_the_limit() {
        let data = json!({ "blob": "x".repeat(MAX_PAYLOAD_BYTES) }).to_string();
        let body = envelope("e1", "job.succeeded", 0, &data);
        assert!(body.len() <= MAX_PAYLOAD_BYTES);
        let parsed: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parsed["data"],
            json!({ "event_id": "e1", "truncated": true })
        );
    }

    #[test]
    fn an_emitted_event_binds_its_type_before_the_select() {
        let statement = emit_from(
            "apikey.created",
            crate::sql!(
                "SELECT tenant_id, '{}' AS payload, created_at FROM api_keys WHERE id = ?",
                "k1"
            ),
        );
        assert_eq!(statement.sql.matches('?').count(), statement.params.len());
        assert_eq!(statement.params[0], "apikey.created".into());
    }
}
