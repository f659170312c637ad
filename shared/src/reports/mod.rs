//! Usage reports: once a UTC day or month has ended, cron stores one report per tenant of
//! what it consumed (jobs, GPU seconds, LLM tokens, in all and per user) and of its pool's
//! credits, announces it with a `report.daily` / `report.monthly` outbox event, and mails
//! monthly reports to the tenant's owners. Owners and admins read them with `GET reports`.
//!
//! - `period`: which day or month a report covers;
//! - `content`: what a report says, assembled from the period's rows;
//! - `build`: the cron task (once per tenant, kind and period, safe to run twice at once);
//! - `http`: the routes.
//!
//! Every statement that touches `usage_reports` is in this module.

pub mod build;
pub mod content;
pub mod http;
pub mod period;

pub use build::ReportsBuilt;
pub use period::{ReportKind, ReportPeriod};
