//! A fake SendGrid-compatible email provider on loopback: it records every request made
//! to it, answers as SendGrid's v3 Mail Send does (202 Accepted with an `X-Message-Id`),
//! can be told to answer otherwise, and can be taken down and brought back on its port.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{
    net::TcpListener,
    task::{AbortHandle, JoinHandle},
};
use tollgate::mail::EmailProvider;

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
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Provider {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = Self {
            address: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                sent: Vec::new(),
                status: 202,
            })),
            server: Mutex::new(None),
            connections: Arc::default(),
        };
        provider.serve(listener);
        provider
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let connections = self.connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                connections.lock().unwrap().push(connection.abort_handle());
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// The settings that point Tollgate at this provider.
    pub fn settings(&self) -> EmailProvider {
        EmailProvider::from_settings(
            Some(format!("http://{}", self.address)),
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
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
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

async fn answer(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
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
