//! Tollgate on Cloudflare Workers: the workers-rs adapter.
//!
//! Thin by design: `fetch` turns the worker request into an `http::Request<Bytes>`, calls
//! [`tollgate::router::serve`] and turns the reply back (a streamed one as a `ReadableStream`,
//! its driver kept alive with `waitUntil`); `scheduled` (the cron triggers in
//! `wrangler.toml`) calls [`tollgate::cron::run`]. Both build the ports each time from the
//! worker's vars and secrets: libSQL over Hrana HTTP through the Workers `Fetch` API
//! ([`fetch::FetchTransport`]), the system clock, and outbound HTTP through `Fetch`
//! ([`fetch::FetchOutbound`]). No rule of the product lives here.
//!
//! Everything is for `wasm32`; natively the crate is empty, so the workspace still builds.

#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod worker_entry;
