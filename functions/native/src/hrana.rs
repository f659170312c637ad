//! The Hrana transport for the native server (and the gpu-runner's direct mode): libSQL
//! over HTTP through reqwest, so the same binary can run against Turso or a sqld by URL.
//!
//! Not `libsql`'s own `remote` feature: the edge builds must speak Hrana through the shared
//! `HranaDb` anyway (see `tollgate::db::hrana` for why not libsql-client or the `cloudflare`
//! feature), and one implementation of the protocol on every runtime is what the
//! conformance suite can vouch for.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tollgate::db::hrana::Transport;

/// A statement that takes longer than this is treated as a lost connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client with rustls builds"),
        }
    }
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait(?Send)]
impl Transport for ReqwestTransport {
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| error.to_string())?;
        Ok((status, body))
    }

    async fn pause(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
