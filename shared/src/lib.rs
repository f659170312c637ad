//! Tollgate's domain, runtime-agnostic: it compiles for native targets, for
//! `wasm32-unknown-unknown` (Cloudflare Workers) and for `wasm32-wasip2` (Spin), and talks to
//! the world only through the ports bundled in [`Env`].
//!
//! The HTTP API is one function, [`router::serve`]: the adapters in `functions/*` translate
//! their runtime's request into an `http::Request<Bytes>`, call it, and translate the reply
//! back, whole or (a streamed chat completion) as its chunks come with its driver run beside.
//! [`handle`] answers everything whole, for callers that cannot stream.

pub mod api;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod clock;
pub mod config;
pub mod console;
pub mod credits;
pub mod cron;
pub mod db;
pub mod env;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod llm;
pub mod mail;
pub mod notify;
pub mod outbound;
pub mod quota;
pub mod rate_limit;
pub mod reports;
pub mod router;
pub mod secrets;
pub mod tenancy;
pub mod tokens;
pub mod webhooks;

pub use env::Env;
pub use error::ApiError;
pub use router::handle;
