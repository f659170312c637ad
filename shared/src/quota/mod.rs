//! Counters and limits: request rate limits, daily and monthly usage quotas, and the plan
//! limits every piece of work is checked against before it starts.
//!
//! **Quotas.** Jobs, GPU seconds and LLM tokens are counted per user and per tenant, per UTC
//! day and UTC calendar month ([`periods`]). Each counter's limit is, first one set wins:
//! for a user, the user's override, the tenant's override, the plan's column; for the
//! tenant, the tenant's override, the plan's column (NULL: unlimited; see [`limits`]). An
//! event increments all four counters in one atomic batch whose upserts carry the limit in
//! force, so the `quota_exceeded` CHECK of `usage_counters` refuses the increment that would
//! pass any of them — exact under any concurrency, on every runtime ([`counters`]). The
//! refusal answers 429 `quota_exceeded` naming the counter, its limit, its value and when
//! it resets, with `Retry-After`.
//!
//! **Plan limits** ([`plan_limits`]): resolution, pixels, batch size, VRAM and models of a
//! piece of work against the tenant's effective plan, before anything is queued.
//!
//! **Reports** ([`report`]): consumption, remaining, share used, daily history, daily
//! average and end-of-month projection ([`projection`]) for a user or the tenant, and the
//! LLM calls' tokens and credits by model ([`by_model`]).

pub mod by_model;
pub mod counters;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod periods;
pub mod plan_limits;
pub mod projection;
pub mod report;
