//! A real S3 implementation for the object-store tests: moto's standalone server
//! (`moto[server]` from PyPI, installed by `scripts/tools/s3.sh`, which exports
//! `TOLLGATE_MOTO_SERVER`), on a free loopback port. Once set up, its authentication is
//! switched on: every header-signed request is then checked against AWS Signature V4 with
//! the key of an IAM user made for the test. Moto does not check presigned URLs (with
//! authentication on it cannot serve them at all), so a download through one is made with
//! authentication off again; the presigned signatures themselves are checked against AWS's
//! published example and botocore in `tollgate::jobs::s3`.

#![allow(dead_code)]

use std::time::Duration;

use tollgate::jobs::s3::{self, Credentials};

pub const BUCKET: &str = "outputs";

pub struct Moto {
    pub url: String,
    /// The IAM user's key, allowed `s3:*`.
    pub credentials: Credentials,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in {text}"))
        + open.len();
    let end = text[start..]
        .find(close)
        .unwrap_or_else(|| panic!("no {close} in {text}"));
    &text[start..start + end]
}

impl Moto {
    /// Starts moto, makes an IAM user with a key allowed `s3:*` and the bucket
    /// [`BUCKET`], then switches signature checking on.
    pub async fn start() -> Moto {
        let server = std::env::var("TOLLGATE_MOTO_SERVER").unwrap_or_else(|_| {
            panic!(
                "TOLLGATE_MOTO_SERVER is not set: the S3 tests need moto's server. \
                 Run `source scripts/tools/s3.sh` (it installs moto[server] from PyPI into \
                 ${{TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}} and exports the variable), \
                 or use scripts/test.sh"
            )
        });
        assert!(
            std::path::Path::new(&server).is_file(),
            "TOLLGATE_MOTO_SERVER={server} does not exist: run `source scripts/tools/s3.sh`"
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{server}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // Moto imports a lot before it listens: seconds, more on a busy machine.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = http.get(format!("{url}/moto-api/")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto did not answer on {url} within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut moto = Moto {
            url,
            credentials: Credentials {
                access_key_id: String::new(),
                secret_access_key: String::new(),
                session_token: None,
            },
            http,
            _child: child,
        };
        moto.iam("CreateUser", &[("UserName", "runner")]).await;
        let key = moto.iam("CreateAccessKey", &[("UserName", "runner")]).await;
        moto.credentials.access_key_id = between(&key, "<AccessKeyId>", "<").to_string();
        moto.credentials.secret_access_key = between(&key, "<SecretAccessKey>", "<").to_string();
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        moto.iam(
            "PutUserPolicy",
            &[
                ("UserName", "runner"),
                ("PolicyName", "outputs"),
                ("PolicyDocument", policy),
            ],
        )
        .await;
        // The bucket, still unauthenticated (moto takes an unsigned request as S3's).
        let response = moto
            .http
            .put(format!("{}/{BUCKET}", moto.url))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "create bucket: {response:?}"
        );
        moto.authentication(true).await;
        moto
    }

    /// An IAM call while authentication is off: moto routes by the credential scope of the
    /// Authorization header, and checks nothing yet.
    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        let mut form = vec![("Action", action), ("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let response = self
            .http
            .post(format!("{}/", self.url))
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=setup/20240101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=none",
            )
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "IAM {action}: {status}: {text}");
        text
    }

    /// Switches SigV4 checking on (every request from now) or off.
    pub async fn authentication(&self, on: bool) {
        let response = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.url))
            .body(if on { "0" } else { "inf" })
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "reset-auth: {response:?}");
    }

    /// The `--store` URL of `prefix` in [`BUCKET`].
    pub fn store_url(&self, prefix: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1",
            self.url
        )
    }

    /// A presigned `GET` URL of `key` in [`BUCKET`] (moto refuses anonymous reads).
    pub fn object_url(&self, key: &str) -> String {
        let endpoint = s3::Endpoint::new(Some(&self.url), "us-east-1").unwrap();
        let object = endpoint.object(BUCKET, key).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        s3::presign_get(&endpoint, &self.credentials, &object, now, 60)
    }

    /// `GET url`: status, content type and body.
    pub async fn get(&self, url: &str) -> (u16, String, Vec<u8>) {
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (
            status,
            content_type,
            response.bytes().await.unwrap().to_vec(),
        )
    }
}
