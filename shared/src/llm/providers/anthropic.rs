//! Anthropic's Messages API, translated both ways: an OpenAI chat completion request
//! becomes a `POST {base_url}/v1/messages` (system and developer messages in `system`, tool
//! calls as `tool_use` blocks, tool results as `tool_result` blocks, images as image
//! blocks, `max_tokens` always named), and the message that comes back becomes an OpenAI
//! chat completion with its `usage` (cache reads counted as cached prompt tokens).
//!
//! A stream (`stream: true`) is read event by event ([`MessageStream`]): `message_start`
//! opens the assistant's turn, text deltas become `content` deltas, a `tool_use` block and
//! its `input_json_delta`s become a tool call and its `arguments`, `message_delta` brings
//! the `finish_reason` and the output count, and `message_stop` ends it with OpenAI's usage
//! chunk and `[DONE]`; an `error` event is passed on as an error.
//!
//! What Messages cannot express is refused as the client's request (400): more than one
//! choice (`n`), and a `response_format` other than plain text. Fields OpenAI-compatible
//! servers would receive as they are have no place here and are not sent.

use bytes::Bytes;
use serde_json::{Map, Value as Json, json};

use super::{ChatRequest, Completion, Failure, Provider, StreamEvents, Target, Usage, failure};

/// The Messages API version the translation is written against.
const API_VERSION: &str = "2023-06-01";

pub struct Anthropic;

fn rejected(message: impl Into<String>) -> Failure {
    Failure::Rejected {
        status: 400,
        message: message.into(),
    }
}

impl Provider for Anthropic {
    fn chat_request(
        &self,
        target: &Target<'_>,
        request: &ChatRequest,
    ) -> Result<http::Request<Bytes>, Failure> {
        let body = messages_body(target.model, request)?;
        Ok(http::Request::builder()
            .method(http::Method::POST)
            .uri(format!(
                "{}/v1/messages",
                target.base_url.trim_end_matches('/')
            ))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-api-key", target.api_key)
            .header("anthropic-version", API_VERSION)
            .body(Bytes::from(Json::Object(body).to_string()))
            .expect("the base URL and key were checked when the key was saved"))
    }

    fn chat_response(
        &self,
        response: &http::Response<Bytes>,
        request: &ChatRequest,
    ) -> Result<Completion, Failure> {
        if !response.status().is_success() {
            return Err(failure(response));
        }
        let message = serde_json::from_slice::<Json>(response.body())
            .ok()
            .filter(|message| message["content"].is_array())
            .ok_or_else(|| Failure::Unavailable {
                status: Some(response.status().as_u16()),
                message: "the provider's answer is not a message".into(),
                retry_after: None,
            })?;
        Ok(completion(&message, request.now))
    }

    fn stream_events(&self, request: &ChatRequest) -> Box<dyn StreamEvents> {
        Box::new(MessageStream {
            created: request.now,
            ..MessageStream::default()
        })
    }
}

/// A Messages stream read as OpenAI's chunks.
#[derive(Default)]
struct MessageStream {
    id: Json,
    model: Json,
    created: i64,
    /// OpenAI's tool call index of each `tool_use` block, by the block's index.
    tool_calls: Vec<(u64, usize)>,
    /// Usage as `message_start` and then each `message_delta` report it (cumulative).
    usage: Map<String, Json>,
}

impl MessageStream {
    fn chunk(&self, delta: Json, finish_reason: Option<&str>) -> String {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        })
        .to_string()
    }

    fn tool_call(&self, block: u64) -> Option<usize> {
        self.tool_calls
            .iter()
            .find(|(index, _)| *index == block)
            .map(|(_, call)| *call)
    }
}

impl StreamEvents for MessageStream {
    fn translate(&mut self, data: &str) -> Vec<String> {
        let Ok(event) = serde_json::from_str::<Json>(data) else {
            return Vec::new();
        };
        let block = event["index"].as_u64().unwrap_or(0);
        match event["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let message = &event["message"];
                self.id = message["id"].clone();
                self.model = message["model"].clone();
                if let Json::Object(usage) = &message["usage"] {
                    self.usage.extend(usage.clone());
                }
                vec![self.chunk(json!({ "role": "assistant", "content": "" }), None)]
            }
            "content_block_start" if event["content_block"]["type"] == "tool_use" => {
                let call = self.tool_calls.len();
                self.tool_calls.push((block, call));
                let tool = &event["content_block"];
                vec![self.chunk(
                    json!({ "tool_calls": [{ "index": call, "id": tool["id"], "type": "function",
                                             "function": { "name": tool["name"], "arguments": "" } }] }),
                    None,
                )]
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        vec![self.chunk(json!({ "content": delta["text"] }), None)]
                    }
                    Some("input_json_delta") => match self.tool_call(block) {
                        Some(call) => vec![self.chunk(
                            json!({ "tool_calls": [{ "index": call,
                                                     "function": { "arguments": delta["partial_json"] } }] }),
                            None,
                        )],
                        None => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Json::Object(usage) = &event["usage"] {
                    self.usage.extend(
                        usage
                            .iter()
                            .filter(|(_, count)| !count.is_null())
                            .map(|(field, count)| (field.clone(), count.clone())),
                    );
                }
                match event["delta"]["stop_reason"].as_str() {
                    Some(reason) => vec![self.chunk(json!({}), Some(finish_reason(Some(reason))))],
                    None => Vec::new(),
                }
            }
            "message_stop" => {
                let mut last = Vec::new();
                if let Some(usage) = usage(&Json::Object(self.usage.clone())) {
                    last.push(
                        json!({
                            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": openai_usage(usage),
                        })
                        .to_string(),
                    );
                }
                last.push("[DONE]".to_owned());
                last
            }
            "error" => vec![json!({ "error": event["error"] }).to_string()],
            // `ping`, the end of a block, thinking, and events added after this translation.
            _ => Vec::new(),
        }
    }
}

/// OpenAI's `finish_reason` for a Messages `stop_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's `usage` object.
fn openai_usage(usage: Usage) -> Json {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": usage.cached_tokens },
    })
}

/// The Messages request for an OpenAI chat completion request.
fn messages_body(model: &str, request: &ChatRequest) -> Result<Map<String, Json>, Failure> {
    let openai = &request.body;
    if openai
        .get("n")
        .and_then(Json::as_i64)
        .is_some_and(|n| n > 1)
    {
        return Err(rejected(
            "this model's provider writes one choice per request (n = 1)",
        ));
    }
    if let Some(format) = openai
        .get("response_format")
        .filter(|format| !format.is_null())
        && format["type"] != "text"
    {
        return Err(rejected(
            "this model's provider takes no response_format; describe the format in the prompt",
        ));
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for message in openai
        .get("messages")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        match message["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.push(text_of(&message["content"])),
            "user" => messages
                .push(json!({ "role": "user", "content": user_blocks(&message["content"]) })),
            "assistant" => {
                messages.push(json!({ "role": "assistant", "content": assistant_blocks(message) }))
            }
            "tool" => messages.push(json!({ "role": "user", "content": [{
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": text_of(&message["content"]),
            }]})),
            other => return Err(rejected(format!("messages: unknown role {other:?}"))),
        }
    }
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|field| openai.get(field).and_then(Json::as_i64))
        .unwrap_or(request.max_output_tokens);
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(max_tokens));
    body.insert("messages".into(), json!(messages));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    for field in ["temperature", "top_p"] {
        if let Some(value) = openai.get(field).filter(|value| !value.is_null()) {
            body.insert(field.into(), value.clone());
        }
    }
    match openai.get("stop") {
        Some(Json::String(stop)) => {
            body.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Json::Array(stops)) => {
            body.insert("stop_sequences".into(), json!(stops));
        }
        _ => {}
    }
    if openai.get("stream").and_then(Json::as_bool) == Some(true) {
        body.insert("stream".into(), json!(true));
    }
    if let Some(user) = openai.get("user").and_then(Json::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(Json::Array(tools)) = openai.get("tools") {
        let tools: Vec<Json> = tools
            .iter()
            .map(|tool| {
                let function = &tool["function"];
                let mut out = json!({
                    "name": function["name"],
                    "input_schema": if function["parameters"].is_object() {
                        function["parameters"].clone()
                    } else {
                        json!({ "type": "object" })
                    },
                });
                if let Some(description) = function["description"].as_str() {
                    out["description"] = json!(description);
                }
                out
            })
            .collect();
        body.insert("tools".into(), json!(tools));
    }
    if let Some(choice) = openai.get("tool_choice").filter(|choice| !choice.is_null()) {
        let translated = match choice {
            Json::String(mode) => match mode.as_str() {
                "auto" => json!({ "type": "auto" }),
                "none" => json!({ "type": "none" }),
                "required" => json!({ "type": "any" }),
                other => return Err(rejected(format!("tool_choice: unknown mode {other:?}"))),
            },
            named => json!({ "type": "tool", "name": named["function"]["name"] }),
        };
        body.insert("tool_choice".into(), translated);
    }
    Ok(body)
}

/// The text of a content that is a string or a list of parts.
fn text_of(content: &Json) -> String {
    match content {
        Json::String(text) => text.clone(),
        Json::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A user's content as Messages blocks: text, and images by data URL or by URL.
fn user_blocks(content: &Json) -> Json {
    let Json::Array(parts) = content else {
        return json!(text_of(content));
    };
    let blocks: Vec<Json> = parts
        .iter()
        .filter_map(|part| match part["type"].as_str() {
            Some("text") => Some(json!({ "type": "text", "text": part["text"] })),
            Some("image_url") => {
                let url = part["image_url"]["url"].as_str().unwrap_or_default();
                let source = match url
                    .strip_prefix("data:")
                    .and_then(|rest| rest.split_once(";base64,"))
                {
                    Some((media_type, data)) => {
                        json!({ "type": "base64", "media_type": media_type, "data": data })
                    }
                    None => json!({ "type": "url", "url": url }),
                };
                Some(json!({ "type": "image", "source": source }))
            }
            _ => None,
        })
        .collect();
    json!(blocks)
}

/// An assistant's turn as Messages blocks: its text, then its tool calls as `tool_use`.
fn assistant_blocks(message: &Json) -> Json {
    let mut blocks = Vec::new();
    let text = text_of(&message["content"]);
    if !text.is_empty() {
        blocks.push(json!({ "type": "text", "text": text }));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        blocks.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": serde_json::from_str::<Json>(arguments).unwrap_or_else(|_| json!({})),
        }));
    }
    json!(blocks)
}

/// The OpenAI chat completion for a Messages answer received at `now`.
fn completion(message: &Json, now: i64) -> Completion {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in message["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": { "name": block["name"], "arguments": block["input"].to_string() },
            })),
            _ => {}
        }
    }
    let finish_reason = finish_reason(message["stop_reason"].as_str());
    let mut reply = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Json::Null } else { json!(text) },
        "refusal": Json::Null,
    });
    if !tool_calls.is_empty() {
        reply["tool_calls"] = json!(tool_calls);
    }
    let usage = usage(&message["usage"]);
    let mut body = json!({
        "id": message["id"],
        "object": "chat.completion",
        "created": now,
        "model": message["model"],
        "choices": [{ "index": 0, "message": reply, "logprobs": null, "finish_reason": finish_reason }],
    });
    if let Some(usage) = usage {
        body["usage"] = openai_usage(usage);
    }
    Completion {
        body: body.as_object().cloned().unwrap_or_default(),
        usage,
    }
}

/// Messages' `usage`: `input_tokens` leaves out the tokens read from and written to the
/// prompt cache, which OpenAI's `prompt_tokens` includes.
fn usage(usage: &Json) -> Option<Usage> {
    let count = |field: &str| usage[field].as_i64().map(|count| count.max(0));
    let cache_read = count("cache_read_input_tokens").unwrap_or(0);
    let cache_write = count("cache_creation_input_tokens").unwrap_or(0);
    Some(Usage {
        prompt_tokens: count("input_tokens")? + cache_read + cache_write,
        completion_tokens: count("output_tokens")?,
        cached_tokens: cache_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Json) -> ChatRequest {
        ChatRequest {
            body: body.as_object().unwrap().clone(),
            max_output_tokens: 8_192,
            now: 1_700_000_000,
        }
    }

    fn translated(body: Json) -> Json {
        let target = Target {
            base_url: "http://127.0.0.1:9",
            api_key: "sk-ant-test",
            model: "claude-sonnet-4-5",
        };
        let out = Anthropic.chat_request(&target, &request(body)).unwrap();
        assert_eq!(out.uri(), "http://127.0.0.1:9/v1/messages");
        assert_eq!(out.headers()["x-api-key"], "sk-ant-test");
        assert_eq!(out.headers()["anthropic-version"], API_VERSION);
        serde_json::from_slice(out.body()).unwrap()
    }

    #[test]
    fn system_messages_go_to_system_and_max_tokens_is_always_named() {
        let body = translated(json!({
            "model": "acme-claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                {"role": "user", "content": "hi"},
            ],
            "stop": "END", "temperature": 0.2, "user": "u-1", "seed": 3,
        }));
        assert_eq!(body["model"], "claude-sonnet-4-5");
        assert_eq!(body["system"], "Be brief.\n\nNo emoji.");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["max_tokens"], 8_192);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["metadata"], json!({"user_id": "u-1"}));
        assert!(body.get("seed").is_none());
    }

    #[test]
    fn tool_calls_and_results_become_tool_use_and_tool_result_blocks() {
        let body = translated(json!({
            "model": "m", "max_tokens": 100,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            ],
        }));
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(body["tools"][0]["name"], "get_weather");
        assert_eq!(
            body["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            body["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}])
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"}]})
        );
    }

    #[test]
    fn images_go_as_base64_or_url_sources() {
        let body = translated(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]}]}),
        );
        let blocks = &body["messages"][0]["content"];
        assert_eq!(
            blocks[1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
        );
        assert_eq!(blocks[2]["source"]["type"], "url");
    }

    #[test]
    fn what_messages_cannot_express_is_refused_as_the_clients_request() {
        let target = Target {
            base_url: "http://x",
            api_key: "k",
            model: "m",
        };
        for body in [
            json!({"messages": [], "n": 2}),
            json!({"messages": [], "response_format": {"type": "json_object"}}),
        ] {
            assert!(matches!(
                Anthropic.chat_request(&target, &request(body)),
                Err(Failure::Rejected { status: 400, .. })
            ));
        }
    }

    #[test]
    fn a_message_comes_back_as_a_chat_completion_with_openai_usage() {
        let message = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 15, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 0},
        });
        let response = http::Response::builder()
            .status(200)
            .body(Bytes::from(message.to_string()))
            .unwrap();
        let completion = Anthropic
            .chat_response(&response, &request(json!({})))
            .unwrap();
        let body = Json::Object(completion.body);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["created"], 1_700_000_000);
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["choices"][0]["message"]["content"], "Checking.");
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
        );
        assert_eq!(body["usage"]["prompt_tokens"], 120);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
        assert_eq!(
            completion.usage,
            Some(Usage {
                prompt_tokens: 120,
                completion_tokens: 15,
                cached_tokens: 100
            })
        );
    }

    /// A stream as the Messages API writes it (event order and fields from its reference):
    /// text, then a tool call whose input comes in pieces.
    const STREAM: [&str; 12] = [
        r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":5,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me "}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"check."}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
        r#"{"type":"content_block_stop","index":1}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}"#,
        r#"{"type":"message_stop"}"#,
    ];

    #[test]
    fn a_stream_reads_as_openai_chunks_ending_with_usage_and_done() {
        let mut events = Anthropic.stream_events(&request(json!({ "stream": true })));
        let out: Vec<String> = STREAM
            .iter()
            .flat_map(|data| events.translate(data))
            .collect();
        assert_eq!(out.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Json> = out[..out.len() - 1]
            .iter()
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        for chunk in &chunks {
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["id"], "msg_01");
            assert_eq!(chunk["created"], 1_700_000_000);
        }
        let deltas: Vec<&Json> = chunks[..chunks.len() - 1]
            .iter()
            .map(|chunk| &chunk["choices"][0]["delta"])
            .collect();
        assert_eq!(
            deltas,
            [
                &json!({ "role": "assistant", "content": "" }),
                &json!({ "content": "Let me " }),
                &json!({ "content": "check." }),
                &json!({ "tool_calls": [{ "index": 0, "id": "toolu_01", "type": "function",
                                          "function": { "name": "get_weather", "arguments": "" } }] }),
                &json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"city\": " } }] }),
                &json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "\"Paris\"}" } }] }),
                &json!({}),
            ]
        );
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({ "prompt_tokens": 30, "completion_tokens": 42, "total_tokens": 72,
                    "prompt_tokens_details": { "cached_tokens": 5 } })
        );
    }

    #[test]
    fn a_stream_asks_for_events_and_an_error_event_is_passed_on() {
        assert_eq!(translated(json!({ "stream": true }))["stream"], true);
        assert!(translated(json!({})).get("stream").is_none());
        let mut events = Anthropic.stream_events(&request(json!({ "stream": true })));
        let out = events.translate(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let error: Json = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(error["error"]["type"], "overloaded_error");
    }

    #[test]
    fn an_error_body_is_read_for_its_message() {
        let response = http::Response::builder()
            .status(529)
            .body(Bytes::from_static(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ))
            .unwrap();
        assert!(matches!(
            Anthropic.chat_response(&response, &request(json!({}))),
            Err(Failure::Unavailable { status: Some(529), ref message, .. }) if message == "Overloaded"
        ));
    }
}
