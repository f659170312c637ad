//! Which URLs a tenant may register as a webhook endpoint.
//!
//! This is the early, friendly half of the SSRF guard: a URL that names a forbidden address
//! outright (`http://10.0.0.5/`, `http://[::1]/`, `http://localhost/`) is refused with 422
//! when it is saved. A host *name* can resolve anywhere and change its mind later, so the
//! binding check happens in the outbound adapter after DNS, on every delivery.

use std::net::{IpAddr, Ipv4Addr};

use crate::{ApiError, error::ApiResult, outbound::is_forbidden_address};

const MAX_URL_LENGTH: usize = 2_000;

/// Checks `text` and returns the URL to store.
pub fn parse_endpoint_url(text: &str, allow_private: bool) -> ApiResult<String> {
    let invalid = |reason: &str| ApiError::invalid_field("url", reason);
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_URL_LENGTH {
        return Err(invalid("must be 1 to 2000 characters"));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|_| invalid("is not a valid absolute URL"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("must use http or https")),
        None => return Err(invalid("must be an absolute http or https URL")),
    }
    let authority = uri.authority().ok_or_else(|| invalid("must name a host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "must not carry credentials; authenticate with the signature",
        ));
    }
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return Err(invalid("must name a host"));
    }
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let address: IpAddr = literal
            .parse()
            .map_err(|_| invalid("has an invalid IPv6 address"))?;
        return refuse_private(address, allow_private).map(|()| text.to_owned());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(invalid(
            "has characters a host name cannot have (use punycode for international names)",
        ));
    }
    if looks_numeric(host) {
        // Browsers and URL libraries read `127.1`, `2130706433` or `0x7f.0.0.1` as IPv4
        // addresses; only the plain dotted form is accepted, so the check below sees what
        // the client will connect to.
        let address: Ipv4Addr = host.parse().map_err(|_| {
            invalid("writes an IPv4 address in a form other than four decimal numbers")
        })?;
        return refuse_private(IpAddr::V4(address), allow_private).map(|()| text.to_owned());
    }
    if !allow_private && (host == "localhost" || host.ends_with(".localhost")) {
        return Err(refused("localhost"));
    }
    Ok(text.to_owned())
}

/// A host whose last label is a number (decimal or `0x…`) is an IPv4 address to URL
/// parsers, whatever else it looks like.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or_default();
    !last.is_empty()
        && (last.chars().all(|c| c.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .is_some_and(|hex| hex.chars().all(|c| c.is_ascii_hexdigit())))
}

fn refuse_private(address: IpAddr, allow_private: bool) -> ApiResult<()> {
    if !allow_private && is_forbidden_address(address) {
        return Err(refused(&address.to_string()));
    }
    Ok(())
}

fn refused(what: &str) -> ApiError {
    ApiError::invalid_field(
        "url",
        format!(
            "points at {what}, a private, loopback or link-local address; webhooks go to public addresses only"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(url: &str) -> bool {
        parse_endpoint_url(url, false).is_ok()
    }

    #[test]
    fn public_http_and_https_urls_are_accepted() {
        for url in [
            "https://hooks.example.com/tollgate",
            "http://example.com:8080/in?token=abc",
            "https://1.1.1.1/hook",
            "https://[2606:4700:4700::1111]/hook",
            "HTTPS://Example.COM/",
        ] {
            assert!(accepted(url), "{url}");
        }
    }

    #[test]
    fn other_schemes_relative_urls_and_credentials_are_refused() {
        for url in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "/relative/path",
            "example.com/hook",
            "https://user:pass@example.com/",
            "https://exa mple.com/",
            "https://%31%32%37.0.0.1/",
        ] {
            assert!(!accepted(url), "{url}");
        }
    }

    #[test]
    fn literal_private_addresses_and_localhost_are_refused() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.5/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            let error = parse_endpoint_url(url, false).unwrap_err();
            assert_eq!(
                error.status,
                http::StatusCode::UNPROCESSABLE_ENTITY,
                "{url}"
            );
        }
    }

    #[test]
    fn shorthand_ipv4_forms_are_refused_rather_than_misread() {
        for url in [
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://example.0x10/",
        ] {
            assert!(!accepted(url), "{url}");
            assert!(parse_endpoint_url(url, true).is_err(), "{url}");
        }
    }

    #[test]
    fn the_operator_setting_lets_private_targets_through() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://localhost/",
        ] {
            assert!(parse_endpoint_url(url, true).is_ok(), "{url}");
        }
    }
}
