//! `POST /v1/chat/completions` with `stream: true` on the native server: the provider's
//! events pass through as they come, each with the catalogue's model name, and the call is
//! settled once at the provider's reported usage, whether or not the client stayed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser};

use tollgate_tests::openai_double::{
    Fault, OpenAiDouble, PIECES_BEFORE_HOLD, Reported, STREAMED_PIECES,
};

use crate::support::{
    INPUT_PRICE, OUTPUT_PRICE, chat, create_key, create_model, expect_openai_error, funded_tenant,
    interactions, model_body, pool_spent, spawn_gateway,
};

const PRIMARY_KEY: &str = "sk-stream-primary-00001";
const FALLBACK_KEY: &str = "sk-stream-fallback-0002";

struct Gateway {
    app: TestApp,
    primary: OpenAiDouble,
    fallback: OpenAiDouble,
    owner: TestUser,
}

/// A global model `chat` on two OpenAI doubles (primary, then fallback), and a tenant whose
/// pool holds 100,000 credits; both doubles report 12 prompt and 9 completion tokens.
async fn gateway() -> Gateway {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let primary = OpenAiDouble::start(PRIMARY_KEY).await;
    let fallback = OpenAiDouble::start(FALLBACK_KEY).await;
    let mut deployments = Vec::new();
    for (name, double, key, model) in [
        ("primary", &primary, PRIMARY_KEY, "gpt-4o"),
        ("fallback", &fallback, FALLBACK_KEY, "gpt-4o-mini"),
    ] {
        double.reports(REPORTED);
        let created = create_key(
            &app,
            "admin/llm/provider-keys",
            &admin,
            name,
            &double.base_url(),
            key,
        )
        .await;
        deployments.push((created["id"].as_str().unwrap().to_owned(), model));
    }
    let deployments: Vec<(&str, &str)> = deployments
        .iter()
        .map(|(key, model)| (key.as_str(), *model))
        .collect();
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("chat", &deployments),
    )
    .await;
    let owner = funded_tenant(&app, &admin, "acme", 100_000).await;
    Gateway {
        app,
        primary,
        fallback,
        owner,
    }
}

const REPORTED: Reported = Reported {
    prompt_tokens: 12,
    completion_tokens: 9,
    cached_tokens: 0,
};

/// What [`REPORTED`] costs at the test prices.
const REPORTED_COST: i64 = (12 * INPUT_PRICE + 9 * OUTPUT_PRICE) / 1_000_000;

fn streamed_hello(extra: Value) -> Value {
    let mut body = json!({
        "model": "chat", "stream": true, "max_tokens": 100,
        "messages": [{ "role": "user", "content": "Hello!" }],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The data of each event of a whole event stream.
pub fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The chunks (every event but `[DONE]`), parsed.
pub fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

pub fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Waits until the tenant has `count` recorded calls, polling for at most ten seconds.
async fn recorded(app: &TestApp, owner: &TestUser, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let calls = interactions(app, owner, "").await;
        if calls.len() >= count {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} calls were not recorded within ten seconds");
}

#[tokio::test]
async fn each_event_passes_through_with_the_catalogue_model_and_the_call_is_charged_its_usage() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let response = chat(app, &owner.access_token, &streamed_hello(json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("ratelimit-limit"));
    let interaction_id = response.headers()["x-tollgate-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    assert_eq!(chunks.len(), 1 + STREAMED_PIECES.len() + 1, "{events:?}");
    assert!(chunks.iter().all(|chunk| chunk["model"] == "chat"
        && chunk["object"] == "chat.completion.chunk"
        && chunk.get("usage").is_none()));
    assert_eq!(content(&chunks), "Hello! How can I assist you today?");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    let sent = &gateway.primary.requests()[0];
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({ "include_usage": true }));
    assert_eq!(sent["model"], "gpt-4o");

    // Settled before the body ended.
    let calls = interactions(app, owner, "").await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["id"], interaction_id.as_str());
    assert_eq!(call["status"], "succeeded", "{call}");
    assert_eq!(call["cost"], REPORTED_COST);
    assert_eq!(
        (
            call["prompt_tokens"].as_i64(),
            call["completion_tokens"].as_i64()
        ),
        (Some(12), Some(9))
    );
    assert!(call["first_token_ms"].is_i64(), "{call}");
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (REPORTED_COST, 0));
}

#[tokio::test]
async fn a_client_that_asks_for_usage_gets_the_usage_chunk_before_done() {
    let gateway = gateway().await;
    let body = streamed_hello(json!({ "stream_options": { "include_usage": true } }));
    let response = chat(&gateway.app, &gateway.owner.access_token, &body).await;
    let events = events(&response.text().await.unwrap());
    let chunks = chunks(&events);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 21);
    assert_eq!(last["model"], "chat");
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|chunk| chunk["usage"].is_null())
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_charged_once_for_what_the_provider_wrote() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.primary.hold_answers();
    let mut response = chat(app, &owner.access_token, &streamed_hello(json!({}))).await;
    let mut received = String::new();
    while events(&received).len() < 1 + PIECES_BEFORE_HOLD {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(content(&chunks(&events(&received))), "Hello!");
    drop(response);
    assert_eq!(gateway.primary.streams_finished(), 0);

    gateway.primary.release_answers();
    let calls = recorded(app, owner, 1).await;
    assert_eq!(gateway.primary.streams_finished(), 1);
    assert_eq!(calls[0]["cost"], REPORTED_COST, "{calls:?}");
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (REPORTED_COST, 0));
    let settles = app
        .query(
            "SELECT COUNT(*) FROM credit_ledger WHERE kind = 'settle' AND account_id = ?",
            vec![format!("pool:{}", owner.tenant_id).into()],
        )
        .await;
    assert_eq!(settles[0][0], 1, "settled once");
}

#[tokio::test]
async fn a_stream_cut_before_its_usage_is_charged_the_hold_and_recorded_as_failed() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.primary.fails_with(Fault::CutStream);
    let response = chat(app, &owner.access_token, &streamed_hello(json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = events(&response.text().await.unwrap());
    assert_ne!(events.last().unwrap(), "[DONE]");
    assert_eq!(content(&chunks(&events)), "Hello!");
    let calls = interactions(app, owner, "").await;
    assert_eq!(calls[0]["status"], "failed");
    // The hold: (8 + 8 + 4 + 6) prompt tokens at 2, 100 completion tokens at 8.
    let hold = (8 + 8 + 4 + 6) * 2 + 100 * 8;
    assert_eq!(calls[0]["cost"], hold);
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (hold, 0));
}

#[tokio::test]
async fn a_deployment_failing_before_its_stream_falls_back_and_a_refusal_is_heard_in_openais_shape()
{
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.primary.fails_with(Fault::ServerError);
    let response = chat(app, &owner.access_token, &streamed_hello(json!({}))).await;
    let events = events(&response.text().await.unwrap());
    assert_eq!(
        content(&chunks(&events)),
        "Hello! How can I assist you today?"
    );
    assert_eq!(gateway.fallback.requests().len(), 1);
    assert_eq!(interactions(app, owner, "").await[0]["attempts"], 2);

    gateway
        .primary
        .fails_with(Fault::BadRequest("Invalid 'messages[0].role'"));
    let refused = expect_openai_error(
        chat(app, &owner.access_token, &streamed_hello(json!({}))).await,
        StatusCode::BAD_REQUEST,
        "provider_rejected_request",
    )
    .await;
    assert_eq!(refused["error"]["message"], "Invalid 'messages[0].role'");
    assert_eq!(
        gateway.fallback.requests().len(),
        1,
        "a refusal is not retried"
    );
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (REPORTED_COST, 0));
}
