//! The HTTP API as one function: `handle(Request<Bytes>, &Env) -> Response<Bytes>`.

mod forwarded_for;
pub mod openapi;
mod request;
mod router;

pub use request::{ApiRequest, ClientAddr, ClientInfo, Page, unscoped_key};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{ApiError, Env};

/// Every API response.
pub type Response = http::Response<Bytes>;

/// Serves one API request. Never fails: every error becomes its JSON response.
pub async fn handle(request: Request<Bytes>, env: &Env) -> Response {
    if request.body().len() > env.config.max_body_bytes {
        return payload_too_large(env.config.max_body_bytes).into_response();
    }
    let request = ApiRequest::new(request, &env.config);
    match router::route(env, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The answer to a body over the configured limit; adapters that stream bodies use it too,
/// so they can stop reading at the limit.
pub fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds {limit} bytes"),
    )
    .with_details(serde_json::json!({ "limit_bytes": limit }))
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).expect("API bodies serialize");
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Bytes::from(body))
        .expect("static response parts are valid")
}

pub fn ok(body: &impl Serialize) -> Response {
    json_response(StatusCode::OK, body)
}

pub fn created(body: &impl Serialize) -> Response {
    json_response(StatusCode::CREATED, body)
}

pub fn no_content() -> Response {
    http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Bytes::new())
        .expect("static response parts are valid")
}

/// For optional fields where `null` means something: absent is `None`, `null` is
/// `Some(None)`. Use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
