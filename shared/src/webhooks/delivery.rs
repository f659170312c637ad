//! Delivery: outbox events fanned out to endpoints, due deliveries claimed, sent, signed,
//! and their answers recorded.
//!
//! Every step is safe when cron runs twice at once, or dies halfway:
//! - Fan-out inserts one delivery per event × subscribed endpoint under a unique
//!   `(endpoint_id, message_id)` and marks the event delivered in the same batch: a second
//!   fan-out of the same event creates nothing, and an event is never marked without its
//!   deliveries.
//! - A sender claims due deliveries with one conditional UPDATE that sets a lease; another
//!   sender skips leased rows, so a message is sent once per attempt. A sender that dies
//!   leaves a lease that runs out, and the delivery is claimed again (at-least-once: the
//!   stable `webhook-id` lets receivers drop the rare duplicate).
//! - The result is recorded only while the lease is still held.

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Method, header};
use serde_json::json;

use crate::{
    Env,
    db::{DbError, Row, Statement},
    ids::new_id,
    mail, sql,
    webhooks::{
        events::{envelope, subscribes},
        schedule::{self, DisableReason, Outcome},
        signing::{SigningKey, signature_header},
    },
};

/// Outbox events read per fan-out batch.
const FANOUT_BATCH: i64 = 100;
/// Deliveries claimed and sent concurrently per round.
const CLAIM_BATCH: i64 = 10;
/// How long a claim holds: well past the 15 s request timeout of a round.
const LEASE_SECONDS: i64 = 120;
/// Rounds per cron run of each kind, so one run ends even when events keep coming; the
/// next run carries on.
const MAX_ROUNDS: usize = 20;
/// The part of a response body kept with an attempt.
const EXCERPT_BYTES: usize = 1024;
const USER_AGENT: &str = "Tollgate-Webhooks/1";

/// What one delivery run did, for the cron report.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryReport {
    pub events_fanned_out: u64,
    pub deliveries_created: u64,
    pub attempts: u64,
    pub succeeded: u64,
    /// Deliveries given up on (410, or the schedule ran out).
    pub failed: u64,
    pub endpoints_disabled: u64,
}

/// Fans pending outbox events out, then sends what is due.
pub async fn run(env: &Env) -> Result<DeliveryReport, DbError> {
    let mut report = DeliveryReport::default();
    for _ in 0..MAX_ROUNDS {
        if !fan_out(env, &mut report).await? {
            break;
        }
    }
    for _ in 0..MAX_ROUNDS {
        let claimed = claim_due(env).await?;
        if claimed.is_empty() {
            break;
        }
        for result in join_all(
            claimed
                .iter()
                .map(|delivery| attempt(env, delivery, "cron")),
        )
        .await
        {
            report.add(result?);
        }
    }
    Ok(report)
}

impl DeliveryReport {
    fn add(&mut self, recorded: Recorded) {
        let Recorded {
            outcome,
            endpoint_disabled,
        } = recorded;
        self.attempts += 1;
        match outcome {
            Some(Outcome::Succeeded) => self.succeeded += 1,
            Some(Outcome::GiveUp(_)) => self.failed += 1,
            _ => {}
        }
        self.endpoints_disabled += u64::from(endpoint_disabled);
    }
}

/// One batch of pending events: returns whether there may be more.
async fn fan_out(env: &Env, report: &mut DeliveryReport) -> Result<bool, DbError> {
    let events = env
        .db
        .execute(sql!(
            "SELECT id, tenant_id, type, payload, created_at FROM outbox_events
             WHERE delivered_at IS NULL ORDER BY created_at, rowid LIMIT ?",
            FANOUT_BATCH
        ))
        .await?;
    if events.is_empty() {
        return Ok(false);
    }
    let now = env.now();
    let mut statements = Vec::new();
    for event in events.iter() {
        let id: String = event.get("id")?;
        let event_type: String = event.get("type")?;
        let created_at: i64 = event.get("created_at")?;
        let body = envelope(
            &id,
            &event_type,
            created_at,
            &event.get::<String>("payload")?,
        );
        // Endpoints created after the event do not receive it: subscribing starts now.
        statements.push(sql!(
            format!(
                "INSERT INTO webhook_deliveries
                     (id, tenant_id, endpoint_id, message_id, event_type, payload, next_attempt_at, created_at, updated_at)
                 SELECT lower(hex(randomblob(16))), e.tenant_id, e.id, ?, ev.type, ?, ?, ?, ?
                 FROM webhook_endpoints e, (SELECT ? AS type) ev
                 WHERE e.tenant_id = ? AND e.enabled = 1 AND e.created_at <= ? AND {}
                 ON CONFLICT (endpoint_id, message_id) DO NOTHING",
                subscribes("ev.type")
            ),
            &id,
            body,
            now,
            now,
            now,
            &event_type,
            event.get::<String>("tenant_id")?,
            created_at
        ));
        statements.push(sql!(
            "UPDATE outbox_events SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
            now,
            &id
        ));
    }
    let results = env.db.batch(statements).await?;
    for pair in results.chunks(2) {
        report.deliveries_created += pair[0].rows_affected;
        report.events_fanned_out += pair[1].rows_affected;
    }
    Ok(events.rows.len() as i64 == FANOUT_BATCH)
}

/// A delivery a sender holds the lease of, with what it needs to send it.
pub(super) struct Claimed {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub message_id: String,
    pub payload: String,
    pub attempts: i64,
    pub failures: i64,
    pub lease_id: String,
    /// The current secret, and the previous one during a rotation's overlap.
    pub keys: Vec<SigningKey>,
}

/// The query that reads the deliveries a lease holds; binds `now` and the lease id.
pub(super) fn select_claimed(lease_id: &str, now: i64) -> Statement {
    sql!(
        "SELECT d.id, d.tenant_id, d.endpoint_id, d.message_id, d.payload, d.attempts, d.failures,
                d.lease_id, e.url, e.secret,
                CASE WHEN e.previous_secret_expires_at > ? THEN e.previous_secret END AS previous_secret
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.lease_id = ?",
        now,
        lease_id
    )
}

pub(super) fn read_claimed(row: &Row<'_>) -> Result<Claimed, DbError> {
    let keys = [
        Some(row.get::<String>("secret")?),
        row.get::<Option<String>>("previous_secret")?,
    ]
    .into_iter()
    .flatten()
    .filter_map(|secret| SigningKey::parse(&secret))
    .collect();
    Ok(Claimed {
        id: row.get("id")?,
        tenant_id: row.get("tenant_id")?,
        endpoint_id: row.get("endpoint_id")?,
        url: row.get("url")?,
        message_id: row.get("message_id")?,
        payload: row.get("payload")?,
        attempts: row.get("attempts")?,
        failures: row.get("failures")?,
        lease_id: row.get("lease_id")?,
        keys,
    })
}

/// The lease columns a claim sets; binds the lease id and when it runs out.
pub(super) fn lease(lease_id: &str, now: i64) -> (String, i64) {
    (lease_id.to_owned(), now + LEASE_SECONDS)
}

/// Claims up to [`CLAIM_BATCH`] due deliveries of enabled endpoints, oldest due first.
async fn claim_due(env: &Env) -> Result<Vec<Claimed>, DbError> {
    let now = env.now();
    let (lease_id, locked_until) = lease(&new_id(), now);
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE webhook_deliveries SET lease_id = ?, locked_until = ?
                 WHERE id IN (
                     SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                     WHERE d.status = 'pending' AND d.next_attempt_at <= ?
                       AND (d.locked_until IS NULL OR d.locked_until <= ?) AND e.enabled = 1
                     ORDER BY d.next_attempt_at, d.rowid LIMIT ?)",
                &lease_id,
                locked_until,
                now,
                now,
                CLAIM_BATCH
            ),
            select_claimed(&lease_id, now),
        ])
        .await?;
    results[1].iter().map(|row| read_claimed(&row)).collect()
}

/// What recording an attempt changed; `outcome` is `None` when the lease had been lost
/// and nothing was recorded.
pub(super) struct Recorded {
    pub outcome: Option<Outcome>,
    pub endpoint_disabled: bool,
}

/// What came back from one send.
struct Answer {
    status: Option<u16>,
    retry_after: Option<i64>,
    error: Option<(&'static str, String)>,
    excerpt: Option<String>,
}

/// Sends one claimed delivery, signed with every live key, and records the answer.
pub(super) async fn attempt(
    env: &Env,
    delivery: &Claimed,
    source: &str,
) -> Result<Recorded, DbError> {
    let sent_at = env.now();
    let answer = send(env, delivery, sent_at).await;
    let now = env.now();
    let attempt = delivery.attempts + 1;
    let outcome = schedule::judge(
        answer.status,
        answer.retry_after,
        delivery.failures,
        now,
        &format!("{}:{attempt}", delivery.id),
    );
    record(env, delivery, source, &answer, outcome, sent_at, now).await
}

async fn send(env: &Env, delivery: &Claimed, timestamp: i64) -> Answer {
    let body = Bytes::from(delivery.payload.clone());
    let signature = signature_header(&delivery.keys, &delivery.message_id, timestamp, &body);
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(&delivery.url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            return Answer {
                status: None,
                retry_after: None,
                error: Some(("invalid_request", error.to_string())),
                excerpt: None,
            };
        }
    };
    match env.outbound.send(request).await {
        Ok(response) => Answer {
            status: Some(response.status().as_u16()),
            retry_after: response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| schedule::parse_retry_after(value, timestamp)),
            error: None,
            excerpt: Some(excerpt(response.body())),
        },
        Err(error) => Answer {
            status: None,
            retry_after: None,
            error: Some((error.kind(), truncate(&error.to_string(), 500))),
            excerpt: None,
        },
    }
}

/// The first [`EXCERPT_BYTES`] of a response body as text; bytes that are not UTF-8 (or a
/// character cut in two at the end) show as replacement characters.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]).into_owned()
}

fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((index, _)) => text[..index].to_owned(),
        None => text.to_owned(),
    }
}

async fn record(
    env: &Env,
    delivery: &Claimed,
    source: &str,
    answer: &Answer,
    outcome: Outcome,
    sent_at: i64,
    now: i64,
) -> Result<Recorded, DbError> {
    let attempt_id = new_id();
    let still_held = sql!(
        "SELECT 1 FROM webhook_deliveries WHERE id = ? AND lease_id = ?",
        &delivery.id,
        &delivery.lease_id
    );
    let (status, failures, next_attempt_at, succeeded_at) = match outcome {
        Outcome::Succeeded => ("succeeded", 0, None, Some(now)),
        Outcome::RetryAt(at) => ("pending", delivery.failures + 1, Some(at), None),
        Outcome::GiveUp(_) => ("failed", delivery.failures + 1, None, None),
    };
    let (error_kind, error_message) = answer
        .error
        .clone()
        .map_or((None, None), |(kind, message)| (Some(kind), Some(message)));
    let mut statements = vec![
        sql!(
            "INSERT INTO webhook_attempts
                 (id, tenant_id, delivery_id, attempt, source, status_code, error, error_message, response_excerpt, attempted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &attempt_id,
            &delivery.tenant_id,
            &delivery.id,
            delivery.attempts + 1,
            source,
            answer.status.map(i64::from),
            error_kind,
            error_message.clone(),
            answer.excerpt.clone(),
            sent_at
        )
        .only_if_exists(&still_held),
        sql!(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, failures = ?,
                 next_attempt_at = ?, lease_id = NULL, locked_until = NULL,
                 last_status_code = ?, last_error = ?, succeeded_at = COALESCE(?, succeeded_at), updated_at = ?
             WHERE id = ? AND lease_id = ?",
            status,
            failures,
            next_attempt_at,
            answer.status.map(i64::from),
            error_message.or_else(|| {
                answer
                    .status
                    .filter(|code| !(200..300).contains(code))
                    .map(|code| format!("HTTP {code}"))
            }),
            succeeded_at,
            now,
            &delivery.id,
            &delivery.lease_id
        ),
    ];
    if let Outcome::GiveUp(reason) = outcome {
        statements.extend(disable_endpoint(delivery, reason, &attempt_id, now));
    }
    let results = env.db.batch(statements).await?;
    let recorded = results[0].rows_affected == 1;
    Ok(Recorded {
        outcome: recorded.then_some(outcome),
        endpoint_disabled: results.get(2).is_some_and(|rows| rows.rows_affected == 1),
    })
}

/// Switches the endpoint off (if the attempt was recorded and it is still on) and queues
/// the notice to the tenant's owners in the same batch.
fn disable_endpoint(
    delivery: &Claimed,
    reason: DisableReason,
    attempt_id: &str,
    now: i64,
) -> Vec<Statement> {
    let token = new_id();
    let why = match reason {
        DisableReason::Gone => "the endpoint answered 410 Gone",
        DisableReason::Failing => {
            "deliveries to the endpoint kept failing through the whole retry schedule"
        }
    };
    vec![
        sql!(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?, disabled_at = ?,
                 disabled_token = ?, updated_at = ?
             WHERE id = ? AND enabled = 1 AND EXISTS (SELECT 1 FROM webhook_attempts WHERE id = ?)",
            reason.as_str(),
            now,
            &token,
            now,
            &delivery.endpoint_id,
            attempt_id
        ),
        mail::enqueue_to_owners(
            &delivery.tenant_id,
            mail::TEMPLATE_WEBHOOK_ENDPOINT_DISABLED,
            &json!({
                "endpoint_id": delivery.endpoint_id,
                "url": delivery.url,
                "reason": reason.as_str(),
                "message": format!("Webhook endpoint {} was disabled: {why}. Fix the receiver, then enable the endpoint again; pending deliveries resume.", delivery.url),
            }),
            now,
            &sql!(
                "SELECT 1 FROM webhook_endpoints WHERE id = ? AND disabled_token = ?",
                &delivery.endpoint_id,
                &token
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_and_messages_are_bounded() {
        assert_eq!(excerpt(&[b'a'; 5000]).len(), EXCERPT_BYTES);
        assert_eq!(excerpt(b"ok"), "ok");
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 10), "hi");
    }

    #[test]
    fn the_notice_is_queued_only_by_the_step_that_disabled() {
        let delivery = Claimed {
            id: "d".into(),
            tenant_id: "t".into(),
            endpoint_id: "e".into(),
            url: "https://example.com/".into(),
            message_id: "m".into(),
            payload: "{}".into(),
            attempts: 9,
            failures: 9,
            lease_id: "l".into(),
            keys: Vec::new(),
        };
        let statements = disable_endpoint(&delivery, DisableReason::Failing, "a", 0);
        for statement in &statements {
            assert_eq!(
                statement.sql.matches('?').count(),
                statement.params.len(),
                "{}",
                statement.sql
            );
        }
        assert!(statements[1].sql.contains("disabled_token = ?"));
    }
}
