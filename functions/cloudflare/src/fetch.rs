//! HTTP out of the worker, through the Workers `Fetch` API: the Hrana transport of the
//! database port, and the `Outbound` port.
//!
//! Why our own transport rather than a ready-made libSQL client: `libsql-client`'s workers
//! backend pins `worker` 0.0.18, which current rustc refuses to build, and `libsql`'s
//! `cloudflare` feature pins `worker` 0.6, which cannot share a binary with the `worker`
//! 0.8 that worker-build 0.8 requires. The Hrana protocol itself is `tollgate::db::hrana`;
//! this file only moves its bytes.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{
    StreamExt,
    future::{Either, select},
};
use tollgate::{
    db::hrana::Transport,
    outbound::{
        ChunkStream, DEFAULT_TIMEOUT, Outbound, OutboundError, RESPONSE_BODY_LIMIT, STREAM_LIMIT,
        Timeout, refuse_forbidden_literal,
    },
};
use worker::{
    AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    wasm_bindgen::JsValue,
};

/// How long one database round trip may take.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest database reply read; a larger one is an error, not a truncated reply.
const DATABASE_REPLY_LIMIT: usize = 64 * 1024 * 1024;

/// Hrana pipelines over `Fetch`.
pub struct FetchTransport;

#[async_trait(?Send)]
impl Transport for FetchTransport {
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let headers = Headers::new();
        let _ = headers.set("content-type", "application/json");
        if let Some(token) = token {
            headers
                .set("authorization", &format!("Bearer {token}"))
                .map_err(|error| format!("the database token is not a header value: {error}"))?;
        }
        let request =
            build_request(url, Method::Post, headers, body).map_err(|error| error.to_string())?;
        let reply = exchange(request, DATABASE_TIMEOUT, DATABASE_REPLY_LIMIT + 1)
            .await
            .map_err(|error| error.to_string())?;
        if reply.body.len() > DATABASE_REPLY_LIMIT {
            return Err(format!(
                "the database reply exceeds {DATABASE_REPLY_LIMIT} bytes"
            ));
        }
        Ok((reply.status, reply.body))
    }

    async fn pause(&self, duration: Duration) {
        Delay::from(duration).await;
    }
}

/// The `Outbound` port over `Fetch`, keeping its promises: redirects come back as they are
/// (`redirect: "manual"`), the whole exchange is abandoned (and the fetch aborted) after the
/// timeout, and at most [`RESPONSE_BODY_LIMIT`] bytes of a body are read.
///
/// Cloudflare resolves and connects, out of our sight, and its fetch cannot reach private
/// networks anyway; what can be checked here is an IP-literal URL, refused when forbidden
/// unless the operator allowed private targets (as the native adapter does).
pub struct FetchOutbound {
    pub allow_private: bool,
}

impl FetchOutbound {
    /// The `Fetch` request for `request` and its timeout, or why it may not go.
    fn prepare(&self, request: http::Request<Bytes>) -> Result<(Request, Duration), OutboundError> {
        let timeout = request
            .extensions()
            .get::<Timeout>()
            .map_or(DEFAULT_TIMEOUT, |timeout| timeout.0);
        let (parts, body) = request.into_parts();
        let uri = &parts.uri;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(OutboundError::InvalidRequest(format!(
                    "{uri} is not an http(s) URL"
                )));
            }
        }
        if !self.allow_private {
            refuse_forbidden_literal(uri)?;
        }
        let headers = Headers::new();
        for (name, value) in &parts.headers {
            let value = value.to_str().map_err(|_| {
                OutboundError::InvalidRequest(format!("the {name} header is not text"))
            })?;
            headers
                .append(name.as_str(), value)
                .map_err(|error| OutboundError::InvalidRequest(error.to_string()))?;
        }
        let method = Method::from(parts.method.as_str().to_owned());
        let request = build_request(&uri.to_string(), method, headers, body)
            .map_err(|error| OutboundError::InvalidRequest(error.to_string()))?;
        Ok((request, timeout))
    }
}

/// An `http` response head with `headers`.
fn head(status: u16, headers: &Headers) -> http::response::Builder {
    let mut response = http::Response::builder().status(status);
    for (name, value) in headers.entries() {
        response = response.header(name, value);
    }
    response
}

#[async_trait(?Send)]
impl Outbound for FetchOutbound {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        let (request, timeout) = self.prepare(request)?;
        let reply = exchange(request, timeout, RESPONSE_BODY_LIMIT).await?;
        head(reply.status, &reply.headers)
            .body(reply.body)
            .map_err(|error| OutboundError::Other(error.to_string()))
    }

    /// The body as it arrives: each wait (the head, then every chunk) bounded by the
    /// request's timeout, the whole by [`STREAM_LIMIT`]; the fetch is aborted when the
    /// stream ends, fails or is dropped.
    async fn open(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<ChunkStream>, OutboundError> {
        let (request, wait) = self.prepare(request)?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Aborting(Some(controller));
        let request = Fetch::Request(request);
        let sent = request.send_with_signal(&signal);
        let mut response = match select(Box::pin(sent), Delay::from(wait)).await {
            Either::Left((response, _)) => {
                response.map_err(|error| OutboundError::Connect(error.to_string()))?
            }
            Either::Right(_) => return Err(OutboundError::Timeout),
        };
        let out = head(response.status_code(), response.headers());
        let deadline = Date::now().as_millis() + STREAM_LIMIT.as_millis() as u64;
        let body = response
            .stream()
            .map_err(|error| OutboundError::Other(error.to_string()))?;
        let chunks: ChunkStream = Box::pin(futures_util::stream::unfold(
            Some((body, fetch)),
            move |state| async move {
                let (mut body, fetch) = state?;
                let left = deadline.saturating_sub(Date::now().as_millis());
                if left == 0 {
                    return Some((Err(OutboundError::Timeout), None));
                }
                let bound = Delay::from(wait.min(Duration::from_millis(left)));
                match select(body.next(), bound).await {
                    Either::Left((Some(Ok(chunk)), _)) => {
                        Some((Ok(Bytes::from(chunk)), Some((body, fetch))))
                    }
                    Either::Left((Some(Err(error)), _)) => {
                        Some((Err(OutboundError::Other(error.to_string())), None))
                    }
                    Either::Left((None, _)) => None,
                    Either::Right(_) => Some((Err(OutboundError::Timeout), None)),
                }
            },
        ));
        out.body(chunks)
            .map_err(|error| OutboundError::Other(error.to_string()))
    }
}

/// A fetch's controller, aborting it when dropped: nothing more is wanted from it then.
struct Aborting(Option<AbortController>);

impl Drop for Aborting {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

fn build_request(
    url: &str,
    method: Method,
    headers: Headers,
    body: Bytes,
) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if !body.is_empty() {
        let array = worker::js_sys::Uint8Array::from(body.as_ref());
        init.with_body(Some(JsValue::from(array)));
    }
    Request::new_with_init(url, &init)
}

struct Reply {
    status: u16,
    headers: Headers,
    body: Bytes,
}

/// Sends `request` and reads at most `limit` bytes of the reply (the rest is left unread
/// and cancelled), all within `timeout`; past it the fetch is aborted.
async fn exchange(
    request: Request,
    timeout: Duration,
    limit: usize,
) -> Result<Reply, OutboundError> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let work = async {
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|error| OutboundError::Connect(error.to_string()))?;
        let status = response.status_code();
        let headers = response.headers().clone();
        let mut body = BytesMut::new();
        if let Ok(mut stream) = response.stream() {
            while body.len() < limit {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        let room = limit - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    Some(Err(error)) => return Err(OutboundError::Other(error.to_string())),
                    None => break,
                }
            }
            // Dropping the stream releases its reader; the fetch is aborted below either way,
            // so whatever was not read is never downloaded.
        }
        Ok(Reply {
            status,
            headers,
            body: body.freeze(),
        })
    };
    let outcome = select(Box::pin(work), Delay::from(timeout)).await;
    // Done or not, nothing more is wanted from this fetch.
    controller.abort();
    match outcome {
        Either::Left((reply, _)) => reply,
        Either::Right(_) => Err(OutboundError::Timeout),
    }
}
