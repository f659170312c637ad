//! Tollgate as a Spin / WASI HTTP component (`wasm32-wasip2`).
//!
//! One incoming request → `tollgate::router::serve` → one response (a whole one, or a stream
//! of server-sent events written as the provider writes them); nothing survives the
//! request. The adapter only translates: the wasi:http request into an `http::Request<Bytes>` (body
//! read up to `TOLLGATE_MAX_BODY_BYTES`), the ports into an [`Env`] (libSQL over Hrana HTTP
//! and the `Outbound` port, both through the host's outgoing HTTP, see [`outbound`]; the
//! system clock), and the response back.
//!
//! Configuration comes from the process environment (`std::env`, i.e. wasi:cli
//! environment), not from Spin variables, so the same component runs under `spin up`
//! (`environment` in spin.toml, `spin up -e NAME=VALUE`) and under any WASI HTTP host such
//! as `wasmtime serve` (`--env NAME=VALUE`). Besides the shared `TOLLGATE_*` settings
//! (see `tollgate::config`), the adapter reads:
//!
//! - `TOLLGATE_DATABASE_URL` (required): `libsql://…` (Turso) or `http(s)://…` (sqld);
//! - `TOLLGATE_DATABASE_TOKEN`: its auth token, if it wants one;
//! - `TOLLGATE_CLIENT_ADDR_HEADER`: a request header that the host itself sets to the
//!   peer's `address[:port]`, replacing any value the client sent (Spin: `spin-client-addr`).
//!   WASI HTTP has no peer address otherwise, so without it the client address is unknown
//!   unless `TOLLGATE_TRUST_FORWARDED_FOR` takes it from a proxy's `X-Forwarded-For` (the
//!   entry `TOLLGATE_TRUSTED_PROXY_HOPS` from the right).
//!
//! Cron has no entry point here: a plain WASI HTTP host has no scheduler, so a scheduler
//! calls the shared `POST /api/v1/cron/run` (see spin.toml).

mod outbound;

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::pin,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use spin_sdk::{
    http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam, Scheme},
    http_component,
};
use tollgate::{
    ApiError, Env,
    api::{ClientAddr, Reply, Streamed, payload_too_large},
    clock::SystemClock,
    config::Config,
    db::hrana::HranaDb,
    error::ErrorCause,
    router::refusal,
};

use crate::outbound::{SpinOutbound, SpinTransport};

#[http_component]
async fn serve(request: IncomingRequest, response_out: ResponseOutparam) {
    let method = request.method();
    let path = request.path_with_query().unwrap_or_default();
    match respond(request).await {
        Reply::Whole(response) => {
            if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
                eprintln!("{method} {path} -> {}: {cause}", response.status());
            }
            write_response(response_out, response).await;
        }
        Reply::Streamed(streamed) => write_stream(response_out, streamed).await,
    }
}

async fn respond(request: IncomingRequest) -> Reply {
    let env = match environment() {
        Ok(env) => env,
        Err(problem) => {
            return Reply::Whole(
                ApiError::internal()
                    .caused_by(format!("misconfigured: {problem}"))
                    .into_response(),
            );
        }
    };
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default().to_owned();
    match to_http_request(request, env.config.max_body_bytes).await {
        Ok(request) => tollgate::router::serve(request, Rc::new(env)).await,
        Err(error) => Reply::Whole(refusal(&path, error)),
    }
}

/// The ports and settings for one request, from the process environment.
fn environment() -> Result<Env, String> {
    let setting = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let config = Config::from_lookup(setting).map_err(|error| error.to_string())?;
    if config.jwt_secret_generated {
        // Every instance would sign with its own throwaway key.
        return Err("TOLLGATE_JWT_SECRET is not set".into());
    }
    let url = setting("TOLLGATE_DATABASE_URL")
        .filter(|url| HranaDb::is_remote_url(url))
        .ok_or("TOLLGATE_DATABASE_URL must be a libsql://, https:// or http:// URL")?;
    // Each request has an instance of its own, so the cap on database requests in flight
    // (TOLLGATE_DATABASE_MAX_INFLIGHT) has nothing to share here; retries still apply.
    let db = HranaDb::new(
        &url,
        setting("TOLLGATE_DATABASE_TOKEN"),
        Box::new(SpinTransport),
    );
    let outbound = SpinOutbound {
        allow_private: config.webhooks_allow_private,
    };
    Ok(Env::new(
        Box::new(db),
        Box::new(SystemClock),
        Box::new(outbound),
        config,
    ))
}

/// The wasi:http request as the shared router takes it; a body over `limit` bytes is
/// refused (413) without reading the rest.
async fn to_http_request(
    request: IncomingRequest,
    limit: usize,
) -> Result<http::Request<Bytes>, ApiError> {
    let bad_request = |message: &str| ApiError::bad_request("invalid_request", message.to_owned());
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    let authority = request.authority();
    let uri = match (request.scheme(), &authority) {
        (Some(scheme), Some(authority)) => {
            let scheme = match scheme {
                Scheme::Https => "https".to_owned(),
                Scheme::Http => "http".to_owned(),
                Scheme::Other(other) => other,
            };
            format!("{scheme}://{authority}{path}")
        }
        _ => path,
    };
    let method = http_method(request.method()).ok_or_else(|| bad_request("an unusable method"))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    let entries = request.headers().entries();
    let mut has_host = false;
    for (name, value) in &entries {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(name.as_str(), value.as_slice());
    }
    if !has_host && let Some(authority) = &authority {
        builder = builder.header("host", authority.as_str());
    }
    if let Some(address) = client_address(&entries) {
        builder = builder.extension(ClientAddr(address));
    }

    let mut stream = request.into_body_stream();
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| bad_request("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    builder
        .body(body.freeze())
        .map_err(|error| bad_request(&format!("an unusable request: {error}")))
}

/// The peer address from the header the host sets, when one is configured.
fn client_address(headers: &[(String, Vec<u8>)]) -> Option<IpAddr> {
    let name = std::env::var("TOLLGATE_CLIENT_ADDR_HEADER").ok()?;
    let (_, value) = headers
        .iter()
        .rev()
        .find(|(header, _)| header.eq_ignore_ascii_case(name.trim()))?;
    let text = std::str::from_utf8(value).ok()?.trim();
    text.parse::<SocketAddr>()
        .map(|address| address.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

fn http_method(method: Method) -> Option<http::Method> {
    Some(match method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => return http::Method::from_bytes(other.as_bytes()).ok(),
    })
}

/// The response's headers as wasi:http takes them.
fn header_list(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// The head of a response, as the host takes it.
fn outgoing_response(
    parts: &http::response::Parts,
    headers: &[(String, Vec<u8>)],
) -> OutgoingResponse {
    let fields = Fields::from_list(headers).unwrap_or_else(|error| {
        eprintln!("dropping the response headers the host refuses: {error:?}");
        Fields::new()
    });
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(parts.status.as_u16()).is_err() {
        eprintln!("the host refused status {}", parts.status);
    }
    outgoing
}

/// A streamed reply: each chunk goes out as it is written, while its driver runs beside;
/// the handler returns (and the instance ends) only once both are done, so a client that
/// leaves mid-stream does not stop the call from being settled.
async fn write_stream(response_out: ResponseOutparam, streamed: Streamed) {
    let Streamed { response, driver } = streamed;
    let (parts, mut chunks) = response.into_parts();
    let outgoing = outgoing_response(&parts, &header_list(&parts.headers));
    let mut body = outgoing.take_body();
    response_out.set(outgoing);
    let pump = async move {
        while let Some(chunk) = chunks.next().await {
            if body.send(chunk.to_vec()).await.is_err() {
                // The client went away; the driver reads on without it.
                break;
            }
        }
        // Dropping the sink finishes the body.
    };
    both(driver, pump).await;
}

/// Runs `first` and `second` to their ends together. Spin's executor polls again only when
/// the host reports an event, not when one future wakes the other through memory (the
/// channel between a stream's driver and its body), so both are polled again for as long as
/// either woke during the last round.
async fn both(first: impl Future<Output = ()>, second: impl Future<Output = ()>) {
    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut first = pin!(futures::future::maybe_done(first));
    let mut second = pin!(futures::future::maybe_done(second));
    std::future::poll_fn(|_| {
        loop {
            flag.0.store(false, Ordering::SeqCst);
            let mut context = Context::from_waker(&waker);
            let done = first.as_mut().poll(&mut context).is_ready()
                & second.as_mut().poll(&mut context).is_ready();
            if done {
                return Poll::Ready(());
            }
            if !flag.0.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
    })
    .await
}

async fn write_response(response_out: ResponseOutparam, response: http::Response<Bytes>) {
    let (parts, body) = response.into_parts();
    let mut headers = header_list(&parts.headers);
    // The whole body is at hand: say its length rather than leave the host to chunk it
    // (never on 1xx, 204 and 304, which carry no body).
    let bodiless = parts.status.is_informational() || matches!(parts.status.as_u16(), 204 | 304);
    if !bodiless && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let outgoing = outgoing_response(&parts, &headers);
    if let Err(error) = response_out.set_with_body(outgoing, body.to_vec()).await {
        eprintln!("writing the response body: {error:?}");
    }
}
