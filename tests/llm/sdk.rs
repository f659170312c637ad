//! The official OpenAI Python client (PyPI `openai`) against the running gateway: a plain
//! chat completion, a streamed one (its chunks and its usage), embeddings (base64, the SDK's
//! default, and floats), tool calls (whole and streamed, from a model Anthropic serves), the
//! model list, and the SDK's own exception classes for a bad request (400), a bad key (401),
//! a tenant without credits (402), a model off the caller's allow-list (403), an unknown
//! model (404), a call past the per-minute limit (429) and a provider that cannot be
//! reached (502).
//!
//! The client lives in a virtual environment of the tools cache; `scripts/tools/openai.sh`
//! installs it and exports `TOLLGATE_OPENAI_PYTHON`, which the test command always sets.

use std::{process::Stdio, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::Command;
use tollgate_tests::expect_status;

use tollgate_tests::openai_double::{EMBEDDING_DIMENSIONS, OpenAiDouble, STREAMED_PIECES};

use crate::{
    anthropic_double::{AnthropicDouble, TOOL_INPUT_PIECES},
    support::{
        anthropic_model, create_key, create_model, funded_tenant, model_body, spawn_gateway,
    },
};

const KEY: &str = "sk-sdk-provider-0000001";
/// The key `support::anthropic_model` gives its Anthropic provider account.
const ANTHROPIC_KEY: &str = "sk-ant-000000000000001";

/// The venv's python, or a failure that says how to get it.
fn python() -> String {
    std::env::var("TOLLGATE_OPENAI_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TOLLGATE_OPENAI_PYTHON is not set: run `source scripts/tools/openai.sh` (the test \
             command does) to install the openai client and point to its python"
        )
    })
}

#[tokio::test]
async fn the_official_openai_python_client_chats_lists_models_and_raises_its_own_errors() {
    let python = python();
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let double = OpenAiDouble::start(KEY).await;
    let key = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "main",
        &double.base_url(),
        KEY,
    )
    .await;
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("chat", &[(key["id"].as_str().unwrap(), "gpt-4o")]),
    )
    .await;
    let anthropic = AnthropicDouble::start(ANTHROPIC_KEY).await;
    anthropic_model(&app, &admin, "claude", &anthropic.base_url()).await;
    // A provider key on a port nothing listens on.
    let closed = format!("http://127.0.0.1:{}/v1", tollgate_tests::edge::free_port());
    let down = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "down",
        &closed,
        KEY,
    )
    .await;
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("unreachable", &[(down["id"].as_str().unwrap(), "gpt-4o")]),
    )
    .await;
    let funded = funded_tenant(&app, &admin, "acme", 100_000).await;
    let broke = funded_tenant(&app, &admin, "broke", 0).await;
    let one_a_minute =
        serde_json::json!({ "plan": "FREE", "overrides": { "llm_requests_per_minute": 1 } });
    app.assign_plan(&admin, &broke, &one_a_minute).await;
    let member = app.add_user(&funded, "mia", "member").await;
    let only_chat = serde_json::json!({ "models": ["chat"] });
    let path = format!("llm/users/{}/models", member.user_id);
    expect_status(
        app.put(&path, &funded.access_token, &only_chat).await,
        StatusCode::OK,
    )
    .await;
    let funded_key = app.create_api_key(&funded, &["llm:write"]).await;
    let member_key = app.create_api_key(&member, &["llm:write"]).await;
    let broke_key = app.create_api_key(&broke, &["llm:write"]).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/llm/sdk_client.py");
    let run = Command::new(&python)
        .arg(script)
        .env("TOLLGATE_V1_URL", format!("{}/v1", app.base_url))
        .env("TOLLGATE_API_KEY", funded_key["key"].as_str().unwrap())
        .env("TOLLGATE_BROKE_API_KEY", broke_key["key"].as_str().unwrap())
        .env(
            "TOLLGATE_MEMBER_API_KEY",
            member_key["key"].as_str().unwrap(),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the SDK script finishes within two minutes")
        .expect("the venv's python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK script failed: {stderr}");
    let result: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("the script printed no JSON ({error}); stderr: {stderr}"));

    let completion = &result["completion"];
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "chat");
    assert_eq!(completion["content"], "Hello! How can I assist you today?");
    assert_eq!(completion["finish_reason"], "stop");
    assert_eq!(completion["total_tokens"], 29);
    let stream = &result["stream"];
    assert_eq!(
        stream["content"], "Hello! How can I assist you today?",
        "{result}"
    );
    assert_eq!(stream["pieces"], STREAMED_PIECES.len());
    assert_eq!(stream["models"], serde_json::json!(["chat"]));
    assert_eq!(stream["total_tokens"], 29);
    let embeddings = &result["embeddings"];
    assert_eq!(embeddings["model"], "chat", "{result}");
    let expected: Vec<f64> = (0..EMBEDDING_DIMENSIONS)
        .map(|dimension| (EMBEDDING_DIMENSIONS + dimension) as f64 / 64.0)
        .collect();
    assert_eq!(
        embeddings["vectors"][1],
        serde_json::json!(expected),
        "the SDK decoded the second input's base64 floats"
    );
    assert_eq!(embeddings["prompt_tokens"], 19);
    assert_eq!(
        embeddings["float_vector"].as_array().unwrap().len(),
        EMBEDDING_DIMENSIONS
    );
    assert_eq!(
        result["models"],
        serde_json::json!(["chat", "claude", "unreachable"])
    );
    assert_eq!(result["retrieved"], "chat");
    assert_eq!(double.requests()[0]["user"], "sdk-user");

    let unknown = &result["unknown_model"];
    assert_eq!(unknown["class"], "NotFoundError", "{result}");
    assert_eq!(unknown["status"], 404);
    assert_eq!(unknown["code"], "model_not_found");
    assert_eq!(unknown["param"], "model");
    let no_credits = &result["no_credits"];
    assert_eq!(no_credits["status"], 402, "{result}");
    assert_eq!(no_credits["class"], "APIStatusError");
    assert_eq!(no_credits["code"], "insufficient_credits");
    assert_eq!(no_credits["type"], "insufficient_quota");
    assert_eq!(
        result["bad_key"]["class"], "AuthenticationError",
        "{result}"
    );
    assert_eq!(result["bad_key"]["code"], "invalid_api_key");

    let tools = &result["tools"];
    let arguments: Value = serde_json::from_str(&TOOL_INPUT_PIECES.concat()).unwrap();
    assert_eq!(tools["name"], "get_weather", "{result}");
    assert_eq!(tools["arguments"], arguments);
    assert_eq!(tools["finish_reason"], "tool_calls");
    assert_eq!(tools["streamed_name"], "get_weather");
    assert_eq!(tools["streamed_arguments"], arguments);
    assert_eq!(tools["streamed_finish_reason"], "tool_calls");
    assert_eq!(anthropic.requests()[0]["tools"][0]["name"], "get_weather");

    for (refusal, class, status, code) in [
        (
            "bad_request",
            "BadRequestError",
            400,
            "invalid_request_error",
        ),
        (
            "not_allowed",
            "PermissionDeniedError",
            403,
            "model_not_allowed",
        ),
        ("rate_limited", "RateLimitError", 429, "rate_limit_exceeded"),
        (
            "provider_down",
            "InternalServerError",
            502,
            "provider_error",
        ),
    ] {
        let refused = &result[refusal];
        assert_eq!(refused["class"], class, "{refusal}: {result}");
        assert_eq!(refused["status"], status, "{refusal}");
        assert_eq!(refused["code"], code, "{refusal}");
    }
    assert_eq!(result["bad_request"]["param"], "messages");

    // The SDK's call was metered like any other.
    let listed = expect_status(
        app.get("llm/interactions", &funded.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["data"][0]["api_key_id"], funded_key["id"]);
    assert_eq!(
        double.requests().len(),
        4,
        "one chat, one streamed, two embeddings"
    );
}
