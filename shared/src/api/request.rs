use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use serde::de::DeserializeOwned;

use super::forwarded_for;
use crate::{ApiError, error::ApiResult};

/// The peer address as the adapter saw it; adapters put it in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Where a request came from, as the audit log records it with the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    /// At most [`ClientInfo::MAX_USER_AGENT_CHARS`] characters of `User-Agent`.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub const MAX_USER_AGENT_CHARS: usize = 256;
}

/// An API request, as the handlers read it.
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client's address, from the adapter or (when trusted) `X-Forwarded-For`, as
    /// [`forwarded_for`] reads it.
    pub client_ip: Option<String>,
}

impl ApiRequest {
    /// The request as the API reads it; `trusted_proxy_hops` is the setting of that name
    /// (how many proxies' `X-Forwarded-For` entries to believe, if any).
    pub fn new(request: Request<Bytes>, trusted_proxy_hops: Option<usize>) -> Self {
        let (parts, body) = request.into_parts();
        let forwarded = trusted_proxy_hops
            .and_then(|hops| forwarded_for::client_address(&parts.headers, hops))
            .map(|address| address.to_string());
        let peer = parts
            .extensions
            .get::<ClientAddr>()
            .map(|addr| addr.0.to_string());
        Self {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers,
            body,
            client_ip: forwarded.or(peer),
        }
    }

    pub fn client(&self) -> ClientInfo {
        ClientInfo {
            ip: self.client_ip.clone(),
            user_agent: self.header("user-agent").map(|agent| {
                agent
                    .chars()
                    .take(ClientInfo::MAX_USER_AGENT_CHARS)
                    .collect()
            }),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }

    /// The host the client addressed, lower-case and without a port.
    pub fn host(&self) -> Option<String> {
        let host = self.header("host")?;
        let host = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        Some(host.trim_end_matches('.').to_ascii_lowercase())
    }

    /// The body as JSON of type `T`: 415 when it is not sent as JSON, 400 when it is not
    /// JSON, 422 when it is JSON of the wrong shape.
    pub fn json<T: DeserializeOwned>(&self) -> ApiResult<T> {
        self.require_json_media_type()?;
        let first = self.body.iter().find(|byte| !byte.is_ascii_whitespace());
        if first != Some(&b'{') {
            // Every body of this API is an object; serde would also read a struct from an
            // array, which no client means.
            let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&self.body).is_ok();
            return Err(if is_json {
                ApiError::new(
                    http::StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "the request body must be a JSON object",
                )
            } else {
                ApiError::bad_request("invalid_json", "the request body must be a JSON object")
            });
        }
        serde_json::from_slice(&self.body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => ApiError::new(
                http::StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                error.to_string(),
            ),
            _ => ApiError::bad_request(
                "invalid_json",
                format!("the request body is not valid JSON: {error}"),
            ),
        })
    }

    /// A body must say it is JSON (`application/json` or `application/*+json`, UTF-8). A
    /// request without a body and without a `Content-Type` passes, so that the missing body
    /// is reported as such.
    fn require_json_media_type(&self) -> ApiResult<()> {
        let content_type = self.headers.get(http::header::CONTENT_TYPE);
        match content_type {
            None if self.body.is_empty() => Ok(()),
            Some(value) if value.to_str().is_ok_and(is_json_media_type) => Ok(()),
            _ => Err(ApiError::new(
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON, sent with Content-Type: application/json",
            )
            .with_details(serde_json::json!({
                "content_type": content_type.map(|value| String::from_utf8_lossy(value.as_bytes())),
                "accepted": ["application/json", "application/*+json"],
            }))),
        }
    }

    /// The `Idempotency-Key` header, if sent: 1 to 200 characters.
    /// The key is scoped to `caller` (the user it acts for): one member's key never meets
    /// another's, so neither a false conflict nor another member's ids can come back.
    pub fn idempotency_key(&self, caller: &str) -> ApiResult<Option<String>> {
        match self.header("idempotency-key").map(str::trim) {
            None => Ok(None),
            Some(key) if !key.is_empty() && key.len() <= 200 => Ok(Some(scoped_key(caller, key))),
            Some(_) => Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 200 characters",
            )),
        }
    }

    /// A query-string parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The page of a list that takes `filters` besides `limit` and `offset`; any other query
    /// parameter is refused (400 `invalid_query` naming it) rather than silently ignored.
    pub fn filtered_page(&self, filters: &[&str]) -> ApiResult<Page> {
        if let Some(unknown) = self
            .query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
            .find(|name| !["limit", "offset"].contains(name) && !filters.contains(name))
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "unknown parameter {unknown:?}; filters are {}",
                    filters.join(", ")
                ),
            ));
        }
        self.page()
    }

    /// `?limit=&offset=` with bounds: limit 1..=100 (default 50), offset 0..=[`MAX_OFFSET`].
    pub fn page(&self) -> ApiResult<Page> {
        let number = |name: &str, default: i64, min: i64, max: i64| -> ApiResult<i64> {
            match self.query_param(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<i64>()
                    .ok()
                    .filter(|value| (min..=max).contains(value))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("{name} must be a whole number from {min} to {max}"),
                        )
                    }),
            }
        };
        Ok(Page {
            limit: number("limit", 50, 1, 100)?,
            offset: number("offset", 0, 0, MAX_OFFSET)?,
        })
    }
}

/// An idempotency key as stored: the sender's key under its caller's id.
pub fn scoped_key(caller: &str, key: &str) -> String {
    format!("{caller}/{key}")
}

/// A stored idempotency key as its sender wrote it.
pub fn unscoped_key<'a>(caller: &str, stored: &'a str) -> &'a str {
    stored
        .strip_prefix(caller)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(stored)
}

/// The deepest a list may be paged: far past any real list, and small enough that
/// `offset + limit` can never overflow.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// One page of a list.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// Asks for one row more than the page holds, to tell whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// The response body of a page: the items and where the next page starts.
    pub fn body<T: serde::Serialize>(&self, mut items: Vec<T>) -> serde_json::Value {
        let has_more = items.len() as i64 > self.limit;
        items.truncate(self.limit as usize);
        serde_json::json!({
            "data": items,
            "has_more": has_more,
            "next_offset": has_more.then_some(self.offset + self.limit),
        })
    }
}

/// `application/json` or a structured `application/<subtype>+json`, with parameters; a
/// `charset` other than UTF-8 is refused, since JSON bodies are read as UTF-8.
fn is_json_media_type(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let json_essence = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .and_then(|subtype| subtype.strip_suffix("+json"))
            .is_some_and(|base| !base.is_empty() && !base.contains('/'));
    let utf8 = parts.all(|parameter| match parameter.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    json_essence && utf8
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_and_plus_are_decoded() {
        let decoded = |value: &str| {
            let request = Request::builder()
                .uri(format!("/x?q={value}"))
                .body(Bytes::new())
                .unwrap();
            ApiRequest::new(request, None).query_param("q").unwrap()
        };
        assert_eq!(decoded("a%40b.c+d"), "a@b.c d");
        assert_eq!(decoded("100%"), "100%");
        assert_eq!(decoded("%zz"), "%zz");
    }

    #[test]
    fn json_media_types_are_told_from_others() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/merge-patch+json",
            "application/vnd.tollgate+json; version=1",
        ] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/+json",
            "text/json",
            "application/json; charset=utf-16",
        ] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }
}
