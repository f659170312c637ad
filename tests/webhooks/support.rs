//! A webhook receiver the tests start on loopback, and the steps the webhook tests share.
//!
//! The receiver records every request and verifies signatures the way a tenant's receiver
//! would, with its own Standard Webhooks check (not Tollgate's code). It can be told what
//! to answer, and be taken down and brought back up on the same port.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http_body_util::Full;
use hyper::Response;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tollgate_tests::{TestApp, TestUser, expect_status, loopback::LoopbackServer, spawn_app_with};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("webhook bodies are JSON")
    }

    /// The `v1,…` signatures of the header.
    pub fn signatures(&self) -> Vec<&str> {
        self.signature.split(' ').collect()
    }

    /// True when one of the signatures is `secret`'s, computed as the Standard Webhooks
    /// spec says: HMAC-SHA256 keyed with the base64-decoded secret after `whsec_`, over
    /// `{id}.{timestamp}.{body}`, base64, prefixed `v1,`.
    pub fn signed_with(&self, secret: &str) -> bool {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
            .expect("the secret is base64");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{}.{}.{}", self.webhook_id, self.timestamp, self.body).as_bytes());
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        self.signatures().contains(&expected.as_str())
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

struct State {
    received: Vec<Received>,
    /// Answers to give first, in order; then `default`.
    queued: VecDeque<Reply>,
    default: Reply,
}

pub struct Receiver {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// A receiver on a free loopback port, answering 200.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            received: Vec::new(),
            queued: VecDeque::new(),
            default: Reply::status(200).with_body("ok"),
        }));
        let shared = state.clone();
        let server = LoopbackServer::start(move |parts, body| answer(&shared, parts, body)).await;
        Self { server, state }
    }

    pub fn port(&self) -> u16 {
        self.server.address.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.server.base_url(),
            path.trim_start_matches('/')
        )
    }

    /// Answers `reply` from now on.
    pub fn answer(&self, reply: Reply) {
        let mut state = self.state.lock().unwrap();
        state.queued.clear();
        state.default = reply;
    }

    /// Answers `reply` to the next request only.
    pub fn answer_once(&self, reply: Reply) {
        self.state.lock().unwrap().queued.push_back(reply);
    }

    /// Stops listening: connections are refused until [`Receiver::up`].
    pub async fn down(&self) {
        self.server.down().await;
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        self.server.up().await;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// What arrived at `path`.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|request| request.path == path)
            .collect()
    }
}

fn answer(state: &Mutex<State>, parts: Parts, body: Bytes) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let reply = {
        let mut state = state.lock().unwrap();
        state.received.push(Received {
            path: parts.uri.path().to_owned(),
            webhook_id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let default = state.default.clone();
        state.queued.pop_front().unwrap_or(default)
    };
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    response.body(Full::new(Bytes::from(reply.body))).unwrap()
}

/// A server whose access tokens outlive the days the retry schedule spans, and whose
/// clock stands at noon UTC, so that a test stepping minutes or hours ahead never crosses
/// midnight (which brings the tenant's daily report event).
pub async fn spawn_webhook_app() -> TestApp {
    let app = spawn_app_with(|config| config.access_token_ttl = 30 * 24 * 3600).await;
    let now = tollgate::clock::Clock::now(&app.clock);
    app.advance_clock(86_400 - now.rem_euclid(86_400) + 12 * 3600);
    app
}

/// A tenant's owner, and a platform admin who can make events happen in it.
pub struct Tenant {
    pub owner: TestUser,
    pub admin_token: String,
}

pub async fn tenant(app: &TestApp, slug: &str) -> Tenant {
    let owner = app.register(slug).await;
    let admin_token = app
        .platform_admin(&format!("ops@{slug}.platform.test"))
        .await;
    Tenant { owner, admin_token }
}

/// Makes one `credits.granted` event happen in the tenant: a platform admin's grant.
pub async fn grant(app: &TestApp, tenant: &Tenant) {
    app.grant_pool_credits(&tenant.admin_token, &tenant.owner, 1)
        .await;
}

/// Registers an endpoint and returns its JSON (with the secret).
pub async fn create_endpoint(
    app: &TestApp,
    user: &TestUser,
    url: &str,
    event_types: &[&str],
) -> Value {
    let response = app
        .post(
            "webhooks/endpoints",
            &user.access_token,
            &json!({ "url": url, "event_types": event_types }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await
}

pub async fn endpoint(app: &TestApp, user: &TestUser, id: &str) -> Value {
    let response = app
        .get(&format!("webhooks/endpoints/{id}"), &user.access_token)
        .await;
    expect_status(response, StatusCode::OK).await
}

/// The endpoint's delivery log, newest first.
pub async fn deliveries(app: &TestApp, user: &TestUser, endpoint_id: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("webhooks/endpoints/{endpoint_id}/deliveries?limit=100"),
            &user.access_token,
        )
        .await;
    let body = expect_status(response, StatusCode::OK).await;
    body["data"].as_array().unwrap().clone()
}

/// Steps the clock past the wait after the `failures`-th failure (jitter included) and
/// runs cron.
pub async fn retry_after_failure(app: &TestApp, failures: usize) {
    let wait = tollgate::webhooks::schedule::RETRY_SCHEDULE[failures - 1];
    app.advance_clock(wait + wait * tollgate::webhooks::schedule::JITTER_PERCENT / 100 + 1);
    app.run_cron().await;
}
