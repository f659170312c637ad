//! Tollgate on Cloudflare Workers.
//!
//! The workers-rs adapter (`fetch` into `tollgate::handle`, `scheduled` into
//! `tollgate::cron::run`, libSQL over Hrana through the Workers `Fetch` API) lands with the
//! edge issue; until then this crate only proves that the shared domain links for
//! `wasm32-unknown-unknown`.

pub use tollgate::handle;
