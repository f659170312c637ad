//! The vocabulary of quotas: what is counted ([`Metric`]), over which window ([`Period`]),
//! and for whom ([`Scope`]). The names are the ones stored in `usage_counters` and
//! `quota_limits` and spoken by the API, so they live in one place.

use serde::Serialize;

use crate::{ApiError, error::ApiResult};

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Jobs started.
    Jobs,
    /// GPU time consumed, in seconds.
    GpuSeconds,
    /// LLM tokens, prompt and completion together.
    LlmTokens,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Jobs, Metric::GpuSeconds, Metric::LlmTokens];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Jobs => "jobs",
            Metric::GpuSeconds => "gpu_seconds",
            Metric::LlmTokens => "llm_tokens",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|metric| metric.as_str() == text)
    }

    /// The metric named by request field `field`, or 422.
    pub fn parse_field(field: &str, text: &str) -> ApiResult<Self> {
        Self::parse(text).ok_or_else(|| {
            ApiError::invalid_field(field, "must be one of jobs, gpu_seconds, llm_tokens")
        })
    }
}

/// The window a counter covers: a UTC day or a UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Day, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|period| period.as_str() == text)
    }

    /// For messages: "daily", "monthly".
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// The period named by request field `field`, or 422.
    pub fn parse_field(field: &str, text: &str) -> ApiResult<Self> {
        Self::parse(text).ok_or_else(|| ApiError::invalid_field(field, "must be day or month"))
    }
}

/// Whose counter: one user's, or the whole tenant's (stored with `user_id` '').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    User,
    Tenant,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Tenant => "tenant",
        }
    }
}

/// The `user_id` the tenant's own counters and limits are stored under.
pub const TENANT_ROW: &str = "";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
        }
        for period in Period::ALL {
            assert_eq!(Period::parse(period.as_str()), Some(period));
        }
    }

    #[test]
    fn unknown_names_answer_422_naming_the_field() {
        let error = Metric::parse_field("metric", "Jobs").unwrap_err();
        assert_eq!(error.status, http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.details["field"], "metric");
        assert!(Period::parse_field("period", "week").is_err());
    }
}
