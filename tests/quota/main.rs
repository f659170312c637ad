//! Quotas and plan limits: metering events, usage reports, per-tenant and per-user limits,
//! and the plan limits checked before any work.

mod cron;
mod plan_limits;
mod quota_limits;
mod support;
mod usage;
mod usage_events;
