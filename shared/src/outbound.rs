//! The `Outbound` port: HTTP requests Tollgate itself makes (tenant webhooks, Stripe, LLM
//! providers), so the domain stays free of any runtime's HTTP client.
//!
//! Adapters promise three things every caller relies on: they follow no redirects (a 3xx
//! is handed back as it is), they give up after a timeout ([`DEFAULT_TIMEOUT`] unless the
//! request carries a [`Timeout`] extension), and they read at most
//! [`RESPONSE_BODY_LIMIT`] bytes of a response. An adapter that connects by itself also
//! refuses forbidden addresses (see [`is_forbidden_address`]) after resolving the host,
//! unless its operator allowed private targets; that is the only place the check can be
//! made, because a name that looked public when a URL was saved may resolve anywhere later.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::LocalBoxStream;

/// How long a request may take in all, unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The most of a response body an adapter reads; the rest is dropped unread. Callers that
/// need whole documents (Stripe) fetch far less than this.
pub const RESPONSE_BODY_LIMIT: usize = 1024 * 1024;

/// A request extension that replaces [`DEFAULT_TIMEOUT`] for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeout(pub Duration);

/// Why no response came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// The host did not resolve, refused the connection, or the TLS handshake failed.
    Connect(String),
    /// No complete response within the timeout.
    Timeout,
    /// The host resolved only to addresses this deployment may not reach (private,
    /// loopback, link-local…); nothing was sent.
    RefusedAddress(String),
    /// The URL cannot be requested at all (no host, unsupported scheme).
    InvalidRequest(String),
    /// The connection broke mid-exchange, or anything else.
    Other(String),
}

impl OutboundError {
    /// A short stable name, stored with delivery attempts.
    pub fn kind(&self) -> &'static str {
        match self {
            OutboundError::Connect(_) => "connect",
            OutboundError::Timeout => "timeout",
            OutboundError::RefusedAddress(_) => "refused_address",
            OutboundError::InvalidRequest(_) => "invalid_request",
            OutboundError::Other(_) => "other",
        }
    }
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::Connect(message) => write!(f, "could not connect: {message}"),
            OutboundError::Timeout => write!(f, "no response within the timeout"),
            OutboundError::RefusedAddress(message) => write!(f, "refused address: {message}"),
            OutboundError::InvalidRequest(message) => write!(f, "invalid request: {message}"),
            OutboundError::Other(message) => write!(f, "request failed: {message}"),
        }
    }
}

impl std::error::Error for OutboundError {}

/// A response body read as it arrives: chunks, then the end, or an error that ends it.
pub type ChunkStream = LocalBoxStream<'static, Result<Bytes, OutboundError>>;

#[async_trait(?Send)]
pub trait Outbound {
    /// Sends one request and returns the response, whatever its status.
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError>;

    /// Sends one request and returns the response as soon as its head arrives, its body
    /// to be read as it comes (server-sent events). The request's [`Timeout`] bounds the
    /// wait for the head and then each wait for the next chunk, not the whole body, which
    /// may run up to [`STREAM_LIMIT`].
    ///
    /// A runtime that cannot read a body as it arrives keeps this default: the body is
    /// read whole by [`Outbound::send`] and handed over as one chunk.
    async fn open(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<ChunkStream>, OutboundError> {
        let (head, body) = self.send(request).await?.into_parts();
        let whole: ChunkStream = Box::pin(futures_util::stream::iter([Ok(body)]));
        Ok(http::Response::from_parts(head, whole))
    }
}

/// How long one streamed response may run in all, however steadily its chunks come.
pub const STREAM_LIMIT: Duration = Duration::from_secs(600);

/// For runtimes (or tools such as the admin CLI) that make no outbound requests: every
/// request fails, so a misconfigured deployment shows up as failed deliveries, not as
/// silence.
pub struct NoOutbound;

#[async_trait(?Send)]
impl Outbound for NoOutbound {
    async fn send(&self, _: http::Request<Bytes>) -> Result<http::Response<Bytes>, OutboundError> {
        Err(OutboundError::Other(
            "this runtime has no outbound HTTP client".into(),
        ))
    }
}

/// True for addresses a tenant-supplied URL must not reach: unspecified, loopback,
/// private (RFC 1918), shared (CGNAT), link-local (cloud metadata lives there),
/// unique-local, multicast, broadcast, documentation and reserved ranges; IPv6 forms that
/// embed an IPv4 address (mapped, translated, compatible, NAT64, 6to4) are judged by that
/// address, and local-use NAT64 is refused whole.
pub fn is_forbidden_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    a == 0 // "this network", including the unspecified 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224 // multicast, reserved, broadcast
}

fn is_forbidden_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    match segments {
        // Unspecified, loopback, and the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, high, low] => {
            (high == 0 && low <= 1) || is_forbidden_v4(embedded_v4(high, low))
        }
        // IPv4-translated (::ffff:0:0:0/96, SIIT) reaches the embedded IPv4 address.
        [0, 0, 0, 0, 0xffff, 0, high, low] => is_forbidden_v4(embedded_v4(high, low)),
        // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => is_forbidden_v4(embedded_v4(high, low)),
        // Local-use NAT64 (64:ff9b:1::/48): an operator's own translator, whose prefix
        // length (and so where the IPv4 address sits) cannot be known from here.
        [0x64, 0xff9b, 1, ..] => true,
        // 6to4 (2002::/16) embeds the IPv4 address in the next 32 bits.
        [0x2002, high, low, ..] => is_forbidden_v4(embedded_v4(high, low)),
        // Teredo tunnels to addresses that cannot be judged from here; documentation.
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] => true,
        [first, ..] => {
            (first & 0xfe00) == 0xfc00 // unique-local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (first & 0xff00) == 0xff00 // multicast
        }
    }
}

/// Refuses a URL whose host is a forbidden IP literal (in any form a URL parser reads as
/// one) or a loopback name. For adapters whose runtime resolves names out of their sight
/// (Workers `fetch`, wasi:http): the literal is all they can judge.
pub fn refuse_forbidden_literal(uri: &http::Uri) -> Result<(), OutboundError> {
    let host = uri
        .host()
        .ok_or_else(|| OutboundError::InvalidRequest("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(OutboundError::RefusedAddress(format!(
            "{host} is a loopback name"
        )));
    }
    if let Some(address) = parse_ip(&host)
        && is_forbidden_address(address)
    {
        return Err(OutboundError::RefusedAddress(format!(
            "{address} is a private or reserved address"
        )));
    }
    Ok(())
}

/// An IP literal, including the shorthand IPv4 forms URL parsers accept (`127.1`,
/// `2130706433`, `0x7f.1`), which the host's client may well connect to.
fn parse_ip(host: &str) -> Option<IpAddr> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Some(address);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|part| {
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                u64::from_str_radix(hex, 16).ok()
            } else if part.len() > 1 && part.starts_with('0') {
                u64::from_str_radix(&part[1..], 8).ok()
            } else {
                part.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|&part| part > 255) || *last >= 1u64 << (8 * (5 - numbers.len())) {
        return None;
    }
    let value = leading
        .iter()
        .enumerate()
        .fold(*last, |value, (index, &part)| {
            value | (part << (8 * (3 - index)))
        });
    Some(IpAddr::V4((value as u32).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(text: &str) -> bool {
        is_forbidden_address(text.parse().unwrap())
    }

    #[test]
    fn private_loopback_link_local_and_unspecified_addresses_are_forbidden() {
        for address in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::ffff:0:127.0.0.1",
            "::ffff:0:192.168.0.1",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::808:808",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(forbidden(address), "{address} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "::ffff:0:1.1.1.1",
            "64:ff9b::101:101",
            "2002:0101:0101::1",
        ] {
            assert!(!forbidden(address), "{address} should be allowed");
        }
    }

    #[test]
    fn error_kinds_are_stable_names() {
        assert_eq!(OutboundError::Timeout.kind(), "timeout");
        assert_eq!(
            OutboundError::RefusedAddress("10.0.0.1".into()).kind(),
            "refused_address"
        );
        assert_eq!(OutboundError::Connect("refused".into()).kind(), "connect");
    }

    #[test]
    fn shorthand_ipv4_literals_are_read_as_addresses() {
        for (text, expected) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("10.1.258", "10.1.1.2"),
            ("0177.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(parse_ip(text), Some(expected.parse().unwrap()), "{text}");
        }
        for text in ["example.com", "256.1.1.1", "1.2.3.4.5", "4294967296"] {
            assert_eq!(parse_ip(text), None, "{text}");
        }
    }

    #[test]
    fn loopback_names_and_forbidden_literals_are_refused_before_sending() {
        for url in [
            "http://localhost/",
            "http://a.localhost./",
            "http://127.1/",
            "http://[::1]:8080/",
            "http://0x7f.1/",
            "http://[::ffff:0:7f00:1]/",
        ] {
            let uri: http::Uri = url.parse().unwrap();
            assert!(
                matches!(
                    refuse_forbidden_literal(&uri),
                    Err(OutboundError::RefusedAddress(_))
                ),
                "{url}"
            );
        }
        let public: http::Uri = "https://hooks.example.com/x".parse().unwrap();
        assert!(refuse_forbidden_literal(&public).is_ok());
    }
}
