//! The path of the request a reverse proxy asks forward-auth about, read the way the proxy
//! routes it.
//!
//! The proxy names the request in `X-Forwarded-Uri` (Traefik, Caddy) or `X-Original-Uri`
//! (nginx's `$request_uri`): the raw request target, as the client wrote it. The proxy itself
//! picks the backend from a normalised path: nginx percent-decodes once, merges slashes and
//! resolves `.` and `..` segments (so `/comfy/%2e%2e/llm/` is served by `location /llm/`);
//! Traefik does the same before routing and forwards the cleaned path. A scope is checked
//! against the first segment of that same normalised path, or a key scoped to one prefix
//! would reach another backend through dot segments.
//!
//! What proxies read differently is refused rather than guessed at: an encoded slash (nginx
//! decodes it into a separator, Traefik keeps it inside the segment), a backslash (a
//! separator to some servers), control characters including NUL, invalid escapes, a path
//! that is not UTF-8 once decoded, and a `..` that climbs above the root (nginx answers 400,
//! Traefik stays at the root).

use std::fmt;

/// A forwarded request path, percent-decoded once, with empty, `.` and `..` segments
/// resolved: `/comfy/%2e%2e//llm/./v1?x` reads `/llm/v1`. Only [`ForwardedPath::parse`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedPath(String);

/// Why a forwarded URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRejection {
    /// Not a path starting with `/` (an absolute URL, `*`, or nothing).
    NotAPath,
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// `%2F`: a separator to nginx, part of a segment to Traefik.
    EncodedSlash,
    /// `\` or `%5C`: a separator to some servers.
    Backslash,
    /// A control character (`%00`–`%1F`, `%7F`), NUL included.
    ControlCharacter,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// A `..` segment that climbs above the root.
    AboveRoot,
}

impl PathRejection {
    /// A short stable name, given as `details.reason` of the error.
    pub fn reason(self) -> &'static str {
        match self {
            PathRejection::NotAPath => "not_a_path",
            PathRejection::InvalidPercentEncoding => "invalid_percent_encoding",
            PathRejection::EncodedSlash => "encoded_slash",
            PathRejection::Backslash => "backslash",
            PathRejection::ControlCharacter => "control_character",
            PathRejection::NotUtf8 => "not_utf8",
            PathRejection::AboveRoot => "above_root",
        }
    }
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathRejection::NotAPath => "it is not a path starting with /",
            PathRejection::InvalidPercentEncoding => "it has a % not followed by two hex digits",
            PathRejection::EncodedSlash => "it has an encoded slash (%2F)",
            PathRejection::Backslash => "it has a backslash",
            PathRejection::ControlCharacter => "it has a control character",
            PathRejection::NotUtf8 => "its decoded path is not UTF-8",
            PathRejection::AboveRoot => "a .. segment climbs above the root",
        })
    }
}

impl ForwardedPath {
    /// Reads the path of a raw request target (`/path?query`, as the client sent it): the
    /// query and any fragment are dropped, escapes decoded once, slashes merged, dot segments
    /// resolved.
    pub fn parse(uri: &[u8]) -> Result<Self, PathRejection> {
        let end = uri
            .iter()
            .position(|&byte| byte == b'?' || byte == b'#')
            .unwrap_or(uri.len());
        let raw = &uri[..end];
        if raw.first() != Some(&b'/') {
            return Err(PathRejection::NotAPath);
        }
        let mut segments: Vec<Vec<u8>> = Vec::new();
        let mut ends_in_directory = false;
        for raw_segment in raw[1..].split(|&byte| byte == b'/') {
            let segment = decode(raw_segment)?;
            ends_in_directory = matches!(segment.as_slice(), b"" | b"." | b"..");
            match segment.as_slice() {
                b"" | b"." => {}
                b".." => {
                    segments.pop().ok_or(PathRejection::AboveRoot)?;
                }
                _ => segments.push(segment),
            }
        }
        let mut path = Vec::with_capacity(raw.len());
        for segment in &segments {
            path.push(b'/');
            path.extend_from_slice(segment);
        }
        if ends_in_directory || segments.is_empty() {
            path.push(b'/');
        }
        String::from_utf8(path)
            .map(ForwardedPath)
            .map_err(|_| PathRejection::NotUtf8)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, none of them empty, `.` or `..`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|segment| !segment.is_empty())
    }
}

impl fmt::Display for ForwardedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One segment with its escapes decoded, refusing what would split or end it elsewhere.
fn decode(raw: &[u8]) -> Result<Vec<u8>, PathRejection> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(byte) = bytes.next() {
        let byte = if byte == b'%' {
            let high = bytes.next().and_then(hex_value);
            let low = bytes.next().and_then(hex_value);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(PathRejection::InvalidPercentEncoding);
            };
            let byte = (high << 4) | low;
            if byte == b'/' {
                return Err(PathRejection::EncodedSlash);
            }
            byte
        } else {
            byte
        };
        if byte == b'\\' {
            return Err(PathRejection::Backslash);
        }
        if byte.is_ascii_control() {
            return Err(PathRejection::ControlCharacter);
        }
        decoded.push(byte);
    }
    Ok(decoded)
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(uri: &str) -> String {
        ForwardedPath::parse(uri.as_bytes())
            .unwrap_or_else(|rejection| panic!("{uri} was refused: {rejection}"))
            .to_string()
    }

    fn rejection(uri: &[u8]) -> PathRejection {
        match ForwardedPath::parse(uri) {
            Ok(path) => panic!("{} was read as {path}", String::from_utf8_lossy(uri)),
            Err(rejection) => rejection,
        }
    }

    #[test]
    fn a_plain_path_reads_as_itself_without_its_query_or_fragment() {
        assert_eq!(path("/comfy/history/abc"), "/comfy/history/abc");
        assert_eq!(
            path("/comfy/history?max_items=10&x=/../llm"),
            "/comfy/history"
        );
        assert_eq!(path("/comfy/view#/../../llm"), "/comfy/view");
        assert_eq!(path("/comfy/"), "/comfy/");
        assert_eq!(path("/"), "/");
    }

    #[test]
    fn dot_segments_are_resolved_as_the_proxy_routes_them() {
        assert_eq!(path("/comfy/../llm/v1/chat"), "/llm/v1/chat");
        assert_eq!(path("/comfy/./history/../queue"), "/comfy/queue");
        assert_eq!(path("/comfy/x/.."), "/comfy/");
        assert_eq!(path("/comfy/.."), "/");
        assert_eq!(path("/comfy/x/."), "/comfy/x/");
    }

    #[test]
    fn encoded_dots_are_dots() {
        assert_eq!(path("/comfy/%2e%2e/llm/v1/chat"), "/llm/v1/chat");
        assert_eq!(path("/comfy/%2E%2E/llm/v1/chat"), "/llm/v1/chat");
        assert_eq!(path("/comfy/.%2e/llm/v1/chat"), "/llm/v1/chat");
        assert_eq!(path("/comfy/%2e/x"), "/comfy/x");
    }

    #[test]
    fn escapes_are_decoded_once() {
        assert_eq!(path("/%63omfy/x"), "/comfy/x");
        assert_eq!(path("/comfy/%25%32%65%25%32%65/llm"), "/comfy/%2e%2e/llm");
        assert_eq!(path("/comfy/a%20b%C3%A9"), "/comfy/a bé");
    }

    #[test]
    fn an_encoded_question_mark_or_hash_is_part_of_its_segment() {
        // nginx decodes them into the segment and then resolves the dots after them.
        assert_eq!(path("/comfy/x%3F/../../llm/"), "/llm/");
        assert_eq!(path("/comfy/x%23/../../llm/"), "/llm/");
    }

    #[test]
    fn empty_segments_are_merged_before_dots_are_resolved() {
        assert_eq!(path("//llm/x"), "/llm/x");
        assert_eq!(path("/comfy//../llm/x"), "/llm/x");
        assert_eq!(path("/comfy///history"), "/comfy/history");
    }

    #[test]
    fn raw_non_ascii_bytes_that_form_utf8_are_kept() {
        assert_eq!(path("/llm/é"), "/llm/é");
    }

    #[test]
    fn encoded_slashes_are_refused() {
        for uri in [
            "/comfy/..%2fllm/v1/chat",
            "/comfy/%2e%2e%2Fllm/v1/chat",
            "/comfy%2f..%2fllm/v1/chat",
        ] {
            assert_eq!(
                rejection(uri.as_bytes()),
                PathRejection::EncodedSlash,
                "{uri}"
            );
        }
    }

    #[test]
    fn backslashes_raw_or_encoded_are_refused() {
        for uri in ["/comfy/..\\llm/v1/chat", "/comfy/..%5cllm/v1/chat"] {
            assert_eq!(rejection(uri.as_bytes()), PathRejection::Backslash, "{uri}");
        }
    }

    #[test]
    fn nul_and_other_control_characters_are_refused() {
        for uri in [
            &b"/comfy/x%00y"[..],
            b"/comfy/%0a",
            b"/comfy/%7F",
            b"/comfy/a\tb",
        ] {
            assert_eq!(rejection(uri), PathRejection::ControlCharacter);
        }
    }

    #[test]
    fn invalid_percent_encoding_is_refused() {
        for uri in ["/comfy/%zz", "/comfy/x%2", "/comfy%", "/comfy/%g0"] {
            assert_eq!(
                rejection(uri.as_bytes()),
                PathRejection::InvalidPercentEncoding,
                "{uri}"
            );
        }
    }

    #[test]
    fn a_dot_dot_above_the_root_is_refused() {
        for uri in ["/..", "/comfy/../../llm/x", "/%2e%2e/llm", "/comfy/../.."] {
            assert_eq!(rejection(uri.as_bytes()), PathRejection::AboveRoot, "{uri}");
        }
    }

    #[test]
    fn what_is_not_a_path_is_refused() {
        for uri in ["", "*", "http://evil/llm/x", "llm/x", "?/comfy"] {
            assert_eq!(rejection(uri.as_bytes()), PathRejection::NotAPath, "{uri}");
        }
    }

    #[test]
    fn a_path_that_is_not_utf8_once_decoded_is_refused() {
        assert_eq!(rejection(b"/comfy/%ff"), PathRejection::NotUtf8);
        assert_eq!(rejection(b"/comfy/\xff"), PathRejection::NotUtf8);
    }

    #[test]
    fn segments_skip_the_empty_ends() {
        let path = ForwardedPath::parse(b"/api/v1/jobs/").unwrap();
        assert_eq!(path.segments().collect::<Vec<_>>(), ["api", "v1", "jobs"]);
        assert_eq!(ForwardedPath::parse(b"/").unwrap().segments().count(), 0);
    }

    #[test]
    fn rejection_reasons_are_stable_names() {
        assert_eq!(PathRejection::EncodedSlash.reason(), "encoded_slash");
        assert_eq!(PathRejection::AboveRoot.reason(), "above_root");
        assert_eq!(
            PathRejection::InvalidPercentEncoding.reason(),
            "invalid_percent_encoding"
        );
    }
}
