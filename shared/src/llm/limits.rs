//! Per-minute limits of LLM calls, beside each credential's own request limit (the plan's
//! `requests_per_minute`, for every authenticated request):
//!
//! - the whole tenant: its plan's `llm_requests_per_minute` and `llm_tokens_per_minute`;
//! - each API key: its tenant's plan's `llm_key_tokens_per_minute` (its requests are the
//!   credential's own limit);
//! - each of its users, whatever key they call with: the tenant's own
//!   `user_requests_per_minute` and `user_tokens_per_minute` (`PUT llm/settings`).
//!
//! Windows are the calendar minute. A request is counted when it arrives and refused with
//! 429 once its minute's count passes a limit: where the runtime's [`RateLimiter`] counts
//! in the database, by the batch that resolves its model (every instance shares the count);
//! where it counts in process (the native server), by that limiter, once the batch has read
//! the limits, so the batch stays a read (exact within one process, as the credentials' own
//! limit there). Tokens are known only when
//! the call ends: a call is let through while its minute's tokens are below each limit, and
//! its reported tokens are added to the window of the minute it ends in, in the batch that
//! records it. So the token limit can be passed by the calls already running when it is
//! reached, as with OpenAI's own limits, and never by a call that starts after.

use http::StatusCode;
use serde_json::json;

use crate::{
    ApiError,
    db::{Rows, Statement},
    ids::TenantId,
    rate_limit::{Limit, RateLimiter},
    sql,
    tenancy::plans::effective_plan_column,
};

const WINDOW_SECONDS: i64 = 60;

fn window_start(now: i64) -> i64 {
    now - now.rem_euclid(WINDOW_SECONDS)
}

/// The counters of one caller's calls.
struct Buckets {
    tenant_requests: String,
    user_requests: String,
    tenant_tokens: String,
    user_tokens: String,
    /// The API key's, when the call came with one.
    key_tokens: Option<String>,
}

impl Buckets {
    fn of(tenant: &TenantId, caller: &Caller<'_>) -> Self {
        let (tenant, user) = (tenant.as_str(), caller.user);
        Buckets {
            tenant_requests: format!("llm-requests:{tenant}"),
            user_requests: format!("llm-requests:{tenant}:{user}"),
            tenant_tokens: format!("llm-tokens:{tenant}"),
            user_tokens: format!("llm-tokens:{tenant}:{user}"),
            key_tokens: caller
                .key
                .map(|key| format!("llm-tokens:{tenant}:key:{key}")),
        }
    }
}

/// Who makes a call: the user, and the API key it came with (none for an access token).
pub(super) struct Caller<'a> {
    pub user: &'a str,
    pub key: Option<&'a str>,
}

/// The tenant's request limit, as a scalar subquery of tenant `?`.
const TENANT_REQUESTS: &str = concat!(
    "(SELECT ",
    effective_plan_column!("llm_requests_per_minute"),
    " FROM tenants t WHERE t.id = ?)"
);
const TENANT_TOKENS: &str = concat!(
    "(SELECT ",
    effective_plan_column!("llm_tokens_per_minute"),
    " FROM tenants t WHERE t.id = ?)"
);
const USER_REQUESTS: &str =
    "(SELECT user_requests_per_minute FROM llm_tenant_settings WHERE tenant_id = ?)";
const USER_TOKENS: &str =
    "(SELECT user_tokens_per_minute FROM llm_tenant_settings WHERE tenant_id = ?)";
const KEY_TOKENS: &str = concat!(
    "(SELECT ",
    effective_plan_column!("llm_key_tokens_per_minute"),
    " FROM tenants t WHERE t.id = ?)"
);

/// Counts one request into `bucket` when `limit` (a scalar subquery of tenant `?`) names a
/// limit; returns the window's count, or no row when there is no limit.
fn count_request(bucket: &str, limit: &str, tenant: &TenantId, now: i64) -> Statement {
    sql!(
        format!(
            "INSERT INTO rate_limit_windows (bucket, window_start, hits)
             SELECT ?, ?, 1 WHERE {limit} IS NOT NULL
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = hits + 1
             RETURNING hits"
        ),
        bucket,
        window_start(now),
        tenant
    )
}

/// The statements of a call's arrival, for the batch that resolves its model: the limits
/// and the tokens used this minute read, after (when `limiter` counts in the database) the
/// request counted against each limit that is set.
pub(super) fn arrival(
    limiter: &dyn RateLimiter,
    tenant: &TenantId,
    caller: &Caller<'_>,
    now: i64,
) -> Vec<Statement> {
    let buckets = Buckets::of(tenant, caller);
    let minute = window_start(now);
    let mut statements = Vec::with_capacity(3);
    if limiter.counts_in_database() {
        statements.push(count_request(
            &buckets.tenant_requests,
            TENANT_REQUESTS,
            tenant,
            now,
        ));
        statements.push(count_request(
            &buckets.user_requests,
            USER_REQUESTS,
            tenant,
            now,
        ));
    }
    statements.push(sql!(
        format!(
            "SELECT {TENANT_REQUESTS} AS tenant_requests, {USER_REQUESTS} AS user_requests,
                        {TENANT_TOKENS} AS tenant_tokens, {USER_TOKENS} AS user_tokens,
                        CASE WHEN ? IS NULL THEN NULL ELSE {KEY_TOKENS} END AS key_tokens,
                        (SELECT hits FROM rate_limit_windows WHERE bucket = ? AND window_start = ?)
                            AS tenant_tokens_used,
                        (SELECT hits FROM rate_limit_windows WHERE bucket = ? AND window_start = ?)
                            AS user_tokens_used,
                        (SELECT hits FROM rate_limit_windows WHERE bucket = ? AND window_start = ?)
                            AS key_tokens_used"
        ),
        tenant,
        tenant,
        tenant,
        tenant,
        buckets.key_tokens.clone(),
        tenant,
        &buckets.tenant_tokens,
        minute,
        &buckets.user_tokens,
        minute,
        buckets.key_tokens.clone(),
        minute
    ));
    statements
}

/// Which token windows a call admitted by [`admit`] counts its tokens into.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct TokenWindows {
    buckets: Vec<String>,
}

/// Judges a call by the rows of [`arrival`] (counting its request in `limiter` when the
/// batch did not): 429 `rate_limited` (with `Retry-After`, the seconds left in the minute)
/// when a request limit is passed or a token limit reached.
pub(super) fn admit(
    limiter: &dyn RateLimiter,
    rows: &[Rows],
    tenant: &TenantId,
    caller: &Caller<'_>,
    now: i64,
) -> Result<TokenWindows, ApiError> {
    let Some(limits) = rows.last().and_then(Rows::first) else {
        return Ok(TokenWindows::default());
    };
    let limit = |column: &str| -> Result<Option<i64>, ApiError> {
        limits.get::<Option<i64>>(column).map_err(Into::into)
    };
    let buckets = Buckets::of(tenant, caller);
    let counted = |index: usize, bucket: &str, column: &str| -> Result<Option<i64>, ApiError> {
        if limiter.counts_in_database() {
            return rows[index]
                .first()
                .map(|row| row.get::<i64>("hits"))
                .transpose()
                .map_err(Into::into);
        }
        Ok(limit(column)?.and_then(|limit| limiter.hit(&Limit::per_minute(bucket, limit), now)))
    };
    let tenant_requests = counted(0, &buckets.tenant_requests, "tenant_requests")?;
    let user_requests = counted(1, &buckets.user_requests, "user_requests")?;
    let reset_in = window_start(now) + WINDOW_SECONDS - now;
    let refuse = |whose: &str, what: &str, limit: i64| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{whose} LLM {what} per minute ({limit}) are used up; retry in {reset_in} s"),
        )
        .with_details(json!({ "limit": limit, "retry_after_seconds": reset_in }))
        .with_header(http::header::RETRY_AFTER, reset_in)
    };
    for (whose, counted, limit) in [
        ("the tenant's", tenant_requests, limit("tenant_requests")?),
        ("your", user_requests, limit("user_requests")?),
    ] {
        if let (Some(counted), Some(limit)) = (counted, limit)
            && counted > limit
        {
            return Err(refuse(whose, "requests", limit));
        }
    }
    let mut windows = TokenWindows::default();
    for (whose, used, column, bucket) in [
        (
            "the tenant's",
            "tenant_tokens_used",
            "tenant_tokens",
            buckets.tenant_tokens,
        ),
        (
            "your",
            "user_tokens_used",
            "user_tokens",
            buckets.user_tokens,
        ),
        (
            "this API key's",
            "key_tokens_used",
            "key_tokens",
            buckets.key_tokens.unwrap_or_default(),
        ),
    ] {
        // `key_tokens` is NULL for a call without a key.
        if let Some(limit) = limit(column)? {
            if tokens_used(&limits, used)? >= limit {
                return Err(refuse(whose, "tokens", limit));
            }
            windows.buckets.push(bucket);
        }
    }
    Ok(windows)
}

fn tokens_used(row: &crate::db::Row<'_>, column: &str) -> Result<i64, ApiError> {
    Ok(row.get::<Option<i64>>(column)?.unwrap_or(0))
}

impl TokenWindows {
    /// Adds a call's `tokens` to the windows of the minute it ends in, once `recorded`
    /// holds (in the batch that records the call).
    pub(super) fn count(&self, tokens: i64, now: i64, recorded: &Statement) -> Vec<Statement> {
        if tokens <= 0 {
            return Vec::new();
        }
        self.buckets
            .iter()
            .map(|bucket| {
                let mut statement = sql!(
                    format!(
                        "INSERT INTO rate_limit_windows (bucket, window_start, hits)
                         SELECT ?, ?, ? WHERE EXISTS ({})
                         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = hits + excluded.hits",
                        recorded.sql
                    ),
                    bucket,
                    window_start(now),
                    tokens
                );
                statement.params.extend(recorded.params.iter().cloned());
                statement
            })
            .collect()
    }
}
