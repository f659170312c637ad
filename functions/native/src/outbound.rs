//! The `Outbound` port over reqwest (rustls): no redirects, no proxies, a 15 s timeout, and
//! — unless the operator allows private targets — no connection to a private, loopback,
//! link-local, unique-local or unspecified address.
//!
//! The address check happens where the connection is made: hosts are resolved by
//! [`GuardedResolver`], which hands reqwest only the addresses that pass, so a name that
//! resolves to `10.0.0.5` (or is rebound to it after the URL was saved) is never connected
//! to, and IP-literal URLs, which reqwest does not resolve, are checked before sending.
//! Proxies are disabled because a proxy would resolve the name itself, out of our sight.

use std::{
    error::Error as StdError,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tollgate::outbound::{
    ChunkStream, DEFAULT_TIMEOUT, Outbound, OutboundError, RESPONSE_BODY_LIMIT, STREAM_LIMIT,
    Timeout, is_forbidden_address,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves a host name to its addresses (the system resolver, or a stand-in in tests).
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver, through tokio (getaddrinfo on the blocking pool).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addresses.map(|address| address.ip()).collect())
        })
    })
}

/// Every address a host resolved to was forbidden.
#[derive(Debug)]
struct Refused {
    host: String,
    addresses: Vec<IpAddr>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{} resolves only to private or reserved addresses ({})",
            self.host,
            list.join(", ")
        )
    }
}

impl StdError for Refused {}

/// reqwest's DNS hook: resolves, then keeps only the addresses that may be reached.
struct GuardedResolver {
    allow_private: bool,
    lookup: Lookup,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let addresses = lookup(host.clone()).await?;
            let allowed: Vec<SocketAddr> = addresses
                .iter()
                .filter(|address| allow_private || !is_forbidden_address(**address))
                .map(|address| SocketAddr::new(*address, 0))
                .collect();
            if allowed.is_empty() && !addresses.is_empty() {
                return Err(
                    Box::new(Refused { host, addresses }) as Box<dyn StdError + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

pub struct NativeOutbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl NativeOutbound {
    /// The production client: the system resolver behind the address guard.
    pub fn new(allow_private: bool) -> Self {
        Self::with_lookup(allow_private, system_lookup())
    }

    /// A client whose host names resolve through `lookup`.
    pub fn with_lookup(allow_private: bool, lookup: Lookup) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private,
                lookup,
            }))
            .build()
            .expect("the outbound HTTP client builds");
        Self {
            client,
            allow_private,
        }
    }
}

impl NativeOutbound {
    /// The reqwest request for `request`, refused before anything is sent when its scheme
    /// or its literal address may not be used; and the timeout the request carries.
    fn prepare(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<(reqwest::Request, Option<Duration>), OutboundError> {
        let timeout = request
            .extensions()
            .get::<Timeout>()
            .map(|timeout| timeout.0);
        let request = reqwest::Request::try_from(request)
            .map_err(|error| OutboundError::InvalidRequest(error.to_string()))?;
        if !matches!(request.url().scheme(), "http" | "https") {
            return Err(OutboundError::InvalidRequest(
                "only http and https are supported".into(),
            ));
        }
        // An IP literal is connected to without resolution, so it is checked here.
        // The URL parser has already normalised shorthand forms (`127.1`) to dotted ones.
        let host = request
            .url()
            .host_str()
            .ok_or_else(|| OutboundError::InvalidRequest("the URL has no host".into()))?;
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        if let Some(address) = literal
            && !self.allow_private
            && is_forbidden_address(address)
        {
            return Err(OutboundError::RefusedAddress(format!(
                "{address} is a private or reserved address"
            )));
        }
        Ok((request, timeout))
    }
}

/// The head of reqwest's response, without its body.
fn head(response: &mut reqwest::Response) -> http::response::Builder {
    let mut out = http::Response::builder()
        .status(response.status())
        .version(response.version());
    if let Some(headers) = out.headers_mut() {
        *headers = std::mem::take(response.headers_mut());
    }
    out
}

#[async_trait(?Send)]
impl Outbound for NativeOutbound {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        let (mut request, timeout) = self.prepare(request)?;
        if let Some(timeout) = timeout {
            *request.timeout_mut() = Some(timeout);
        }
        let mut response = self.client.execute(request).await.map_err(classify)?;
        let out = head(&mut response);
        let mut body = BytesMut::new();
        while body.len() < RESPONSE_BODY_LIMIT {
            match response.chunk().await.map_err(classify)? {
                Some(chunk) => {
                    let room = RESPONSE_BODY_LIMIT - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                None => break,
            }
        }
        out.body(body.freeze())
            .map_err(|error| OutboundError::Other(error.to_string()))
    }

    async fn open(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<ChunkStream>, OutboundError> {
        let (mut request, timeout) = self.prepare(request)?;
        let wait = timeout.unwrap_or(DEFAULT_TIMEOUT);
        *request.timeout_mut() = Some(STREAM_LIMIT);
        let mut response = tokio::time::timeout(wait, self.client.execute(request))
            .await
            .map_err(|_| OutboundError::Timeout)?
            .map_err(classify)?;
        let out = head(&mut response);
        let chunks: ChunkStream = Box::pin(futures_util::stream::unfold(
            Some(response),
            move |response| async move {
                let mut response = response?;
                match tokio::time::timeout(wait, response.chunk()).await {
                    Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(response))),
                    Ok(Ok(None)) => None,
                    Ok(Err(error)) => Some((Err(classify(error)), None)),
                    Err(_) => Some((Err(OutboundError::Timeout), None)),
                }
            },
        ));
        out.body(chunks)
            .map_err(|error| OutboundError::Other(error.to_string()))
    }
}

/// Tells a refused address, a timeout and a failed connection apart.
fn classify(error: reqwest::Error) -> OutboundError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return OutboundError::RefusedAddress(refused.to_string());
        }
        source = cause.source();
    }
    let message = chain(&error);
    if error.is_timeout() {
        OutboundError::Timeout
    } else if error.is_connect() {
        OutboundError::Connect(message)
    } else {
        OutboundError::Other(message)
    }
}

/// An error and its causes on one line.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that answers every name with `addresses`.
    fn resolving_to(addresses: Vec<IpAddr>) -> Lookup {
        Arc::new(move |_host: String| {
            let addresses = addresses.clone();
            Box::pin(async move { Ok(addresses) })
        })
    }

    fn post(url: &str) -> http::Request<Bytes> {
        http::Request::post(url)
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    }

    fn resolved(resolver: &GuardedResolver, host: &str) -> Result<Vec<IpAddr>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(resolver.resolve(host.parse().unwrap()))
            .map(|addresses| addresses.map(|address| address.ip()).collect())
            .map_err(|error| error.to_string())
    }

    // The resolver is exercised directly: a broken guard must not turn a test into a
    // connection attempt to a private network.
    #[test]
    fn the_resolver_hands_over_only_addresses_that_may_be_reached() {
        let guarded = |allow_private| GuardedResolver {
            allow_private,
            lookup: resolving_to(vec![
                "10.0.0.5".parse().unwrap(),
                "169.254.169.254".parse().unwrap(),
                "fd00::1".parse().unwrap(),
                "93.184.215.14".parse().unwrap(),
            ]),
        };
        assert_eq!(
            resolved(&guarded(false), "mixed.example").unwrap(),
            vec!["93.184.215.14".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(resolved(&guarded(true), "mixed.example").unwrap().len(), 4);
    }

    #[test]
    fn a_name_resolving_only_to_private_addresses_is_refused() {
        let resolver = GuardedResolver {
            allow_private: false,
            lookup: resolving_to(vec![
                "10.0.0.5".parse().unwrap(),
                "::ffff:192.168.1.1".parse().unwrap(),
            ]),
        };
        let error = resolved(&resolver, "internal.example").unwrap_err();
        assert!(error.contains("internal.example"), "{error}");
        assert!(error.contains("10.0.0.5"), "{error}");
    }

    #[tokio::test]
    async fn a_refusal_by_the_resolver_surfaces_as_refused_address() {
        // Loopback only: were the guard broken, the request would stay on this machine.
        let outbound =
            NativeOutbound::with_lookup(false, resolving_to(vec!["127.0.0.1".parse().unwrap()]));
        let error = outbound
            .send(post("http://receiver.example:9/hook"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, OutboundError::RefusedAddress(message) if message.contains("127.0.0.1")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn loopback_literals_in_every_spelling_are_refused() {
        let outbound = NativeOutbound::new(false);
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]:9/",
            "http://[::ffff:127.0.0.1]:9/",
            "http://0.0.0.0:9/",
            // What the URL parser reqwest uses reads as 127.0.0.1.
            "http://127.1:9/",
            "http://2130706433:9/",
            "http://localhost:9/",
        ] {
            let error = outbound.send(post(url)).await.unwrap_err();
            assert_eq!(error.kind(), "refused_address", "{url}: {error:?}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_when_private_targets_are_allowed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let outbound = NativeOutbound::new(true);
        let error = outbound
            .send(post(&format!("http://{address}/")))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "connect", "{error:?}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_with_the_request_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and holds the connection without answering.
        let held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let outbound = NativeOutbound::new(true);
        let mut request = post(&format!("http://{address}/"));
        request
            .extensions_mut()
            .insert(Timeout(Duration::from_millis(200)));
        let error = outbound.send(request).await.unwrap_err();
        assert_eq!(error, OutboundError::Timeout);
        held.abort();
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed_and_bodies_are_capped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let big = RESPONSE_BODY_LIMIT + 10_000;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\nContent-Length: {big}\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&vec![b'x'; big]).await;
        });
        let outbound = NativeOutbound::new(true);
        let response = outbound
            .send(post(&format!("http://{address}/")))
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "http://10.0.0.1/");
        assert_eq!(response.body().len(), RESPONSE_BODY_LIMIT);
    }
}
