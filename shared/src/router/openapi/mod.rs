//! The API described: the OpenAPI 3.1 document (`GET /api/v1/openapi.json`) and its rendered
//! reference page (`GET /api/v1/docs`).
//!
//! Both are generated natively from the code (the `openapi` feature: request-body schemas
//! from the handlers' serde types, through utoipa) and committed beside the crate; the test
//! suite fails when they differ from what the code generates. Every build serves the
//! committed files as they are, so the edge builds carry neither the generator nor utoipa,
//! only two static texts that compress well.

#[cfg(feature = "openapi")]
mod reference;
#[cfg(feature = "openapi")]
mod spec;

#[cfg(feature = "openapi")]
pub use reference::render;
#[cfg(feature = "openapi")]
pub use spec::document;

use bytes::Bytes;
use http::{StatusCode, header};

use crate::api::Response;

/// The committed document, as served.
pub const DOCUMENT: &str = include_str!("../../../openapi.json");
/// The committed reference page, as served.
pub const REFERENCE: &str = include_str!("../../../openapi.html");
/// Where the generator writes the document.
pub const DOCUMENT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
/// Where the generator writes the reference page.
pub const REFERENCE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.html");

pub(super) fn document_response() -> Response {
    static_response("application/json", DOCUMENT)
}

/// The page needs nothing but itself: no script runs and nothing else loads.
pub(super) fn reference_response() -> Response {
    let mut response = static_response("text/html; charset=utf-8", REFERENCE);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

fn static_response(content_type: &'static str, body: &'static str) -> Response {
    http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Bytes::from_static(body.as_bytes()))
        .expect("static response parts are valid")
}
