//! Tollgate as one native server: the shared API over hyper, on embedded libSQL, with the
//! cron loop, migrations and the operator's CLI.

pub mod cli;
pub mod db;
pub mod outbound;
pub mod server;
