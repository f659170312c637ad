//! Cron's sender: pending mails claimed, rendered, sent to the provider, and their answers
//! recorded; mails long since sent or given up on are purged.
//!
//! Safe when cron runs twice at once, or dies halfway:
//! - A sender claims due mails with one conditional UPDATE that sets a lease; another
//!   sender skips leased rows, so each attempt is made by one sender only.
//! - The answer is recorded only while the lease is still held, and a 2xx sets `sent_at`,
//!   after which no claim matches the mail again.
//! - A sender that dies between the provider's acceptance and the record leaves a lease
//!   that runs out, and the mail is sent again: delivery is at least once, the only
//!   promise an HTTP API without idempotency keys allows.
//!
//! Failures back off on [`RETRY_SCHEDULE`] (with the webhooks' jitter, so a provider coming
//! back is not hit by the whole backlog in one second; `Retry-After` on 429/503 is
//! honoured). A message the provider refuses as malformed (400, 413, 422) would be refused
//! again byte for byte, so it fails at once, as does a mail whose template cannot render.

use futures_util::future::join_all;
use http::header;
use serde_json::Value as Json;

use super::{
    EmailProvider, links,
    provider::message_id,
    templates::{self, Rendered},
};
use crate::{
    Env,
    config::Config,
    db::{DbError, Row},
    ids::new_id,
    sql,
    webhooks::schedule::{parse_retry_after, with_jitter},
};

/// Seconds to wait after the 1st, 2nd, … failed attempt; after the last, the mail fails.
/// About two days in all: past that, a reset link or an invitation has long expired.
pub const RETRY_SCHEDULE: [i64; 7] = [
    60,
    5 * 60,
    30 * 60,
    2 * 3600,
    6 * 3600,
    12 * 3600,
    24 * 3600,
];
/// Mails claimed and sent concurrently per round.
const CLAIM_BATCH: i64 = 10;
/// How long a claim holds: well past the 15 s request timeout of a round.
const LEASE_SECONDS: i64 = 120;
/// Rounds per cron run, so a run ends even while mail keeps coming; the next carries on.
const MAX_ROUNDS: usize = 20;
/// `Retry-After` beyond a day is capped at a day.
const MAX_RETRY_AFTER: i64 = 24 * 3600;
/// Sent and failed mails (which hold reset links and invitation tokens) are kept this
/// long for operators, then deleted.
pub const RETENTION_SECONDS: i64 = 30 * 24 * 3600;
/// The most of an error or a response body kept with a mail.
const ERROR_CHARS: usize = 500;

/// What one delivery run did, for the cron report.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct MailReport {
    pub attempts: u64,
    pub sent: u64,
    /// Mails given up on in this run.
    pub failed: u64,
    pub purged: u64,
}

/// Purges old mails, then (with a provider configured) sends what is due.
pub async fn run(env: &Env) -> Result<MailReport, DbError> {
    let now = env.now();
    let purged = env
        .db
        .execute(sql!(
            "DELETE FROM email_outbox WHERE sent_at < ? OR failed_at < ?",
            now - RETENTION_SECONDS,
            now - RETENTION_SECONDS
        ))
        .await?;
    let mut report = MailReport {
        purged: purged.rows_affected,
        ..MailReport::default()
    };
    let Some(provider) = &env.config.email_provider else {
        return Ok(report);
    };
    for _ in 0..MAX_ROUNDS {
        let claimed = claim_due(env).await?;
        if claimed.is_empty() {
            break;
        }
        let results = join_all(claimed.iter().map(|mail| attempt(env, provider, mail))).await;
        for outcome in results {
            report.attempts += 1;
            match outcome? {
                Some(Outcome::Sent) => report.sent += 1,
                Some(Outcome::GiveUp) => report.failed += 1,
                _ => {}
            }
        }
    }
    Ok(report)
}

/// A mail a sender holds the lease of.
struct Claimed {
    id: String,
    recipient: String,
    template: String,
    payload: String,
    attempts: i64,
    lease_id: String,
    /// The tenant's slug, custom domain and brand name (none for a tenant since deleted).
    slug: Option<String>,
    custom_domain: Option<String>,
    brand_name: Option<String>,
}

impl Claimed {
    fn from_row(row: &Row<'_>) -> Result<Self, DbError> {
        Ok(Self {
            id: row.get("id")?,
            recipient: row.get("recipient")?,
            template: row.get("template")?,
            payload: row.get("payload")?,
            attempts: row.get("attempts")?,
            lease_id: row.get("lease_id")?,
            slug: row.get("slug")?,
            custom_domain: row.get("custom_domain")?,
            brand_name: row.get("brand_name")?,
        })
    }
}

/// Claims up to [`CLAIM_BATCH`] due mails, oldest due first, in one UPDATE.
async fn claim_due(env: &Env) -> Result<Vec<Claimed>, DbError> {
    let now = env.now();
    let lease_id = new_id();
    let results = env
        .db
        .batch(vec![
            sql!(
                "UPDATE email_outbox SET lease_id = ?, locked_until = ?
                 WHERE id IN (
                     SELECT id FROM email_outbox
                     WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?
                       AND (locked_until IS NULL OR locked_until <= ?)
                     ORDER BY next_attempt_at, created_at, rowid LIMIT ?)",
                &lease_id,
                now + LEASE_SECONDS,
                now,
                now,
                CLAIM_BATCH
            ),
            sql!(
                "SELECT o.id, o.recipient, o.template, o.payload, o.attempts, o.lease_id,
                        t.slug, t.custom_domain, t.brand_name
                 FROM email_outbox o LEFT JOIN tenants t ON t.id = o.tenant_id
                 WHERE o.lease_id = ?",
                &lease_id
            ),
        ])
        .await?;
    results[1]
        .iter()
        .map(|row| Claimed::from_row(&row))
        .collect()
}

/// What an attempt's answer means for its mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    RetryAt(i64),
    GiveUp,
}

/// Judges an answer: `status` is `None` when no response came; `attempts_before` counts
/// the mail's earlier attempts (all failures, or it would be sent); `seed` spreads the
/// jitter between mails.
pub fn judge(
    status: Option<u16>,
    retry_after: Option<i64>,
    attempts_before: i64,
    now: i64,
    seed: &str,
) -> Outcome {
    match status {
        Some(200..=299) => return Outcome::Sent,
        Some(400 | 413 | 422) => return Outcome::GiveUp,
        _ => {}
    }
    let Some(&wait) = RETRY_SCHEDULE.get(attempts_before.max(0) as usize) else {
        return Outcome::GiveUp;
    };
    let mut wait = with_jitter(wait, seed);
    if matches!(status, Some(429 | 503))
        && let Some(asked) = retry_after
    {
        wait = wait.max(asked.min(MAX_RETRY_AFTER));
    }
    Outcome::RetryAt(now + wait)
}

/// What came back from one send.
struct Answer {
    status: Option<u16>,
    retry_after: Option<i64>,
    message_id: Option<String>,
    error: Option<String>,
}

impl Answer {
    fn failed(error: impl std::fmt::Display) -> Self {
        Self {
            status: None,
            retry_after: None,
            message_id: None,
            error: Some(truncate(&error.to_string())),
        }
    }
}

/// Sends one claimed mail and records the answer; `None` when the lease had been lost and
/// nothing was recorded.
async fn attempt(
    env: &Env,
    provider: &EmailProvider,
    mail: &Claimed,
) -> Result<Option<Outcome>, DbError> {
    let sent_at = env.now();
    let (answer, outcome) = match rendered(&env.config, mail) {
        Err(error) => (Answer::failed(error), Outcome::GiveUp),
        Ok(rendered) => {
            let answer = send(env, provider, &mail.recipient, &rendered, sent_at).await;
            let outcome = judge(
                answer.status,
                answer.retry_after,
                mail.attempts,
                env.now(),
                &format!("{}:{}", mail.id, mail.attempts + 1),
            );
            (answer, outcome)
        }
    };
    record(env, mail, &answer, outcome, sent_at).await
}

/// The mail in the tenant's colours: sent under its brand's name, its link on the tenant's
/// own domain. Both are decided now, not when queued, so a domain or brand set meanwhile
/// is honoured.
fn rendered(config: &Config, mail: &Claimed) -> Result<Rendered, templates::RenderError> {
    let mut payload: Json = serde_json::from_str(&mail.payload)
        .map_err(|error| templates::RenderError(format!("the payload is not JSON: {error}")))?;
    if let (Some(slug), Some(link)) = (&mail.slug, payload["link"].as_str()) {
        let moved = links::on_tenant_domain(config, link, slug, mail.custom_domain.as_deref());
        payload["link"] = Json::String(moved);
    }
    let mut rendered = templates::render(&mail.template, &payload)?;
    rendered.from_name = mail.brand_name.clone();
    Ok(rendered)
}

async fn send(
    env: &Env,
    provider: &EmailProvider,
    recipient: &str,
    mail: &Rendered,
    now: i64,
) -> Answer {
    let request = match provider.request(recipient, mail) {
        Ok(request) => request,
        Err(error) => return Answer::failed(format!("invalid request: {error}")),
    };
    match env.outbound.send(request).await {
        Ok(response) => {
            let status = response.status();
            Answer {
                status: Some(status.as_u16()),
                retry_after: response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, now)),
                message_id: message_id(response.headers()),
                error: (!status.is_success()).then(|| {
                    truncate(&format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        String::from_utf8_lossy(response.body())
                    ))
                }),
            }
        }
        Err(error) => Answer::failed(error),
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(ERROR_CHARS) {
        Some((index, _)) => text[..index].to_owned(),
        None => text.to_owned(),
    }
}

/// Writes the attempt's result while the lease is held, releasing it.
async fn record(
    env: &Env,
    mail: &Claimed,
    answer: &Answer,
    outcome: Outcome,
    sent_at: i64,
) -> Result<Option<Outcome>, DbError> {
    let now = env.now();
    let (sent, failed, next_attempt_at) = match outcome {
        Outcome::Sent => (Some(now), None, None),
        Outcome::RetryAt(at) => (None, None, Some(at)),
        Outcome::GiveUp => (None, Some(now), None),
    };
    let result = env
        .db
        .execute(sql!(
            "UPDATE email_outbox SET attempts = attempts + 1, last_attempt_at = ?,
                 sent_at = ?, failed_at = ?, next_attempt_at = COALESCE(?, next_attempt_at),
                 last_error = ?, provider_message_id = COALESCE(?, provider_message_id),
                 lease_id = NULL, locked_until = NULL
             WHERE id = ? AND lease_id = ?",
            sent_at,
            sent,
            failed,
            next_attempt_at,
            answer.error.clone(),
            answer.message_id.clone(),
            &mail.id,
            &mail.lease_id
        ))
        .await?;
    Ok((result.rows_affected == 1).then_some(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::schedule::JITTER_PERCENT;

    #[test]
    fn two_hundreds_are_sent_and_malformed_messages_fail_at_once() {
        assert_eq!(judge(Some(202), None, 0, 0, "s"), Outcome::Sent);
        assert_eq!(judge(Some(200), None, 5, 0, "s"), Outcome::Sent);
        for status in [400, 413, 422] {
            assert_eq!(judge(Some(status), None, 0, 0, "s"), Outcome::GiveUp);
        }
    }

    #[test]
    fn outages_and_refused_keys_are_retried_on_the_schedule_then_given_up() {
        for status in [None, Some(401), Some(403), Some(500), Some(503), Some(302)] {
            let Outcome::RetryAt(at) = judge(status, None, 0, 1_000, "s") else {
                panic!("{status:?} should be retried");
            };
            assert!((1_000 + 54..=1_000 + 66).contains(&at), "{status:?}: {at}");
        }
        for (attempts, wait) in RETRY_SCHEDULE.iter().enumerate() {
            let Outcome::RetryAt(at) = judge(None, None, attempts as i64, 0, "seed") else {
                panic!("attempt {attempts} should be retried");
            };
            let spread = wait * JITTER_PERCENT / 100;
            assert!(
                (wait - spread..=wait + spread).contains(&at),
                "{attempts}: {at}"
            );
        }
        assert_eq!(
            judge(None, None, RETRY_SCHEDULE.len() as i64, 0, "seed"),
            Outcome::GiveUp
        );
    }

    #[test]
    fn retry_after_is_honoured_when_rate_limited_or_unavailable() {
        assert_eq!(
            judge(Some(429), Some(900), 0, 0, "s"),
            Outcome::RetryAt(900)
        );
        assert_eq!(
            judge(Some(503), Some(900), 0, 0, "s"),
            Outcome::RetryAt(900)
        );
        assert_eq!(
            judge(Some(429), Some(9 * 86_400), 0, 0, "s"),
            Outcome::RetryAt(86_400)
        );
        let Outcome::RetryAt(at) = judge(Some(500), Some(900), 0, 0, "s") else {
            panic!("500 should be retried");
        };
        assert!(at < 900);
    }

    #[test]
    fn errors_kept_with_a_mail_are_bounded() {
        assert_eq!(
            truncate(&"é".repeat(2 * ERROR_CHARS)).chars().count(),
            ERROR_CHARS
        );
        assert_eq!(truncate("short"), "short");
    }
}
