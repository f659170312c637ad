//! A Stripe API double on loopback, answering with Stripe's own fixture objects
//! (`testdata/stripe/fixtures3.json`, what Stripe's mock server answers) for the calls
//! Tollgate makes, and recording each request as Stripe would receive it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;
use hyper::Response;
use serde_json::{Value, json};
use tollgate_tests::loopback::LoopbackServer;

use crate::support::object;

pub const SECRET_KEY: &str = "sk_test_tollgate";

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct StripeCall {
    pub method: String,
    pub path: String,
    /// The form body (or query string), decoded.
    pub form: HashMap<String, String>,
    pub idempotency_key: Option<String>,
}

#[derive(Default)]
struct State {
    calls: Vec<StripeCall>,
    decline_payments: bool,
    /// Answers are cut in half: what a body truncated on the way (or by a size cap) looks like.
    truncate_answers: bool,
}

pub struct StripeDouble {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
}

impl StripeDouble {
    pub async fn start() -> Self {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let server = LoopbackServer::start(move |parts, body| answer(&shared, parts, body)).await;
        Self { server, state }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn calls(&self) -> Vec<StripeCall> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn calls_to(&self, path: &str) -> Vec<StripeCall> {
        self.calls()
            .into_iter()
            .filter(|call| call.path == path)
            .collect()
    }

    /// Every answer's body is cut in half from now on.
    pub fn truncate_answers(&self) {
        self.state.lock().unwrap().truncate_answers = true;
    }

    /// Payment intents are declined (`card_declined`, 402) from now on.
    pub fn decline_payments(&self) {
        self.state.lock().unwrap().decline_payments = true;
    }
}

fn decode(form: &str) -> HashMap<String, String> {
    let unescape = |text: &str| {
        let bytes = text.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' && index + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                index += 3;
            } else {
                out.push(bytes[index]);
                index += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    form.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(key), unescape(value))
        })
        .collect()
}

fn stripe_error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({ "error": { "type": kind, "message": message } }),
    )
}

fn answer(state: &Mutex<State>, parts: Parts, body: Bytes) -> Response<Full<Bytes>> {
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let form = decode(if body.is_empty() {
        &query
    } else {
        std::str::from_utf8(&body).unwrap()
    });
    let call = StripeCall {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        form: form.clone(),
        idempotency_key: parts
            .headers
            .get("idempotency-key")
            .map(|value| value.to_str().unwrap().to_owned()),
    };
    let authorized = parts
        .headers
        .get("authorization")
        .is_some_and(|value| value == format!("Bearer {SECRET_KEY}").as_str());
    let (status, body, truncate) = {
        let mut state = state.lock().unwrap();
        let truncate = state.truncate_answers;
        state.calls.push(call.clone());
        let count = state.calls.len();
        let (status, body) = if !authorized {
            stripe_error(401, "invalid_request_error", "Invalid API Key provided")
        } else {
            match (call.method.as_str(), call.path.as_str()) {
                ("POST", "/v1/checkout/sessions") => {
                    let id = format!("cs_test_{count}");
                    (
                        200,
                        object(
                            "checkout.session",
                            json!({
                                "id": id,
                                "mode": form.get("mode"),
                                "status": "open",
                                "url": format!("https://checkout.stripe.com/c/pay/{id}"),
                                "client_reference_id": form.get("client_reference_id"),
                            }),
                        ),
                    )
                }
                ("POST", "/v1/billing_portal/sessions") => (
                    200,
                    object(
                        "billing_portal.session",
                        json!({ "customer": form.get("customer"), "return_url": form.get("return_url") }),
                    ),
                ),
                ("GET", "/v1/invoices") => (
                    200,
                    json!({
                        "object": "list",
                        "url": "/v1/invoices",
                        "has_more": false,
                        "data": [object("invoice", json!({ "customer": form.get("customer"), "status": "paid" }))],
                    }),
                ),
                ("POST", "/v1/payment_intents") if state.decline_payments => {
                    stripe_error(402, "card_error", "Your card was declined.")
                }
                ("POST", "/v1/payment_intents") => (
                    200,
                    object(
                        "payment_intent",
                        json!({
                            "id": format!("pi_test_{count}"),
                            "status": "succeeded",
                            "amount": form.get("amount").and_then(|amount| amount.parse::<i64>().ok()),
                            "customer": form.get("customer"),
                        }),
                    ),
                ),
                _ => stripe_error(404, "invalid_request_error", "Unrecognized request URL"),
            }
        };
        (status, body, truncate)
    };
    let mut body = body.to_string();
    if truncate {
        body.truncate(body.len() / 2);
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
