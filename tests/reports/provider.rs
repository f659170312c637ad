//! A fake SendGrid-compatible email provider on loopback: it records every request made
//! to it, answers as SendGrid's v3 Mail Send does (202 Accepted with an `X-Message-Id`),
//! can be told to answer otherwise, and can be taken down and brought back on its port.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;
use tollgate::mail::EmailProvider;
use tollgate_tests::loopback::LoopbackServer;

pub const API_KEY: &str = "SG.test-key";
pub const FROM: &str = "noreply@tollgate.test";

/// One request as the provider got it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub authorization: String,
    pub content_type: String,
    pub body: Value,
}

impl Sent {
    /// The single recipient of a one-personalization, one-recipient request.
    pub fn recipient(&self) -> &str {
        self.body["personalizations"][0]["to"][0]["email"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn subject(&self) -> &str {
        self.body["subject"].as_str().unwrap_or_default()
    }

    pub fn text(&self) -> &str {
        self.body["content"][0]["value"]
            .as_str()
            .unwrap_or_default()
    }
}

struct State {
    sent: Vec<Sent>,
    /// What to answer: 202 unless told otherwise.
    status: u16,
}

pub struct Provider {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
}

impl Provider {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            sent: Vec::new(),
            status: 202,
        }));
        let shared = state.clone();
        let server = LoopbackServer::start(move |parts, body| answer(&shared, parts, body)).await;
        Self { server, state }
    }

    /// The settings that point Tollgate at this provider.
    pub fn settings(&self) -> EmailProvider {
        EmailProvider::from_settings(
            Some(self.server.base_url()),
            Some(API_KEY.into()),
            Some(FROM.into()),
        )
        .unwrap()
        .unwrap()
    }

    /// Answers `status` to every request from now on.
    pub fn answer(&self, status: u16) {
        self.state.lock().unwrap().status = status;
    }

    /// Stops listening: connections are refused until [`Provider::up`].
    pub async fn down(&self) {
        self.server.down().await;
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        self.server.up().await;
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    /// The requests that carried a mail to `recipient` with `subject`.
    pub fn sent_to(&self, recipient: &str, subject: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|sent| sent.recipient() == recipient && sent.subject() == subject)
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
    let (status, number) = {
        let mut state = state.lock().unwrap();
        state.sent.push(Sent {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        (state.status, state.sent.len())
    };
    let mut response = Response::builder().status(status);
    let body = if (200..300).contains(&status) {
        response = response.header("x-message-id", format!("msg-{number}"));
        String::new()
    } else {
        // SendGrid's error shape.
        r#"{"errors":[{"message":"refused by the test provider","field":null}]}"#.to_owned()
    };
    response.body(Full::new(Bytes::from(body))).unwrap()
}
