//! Where job outputs go once fetched from ComfyUI: a local directory ([`LocalDirStore`], the
//! default) or an S3-compatible bucket ([`S3Store`], `--store s3://bucket/prefix?...`), whose
//! objects Tollgate turns into download links.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tollgate::jobs::s3::{self, Credentials, Endpoint};

#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "output store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

#[async_trait]
pub trait OutputStore: Send + Sync {
    /// Stores `bytes` under `key` (a relative, `/`-separated path) and returns where it
    /// went (a path or URL to record with the job).
    async fn put(&self, key: &str, content_type: &str, bytes: &[u8]) -> Result<String, StoreError>;
}

/// Files under one root directory; keys become relative paths.
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDirStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path for `key`, refusing anything that could leave the root.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError(format!("unsafe key {key:?}")));
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl OutputStore for LocalDirStore {
    async fn put(
        &self,
        key: &str,
        _content_type: &str,
        bytes: &[u8],
    ) -> Result<String, StoreError> {
        let path = self.path_for(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        }
        // Write beside, then rename: a reader never sees half a file.
        let tmp = path.with_extension("partial");
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| StoreError(format!("{}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        Ok(path.display().to_string())
    }
}

/// Keys are relative, `/`-separated paths without `.`, `..` or empty segments.
fn safe_key(key: &str) -> bool {
    !key.is_empty()
        && Path::new(key)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !key.contains("//")
        && !key.ends_with('/')
}

/// An S3-compatible bucket: objects are PUT under `prefix` with AWS Signature V4 (the
/// signing code Tollgate's download links use too), and recorded as `s3://bucket/key`.
pub struct S3Store {
    endpoint: Endpoint,
    bucket: String,
    prefix: String,
    credentials: Credentials,
    http: reqwest::Client,
    /// Attempts per object when the service does not answer or answers 5xx / 429.
    attempts: u32,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// `s3://bucket[/prefix][?endpoint=URL&region=REGION]`: without an endpoint, AWS itself
    /// in the region (default `us-east-1`); an endpoint with `{bucket}` in its host is
    /// addressed virtual-hosted, any other path-style.
    pub fn from_url(url: &str, credentials: Credentials) -> Result<S3Store, StoreError> {
        // The URL parser would resolve `.` and `..`: refuse them before it does.
        let raw_path = url.trim().split(['?', '#']).next().unwrap_or_default();
        if raw_path.split('/').skip(3).any(|s| s == "." || s == "..") {
            return Err(StoreError(format!("store URL {url:?}: unsafe prefix")));
        }
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| StoreError(format!("store URL {url:?}: {e}")))?;
        if parsed.scheme() != "s3" {
            return Err(StoreError(format!("store URL {url:?}: not s3://")));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StoreError(format!("store URL {url:?}: no bucket")))?
            .to_string();
        let prefix = parsed.path().trim_matches('/').to_string();
        if !prefix.is_empty() && !safe_key(&prefix) {
            return Err(StoreError(format!("store URL {url:?}: unsafe prefix")));
        }
        let (mut endpoint, mut region) = (None, "us-east-1".to_string());
        for (name, value) in parsed.query_pairs() {
            match name.as_ref() {
                "endpoint" => endpoint = Some(value.into_owned()),
                "region" => region = value.into_owned(),
                other => {
                    return Err(StoreError(format!(
                        "store URL {url:?}: unknown parameter {other:?} (endpoint, region)"
                    )));
                }
            }
        }
        let endpoint = Endpoint::new(endpoint.as_deref(), &region)
            .map_err(|e| StoreError(format!("store URL {url:?}: {e}")))?;
        endpoint
            .object(&bucket, "key")
            .map_err(|e| StoreError(format!("store URL {url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| StoreError(format!("HTTP client: {e}")))?;
        Ok(S3Store {
            endpoint,
            bucket,
            prefix,
            credentials,
            http,
            attempts: 3,
        })
    }

    /// The key pair from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN` for temporary credentials).
    pub fn credentials_from_env() -> Result<Credentials, StoreError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: get("AWS_SESSION_TOKEN"),
            }),
            _ => Err(StoreError(
                "an s3:// store needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key for a store key.
    fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    async fn put_once(
        &self,
        object: &s3::Object,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<(), (bool, String)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let headers = s3::sign_put(
            &self.endpoint,
            &self.credentials,
            object,
            content_type,
            bytes,
            now,
        );
        let mut request = self.http.put(&object.url).body(bytes.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| (true, format!("PUT {}: {e}", object.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let transient = status.is_server_error() || status.as_u16() == 429;
        Err((
            transient,
            format!(
                "PUT {}: {status}: {}",
                object.url,
                body.chars().take(500).collect::<String>()
            ),
        ))
    }
}

#[async_trait]
impl OutputStore for S3Store {
    async fn put(&self, key: &str, content_type: &str, bytes: &[u8]) -> Result<String, StoreError> {
        if !safe_key(key) {
            return Err(StoreError(format!("unsafe key {key:?}")));
        }
        let object_key = self.object_key(key);
        let object = self
            .endpoint
            .object(&self.bucket, &object_key)
            .map_err(StoreError)?;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.put_once(&object, content_type, bytes).await {
                Ok(()) => return Ok(format!("s3://{}/{object_key}", self.bucket)),
                Err((true, _)) if attempt < self.attempts => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err((_, message)) => return Err(StoreError(message)),
            }
        }
    }
}

/// The store `spec` names: `s3://…` (credentials from the environment), else a directory
/// (`file://` allowed).
pub fn open(spec: &str) -> Result<Arc<dyn OutputStore>, StoreError> {
    let spec = spec.trim();
    if spec.starts_with("s3://") {
        let store = S3Store::from_url(spec, S3Store::credentials_from_env()?)?;
        return Ok(Arc::new(store));
    }
    if spec.contains("://") && !spec.starts_with("file://") {
        return Err(StoreError(format!(
            "unsupported store {spec:?}: a directory, file://DIR or s3://BUCKET/PREFIX"
        )));
    }
    let dir = spec.strip_prefix("file://").unwrap_or(spec);
    if dir.is_empty() {
        return Err(StoreError("empty store directory".into()));
    }
    Ok(Arc::new(LocalDirStore::new(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        }
    }

    #[test]
    fn s3_store_urls() {
        let s = S3Store::from_url(
            "s3://outputs/gpu/eu-1/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1",
            credentials(),
        )
        .unwrap();
        assert_eq!((s.bucket(), s.prefix.as_str()), ("outputs", "gpu/eu-1"));
        assert_eq!(s.endpoint.region, "eu-west-1");
        assert_eq!(s.object_key("j/a.png"), "gpu/eu-1/j/a.png");
        // An unencoded endpoint reads the same.
        let s = S3Store::from_url("s3://outputs?endpoint=http://127.0.0.1:9000", credentials())
            .unwrap();
        assert_eq!(s.prefix, "");
        assert_eq!(
            s.endpoint.object("outputs", "j/a.png").unwrap().url,
            "http://127.0.0.1:9000/outputs/j/a.png"
        );
        for bad in [
            "s3://",
            "s3://Bad_Bucket/x",
            "s3://outputs/../x",
            "s3://outputs/a/./x",
            "s3://outputs/x?endpoint=ftp://h",
            "s3://outputs/x?acl=public",
            "https://outputs/x",
        ] {
            assert!(S3Store::from_url(bad, credentials()).is_err(), "{bad}");
        }
        assert!(open("http://example/x").is_err());
        assert!(open("file:///srv/outputs").is_ok());
    }

    #[test]
    fn keys_cannot_leave_the_root() {
        let store = LocalDirStore::new("/srv/out");
        assert!(store.path_for("job/chain/a.png").is_ok());
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
            assert!(store.path_for(bad).is_err(), "{bad}");
        }
    }
}
