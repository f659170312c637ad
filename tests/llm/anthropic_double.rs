//! An Anthropic Messages API double on loopback, built from Anthropic's published API
//! reference: `POST /v1/messages` with `x-api-key` and `anthropic-version` answers a
//! `message` object (`id`, `type`, `role`, `content` blocks, `model`, `stop_reason`,
//! `stop_sequence`, `usage` with `input_tokens`, `cache_read_input_tokens`,
//! `cache_creation_input_tokens`, `output_tokens`); for a request with `tools` the content is
//! a text block and a `tool_use` block calling the first tool, with `stop_reason:
//! "tool_use"`. With `stream: true` it answers named server-sent events in the reference's
//! order: `message_start` (the message with empty content and the input usage),
//! `content_block_start` / `ping` / `content_block_delta` (`text_delta`, or
//! `input_json_delta` pieces of a tool's input) / `content_block_stop` per block,
//! `message_delta` (the `stop_reason` and the cumulative `usage.output_tokens`) and
//! `message_stop`. Errors take the reference's body, `{"type":"error","error":{"type",
//! "message"}}`: 401 `authentication_error` for a wrong key, 400 `invalid_request_error`
//! without `max_tokens` or the version header, and queued faults (529 `overloaded_error`,
//! 429 `rate_limit_error` with `retry-after`). Every request is recorded as received.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Response, body::Frame};
use serde_json::{Value, json};
use tollgate_tests::loopback::{LoopbackServer, StreamedBody};

/// What the double answers next, before it goes back to messages.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Overloaded,
    RateLimited { retry_after: u64 },
}

/// The text of the double's answer, and the pieces a stream writes it in.
pub const TEXT_PIECES: [&str; 4] = ["Hello", "! How can", " I help", "?"];
/// The input of the tool call the double makes, and the pieces a stream writes it in.
pub const TOOL_INPUT_PIECES: [&str; 3] = ["{\"city\"", ": \"Par", "is\"}"];
/// The usage every answer reports.
pub const INPUT_TOKENS: i64 = 21;
pub const CACHE_READ_TOKENS: i64 = 4;
pub const OUTPUT_TOKENS: i64 = 13;

struct State {
    api_key: String,
    requests: Vec<Value>,
    faults: VecDeque<Fault>,
}

pub struct AnthropicDouble {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
}

impl AnthropicDouble {
    /// An Anthropic account whose key is `api_key`.
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            requests: Vec::new(),
            faults: VecDeque::new(),
        }));
        let shared = state.clone();
        let server =
            LoopbackServer::start_streaming(move |parts, body| answer(&shared, parts, body)).await;
        Self { server, state }
    }

    /// The API base a provider key names (the API's paths start with `/v1`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Queues `fault` for the next request.
    pub fn fails_with(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response<StreamedBody> {
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", "req_double")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap()
}

fn answer(state: &Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Response<StreamedBody> {
    if parts.method != http::Method::POST || parts.uri.path() != "/v1/messages" {
        return error(404, "not_found_error", "Not found");
    }
    let mut state = state.lock().unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if header("x-api-key") != state.api_key {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if header("anthropic-version").is_empty() {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.push(request.clone());
    if !request["max_tokens"].is_u64() || !request["messages"].is_array() {
        return error(400, "invalid_request_error", "max_tokens: Field required");
    }
    match state.faults.pop_front() {
        Some(Fault::Overloaded) => return error(529, "overloaded_error", "Overloaded"),
        Some(Fault::RateLimited { retry_after }) => {
            let mut limited = error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            );
            limited
                .headers_mut()
                .insert("retry-after", retry_after.into());
            return limited;
        }
        None => {}
    }
    let id = format!("msg_double{}", state.requests.len());
    let tool = request["tools"][0]["name"].as_str().map(str::to_owned);
    if request["stream"] == true {
        return stream(&id, &request["model"], tool.as_deref());
    }
    let mut content = vec![json!({ "type": "text", "text": TEXT_PIECES.concat() })];
    if let Some(tool) = &tool {
        let input: Value = serde_json::from_str(&TOOL_INPUT_PIECES.concat()).unwrap();
        content.push(
            json!({ "type": "tool_use", "id": "toolu_double", "name": tool, "input": input }),
        );
    }
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "content": content,
        "model": request["model"],
        "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {
            "input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": CACHE_READ_TOKENS, "output_tokens": OUTPUT_TOKENS,
        },
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("request-id", "req_double")
        .body(Full::new(Bytes::from(message.to_string())).boxed_unsync())
        .unwrap()
}

/// A named server-sent event.
fn event(data: Value) -> Bytes {
    Bytes::from(format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    ))
}

/// The streamed message: its events, written one by one by a task.
fn stream(id: &str, model: &Value, tool: Option<&str>) -> Response<StreamedBody> {
    let mut events = vec![
        event(json!({ "type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0,
                       "cache_read_input_tokens": CACHE_READ_TOKENS, "output_tokens": 1 },
        }})),
        event(json!({ "type": "content_block_start", "index": 0,
                      "content_block": { "type": "text", "text": "" } })),
        event(json!({ "type": "ping" })),
    ];
    for piece in TEXT_PIECES {
        events.push(event(json!({ "type": "content_block_delta", "index": 0,
                                  "delta": { "type": "text_delta", "text": piece } })));
    }
    events.push(event(json!({ "type": "content_block_stop", "index": 0 })));
    if let Some(tool) = tool {
        events.push(event(json!({ "type": "content_block_start", "index": 1,
            "content_block": { "type": "tool_use", "id": "toolu_double", "name": tool, "input": {} } })));
        for piece in TOOL_INPUT_PIECES {
            events.push(event(json!({ "type": "content_block_delta", "index": 1,
                "delta": { "type": "input_json_delta", "partial_json": piece } })));
        }
        events.push(event(json!({ "type": "content_block_stop", "index": 1 })));
    }
    events.push(event(json!({ "type": "message_delta",
        "delta": { "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null },
        "usage": { "output_tokens": OUTPUT_TOKENS } })));
    events.push(event(json!({ "type": "message_stop" })));
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for event in events {
            if sender.send(event).await.is_err() {
                break;
            }
        }
    });
    let frames = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(event)), receiver))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("request-id", "req_double")
        .body(StreamBody::new(frames).boxed_unsync())
        .unwrap()
}
