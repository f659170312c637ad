//! Streamed chat completions (`stream: true`): the provider's server-sent events reach the
//! client as they are written, read as OpenAI's chunks whatever the provider's kind
//! ([`StreamEvents`]), each with the catalogue's model name.
//!
//! The call is held, and its deployments tried, as a whole one ([`calls`]): a deployment
//! that answers 429, 5xx or nothing in time before its stream begins makes way for the
//! next, and a refusal or no answer at all is heard as an error, not a stream. Once one
//! stream has begun, a driver ([`Streamed::driver`], which the runtime runs beside the
//! response) reads it to its end and passes each event on through a small channel; the
//! provider is always asked for its usage (`stream_options.include_usage`), which the
//! client sees only if it asked for it too. When the provider is done the driver settles
//! the call at the reported usage, once, whether or not the client is still reading: a
//! client that goes away mid-stream is charged for what the provider wrote. A stream that
//! breaks before its usage came is charged its hold once any event had arrived, and
//! released when none had.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{StatusCode, header};
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;

use super::{
    calls::{self, Call, Ending, Outcome, Resolved},
    estimate::WorstCase,
    interactions::Endpoint,
    providers::{ChatRequest, Failure, Kind, StreamEvents, Usage, failure, openai},
};
use crate::{
    ApiError, Env,
    api::{Reply, Streamed},
    auth::principal::Principal,
    error::ApiResult,
    ids::new_id,
    outbound::ChunkStream,
};

/// Events the driver may write ahead of a slow client.
const CHANNEL_DEPTH: usize = 32;
/// The most of a refusing provider's error body read to tell why it refused.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Holds the worst case, opens the first deployment that streams, and answers with its
/// events; or settles, records and refuses as a whole call would.
pub(super) async fn run(
    env: Rc<Env>,
    principal: Principal,
    resolved: Resolved,
    worst: WorstCase,
    chat: ChatRequest,
    client_wants_usage: bool,
) -> ApiResult<Reply> {
    let hold = worst.credits(&resolved.model);
    let reservation =
        calls::hold_credits(&env, &principal, &resolved.model, hold, env.now()).await?;
    let started = chrono::Utc::now();
    let outcome = calls::call(&env, &resolved.routes, &chat, |_, outgoing| {
        open(&env, outgoing)
    })
    .await;
    let call = Call {
        interaction_id: new_id(),
        principal: &principal,
        resolved: &resolved,
        endpoint: Endpoint::Chat,
        reservation: reservation.as_deref(),
        hold,
        worst,
        latency_ms: calls::elapsed_ms(started),
        first_token_ms: None,
    };
    let (upstream, route) = match outcome {
        Outcome::Answered { answer, route } => (answer.into_body(), route),
        refused => {
            call.record(&env, refused.ending(|_| None)).await?;
            return Err(call.refusal(refused));
        }
    };
    let mut head = http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Bytes::new())
        .expect("static response parts are valid");
    principal.rate.apply(&mut head);
    call.name_in(&mut head);
    let interaction_id = call.interaction_id;
    // `call` answered only with a deployment whose kind it could read.
    let events = Kind::parse("kind", &resolved.routes[route].kind)
        .map_err(|_| ApiError::internal().caused_by("an answering deployment has no kind"))?
        .provider()
        .stream_events(&chat);
    let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })
    .boxed_local();
    let driver = async move {
        let model = resolved.model.name.clone();
        let keeps_content = resolved.kept_request.is_some();
        let relayed = relay(
            upstream,
            events,
            &sender,
            &model,
            client_wants_usage,
            keeps_content,
            started,
        )
        .await;
        let call = Call {
            interaction_id,
            principal: &principal,
            resolved: &resolved,
            endpoint: Endpoint::Chat,
            reservation: reservation.as_deref(),
            hold,
            worst,
            latency_ms: calls::elapsed_ms(started),
            first_token_ms: relayed.first_event_ms,
        };
        let ending = Ending {
            route,
            answered: relayed.events > 0,
            usage: relayed.usage,
            error: relayed.error,
            kept_response: relayed
                .transcript
                .map(|transcript| transcript.messages().to_string()),
        };
        // The client has its answer; a settle the database refuses now leaves the hold held
        // until cron releases stale calls' holds.
        let _ = call.record(&env, ending).await;
        // The body ends only now, so a client that read it to the end finds the call settled.
        drop(sender);
    };
    let driver = Box::pin(driver);
    Ok(Reply::Streamed(Streamed {
        response: head.map(|_| body),
        driver,
    }))
}

/// Opens one deployment's stream: its response once the head says it streams, or the
/// failure its error body tells.
async fn open(
    env: &Env,
    outgoing: http::Request<Bytes>,
) -> Result<http::Response<ChunkStream>, (Failure, bool)> {
    let response = env
        .outbound
        .open(outgoing)
        .await
        .map_err(calls::failed_to_send)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let (head, mut chunks) = response.into_parts();
    let mut body = BytesMut::new();
    while body.len() < ERROR_BODY_LIMIT {
        match chunks.next().await {
            Some(Ok(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let whole = http::Response::from_parts(head, body.freeze());
    Err((failure(&whole), false))
}

/// What the driver saw of a stream.
#[derive(Debug, Default, PartialEq)]
struct Relayed {
    /// Data events received (`[DONE]` included).
    events: usize,
    first_event_ms: Option<i64>,
    usage: Option<Usage>,
    /// Why the stream did not end with `[DONE]`.
    error: Option<String>,
    /// The messages the deltas added up to, when the tenant keeps the text of calls.
    transcript: Option<Transcript>,
}

/// Reads `upstream` to its end, passing each event on (read as OpenAI's by `events`) while
/// the client listens.
async fn relay(
    mut upstream: ChunkStream,
    mut events: Box<dyn StreamEvents>,
    sender: &mpsc::Sender<Bytes>,
    model: &str,
    client_wants_usage: bool,
    keeps_content: bool,
    started: chrono::DateTime<chrono::Utc>,
) -> Relayed {
    let mut parser = EventParser::default();
    let mut relayed = Relayed {
        transcript: keeps_content.then(Transcript::default),
        ..Relayed::default()
    };
    let mut listening = true;
    let mut done = false;
    while let Some(chunk) = upstream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                relayed.error = Some(format!("the provider's stream broke: {error}"));
                break;
            }
        };
        for written in parser.push(&chunk) {
            relayed.events += 1;
            relayed
                .first_event_ms
                .get_or_insert_with(|| calls::elapsed_ms(started));
            for data in events.translate(&written) {
                let Some(out) = rewrite(&data, model, client_wants_usage, &mut relayed) else {
                    continue;
                };
                done |= data == "[DONE]";
                if listening && sender.send(sse(&out)).await.is_err() {
                    // The client went away; the provider's usage still comes at the end.
                    listening = false;
                }
            }
        }
    }
    if !done && relayed.error.is_none() {
        relayed.error = Some("the provider's stream ended before [DONE]".into());
    }
    relayed
}

/// One event as the client gets it.
fn sse(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// The data of one event as the client should get it, or `None` to drop it: the
/// catalogue's model name in place of the provider's, and the usage (noted in `relayed`)
/// kept only for a client that asked for it.
fn rewrite(
    data: &str,
    model: &str,
    client_wants_usage: bool,
    relayed: &mut Relayed,
) -> Option<String> {
    let Ok(mut chunk) = serde_json::from_str::<Map<String, Json>>(data) else {
        return Some(data.to_owned());
    };
    if let Some(usage) = chunk
        .get("usage")
        .filter(|usage| !usage.is_null())
        .and_then(openai::usage)
    {
        relayed.usage = Some(usage);
    }
    if let Some(error) = chunk.get("error") {
        relayed.error = Some(format!("the provider's stream failed: {error}"));
    }
    if let Some(transcript) = &mut relayed.transcript {
        transcript.add(&chunk);
    }
    if chunk.contains_key("model") {
        chunk.insert("model".into(), Json::from(model));
    }
    if !client_wants_usage {
        let only_usage = chunk
            .get("choices")
            .and_then(Json::as_array)
            .is_some_and(Vec::is_empty)
            && chunk.get("usage").is_some_and(|usage| !usage.is_null());
        if only_usage {
            return None;
        }
        chunk.remove("usage");
    }
    Some(Json::Object(chunk).to_string())
}

/// The messages a stream's deltas add up to, one per choice: text fields are appended
/// (`content`, a tool call's `function.arguments`), objects merged, tool calls gathered by
/// their `index`.
#[derive(Debug, Default, PartialEq)]
struct Transcript {
    choices: std::collections::BTreeMap<u64, Json>,
}

impl Transcript {
    fn add(&mut self, chunk: &Map<String, Json>) {
        let Some(choices) = chunk.get("choices").and_then(Json::as_array) else {
            return;
        };
        for choice in choices {
            let index = choice.get("index").and_then(Json::as_u64).unwrap_or(0);
            if let Some(delta) = choice.get("delta") {
                let message = self
                    .choices
                    .entry(index)
                    .or_insert_with(|| Json::Object(Map::new()));
                merge_delta(message, delta);
            }
        }
    }

    /// The messages, in choice order, as OpenAI's whole answer would hold them.
    fn messages(&self) -> Json {
        Json::Array(self.choices.values().cloned().collect())
    }
}

/// Adds one delta to what came before it.
fn merge_delta(into: &mut Json, delta: &Json) {
    match (into, delta) {
        (Json::String(text), Json::String(more)) => text.push_str(more),
        (Json::Object(fields), Json::Object(changes)) => {
            for (key, change) in changes {
                if change.is_null() {
                    continue;
                }
                match fields.get_mut(key) {
                    Some(field) => merge_delta(field, change),
                    None => {
                        fields.insert(key.clone(), change.clone());
                    }
                }
            }
        }
        // Tool calls: each delta names the call it continues by its `index`.
        (Json::Array(items), Json::Array(parts)) => {
            for part in parts {
                let index = part.get("index");
                match items
                    .iter_mut()
                    .find(|item| index.is_some() && item.get("index") == index)
                {
                    Some(item) => merge_delta(item, part),
                    None => items.push(part.clone()),
                }
            }
        }
        (slot, change) => *slot = change.clone(),
    }
}

/// Server-sent events out of a byte stream: the `data` of each event, once its blank line
/// has arrived (events split across chunks, and chunks holding several, both happen).
#[derive(Default)]
struct EventParser {
    pending: Vec<u8>,
}

impl EventParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        // Lines may end in CRLF; the data never holds a bare CR.
        self.pending
            .extend(chunk.iter().copied().filter(|byte| *byte != b'\r'));
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|pair| pair == b"\n\n") {
            let block: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|value| value.strip_prefix(' ').unwrap_or(value))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deltas_add_up_to_the_messages_a_whole_answer_holds() {
        let mut transcript = Transcript::default();
        let deltas = [
            json!([{ "index": 0, "delta": { "role": "assistant", "content": "" } }]),
            json!([{ "index": 0, "delta": { "content": "Hel" } },
                   { "index": 1, "delta": { "role": "assistant", "content": "Yo" } }]),
            json!([{ "index": 0, "delta": { "content": "lo", "refusal": null } }]),
            json!([{ "index": 1, "delta": { "tool_calls": [{ "index": 0, "id": "call_1", "type": "function",
                     "function": { "name": "get_weather", "arguments": "{\"ci" } }] } }]),
            json!([{ "index": 1, "delta": { "tool_calls": [{ "index": 0, "function": { "arguments": "ty\":1}" } }] } }]),
            json!([]),
        ];
        for choices in deltas {
            transcript.add(json!({ "choices": choices }).as_object().unwrap());
        }
        assert_eq!(
            transcript.messages(),
            json!([
                { "role": "assistant", "content": "Hello" },
                { "role": "assistant", "content": "Yo", "tool_calls": [{ "index": 0, "id": "call_1",
                  "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":1}" } }] },
            ])
        );
    }

    #[test]
    fn events_are_read_whole_across_chunks_and_comments_are_skipped() {
        let mut parser = EventParser::default();
        assert!(parser.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            parser.push(b":1}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\ndata: x"),
            vec!["{\"a\":1}".to_owned(), "[DONE]".to_owned()]
        );
        assert_eq!(parser.push(b"\n\n"), vec!["x".to_owned()]);
    }

    fn chunk(usage: Json, choices: Json) -> String {
        json!({ "id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06",
                "choices": choices, "usage": usage })
        .to_string()
    }

    #[test]
    fn each_chunk_names_the_catalogue_model_and_usage_reaches_only_clients_that_asked() {
        let delta = json!([{ "index": 0, "delta": { "content": "Hi" }, "finish_reason": null }]);
        let usage = json!({ "prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11 });
        let mut relayed = Relayed::default();
        let out = rewrite(
            &chunk(Json::Null, delta.clone()),
            "acme-chat",
            false,
            &mut relayed,
        )
        .unwrap();
        let out: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(out["model"], "acme-chat");
        assert!(out.get("usage").is_none());
        assert_eq!(out["choices"], delta);

        let last = chunk(usage.clone(), json!([]));
        assert_eq!(rewrite(&last, "acme-chat", false, &mut relayed), None);
        let counted = Usage {
            prompt_tokens: 9,
            completion_tokens: 2,
            cached_tokens: 0,
        };
        assert_eq!(relayed.usage, Some(counted));

        let mut asked = Relayed::default();
        let kept: Json =
            serde_json::from_str(&rewrite(&last, "acme-chat", true, &mut asked).unwrap()).unwrap();
        assert_eq!(kept["usage"], usage);
        assert_eq!(asked.usage, Some(counted));
        assert_eq!(
            rewrite("[DONE]", "acme-chat", false, &mut asked).as_deref(),
            Some("[DONE]")
        );
    }
}
