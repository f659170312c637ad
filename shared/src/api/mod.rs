//! The HTTP API as one function: `handle(Request<Bytes>, &Env) -> Response<Bytes>`, and
//! [`serve`] for runtimes that stream answers as they are written.

mod forwarded_for;
pub mod openapi;
mod request;
mod router;

pub use request::{ApiRequest, ClientAddr, ClientInfo, Page, unscoped_key};

use std::rc::Rc;

use bytes::Bytes;
use futures_util::{future::LocalBoxFuture, stream::LocalBoxStream};
use http::{Request, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{ApiError, Env};

/// Every API response.
pub type Response = http::Response<Bytes>;

/// A response whose body is written while it is sent (server-sent events).
pub struct Streamed {
    /// The head, and the body's chunks as they are written.
    pub response: http::Response<LocalBoxStream<'static, Bytes>>,
    /// The work that writes the body and finishes the call once its source is done,
    /// whether or not the client still reads: the runtime runs it beside the response
    /// until it completes.
    pub driver: LocalBoxFuture<'static, ()>,
}

/// What [`serve`] answers: a whole response, or a streamed one.
pub enum Reply {
    Whole(Response),
    Streamed(Streamed),
}

/// Serves one API request, answering whole: a request for a stream is refused with 400 (see
/// [`serve`] for runtimes that can stream). Never fails: every error becomes its JSON
/// response.
pub async fn handle(request: Request<Bytes>, env: &Env) -> Response {
    if let Some(refused) = oversized(&request, env) {
        return refused;
    }
    let request = ApiRequest::new(request, &env.config);
    match router::route(env, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// As [`handle`], on a runtime that runs a [`Streamed`] reply's driver: a chat completion
/// with `stream: true` answers its events as the provider writes them.
pub async fn serve(request: Request<Bytes>, env: Rc<Env>) -> Reply {
    if let Some(refused) = oversized(&request, &env) {
        return Reply::Whole(refused);
    }
    let request = ApiRequest::new(request, &env.config);
    match request.path.strip_prefix("/v1/") {
        Some(path) => crate::llm::serve(env.clone(), &request, path).await,
        None => Reply::Whole(match router::route(&env, &request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }),
    }
}

/// The answer to a body over the limit, if it is.
fn oversized(request: &Request<Bytes>, env: &Env) -> Option<Response> {
    (request.body().len() > env.config.max_body_bytes).then(|| {
        refusal(
            request.uri().path(),
            payload_too_large(env.config.max_body_bytes),
        )
    })
}

/// An error answered before the request reached its route (a body too large, unreadable
/// or too slow to come), in the shape of the routes `path` belongs to: OpenAI's under
/// `/v1/`, so the SDKs raise their own classes, Tollgate's everywhere else.
pub fn refusal(path: &str, error: ApiError) -> Response {
    match path.starts_with("/v1/") {
        true => crate::llm::errors::response(error),
        false => error.into_response(),
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
