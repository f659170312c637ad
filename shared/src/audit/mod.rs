//! The tamper-evident audit log: who did what to which thing, from where, and when.
//!
//! Every security- or money-relevant change appends an [`entry`] **in the same batch** as the
//! change, so a change that rolls back leaves no entry and one that commits always has its
//! entry. Entries are append-only (triggers refuse edits) and hash-chained per tenant, so an
//! edit made around the triggers is still detectable:
//!
//! - [`entry`] appends unsealed, with the tenant's next sequence number ([`log`]);
//! - [`seal`] computes the chain in Rust (SQLite has no SHA-256) and writes each hash once,
//!   right after the request that appended and again from cron;
//! - [`verify`] recomputes a tenant's chain from its pruning checkpoint;
//! - [`retention`] prunes entries past the plan's `audit_retention_days`, moving the
//!   checkpoint so the rest still verifies;
//! - [`http`] serves `GET audit-logs` and `GET audit-logs/verify`, for tenants and for
//!   platform admins.
//!
//! Platform admins' changes outside every tenant (the platform's LLM provider keys, the
//! global model catalogue) go to `platform_audit_log` ([`platform_entry`]), listed by
//! `GET admin/audit-logs`: written in the change's batch likewise, but not hash-chained.

mod actions;
pub mod chain;
pub mod http;
mod log;
pub mod retention;
pub mod seal;
pub mod verify;

pub use actions::Action;
pub use log::{Actor, Target, entry, if_changed, platform_entry};
pub use seal::try_seal;
