//! An OpenAI API double on loopback, built from OpenAI's published API reference: `POST
//! /v1/chat/completions` answers a chat completion object (`id`, `object`, `created`,
//! `model`, `choices` with the assistant `message` and `finish_reason`, `usage` with
//! `prompt_tokens_details.cached_tokens`), `POST /v1/embeddings` a list of `embedding`
//! objects, one per input (floats, or with `encoding_format: "base64"` the base64 of their
//! little-endian float32 bytes), with `usage.prompt_tokens`; a chat completion with
//! `stream: true` answers server-sent events of `chat.completion.chunk` objects (the
//! assistant role first, then the content piece by piece, then `finish_reason`, with
//! `stream_options.include_usage` a last chunk of empty `choices` and the `usage`, every
//! other chunk carrying `"usage": null`), ended by `data: [DONE]`; a wrong key answers 401 `invalid_api_key`, and
//! queued faults answer OpenAI's own error bodies (429 `rate_limit_exceeded` with
//! `Retry-After`, 500 `server_error`, 400 `invalid_request_error`). Every request is
//! recorded as the provider received it.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use crate::loopback::{LoopbackServer, StreamedBody};
use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Response, body::Frame};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// What the double answers next, before it goes back to completions.
#[derive(Debug, Clone)]
pub enum Fault {
    RateLimited {
        retry_after: u64,
    },
    ServerError,
    /// 400 for a request the provider refuses, with this message.
    BadRequest(&'static str),
    /// A completion without `usage`.
    NoUsage,
    /// A stream that stops after its first two content pieces, without `usage` or
    /// `[DONE]`, as a connection that breaks.
    CutStream,
}

/// The pieces a streamed completion writes, in order: together the whole completion's
/// content.
pub const STREAMED_PIECES: [&str; 9] = [
    "Hello", "!", " How", " can", " I", " assist", " you", " today", "?",
];

/// Content pieces a held stream writes before it waits for [`OpenAiDouble::release_answers`].
pub const PIECES_BEFORE_HOLD: usize = 2;

/// The usage the double reports for a completion.
#[derive(Debug, Clone, Copy)]
pub struct Reported {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
}

struct State {
    api_key: String,
    /// When set, each stream waits for a permit after its first pieces.
    gate: Option<Arc<Semaphore>>,
    /// Streams written to their end (or to a client that left).
    streams_finished: usize,
    requests: Vec<Value>,
    faults: VecDeque<Fault>,
    usage: Reported,
}

pub struct OpenAiDouble {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
}

impl OpenAiDouble {
    /// A provider account whose key is `api_key`.
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            gate: None,
            streams_finished: 0,
            requests: Vec::new(),
            faults: VecDeque::new(),
            usage: Reported {
                prompt_tokens: 19,
                completion_tokens: 10,
                cached_tokens: 0,
            },
        }));
        let shared = state.clone();
        let server =
            LoopbackServer::start_streaming(move |parts, body| answer(&shared, parts, body)).await;
        Self { server, state }
    }

    /// The API base a provider key names: `http://127.0.0.1:{port}/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }

    /// The usage the next completions report.
    pub fn reports(&self, usage: Reported) {
        self.state.lock().unwrap().usage = usage;
    }

    /// Queues `fault` for the next request (after those already queued).
    pub fn fails_with(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Makes the next answers wait until released: a stream after [`PIECES_BEFORE_HOLD`]
    /// pieces, a whole answer after its head, before its body.
    pub fn hold_answers(&self) {
        self.state.lock().unwrap().gate = Some(Arc::new(Semaphore::new(0)));
    }

    /// Lets every held answer write the rest.
    pub fn release_answers(&self) {
        if let Some(gate) = &self.state.lock().unwrap().gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    /// Streams written to their end, or to a client that left.
    pub fn streams_finished(&self) -> usize {
        self.state.lock().unwrap().streams_finished
    }

    /// Every request body received (chat completions and embeddings), in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> Response<StreamedBody> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_double");
    if let Some(seconds) = retry_after {
        builder = builder.header("retry-after", seconds.to_string());
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap()
}

fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

/// The double's embedding of input `index`: a few floats that tell inputs apart.
fn embedding(index: usize) -> Vec<f32> {
    (0..EMBEDDING_DIMENSIONS)
        .map(|dimension| (index * EMBEDDING_DIMENSIONS + dimension) as f32 / 64.0)
        .collect()
}

/// The length of the double's embeddings.
pub const EMBEDDING_DIMENSIONS: usize = 8;

/// OpenAI's embeddings list for `request`, one embedding per input.
fn embeddings(request: &Value, prompt_tokens: i64) -> Value {
    let inputs = match &request["input"] {
        Value::Array(items) if items.iter().all(|item| item.is_string() || item.is_array()) => {
            items.len()
        }
        _ => 1,
    };
    let base64 = request["encoding_format"] == "base64";
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let vector = embedding(index);
            let encoded = if base64 {
                let bytes: Vec<u8> = vector
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes
                ))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": encoded })
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    })
}

fn answer(state: &Arc<Mutex<State>>, parts: Parts, body: Bytes) -> Response<StreamedBody> {
    let path = parts.uri.path();
    if parts.method != http::Method::POST
        || !["/v1/chat/completions", "/v1/embeddings"].contains(&path)
    {
        let message = format!("Invalid URL ({} {})", parts.method, parts.uri.path());
        return json_response(404, &error(&message, "invalid_request_error", None), None);
    }
    let shared = state.clone();
    let mut state = state.lock().unwrap();
    let authorization = parts
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if authorization != format!("Bearer {}", state.api_key) {
        return json_response(
            401,
            &error(
                "Incorrect API key provided. You can find your API key in your account settings.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            None,
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.push(request.clone());
    let streamed = request["stream"] == true && path == "/v1/chat/completions";
    let mut completion = if path == "/v1/embeddings" {
        embeddings(&request, state.usage.prompt_tokens)
    } else {
        chat_completion(&request, state.requests.len(), state.usage)
    };
    match state.faults.pop_front() {
        None if streamed => stream(shared, state, &request, StreamEnd::Whole),
        Some(Fault::NoUsage) if streamed => stream(shared, state, &request, StreamEnd::NoUsage),
        Some(Fault::CutStream) => stream(shared, state, &request, StreamEnd::Cut),
        None => match state.gate.clone() {
            Some(gate) => held(completion, gate),
            None => json_response(200, &completion, None),
        },
        Some(Fault::NoUsage) => {
            completion.as_object_mut().unwrap().remove("usage");
            json_response(200, &completion, None)
        }
        Some(Fault::RateLimited { retry_after }) => json_response(
            429,
            &error(
                "Rate limit reached for requests. Please try again later.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            Some(retry_after),
        ),
        Some(Fault::ServerError) => json_response(
            500,
            &error(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            None,
        ),
        Some(Fault::BadRequest(message)) => {
            json_response(400, &error(message, "invalid_request_error", None), None)
        }
    }
}

/// A whole answer whose body is written only once the gate lets it.
fn held(completion: Value, gate: Arc<Semaphore>) -> Response<StreamedBody> {
    let body = futures::stream::once(async move {
        gate.acquire().await.unwrap().forget();
        Ok::<_, Infallible>(Frame::data(Bytes::from(completion.to_string())))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-request-id", "req_double")
        .body(StreamBody::new(body).boxed_unsync())
        .unwrap()
}

/// How a streamed completion ends.
#[derive(Clone, Copy, PartialEq)]
enum StreamEnd {
    /// With `finish_reason`, the usage when asked for, and `[DONE]`.
    Whole,
    /// As [`StreamEnd::Whole`], without the usage.
    NoUsage,
    /// After [`PIECES_BEFORE_HOLD`] pieces, without anything else.
    Cut,
}

/// A streamed chat completion: its events written by a task, which waits at the gate (when
/// set) after the first pieces and counts the stream finished when done.
fn stream(
    shared: Arc<Mutex<State>>,
    state: std::sync::MutexGuard<'_, State>,
    request: &Value,
    end: StreamEnd,
) -> Response<StreamedBody> {
    let include_usage = request["stream_options"]["include_usage"] == true;
    let id = format!("chatcmpl-double{}", state.requests.len());
    let model = request["model"].clone();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_741_569_952,
            "model": model, "system_fingerprint": "fp_double", "choices": choices,
        });
        if include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![chunk(
        json!([{ "index": 0, "delta": { "role": "assistant", "content": "", "refusal": null },
                 "logprobs": null, "finish_reason": null }]),
        None,
    )];
    for piece in STREAMED_PIECES {
        events.push(chunk(
            json!([{ "index": 0, "delta": { "content": piece }, "logprobs": null, "finish_reason": null }]),
            None,
        ));
    }
    events.push(chunk(
        json!([{ "index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop" }]),
        None,
    ));
    if include_usage && end == StreamEnd::Whole {
        let usage = state.usage;
        events.push(chunk(
            json!([]),
            Some(json!({
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                "prompt_tokens_details": { "cached_tokens": usage.cached_tokens, "audio_tokens": 0 },
            })),
        ));
    }
    events.push("data: [DONE]\n\n".to_owned());
    if end == StreamEnd::Cut {
        events.truncate(1 + PIECES_BEFORE_HOLD);
    }
    let gate = state.gate.clone();
    drop(state);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for (index, event) in events.into_iter().enumerate() {
            if index == 1 + PIECES_BEFORE_HOLD
                && let Some(gate) = &gate
            {
                gate.acquire().await.unwrap().forget();
            }
            if sender.send(Bytes::from(event)).await.is_err() {
                break;
            }
        }
        shared.lock().unwrap().streams_finished += 1;
    });
    let frames = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(event)), receiver))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("x-request-id", "req_double")
        .body(StreamBody::new(frames).boxed_unsync())
        .unwrap()
}

/// OpenAI's chat completion object for the `count`th request.
fn chat_completion(request: &Value, count: usize, usage: Reported) -> Value {
    json!({
        "id": format!("chatcmpl-double{count}"),
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": request["model"],
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! How can I assist you today?",
                "refusal": null,
                "annotations": [],
            },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": usage.cached_tokens, "audio_tokens": 0 },
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
    })
}
