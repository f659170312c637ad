//! The client address behind trusted reverse proxies, from `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the request from, so the header reads
//! `<whatever the client sent>, <address seen by the outermost proxy>, …, <address seen by
//! the proxy next to Tollgate>`. With `hops` trusted proxies the client's address is the
//! entry `hops` from the right; everything left of it was written by the client and may be
//! forged. A header with fewer entries than `hops` came through fewer proxies than
//! configured (a request that reached an inner proxy directly), and every entry in it was
//! appended by one of them: its leftmost entry is the address the first of them saw.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

/// The client address `hops` trusted proxies name in `X-Forwarded-For`, reading every line
/// of the header in order; `None` when there is no header or that entry is no address.
pub fn client_address(headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|line| line.as_bytes().split(|&byte| byte == b','))
        .collect();
    let chosen = entries.get(entries.len().saturating_sub(hops))?;
    address(std::str::from_utf8(chosen).ok()?.trim())
}

/// An entry: an address, or an address with a port (`203.0.113.7:41000`, `[2001:db8::1]:443`)
/// as some proxies write it.
fn address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn client(lines: &[&str], hops: usize) -> Option<String> {
        client_address(&headers(lines), hops).map(|address| address.to_string())
    }

    #[test]
    fn one_hop_takes_the_entry_the_proxy_appended_not_the_clients() {
        assert_eq!(
            client(&["198.51.100.66, 203.0.113.7"], 1).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(client(&["203.0.113.7"], 1).as_deref(), Some("203.0.113.7"));
    }

    #[test]
    fn more_hops_count_from_the_right() {
        let chain = ["1.1.1.1, 203.0.113.7, 10.0.0.2"];
        assert_eq!(client(&chain, 2).as_deref(), Some("203.0.113.7"));
        assert_eq!(client(&chain, 3).as_deref(), Some("1.1.1.1"));
    }

    #[test]
    fn fewer_entries_than_hops_take_the_leftmost() {
        assert_eq!(client(&["203.0.113.7"], 2).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            client(&["203.0.113.7, 10.0.0.2"], 3).as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn separate_header_lines_read_as_one_list() {
        // A proxy that adds its own line instead of extending the client's.
        assert_eq!(
            client(&["198.51.100.66", "203.0.113.7"], 1).as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn entries_with_ports_and_ipv6_are_read() {
        assert_eq!(
            client(&["x, 203.0.113.7:41000"], 1).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client(&["[2001:db8::1]:443"], 1).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            client(&[" 2001:db8::2 "], 1).as_deref(),
            Some("2001:db8::2")
        );
    }

    #[test]
    fn no_header_or_an_entry_that_is_no_address_gives_none() {
        assert_eq!(client(&[], 1), None);
        assert_eq!(client(&["203.0.113.7, unknown"], 1), None);
        assert_eq!(client(&["203.0.113.7, "], 1), None);
    }

    #[test]
    fn bytes_the_client_sent_that_are_not_text_do_not_move_the_choice() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.7").unwrap(),
        );
        assert_eq!(
            client_address(&headers, 1).map(|address| address.to_string()),
            Some("203.0.113.7".into())
        );
    }
}
