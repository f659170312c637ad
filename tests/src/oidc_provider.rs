//! A real OpenID Connect provider for the SSO tests: `tests/auth/sso/provider.py`
//! (Authlib's authorization server in Flask, from PyPI) on loopback, started per test and
//! stopped when dropped, with the test's controls: who signs in next, what the next ID
//! token gets wrong, key rotation, and how often the key set was fetched.
//!
//! Needs `TOLLGATE_OIDC_PYTHON`, which `scripts/tools/oidc.sh` installs and exports.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The client Tollgate is registered as at the provider.
pub const CLIENT_ID: &str = "tollgate-acme";
pub const CLIENT_SECRET: &str = "provider-secret-0123456789";

/// The provider process; it stops when dropped (its stdin closes, and it is killed).
pub struct Provider {
    _child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

impl Provider {
    /// A provider that sends browsers back to `redirect_uri` only (`any`: to any
    /// Tollgate's callback, for runtimes whose public URL the test does not set).
    pub async fn start(redirect_uri: &str) -> Provider {
        let python = std::env::var("TOLLGATE_OIDC_PYTHON").unwrap_or_else(|_| {
            panic!("TOLLGATE_OIDC_PYTHON is not set: run `source scripts/tools/oidc.sh` (scripts/test.sh does)")
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/auth/sso/provider.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(CLIENT_ID)
            .arg(CLIENT_SECRET)
            .arg(redirect_uri)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the provider starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the provider says where it listens within 30 s")
            .unwrap()
            .expect("a line");
        let issuer = first
            .strip_prefix("listening on ")
            .expect("listening on …")
            .to_owned();
        Provider {
            _child: child,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    pub async fn control(&self, path: &str, body: Value) {
        let response = self
            .http
            .post(format!("{}/control/{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// The person the next authorization is for.
    pub async fn signs_in_as(&self, subject: &str, email: &str) {
        self.control(
            "person",
            json!({ "sub": subject, "email": email, "email_verified": true, "name": "Ada Forge" }),
        )
        .await;
    }

    /// The next ID token has `fault`: audience, expired, signature, nonce or
    /// unverified_email.
    pub async fn next_token(&self, fault: &str) {
        self.control("fault", json!({ "fault": fault })).await;
    }

    pub async fn key_set_fetches(&self) -> i64 {
        let stats: Value = self
            .http
            .get(format!("{}/control/stats", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["jwks_fetches"].as_i64().unwrap()
    }
}
