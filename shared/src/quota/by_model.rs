//! LLM usage by model: calls, tokens and credits per catalogue model over a time range,
//! summed from the gateway's interaction records (`llm_interactions`), for the usage report
//! (`GET usage`) and the stored daily and monthly reports.
//!
//! The counters ([`super::counters`]) say how many tokens a user spent; these figures say
//! on which models, and what they cost. A failed call counts as a call with its tokens and
//! cost (none, or what its provider reported).

use serde::Serialize;

use crate::db::{DbError, Row, Rows, Statement};

/// The sums one group of interactions adds up to.
const SUMS: &str = "COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
     COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
     COALESCE(SUM(cached_tokens), 0) AS cached_tokens, COALESCE(SUM(cost), 0) AS cost";

/// One model's calls over a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelUsage {
    /// The catalogue's name of the model.
    pub model: String,
    pub calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt tokens served from the provider's cache (counted in `prompt_tokens` too).
    pub cached_tokens: i64,
    /// Credits charged.
    pub cost: i64,
}

impl ModelUsage {
    pub fn from_row(row: &Row<'_>) -> Result<Self, DbError> {
        Ok(ModelUsage {
            model: row.get("model")?,
            calls: row.get("calls")?,
            prompt_tokens: row.get("prompt_tokens")?,
            completion_tokens: row.get("completion_tokens")?,
            cached_tokens: row.get("cached_tokens")?,
            cost: row.get("cost")?,
        })
    }

    /// Every row of [`of_subject`]'s answer, by model name.
    pub fn from_rows(rows: &Rows) -> Result<Vec<Self>, DbError> {
        rows.iter().map(|row| Self::from_row(&row)).collect()
    }
}

/// The tenant's (or, with `user_id`, one user's) usage by model from `from` until before
/// `to`, by model name.
pub fn of_subject(tenant_id: &str, user_id: Option<&str>, from: i64, to: i64) -> Statement {
    Statement::new(format!(
        "SELECT model, {SUMS} FROM llm_interactions
         WHERE tenant_id = ? AND (? IS NULL OR user_id = ?) AND created_at >= ? AND created_at < ?
         GROUP BY model ORDER BY model"
    ))
    .bind(tenant_id)
    .bind(user_id)
    .bind(user_id)
    .bind(from)
    .bind(to)
}

/// Each of `tenant_ids`' usage by model from `from` until before `to`, with a `tenant_id`
/// column; `{tenants}` in the SQL stands for the tenants' placeholders, which the caller
/// binds first.
pub fn of_tenants_sql() -> String {
    format!(
        "SELECT tenant_id, model, {SUMS} FROM llm_interactions
         WHERE tenant_id IN ({{tenants}}) AND created_at >= ? AND created_at < ?
         GROUP BY tenant_id, model ORDER BY tenant_id, model"
    )
}
