//! S3-compatible object storage, as far as job outputs need it: object URLs (path-style,
//! or virtual-hosted when the endpoint names `{bucket}`), AWS Signature Version 4 for a
//! header-signed `PUT` (the runner's uploads) and for a presigned `GET` (the download links
//! Tollgate hands out). Pure functions over HMAC-SHA256, so they run on every runtime.
//!
//! Signing follows the published SigV4 rules for S3: the canonical URI is the path with
//! every byte but the unreserved ones percent-encoded once (`/` kept), the query is sorted
//! by name with names and values encoded, the payload hash is sent as
//! `x-amz-content-sha256` (`UNSIGNED-PAYLOAD` for presigned URLs), and the key is derived
//! from the secret through date, region, `s3` and `aws4_request`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";
/// The longest a presigned URL may live (S3's own limit: seven days).
pub const MAX_PRESIGN_SECONDS: i64 = 604_800;

/// An access key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// For temporary credentials (STS): sent as `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// An S3-compatible service: where it is and which region signs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port][/base]`, possibly with `{bucket}` in the host.
    url: String,
    pub region: String,
}

/// One object's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The URL without a query.
    pub url: String,
    /// The `Host` header the request carries (port only when not the scheme's default).
    pub host: String,
    /// The canonical (encoded) path.
    pub path: String,
}

impl Endpoint {
    /// `url` of the service (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`,
    /// `https://{bucket}.s3.amazonaws.com` for virtual-hosted addressing); `None` means AWS
    /// itself for `region`.
    pub fn new(url: Option<&str>, region: &str) -> Result<Endpoint, String> {
        let region = region.trim();
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!("invalid S3 region {region:?}"));
        }
        let url = match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let endpoint = Endpoint {
            url,
            region: region.to_string(),
        };
        // Check the shape once, with a bucket name standing in.
        endpoint.object("bucket", "key")?;
        Ok(endpoint)
    }

    /// The address of `key` in `bucket`.
    pub fn object(&self, bucket: &str, key: &str) -> Result<Object, String> {
        if !valid_bucket(bucket) {
            return Err(format!("invalid S3 bucket name {bucket:?}"));
        }
        if key.is_empty() {
            return Err("empty S3 object key".into());
        }
        let virtual_host = self.url.contains("{bucket}");
        let base = self.url.replace("{bucket}", bucket);
        let uri: http::Uri = base
            .parse()
            .map_err(|e| format!("invalid S3 endpoint {:?}: {e}", self.url))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "the S3 endpoint {:?} must be http:// or https://",
                self.url
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("the S3 endpoint {:?} names no host", self.url))?;
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_string(),
        };
        let mut path = uri.path().trim_end_matches('/').to_string();
        if !virtual_host {
            path.push('/');
            path.push_str(&encode(bucket, false));
        }
        path.push('/');
        path.push_str(&encode(key, false));
        Ok(Object {
            url: format!("{scheme}://{host}{path}"),
            host,
            path,
        })
    }
}

/// Bucket names as S3 allows them (3-63 lowercase letters, digits, dots and hyphens).
fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-'])
}

/// Percent-encodes everything but `A-Za-z0-9-._~` (and `/` unless `slash`), as SigV4 wants.
pub fn encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (byte == b'/' && !slash);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `(20130524T000000Z, 20130524)` for Unix seconds `now`.
fn stamps(now: i64) -> (String, String) {
    let time = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    (
        time.format("%Y%m%dT%H%M%SZ").to_string(),
        time.format("%Y%m%d").to_string(),
    )
}

/// The hex signature of `canonical_request` under the key derived for `date` and `region`.
fn sign(
    credentials: &Credentials,
    region: &str,
    amz_date: &str,
    date: &str,
    canonical_request: &str,
) -> String {
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date,
    );
    let key = hmac(&key, region);
    let key = hmac(&key, SERVICE);
    let key = hmac(&key, "aws4_request");
    hex::encode(hmac(&key, &string_to_sign))
}

/// A presigned `GET` of `object`, valid for `expires_seconds` (1 s to 7 days) from `now`.
pub fn presign_get(
    endpoint: &Endpoint,
    credentials: &Credentials,
    object: &Object,
    now: i64,
    expires_seconds: i64,
) -> String {
    let (amz_date, date) = stamps(now);
    let scope = format!("{date}/{}/{SERVICE}/aws4_request", endpoint.region);
    let mut query = vec![
        ("X-Amz-Algorithm".to_string(), ALGORITHM.to_string()),
        (
            "X-Amz-Credential".to_string(),
            format!("{}/{scope}", credentials.access_key_id),
        ),
        ("X-Amz-Date".to_string(), amz_date.clone()),
        (
            "X-Amz-Expires".to_string(),
            expires_seconds.clamp(1, MAX_PRESIGN_SECONDS).to_string(),
        ),
        ("X-Amz-SignedHeaders".to_string(), "host".to_string()),
    ];
    if let Some(token) = &credentials.session_token {
        query.push(("X-Amz-Security-Token".to_string(), token.clone()));
    }
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, true), encode(v, true)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "GET\n{}\n{canonical_query}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD",
        object.path, object.host
    );
    let signature = sign(
        credentials,
        &endpoint.region,
        &amz_date,
        &date,
        &canonical_request,
    );
    format!(
        "{}?{canonical_query}&X-Amz-Signature={signature}",
        object.url
    )
}

/// The headers that sign a `PUT` of `payload` to `object` (besides `Host`, which the HTTP
/// client sets from the URL to the same value): `Content-Type`, `x-amz-content-sha256`,
/// `x-amz-date`, `x-amz-security-token` when there is one, and `Authorization`.
pub fn sign_put(
    endpoint: &Endpoint,
    credentials: &Credentials,
    object: &Object,
    content_type: &str,
    payload: &[u8],
    now: i64,
) -> Vec<(String, String)> {
    let (amz_date, date) = stamps(now);
    let payload_hash = sha256_hex(payload);
    let mut headers = vec![
        ("content-type".to_string(), content_type.trim().to_string()),
        ("host".to_string(), object.host.clone()),
        ("x-amz-content-sha256".to_string(), payload_hash.clone()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), token.clone()));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "PUT\n{}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        object.path
    );
    let signature = sign(
        credentials,
        &endpoint.region,
        &amz_date,
        &date,
        &canonical_request,
    );
    let scope = format!("{date}/{}/{SERVICE}/aws4_request", endpoint.region);
    headers.retain(|(k, _)| k != "host");
    headers.push((
        "authorization".to_string(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key of AWS's SigV4 documentation.
    fn example() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// 2013-05-24T00:00:00Z, the date of AWS's examples.
    const EXAMPLE_DATE: i64 = 1_369_353_600;

    #[test]
    fn the_documented_presigned_url_is_reproduced() {
        // "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)": GET
        // test.txt in examplebucket (virtual-hosted), us-east-1, 86400 s.
        let endpoint =
            Endpoint::new(Some("https://{bucket}.s3.amazonaws.com"), "us-east-1").unwrap();
        let object = endpoint.object("examplebucket", "test.txt").unwrap();
        assert_eq!(object.host, "examplebucket.s3.amazonaws.com");
        let url = presign_get(&endpoint, &example(), &object, EXAMPLE_DATE, 86_400);
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    // The next two vectors were produced by botocore (the AWS SDK for Python:
    // `S3SigV4QueryAuth` and `S3SigV4Auth` with the clock fixed at the example date).

    #[test]
    fn a_path_style_url_with_a_port_and_an_encoded_key_matches_botocore() {
        let endpoint = Endpoint::new(Some("http://127.0.0.1:9000/"), "eu-west-1").unwrap();
        let object = endpoint.object("outputs", "jobs/j 1/a+b é.png").unwrap();
        assert_eq!(object.path, "/outputs/jobs/j%201/a%2Bb%20%C3%A9.png");
        assert_eq!(object.host, "127.0.0.1:9000");
        let url = presign_get(&endpoint, &example(), &object, EXAMPLE_DATE, 900);
        assert_eq!(
            url,
            "http://127.0.0.1:9000/outputs/jobs/j%201/a%2Bb%20%C3%A9.png?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Feu-west-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=3ebcff351c9a8221886758725bf6dddc3b10f1efd17ac7f212df61dfd96f5b62"
        );
    }

    #[test]
    fn a_signed_put_matches_botocore() {
        let endpoint = Endpoint::new(Some("http://127.0.0.1:9000"), "us-east-1").unwrap();
        let object = endpoint.object("bucket", "out/job 1/a+b.png").unwrap();
        let headers = sign_put(
            &endpoint,
            &example(),
            &object,
            "image/png",
            b"hello",
            EXAMPLE_DATE,
        );
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get("x-amz-date"), "20130524T000000Z");
        assert_eq!(
            get("x-amz-content-sha256"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            get("authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=214c5a0b915a3fa17a2e9c2560bc48184bca7bc8521efe62a7732294b84a7a22"
        );
        assert!(headers.iter().all(|(k, _)| k != "host"));
    }

    #[test]
    fn a_session_token_is_signed_along() {
        let endpoint = Endpoint::new(None, "us-east-1").unwrap();
        let object = endpoint.object("bucket", "k").unwrap();
        assert_eq!(object.url, "https://s3.us-east-1.amazonaws.com/bucket/k");
        let mut credentials = example();
        let plain = presign_get(&endpoint, &credentials, &object, EXAMPLE_DATE, 60);
        credentials.session_token = Some("token/+=".into());
        let url = presign_get(&endpoint, &credentials, &object, EXAMPLE_DATE, 60);
        assert!(
            url.contains("&X-Amz-Security-Token=token%2F%2B%3D&"),
            "{url}"
        );
        assert_ne!(plain[plain.len() - 64..], url[url.len() - 64..]);
        let headers = sign_put(&endpoint, &credentials, &object, "image/png", b"", 0);
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "token/+=")
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "authorization" && v.contains("x-amz-date;x-amz-security-token"))
        );
    }

    #[test]
    fn bad_endpoints_and_names_are_refused() {
        assert!(Endpoint::new(Some("ftp://x"), "us-east-1").is_err());
        assert!(Endpoint::new(Some("http://"), "us-east-1").is_err());
        assert!(Endpoint::new(None, "").is_err());
        assert!(Endpoint::new(None, "us east").is_err());
        let endpoint = Endpoint::new(None, "us-east-1").unwrap();
        for bucket in ["ab", "Upper", "a_b", "-ab", "ab.", "a/b"] {
            assert!(endpoint.object(bucket, "k").is_err(), "{bucket}");
        }
        assert!(endpoint.object("bucket", "").is_err());
        // The default ports are not part of the host.
        let endpoint = Endpoint::new(Some("https://s3.example:443"), "us-east-1").unwrap();
        assert_eq!(endpoint.object("bucket", "k").unwrap().host, "s3.example");
    }
}
