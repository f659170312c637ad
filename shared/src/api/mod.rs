//! The HTTP primitives every capability is written with: the request as the API reads it
//! ([`ApiRequest`]), the response and its constructors, a streamed reply. This module sits
//! at the bottom of the crate and imports no capability; the router that wires the
//! capabilities to paths is [`crate::router`], at the top.

mod forwarded_for;
mod request;

pub use request::{ApiRequest, ClientAddr, ClientInfo, Page, unscoped_key};

use bytes::Bytes;
use futures_util::{future::LocalBoxFuture, stream::LocalBoxStream};
use http::{StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{ApiError, error::ErrorCause};

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

/// What [`crate::router::serve`] answers: a whole response, or a streamed one.
pub enum Reply {
    Whole(Response),
    Streamed(Streamed),
}

impl ApiError {
    /// The error as its JSON answer: `{"error": {"code", "message", "details"}}`, with its
    /// headers, and its cause (never sent) in the response's extensions for the log.
    pub fn into_response(self) -> Response {
        let parts = self.into_parts();
        let body = serde_json::json!({
            "error": { "code": parts.code, "message": parts.message, "details": parts.details }
        });
        let mut response = json_response(parts.status, &body);
        for (name, value) in parts.headers {
            response.headers_mut().append(name, value);
        }
        if let Some(cause) = parts.cause {
            response.extensions_mut().insert(ErrorCause(cause));
        }
        response
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

/// A redirect (`status` 302 or 303) to `location`, never cached, setting `cookies`.
pub fn redirect(status: StatusCode, location: &str, cookies: &[String]) -> Response {
    let mut response = http::Response::builder()
        .status(status)
        .header(http::header::LOCATION, location)
        .header(http::header::CACHE_CONTROL, "no-store");
    for cookie in cookies {
        response = response.header(http::header::SET_COOKIE, cookie);
    }
    response
        .body(Bytes::new())
        .expect("a redirect's parts are valid")
}

/// Text made safe inside HTML text and attribute values (the console's pages, the API's
/// reference page).
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
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

#[cfg(test)]
mod tests {
    use super::escape_html;

    #[test]
    fn markup_in_text_stays_text() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
