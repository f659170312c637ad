//! HTTP out of the component, over `wasi:http/outgoing-handler`: the Hrana transport that
//! reaches libSQL, and the `Outbound` port (tenant webhooks, Stripe, the email provider).
//!
//! **Why spin-sdk 5.2 and not 7.** spin-sdk 5.2 speaks WASI 0.2 HTTP, where the request
//! body is written and finished by the guest before the response is awaited. spin-sdk 7's
//! outbound HTTP (WASI 0.3 style) hands the request's transmit future to the caller; when
//! it is dropped the response body never arrives, and under wasmtime 49 that is what
//! happens (wasmtime issue 14227): responses came back with empty bodies. 5.2 works
//! reliably under both `spin up` and `wasmtime serve`, so it stays until that is fixed.
//!
//! **Why not `libsql-client` or `libsql`.** `libsql-client`'s only wasm backend is for
//! Workers and pins `worker` 0.0.18, which current rustc refuses to build; `libsql`'s
//! `cloudflare` feature pins `worker` 0.6; and neither has a WASI HTTP backend at all. The
//! Hrana protocol is one JSON POST per pipeline, so `tollgate::db::hrana::HranaDb` speaks it
//! over the small [`Transport`] implemented here.
//!
//! The port's promises are kept here rather than left to the host: no redirects (wasi:http
//! never follows them; a 3xx comes back as it is), a timeout for the whole exchange (a
//! deadline on the monotonic clock, raced against every wait, plus the same bound handed to
//! the host as connect / first-byte / between-bytes timeouts), and a cap on the response
//! body (reading stops at the limit; the rest is dropped unread).
//!
//! The host resolves names and connects, out of the component's sight, so the private
//! address guard can only judge what the URL itself says: IP literals and `localhost`.
//! Names are confined by the runtime instead (Spin's `allowed_outbound_hosts`).

use std::{future::Future, pin::pin, task::Poll, time::Duration};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use spin_executor::{CancelOnDropToken, push_waker_and_get_token};
use spin_sdk::{
    http::{ErrorCode, Fields, IncomingResponse, Method, OutgoingRequest, Scheme},
    wit::wasi::{
        clocks0_2_0::monotonic_clock,
        http0_2_0::{outgoing_handler, types::RequestOptions},
    },
};
use tollgate::{
    db::hrana::Transport,
    outbound::{
        ChunkStream, DEFAULT_TIMEOUT, Outbound, OutboundError, RESPONSE_BODY_LIMIT, STREAM_LIMIT,
        Timeout, refuse_forbidden_literal,
    },
};

/// How long one database round trip may take.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a database reply read; a larger one is an error, not a truncation (a cut
/// JSON document would only fail to parse further on).
const DATABASE_REPLY_LIMIT: usize = 32 * 1024 * 1024;

/// Headers wasi:http refuses on an outgoing request (hop-by-hop, or derived from the URL).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "te",
];

/// The Hrana transport: one POST per pipeline.
pub struct SpinTransport;

#[async_trait(?Send)]
impl Transport for SpinTransport {
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let mut request = http::Request::post(url).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(body)
            .map_err(|error| format!("building the request: {error}"))?;
        let reply = exchange(request, DATABASE_TIMEOUT, DATABASE_REPLY_LIMIT + 1)
            .await
            .map_err(|error| error.to_string())?;
        if reply.body().len() > DATABASE_REPLY_LIMIT {
            return Err(format!("the reply exceeds {DATABASE_REPLY_LIMIT} bytes"));
        }
        Ok((reply.status().as_u16(), reply.into_body()))
    }

    async fn pause(&self, duration: Duration) {
        let deadline = monotonic_clock::now().saturating_add(nanos(duration));
        // Nothing finishes but the deadline, which is the point.
        let _ = within(deadline, std::future::pending::<()>()).await;
    }
}

/// The `Outbound` port over the host's HTTP client.
pub struct SpinOutbound {
    /// Let requests name private, loopback and link-local addresses
    /// (`TOLLGATE_WEBHOOKS_ALLOW_PRIVATE`).
    pub allow_private: bool,
}

#[async_trait(?Send)]
impl Outbound for SpinOutbound {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        if !self.allow_private {
            refuse_forbidden_literal(request.uri())?;
        }
        let timeout = request
            .extensions()
            .get::<Timeout>()
            .map_or(DEFAULT_TIMEOUT, |timeout| timeout.0);
        exchange(request, timeout, RESPONSE_BODY_LIMIT).await
    }

    /// The body as it arrives: each wait (the head, then every chunk) bounded by the
    /// request's timeout, the whole by [`STREAM_LIMIT`]. The incoming response lives as long
    /// as the stream, since dropping it cancels the body.
    async fn open(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<ChunkStream>, OutboundError> {
        if !self.allow_private {
            refuse_forbidden_literal(request.uri())?;
        }
        let wait = request
            .extensions()
            .get::<Timeout>()
            .map_or(DEFAULT_TIMEOUT, |timeout| timeout.0);
        let response = respond(request, wait).await?;
        let mut out = http::Response::builder().status(response.status());
        for (name, value) in response.headers().entries() {
            out = out.header(name, value);
        }
        let deadline = monotonic_clock::now().saturating_add(nanos(STREAM_LIMIT));
        let body = Box::pin(response.take_body_stream());
        let chunks: ChunkStream = Box::pin(futures::stream::unfold(
            Some((body, response)),
            move |state| async move {
                let (mut body, response) = state?;
                let next = monotonic_clock::now()
                    .saturating_add(nanos(wait))
                    .min(deadline);
                match within(next, body.next()).await {
                    Ok(Some(Ok(chunk))) => Some((Ok(Bytes::from(chunk)), Some((body, response)))),
                    Ok(Some(Err(error))) => Some((
                        Err(OutboundError::Other(format!(
                            "reading the body: {}",
                            error.to_debug_string()
                        ))),
                        None,
                    )),
                    Ok(None) => None,
                    Err(timeout) => Some((Err(timeout), None)),
                }
            },
        ));
        out.body(chunks)
            .map_err(|error| OutboundError::Other(format!("an unusable response: {error}")))
    }
}

/// Sends `request` and reads at most `limit` bytes of the response body, all within
/// `timeout`.
async fn exchange(
    request: http::Request<Bytes>,
    timeout: Duration,
    limit: usize,
) -> Result<http::Response<Bytes>, OutboundError> {
    let deadline = monotonic_clock::now().saturating_add(nanos(timeout));
    let response = respond(request, timeout).await?;
    let body = within(deadline, read_body(&response, limit))
        .await?
        .map_err(|error| OutboundError::Other(format!("reading the body: {error}")))?;
    let mut out = http::Response::builder().status(response.status());
    for (name, value) in response.headers().entries() {
        out = out.header(name, value);
    }
    // `response` lives until here: dropping an incoming response early cancels its body.
    drop(response);
    out.body(body)
        .map_err(|error| OutboundError::Other(format!("an unusable response: {error}")))
}

/// Sends `request` and waits for the response head, all within `timeout`.
async fn respond(
    request: http::Request<Bytes>,
    timeout: Duration,
) -> Result<IncomingResponse, OutboundError> {
    let deadline = monotonic_clock::now().saturating_add(nanos(timeout));
    let (parts, body) = request.into_parts();
    let outgoing = outgoing_request(&parts, body.len())?;
    let options = RequestOptions::new();
    // Hosts may not support every option; the deadline below holds regardless.
    let _ = options.set_connect_timeout(Some(nanos(timeout)));
    let _ = options.set_first_byte_timeout(Some(nanos(timeout)));
    let _ = options.set_between_bytes_timeout(Some(nanos(timeout)));
    // The body is taken before the request is handed over, written after (as spin-sdk's
    // own `send` does), and finished when the sink drops.
    let sink = (!body.is_empty()).then(|| outgoing.take_body());
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(classify)?;
    if let Some(mut sink) = sink {
        // A failed write is not the story: the connection's fate (refused, reset) comes with
        // the response below, and a server may answer before it has read the whole body.
        let _ = within(deadline, sink.send(body.to_vec())).await?;
    }
    // Dropping the response future (on a timeout) cancels the request.
    within(deadline, incoming_response(&pending))
        .await?
        .map_err(classify)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The wasi:http request for `parts`: method, URL, and the headers it accepts.
fn outgoing_request(
    parts: &http::request::Parts,
    body_length: usize,
) -> Result<OutgoingRequest, OutboundError> {
    let uri = &parts.uri;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => {
            return Err(OutboundError::InvalidRequest(
                "only http and https are supported".into(),
            ));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| OutboundError::InvalidRequest("the URL has no host".into()))?;
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !FORBIDDEN_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    // The body is whole: a length spares the receiver a chunked upload (some, like
    // Python's http.server, read nothing without one).
    if body_length > 0 && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.push((
            "content-length".into(),
            body_length.to_string().into_bytes(),
        ));
    }
    let fields = Fields::from_list(&headers)
        .map_err(|error| OutboundError::InvalidRequest(format!("a header: {error:?}")))?;
    let request = OutgoingRequest::new(fields);
    let invalid = |what: &str| OutboundError::InvalidRequest(format!("an unusable {what}"));
    request
        .set_method(&method(&parts.method))
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority.as_str()))
        .map_err(|()| invalid("host"))?;
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    Ok(request)
}

fn method(method: &http::Method) -> Method {
    match method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

/// The response head, once the host has it.
async fn incoming_response(
    pending: &spin_sdk::wit::wasi::http0_2_0::types::FutureIncomingResponse,
) -> Result<IncomingResponse, ErrorCode> {
    let mut token: Option<CancelOnDropToken> = None;
    std::future::poll_fn(|context| match pending.get() {
        Some(Ok(result)) => Poll::Ready(result),
        Some(Err(())) => Poll::Ready(Err(ErrorCode::InternalError(Some(
            "the response was already taken".into(),
        )))),
        None => {
            token =
                Some(push_waker_and_get_token(pending.subscribe(), context.waker().clone()).into());
            Poll::Pending
        }
    })
    .await
}

/// At most `limit` bytes of the body.
async fn read_body(response: &IncomingResponse, limit: usize) -> Result<Bytes, String> {
    let mut stream = response.take_body_stream();
    let mut body = BytesMut::new();
    while body.len() < limit {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(Err(error)) => return Err(error.to_debug_string()),
            None => break,
        }
    }
    Ok(body.freeze())
}

/// `future`'s output, or a timeout once the monotonic clock passes `deadline`.
async fn within<T>(deadline: u64, future: impl Future<Output = T>) -> Result<T, OutboundError> {
    let mut future = pin!(future);
    let mut token: Option<CancelOnDropToken> = None;
    std::future::poll_fn(|context| {
        if let Poll::Ready(output) = future.as_mut().poll(context) {
            return Poll::Ready(Ok(output));
        }
        if monotonic_clock::now() >= deadline {
            return Poll::Ready(Err(OutboundError::Timeout));
        }
        let alarm = monotonic_clock::subscribe_instant(deadline);
        token = Some(push_waker_and_get_token(alarm, context.waker().clone()).into());
        Poll::Pending
    })
    .await
}

/// Tells a timeout, a failed connection and a refusal by the host apart.
fn classify(error: ErrorCode) -> OutboundError {
    match error {
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => OutboundError::Timeout,
        ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => OutboundError::Connect(format!("{error:?}")),
        // The runtime's policy: Spin answers HTTP-request-denied for a host outside
        // `allowed_outbound_hosts`.
        ErrorCode::DestinationIpProhibited | ErrorCode::HttpRequestDenied => {
            OutboundError::RefusedAddress(format!("the runtime refused the request ({error:?})"))
        }
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            OutboundError::InvalidRequest(format!("{error:?}"))
        }
        other => OutboundError::Other(format!("{other:?}")),
    }
}
