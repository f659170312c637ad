//! Models deployed on Anthropic's Messages API, against the Anthropic double: a chat
//! completion goes out as a message and comes back in OpenAI's shape, whole or streamed,
//! tool calls included, and is charged the usage Anthropic reports; an overloaded Anthropic
//! deployment makes way for the next.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_status};

use tollgate_tests::openai_double::OpenAiDouble;

use crate::{
    anthropic_double::{
        AnthropicDouble, CACHE_READ_TOKENS, Fault, INPUT_TOKENS, OUTPUT_TOKENS, TEXT_PIECES,
        TOOL_INPUT_PIECES,
    },
    stream::{chunks, content, events},
    support::{
        CACHED_PRICE, INPUT_PRICE, OUTPUT_PRICE, answered, chat, create_model, funded_tenant,
        interactions, model_body, platform_key, pool_spent, spawn_gateway,
    },
};

const ANTHROPIC_KEY: &str = "sk-ant-api03-double-0001";
const OPENAI_KEY: &str = "sk-anthropic-fallback-01";

/// What the double's usage costs at the test prices: uncached and cached prompt tokens,
/// then the output.
const REPORTED_COST: i64 =
    (INPUT_TOKENS * INPUT_PRICE + CACHE_READ_TOKENS * CACHED_PRICE + OUTPUT_TOKENS * OUTPUT_PRICE)
        / 1_000_000;

struct Gateway {
    app: TestApp,
    anthropic: AnthropicDouble,
    openai: OpenAiDouble,
    owner: TestUser,
}

/// Global model `claude` on the Anthropic double, and `claude-or-gpt` on the Anthropic
/// double then an OpenAI double; a tenant whose pool holds 100,000 credits.
async fn gateway() -> Gateway {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let anthropic = AnthropicDouble::start(ANTHROPIC_KEY).await;
    let openai = OpenAiDouble::start(OPENAI_KEY).await;
    let key = json!({ "name": "anthropic", "kind": "anthropic", "base_url": anthropic.base_url(),
                      "api_key": ANTHROPIC_KEY });
    let anthropic_key = expect_status(
        app.post("admin/llm/provider-keys", &admin, &key).await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let openai_key = platform_key(&app, &admin, &openai, OPENAI_KEY).await;
    let claude = model_body("claude", &[(&anthropic_key, "claude-sonnet-4")]);
    create_model(&app, "admin/llm/models", &admin, &claude).await;
    let both = model_body(
        "claude-or-gpt",
        &[(&anthropic_key, "claude-sonnet-4"), (&openai_key, "gpt-4o")],
    );
    create_model(&app, "admin/llm/models", &admin, &both).await;
    let owner = funded_tenant(&app, &admin, "acme", 100_000).await;
    Gateway {
        app,
        anthropic,
        openai,
        owner,
    }
}

fn request(extra: Value) -> Value {
    let mut body = json!({
        "model": "claude", "max_tokens": 100,
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Hello!" },
        ],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

const WEATHER_TOOL: &str = r#"[{ "type": "function", "function": { "name": "get_weather",
    "description": "The weather in a city",
    "parameters": { "type": "object", "properties": { "city": { "type": "string" } } } } }]"#;

#[tokio::test]
async fn a_chat_goes_out_as_a_message_and_comes_back_as_a_chat_completion() {
    let Gateway {
        app,
        anthropic,
        owner,
        ..
    } = gateway().await;
    let answer = answered(&app, &owner.access_token, &request(json!({}))).await;
    let sent = &anthropic.requests()[0];
    assert_eq!(sent["model"], "claude-sonnet-4");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(
        sent["messages"],
        json!([{ "role": "user", "content": "Hello!" }])
    );
    assert!(sent.get("stream").is_none());

    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "claude");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        TEXT_PIECES.concat()
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        INPUT_TOKENS + CACHE_READ_TOKENS
    );
    assert_eq!(answer["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(
        answer["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHE_READ_TOKENS
    );
    assert_eq!(pool_spent(&app, &owner.tenant_id).await, (REPORTED_COST, 0));
}

#[tokio::test]
async fn a_stream_is_read_as_openai_chunks_and_charged_the_reported_usage() {
    let Gateway {
        app,
        anthropic,
        owner,
        ..
    } = gateway().await;
    let streamed = request(json!({ "stream": true, "stream_options": { "include_usage": true } }));
    let response = chat(&app, &owner.access_token, &streamed).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["object"] == "chat.completion.chunk" && chunk["model"] == "claude"),
        "{chunks:?}"
    );
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({ "role": "assistant", "content": "" })
    );
    assert_eq!(content(&chunks), TEXT_PIECES.concat());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["prompt_tokens"],
        INPUT_TOKENS + CACHE_READ_TOKENS
    );
    assert_eq!(last["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(anthropic.requests()[0]["stream"], true);
    assert!(
        anthropic.requests()[0].get("stream_options").is_none(),
        "OpenAI's fields stay home"
    );

    assert_eq!(pool_spent(&app, &owner.tenant_id).await, (REPORTED_COST, 0));
    let call = &interactions(&app, &owner, "").await[0];
    assert_eq!(call["status"], "succeeded");
    assert_eq!(call["completion_tokens"], OUTPUT_TOKENS);
    assert!(call["first_token_ms"].is_i64(), "{call}");
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_as_tool_call_deltas() {
    let Gateway {
        app,
        owner,
        anthropic: _provider,
        ..
    } = gateway().await;
    let tools: Value = serde_json::from_str(WEATHER_TOOL).unwrap();
    let streamed = request(json!({ "stream": true, "tools": tools }));
    let response = chat(&app, &owner.access_token, &streamed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let chunks = chunks(&events(&response.text().await.unwrap()));
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls[0][0]["id"], "toolu_double");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let arguments: String = calls
        .iter()
        .filter_map(|call| call[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, TOOL_INPUT_PIECES.concat());
    assert!(
        chunks
            .iter()
            .any(|chunk| chunk["choices"][0]["finish_reason"] == "tool_calls")
    );
    // The client did not ask for the usage: no usage chunk, but the call is charged it.
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()));
    assert_eq!(pool_spent(&app, &owner.tenant_id).await, (REPORTED_COST, 0));
}

#[tokio::test]
async fn an_overloaded_or_rate_limited_anthropic_deployment_makes_way_for_the_next() {
    let Gateway {
        app,
        anthropic,
        openai,
        owner,
    } = gateway().await;
    anthropic.fails_with(Fault::Overloaded);
    let whole = answered(
        &app,
        &owner.access_token,
        &request(json!({ "model": "claude-or-gpt" })),
    )
    .await;
    assert_eq!(whole["model"], "claude-or-gpt");
    anthropic.fails_with(Fault::RateLimited { retry_after: 3 });
    let streamed = request(json!({ "model": "claude-or-gpt", "stream": true }));
    let response = chat(&app, &owner.access_token, &streamed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let chunks = chunks(&events(&response.text().await.unwrap()));
    assert!(!content(&chunks).is_empty());
    assert_eq!(anthropic.requests().len(), 2);
    assert_eq!(openai.requests().len(), 2);
    let calls = interactions(&app, &owner, "").await;
    assert!(
        calls
            .iter()
            .all(|call| call["attempts"] == 2 && call["deployment_model"] == "gpt-4o"),
        "{calls:?}"
    );
}
