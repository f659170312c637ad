//! Tollgate as a Spin / WASI HTTP component.
//!
//! The spin-sdk adapter (an HTTP component calling `tollgate::handle`, libSQL over Hrana
//! through outbound HTTP) lands with the edge issue; until then this crate only proves that
//! the shared domain links for `wasm32-wasip2`.

pub use tollgate::handle;
