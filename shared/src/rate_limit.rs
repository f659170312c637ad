//! Fixed-window rate limits.
//!
//! In the database ([`Limit::hit`]), every isolate and process shares them: a hit is one
//! upsert that returns the window's count, no read-then-write, so concurrent requests are
//! all counted. The login, recovery and registration limits are always counted there.
//!
//! The per-minute limit of authenticated callers goes through the [`RateLimiter`] port, so
//! a runtime may count it elsewhere. What each adapter guarantees when several instances
//! serve one tenant:
//! - [`DatabaseRateLimiter`] (the default, and the edge runtimes'): exact across every
//!   instance, at the price of one write per authenticated request, serialised by the
//!   database on the caller's bucket row.
//! - the native server's in-process limiter: the same windows and headers, exact within one
//!   process; N processes let a caller through up to N times its limit, and a restart
//!   starts the counters again. A request that only reads then writes nothing.

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use crate::{ApiError, db::Statement, sql};

/// One bucket (say `login-ip:127.0.0.1`) limited to `limit` hits per `window_seconds`.
#[derive(Debug, Clone)]
pub struct Limit {
    pub bucket: String,
    pub limit: i64,
    pub window_seconds: i64,
}

impl Limit {
    pub fn per_minute(bucket: impl Into<String>, limit: i64) -> Self {
        Self {
            bucket: bucket.into(),
            limit,
            window_seconds: 60,
        }
    }

    pub fn window_start(&self, now: i64) -> i64 {
        now - now.rem_euclid(self.window_seconds)
    }

    /// Counts one hit; the statement returns the window's `hits` so far.
    pub fn hit(&self, now: i64) -> Statement {
        sql!(
            "INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES (?, ?, 1)
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = hits + 1
             RETURNING hits",
            &self.bucket,
            self.window_start(now)
        )
    }

    /// Judges a window that has seen `hits` hits, this one included.
    pub fn judge(&self, hits: i64, now: i64) -> Result<RateStatus, ApiError> {
        let status = RateStatus {
            limit: self.limit,
            remaining: (self.limit - hits).max(0),
            reset_in: self.window_start(now) + self.window_seconds - now,
        };
        if hits > self.limit {
            return Err(status.exceeded());
        }
        Ok(status)
    }
}

/// Where the per-minute hits of authenticated callers are counted.
pub trait RateLimiter {
    /// True when the counters are rows of `rate_limit_windows`: the caller then counts a hit
    /// by running [`Limit::hit`] in the batch of its own reads, one round trip.
    fn counts_in_database(&self) -> bool;

    /// Counts one hit of `limit` at `now` and returns the window's hits so far, this one
    /// included; `None` from a limiter that counts in the database.
    fn hit(&self, limit: &Limit, now: i64) -> Option<i64>;
}

/// The counters in the database: exact across every instance that shares it.
pub struct DatabaseRateLimiter;

impl RateLimiter for DatabaseRateLimiter {
    fn counts_in_database(&self) -> bool {
        true
    }

    fn hit(&self, _limit: &Limit, _now: i64) -> Option<i64> {
        None
    }
}

/// Where a caller stands in its window, as the `RateLimit-*` headers tell it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStatus {
    pub limit: i64,
    pub remaining: i64,
    /// Seconds until the window resets.
    pub reset_in: i64,
}

impl RateStatus {
    fn headers(&self) -> [(HeaderName, i64); 3] {
        [
            (HeaderName::from_static("ratelimit-limit"), self.limit),
            (
                HeaderName::from_static("ratelimit-remaining"),
                self.remaining,
            ),
            (HeaderName::from_static("ratelimit-reset"), self.reset_in),
        ]
    }

    pub fn apply(&self, response: &mut crate::api::Response) {
        for (name, value) in self.headers() {
            response
                .headers_mut()
                .insert(name, HeaderValue::from(value));
        }
    }

    fn exceeded(&self) -> ApiError {
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests: the limit is {} per window, retry in {} s",
                self.limit, self.reset_in
            ),
        )
        .with_details(json!({ "limit": self.limit, "retry_after_seconds": self.reset_in }))
        .with_header(http::header::RETRY_AFTER, self.reset_in);
        self.headers()
            .into_iter()
            .fold(error, |error, (name, value)| error.with_header(name, value))
    }
}

/// Drops windows that ended before `now`: run by cron.
pub fn purge_expired(now: i64) -> Statement {
    // The longest window in use is a minute; an hour leaves room for longer ones.
    sql!(
        "DELETE FROM rate_limit_windows WHERE window_start < ?",
        now - 3600
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_up_to_the_limit_pass_and_count_down() {
        let limit = Limit::per_minute("b", 3);
        let status = limit.judge(3, 120).unwrap();
        assert_eq!(status.remaining, 0);
        assert_eq!(status.reset_in, 60);
    }

    #[test]
    fn the_hit_past_the_limit_is_refused_with_retry_after() {
        let limit = Limit::per_minute("b", 3);
        let error = limit.judge(4, 150).unwrap_err();
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        let retry_after = error
            .headers
            .iter()
            .find(|(name, _)| name == http::header::RETRY_AFTER)
            .map(|(_, value)| value.to_str().unwrap().to_owned());
        assert_eq!(retry_after.as_deref(), Some("30"));
    }

    #[test]
    fn windows_are_aligned_to_their_length() {
        let limit = Limit::per_minute("b", 1);
        assert_eq!(limit.window_start(119), 60);
        assert_eq!(limit.window_start(120), 120);
    }
}
