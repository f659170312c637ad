//! What a report says, assembled from the rows the builder reads: the tenant's usage
//! counters (user `''`) and each user's, the credits that moved during the period, and the
//! LLM calls by model.
//!
//! Kept apart from the SQL so the shape of a report (what the API returns, what the event
//! and the monthly mail carry) is decided, and tested, in one place.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::quota::{
    by_model::ModelUsage,
    metrics::{Metric, TENANT_ROW},
};

/// Consumption per metric over the period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub jobs: i64,
    pub gpu_seconds: i64,
    pub llm_tokens: i64,
}

impl Usage {
    fn set(&mut self, metric: Metric, value: i64) {
        match metric {
            Metric::Jobs => self.jobs = value,
            Metric::GpuSeconds => self.gpu_seconds = value,
            Metric::LlmTokens => self.llm_tokens = value,
        }
    }
}

/// The tenant pool's credits over the period. `used` is net of refunds; `added` counts
/// grants, purchases and positive adjustments; `removed` expiries, claw-backs and negative
/// adjustments; `balance_at_end` is what was available when the period ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Credits {
    pub added: i64,
    pub removed: i64,
    pub used: i64,
    pub balance_at_end: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct UserLine {
    email: Option<String>,
    usage: Usage,
    credits_used: i64,
}

/// One tenant's period, filled row by row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Activity {
    pub usage: Usage,
    pub credits: Credits,
    /// The LLM calls of the period, by model name.
    pub models: Vec<ModelUsage>,
    users: BTreeMap<String, UserLine>,
}

impl Activity {
    /// A counter row of the period: the tenant's own (user `''`) or a user's.
    pub fn counter(&mut self, user_id: &str, email: Option<String>, metric: Metric, value: i64) {
        if user_id == TENANT_ROW {
            self.usage.set(metric, value);
        } else {
            let line = self.user(user_id, email);
            line.usage.set(metric, value);
        }
    }

    /// Credits a user's account spent during the period.
    pub fn user_credits(&mut self, user_id: &str, email: Option<String>, used: i64) {
        self.user(user_id, email).credits_used = used;
    }

    fn user(&mut self, user_id: &str, email: Option<String>) -> &mut UserLine {
        let line = self.users.entry(user_id.to_owned()).or_default();
        if line.email.is_none() {
            line.email = email;
        }
        line
    }

    /// The stored report: totals, credits, the LLM calls by model, and one line per user who
    /// did anything.
    pub fn to_json(&self) -> Json {
        let users: Vec<Json> = self
            .users
            .iter()
            .map(|(id, line)| {
                json!({
                    "user_id": id,
                    "email": line.email,
                    "usage": line.usage,
                    "credits_used": line.credits_used,
                })
            })
            .collect();
        json!({
            "usage": self.usage,
            "credits": self.credits,
            "llm_by_model": self.models,
            "users": users,
        })
    }
}

/// The part of a stored report that lists and events carry: the totals without the
/// per-user lines, which can be long.
pub fn summary(content: &Json) -> Json {
    json!({ "usage": content["usage"], "credits": content["credits"] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rows_make_the_totals_and_user_rows_the_lines() {
        let mut activity = Activity::default();
        activity.counter("", None, Metric::Jobs, 3);
        activity.counter("", None, Metric::LlmTokens, 700);
        activity.counter("u2", Some("b@acme.test".into()), Metric::Jobs, 1);
        activity.counter("u1", Some("a@acme.test".into()), Metric::Jobs, 2);
        activity.counter("u1", None, Metric::LlmTokens, 700);
        activity.user_credits("u1", None, 40);
        activity.credits = Credits {
            added: 100,
            removed: 0,
            used: 40,
            balance_at_end: 60,
        };
        activity.models.push(ModelUsage {
            model: "chat".into(),
            calls: 2,
            prompt_tokens: 600,
            completion_tokens: 100,
            cached_tokens: 0,
            cost: 40,
        });
        let content = activity.to_json();
        assert_eq!(
            content,
            json!({
                "usage": { "jobs": 3, "gpu_seconds": 0, "llm_tokens": 700 },
                "credits": { "added": 100, "removed": 0, "used": 40, "balance_at_end": 60 },
                "llm_by_model": [{
                    "model": "chat", "calls": 2, "prompt_tokens": 600, "completion_tokens": 100,
                    "cached_tokens": 0, "cost": 40,
                }],
                "users": [
                    {
                        "user_id": "u1",
                        "email": "a@acme.test",
                        "usage": { "jobs": 2, "gpu_seconds": 0, "llm_tokens": 700 },
                        "credits_used": 40,
                    },
                    {
                        "user_id": "u2",
                        "email": "b@acme.test",
                        "usage": { "jobs": 1, "gpu_seconds": 0, "llm_tokens": 0 },
                        "credits_used": 0,
                    },
                ],
            })
        );
        assert_eq!(
            summary(&content),
            json!({
                "usage": { "jobs": 3, "gpu_seconds": 0, "llm_tokens": 700 },
                "credits": { "added": 100, "removed": 0, "used": 40, "balance_at_end": 60 },
            })
        );
    }

    #[test]
    fn a_quiet_period_reports_zeros_and_no_users() {
        assert_eq!(
            Activity::default().to_json(),
            json!({
                "usage": { "jobs": 0, "gpu_seconds": 0, "llm_tokens": 0 },
                "credits": { "added": 0, "removed": 0, "used": 0, "balance_at_end": 0 },
                "llm_by_model": [],
                "users": [],
            })
        );
    }
}
