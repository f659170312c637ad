//! The edge builds as real processes: the Cloudflare worker under `wrangler dev` (workerd)
//! and the Spin component under `wasmtime serve`, both against a libSQL HTTP endpoint.
//!
//! The artifacts are built by `scripts/test.sh` before the tests run (building them from
//! inside a test would contend with cargo's own lock); their paths come from environment
//! variables, and a missing one fails the test with the command that makes it.

pub mod wasmtime;
pub mod workerd;

use std::time::Duration;

/// What every edge runtime is started with.
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    /// The Hrana HTTP endpoint (`http://127.0.0.1:port`).
    pub database_url: String,
    pub database_token: String,
    pub jwt_secret: String,
    /// The bearer token of `POST /api/v1/cron/run`.
    pub cron_secret: String,
    /// Further settings (`TOLLGATE_SECRETS_KEYS` for the LLM gateway's provider keys, say).
    pub more: Vec<(&'static str, String)>,
}

impl EdgeSettings {
    /// Every setting the runtime is started with, by name.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let mut variables = vec![
            ("TOLLGATE_DATABASE_URL", self.database_url.clone()),
            ("TOLLGATE_DATABASE_TOKEN", self.database_token.clone()),
            ("TOLLGATE_JWT_SECRET", self.jwt_secret.clone()),
            ("TOLLGATE_CRON_SECRET", self.cron_secret.clone()),
        ];
        variables.extend(self.more.iter().cloned());
        variables
    }
}

/// A running edge runtime, stopped when dropped.
pub struct EdgeRuntime {
    /// Where the API is: `http://127.0.0.1:port` (the API lives under `/api/v1`).
    pub base_url: String,
    pub name: &'static str,
    pub(crate) child: tokio::process::Child,
    /// Scratch files the runtime needs (configs, state), removed with it.
    pub(crate) _scratch: tempfile::TempDir,
}

impl Drop for EdgeRuntime {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A free loopback port: bound, read, released.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Waits until `GET {base_url}/api/v1/health` answers 200, or panics after `bound`
/// (with the process's exit status if it died).
pub async fn wait_until_healthy(
    base_url: &str,
    child: &mut tokio::process::Child,
    bound: Duration,
) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the runtime exited before it served: {status}");
        }
        let health = client
            .get(format!("{base_url}/api/v1/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if health.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base_url} did not become healthy within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
