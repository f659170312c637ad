//! The per-minute limits of gateway calls: the tenant's (its plan's `llm_requests_per_minute`
//! and `llm_tokens_per_minute`) and each user's (the tenant's `user_requests_per_minute` and
//! `user_tokens_per_minute`), answered 429 with `Retry-After` in OpenAI's shape.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status};

use tollgate_tests::openai_double::OpenAiDouble;

use crate::support::{
    answered, chat, create_model, expect_openai_error, funded_tenant, hello, model_body,
    platform_key, spawn_gateway,
};

const KEY: &str = "sk-limits-00000000001";

struct Gateway {
    app: TestApp,
    admin: String,
    _provider: OpenAiDouble,
    owner: TestUser,
}

/// Global model `chat` on an OpenAI double reporting 19 prompt and 10 completion tokens a
/// call, and a funded tenant with no per-minute limits of its own.
async fn gateway() -> Gateway {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let provider = OpenAiDouble::start(KEY).await;
    let key = platform_key(&app, &admin, &provider, KEY).await;
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("chat", &[(&key, "gpt-4o")]),
    )
    .await;
    let owner = funded_tenant(&app, &admin, "acme", 1_000_000).await;
    Gateway {
        app,
        admin,
        _provider: provider,
        owner,
    }
}

/// Sets the tenant's plan limits of gateway calls (`null`: none).
async fn tenant_limits(gateway: &Gateway, requests: Value, tokens: Value) {
    let body = json!({ "plan": "FREE", "overrides": {
        "llm_requests_per_minute": requests, "llm_tokens_per_minute": tokens } });
    gateway
        .app
        .assign_plan(&gateway.admin, &gateway.owner, &body)
        .await;
}

async fn refused_as_rate_limited(response: reqwest::Response, what: &str) {
    let retry_after: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = expect_openai_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
    )
    .await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(what), "{message}");
}

#[tokio::test]
async fn the_tenants_calls_per_minute_are_its_plans() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    tenant_limits(&gateway, json!(3), Value::Null).await;
    let member = app.add_user(owner, "mia", "member").await;
    for user in [owner, &member, owner] {
        answered(app, &user.access_token, &hello("chat")).await;
    }
    // The tenant's limit binds all its users together.
    refused_as_rate_limited(
        chat(app, &member.access_token, &hello("chat")).await,
        "requests",
    )
    .await;
    let other = funded_tenant(app, &gateway.admin, "globex", 1_000_000).await;
    answered(app, &other.access_token, &hello("chat")).await;
    // A new minute, a new count.
    app.advance_clock(60);
    answered(app, &owner.access_token, &hello("chat")).await;
}

#[tokio::test]
async fn concurrent_calls_pass_a_request_limit_exactly_as_often_as_it_allows() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    tenant_limits(&gateway, json!(5), Value::Null).await;
    let request = hello("chat");
    let calls = (0..20).map(|_| chat(app, &owner.access_token, &request));
    let statuses: Vec<StatusCode> = futures::future::join_all(calls)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    let answered = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    let limited = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((answered, limited), (5, 15), "{statuses:?}");
}

#[tokio::test]
async fn a_call_starts_only_while_the_minutes_tokens_are_below_the_limit() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    // Each call reports 29 tokens: two start (0, then 29 used), the third finds 58.
    tenant_limits(&gateway, Value::Null, json!(40)).await;
    for _ in 0..2 {
        answered(app, &owner.access_token, &hello("chat")).await;
    }
    refused_as_rate_limited(
        chat(app, &owner.access_token, &hello("chat")).await,
        "tokens",
    )
    .await;
    app.advance_clock(60);
    answered(app, &owner.access_token, &hello("chat")).await;
}

#[tokio::test]
async fn each_user_has_the_tenants_per_user_limits() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let member = app.add_user(owner, "mia", "member").await;
    let settings = json!({ "user_requests_per_minute": 2, "user_tokens_per_minute": 1_000 });
    let saved = expect_status(
        app.put("llm/settings", &owner.access_token, &settings)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(saved["user_requests_per_minute"], 2);
    assert_eq!(saved["user_tokens_per_minute"], 1_000);
    for _ in 0..2 {
        answered(app, &member.access_token, &hello("chat")).await;
    }
    refused_as_rate_limited(
        chat(app, &member.access_token, &hello("chat")).await,
        "your",
    )
    .await;
    // Another user of the tenant has a count of their own.
    answered(app, &owner.access_token, &hello("chat")).await;

    let low_tokens = json!({ "user_tokens_per_minute": 20 });
    expect_status(
        app.put("llm/settings", &owner.access_token, &low_tokens)
            .await,
        StatusCode::OK,
    )
    .await;
    // The owner's 29 tokens of this minute are past 20.
    refused_as_rate_limited(
        chat(app, &owner.access_token, &hello("chat")).await,
        "tokens",
    )
    .await;

    let refused = expect_error(
        app.put(
            "llm/settings",
            &owner.access_token,
            &json!({ "user_tokens_per_minute": 0 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        refused["error"]["details"]["field"],
        "user_tokens_per_minute"
    );
}

#[tokio::test]
async fn each_api_key_has_its_plans_tokens_per_minute() {
    let gateway = gateway().await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let body = json!({ "plan": "FREE", "overrides": { "llm_key_tokens_per_minute": 40 } });
    app.assign_plan(&gateway.admin, owner, &body).await;
    let first = app.create_api_key(owner, &["llm:write"]).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app.create_api_key(owner, &["llm:write"]).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each call reports 29 tokens: the key starts two (0, then 29 used), the third finds 58.
    for _ in 0..2 {
        answered(app, &first, &hello("chat")).await;
    }
    refused_as_rate_limited(chat(app, &first, &hello("chat")).await, "API key").await;
    // Another key of the same user, and an access token, have windows of their own.
    answered(app, &second, &hello("chat")).await;
    answered(app, &owner.access_token, &hello("chat")).await;
}
