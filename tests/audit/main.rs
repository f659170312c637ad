//! The audit log: every audited action leaves one entry with its actor and origin (and a
//! failed one none), the list's filters, pages and access rules, the hash chain and its
//! verification against tampering, and cron's sealing and retention.

mod actions;
mod chain;
mod listing;
mod retention;
mod support;
