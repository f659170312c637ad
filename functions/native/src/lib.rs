//! Tollgate as one native server: the shared API over hyper, on embedded libSQL or a
//! remote libSQL over Hrana HTTP, with the cron loop, migrations and the operator's CLI.

pub mod cli;
pub mod database;
pub mod db;
pub mod hrana;
pub mod metrics;
pub mod notifier;
pub mod outbound;
pub mod rate_limiter;
pub mod server;
