//! What an attempt's answer means for its delivery: done, try again later (when), or give
//! up (and whether the endpoint goes with it).
//!
//! Only 2xx counts as received. A 3xx is a failure: redirects are not followed, since a
//! receiver's redirect could point anywhere, including inside our network. 410 Gone says
//! the receiver is gone for good, so its endpoint is disabled at once. Anything else is
//! retried on a schedule that backs off to a day, spread with jitter so that a receiver
//! coming back up is not hit by every delivery in the same second; 429, 502 and 504 may ask
//! for more time with `Retry-After`, which is honoured (never sooner than asked). When the
//! schedule runs out the receiver has been failing for about three days: the endpoint is
//! disabled and its tenant's owners are told.

use sha2::{Digest, Sha256};

/// Seconds to wait after the 1st, 2nd, … failure; after the last, the delivery fails.
pub const RETRY_SCHEDULE: [i64; 9] = [
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
];

/// The most jitter adds to or takes from a wait, in percent.
pub const JITTER_PERCENT: i64 = 10;

/// `Retry-After` beyond a day is capped at a day.
const MAX_RETRY_AFTER: i64 = 24 * 3600;

/// Why an endpoint is switched off by delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    /// It answered 410 Gone.
    Gone,
    /// It failed through the whole retry schedule.
    Failing,
}

impl DisableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisableReason::Gone => "gone",
            DisableReason::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    RetryAt(i64),
    GiveUp(DisableReason),
}

/// What an attempt's answer means. `status` is `None` when no response came;
/// `failures_before` counts this delivery's failures so far; `seed` makes the jitter differ
/// between deliveries and attempts yet stay reproducible.
pub fn judge(
    status: Option<u16>,
    retry_after: Option<i64>,
    failures_before: i64,
    now: i64,
    seed: &str,
) -> Outcome {
    match status {
        Some(200..=299) => return Outcome::Succeeded,
        Some(410) => return Outcome::GiveUp(DisableReason::Gone),
        _ => {}
    }
    let Some(&wait) = RETRY_SCHEDULE.get(failures_before.max(0) as usize) else {
        return Outcome::GiveUp(DisableReason::Failing);
    };
    let mut wait = with_jitter(wait, seed);
    if matches!(status, Some(429 | 502 | 504))
        && let Some(asked) = retry_after
    {
        wait = wait.max(asked.min(MAX_RETRY_AFTER));
    }
    Outcome::RetryAt(now + wait)
}

/// `wait` moved by up to ±[`JITTER_PERCENT`], by a hash of `seed`; at least one second.
pub fn with_jitter(wait: i64, seed: &str) -> i64 {
    let digest = Sha256::digest(seed.as_bytes());
    let draw = u16::from_be_bytes([digest[0], digest[1]]) as i64; // 0..=65535
    let spread = wait * JITTER_PERCENT / 100;
    let offset = (draw * (2 * spread + 1)) / 65_536 - spread;
    (wait + offset).max(1)
}

/// Seconds from `now` a `Retry-After` header asks for: a number of seconds, or an HTTP
/// date. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return (seconds >= 0).then_some(seconds);
    }
    chrono::DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|date| (date.timestamp() - now).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundreds_succeed_and_410_gives_up_on_the_endpoint() {
        assert_eq!(judge(Some(200), None, 3, 0, "s"), Outcome::Succeeded);
        assert_eq!(judge(Some(204), None, 0, 0, "s"), Outcome::Succeeded);
        assert_eq!(
            judge(Some(410), None, 0, 0, "s"),
            Outcome::GiveUp(DisableReason::Gone)
        );
    }

    #[test]
    fn redirects_errors_and_silence_are_retried_on_the_schedule() {
        for status in [Some(301), Some(302), Some(400), Some(500), None] {
            let Outcome::RetryAt(at) = judge(status, None, 0, 1_000, "s") else {
                panic!("{status:?} should be retried");
            };
            assert!((1_000 + 4..=1_000 + 6).contains(&at), "{status:?}: {at}");
        }
    }

    #[test]
    fn the_schedule_backs_off_within_the_jitter_and_then_gives_up() {
        for (failures, wait) in RETRY_SCHEDULE.iter().enumerate() {
            let Outcome::RetryAt(at) = judge(Some(500), None, failures as i64, 0, "seed") else {
                panic!("failure {failures} should be retried");
            };
            let spread = wait * JITTER_PERCENT / 100;
            assert!(
                (wait - spread..=wait + spread).contains(&at),
                "{failures}: {at}"
            );
        }
        assert_eq!(
            judge(Some(500), None, RETRY_SCHEDULE.len() as i64, 0, "seed"),
            Outcome::GiveUp(DisableReason::Failing)
        );
    }

    #[test]
    fn jitter_spreads_deliveries_apart() {
        let waits: std::collections::HashSet<i64> = (0..50)
            .map(|n| with_jitter(3_600, &format!("delivery-{n}")))
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
        assert!(waits.iter().all(|wait| (3_240..=3_960).contains(wait)));
    }

    #[test]
    fn retry_after_is_honoured_for_429_502_and_504_only() {
        for status in [429, 502, 504] {
            assert_eq!(
                judge(Some(status), Some(600), 0, 0, "s"),
                Outcome::RetryAt(600)
            );
        }
        let Outcome::RetryAt(at) = judge(Some(503), Some(600), 0, 0, "s") else {
            panic!("503 should be retried");
        };
        assert!(at < 600);
        // A shorter ask never brings a retry forward past the schedule.
        let Outcome::RetryAt(at) = judge(Some(429), Some(1), 1, 0, "s") else {
            panic!("429 should be retried");
        };
        assert!(at >= 270);
        assert_eq!(
            judge(Some(429), Some(10 * 86_400), 0, 0, "s"),
            Outcome::RetryAt(86_400)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        assert_eq!(parse_retry_after("-5", 0), None);
        assert_eq!(parse_retry_after("soon", 0), None);
        // Wed, 21 Oct 2015 07:28:00 GMT is 1445412480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_000),
            Some(480)
        );
    }
}
