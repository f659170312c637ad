//! Arrangements the gateway tests share, all made through the API.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tollgate::secrets::Keyring;
use tollgate_tests::{TestApp, TestUser, expect_status, spawn_app_with};

use tollgate_tests::openai_double::OpenAiDouble;

/// The master key the test servers seal provider keys with (32 bytes, base64).
pub const MASTER_KEYS: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A server that can store provider keys.
pub async fn spawn_gateway() -> TestApp {
    spawn_app_with(|config| config.secrets = Keyring::parse(MASTER_KEYS).unwrap()).await
}

/// A server with no master key configured.
pub async fn spawn_without_master_key() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Prices of the test model, in credits per million tokens: 2 credits per prompt token,
/// 1 per cached prompt token, 8 per completion token.
pub const INPUT_PRICE: i64 = 2_000_000;
pub const CACHED_PRICE: i64 = 1_000_000;
pub const OUTPUT_PRICE: i64 = 8_000_000;
/// The test model's largest output.
pub const MAX_OUTPUT: i64 = 1_000;

/// A tenant with `credits` in its pool and the per-minute limits lifted (requests, and the
/// gateway's calls and tokens), as the platform admin `admin` arranges it.
pub async fn funded_tenant(app: &TestApp, admin: &str, slug: &str, credits: i64) -> TestUser {
    let owner = app.register(slug).await;
    let lifted = json!({ "plan": "FREE", "overrides": {
        "requests_per_minute": 1_000_000, "llm_requests_per_minute": null, "llm_tokens_per_minute": null,
    } });
    app.assign_plan(admin, &owner, &lifted).await;
    if credits > 0 {
        app.grant_pool_credits(admin, &owner, credits).await;
    }
    owner
}

/// `POST {path}` (platform admin or tenant route) creating a provider key; its JSON.
pub async fn create_key(
    app: &TestApp,
    path: &str,
    token: &str,
    name: &str,
    base_url: &str,
    api_key: &str,
) -> Value {
    let body = json!({ "name": name, "kind": "openai", "base_url": base_url, "api_key": api_key });
    expect_status(app.post(path, token, &body).await, StatusCode::CREATED).await
}

/// A model body deploying on `deployments` (`(provider_key_id, provider model)`) at the test
/// prices.
pub fn model_body(name: &str, deployments: &[(&str, &str)]) -> Value {
    json!({
        "name": name,
        "deployments": deployments
            .iter()
            .map(|(key, model)| json!({ "provider_key_id": key, "model": model }))
            .collect::<Vec<_>>(),
        "context_window": 100_000,
        "max_output_tokens": MAX_OUTPUT,
        "input_price": INPUT_PRICE,
        "output_price": OUTPUT_PRICE,
        "cached_input_price": CACHED_PRICE,
    })
}

/// `POST {path}` creating a model; its JSON.
pub async fn create_model(app: &TestApp, path: &str, token: &str, body: &Value) -> Value {
    expect_status(app.post(path, token, body).await, StatusCode::CREATED).await
}

/// `{base}/v1/{path}`: OpenAI's routes.
pub fn v1(app: &TestApp, path: &str) -> String {
    format!("{}/v1/{path}", app.base_url)
}

/// `POST /v1/{path}` with `token` and the JSON `body`.
pub async fn post_v1(app: &TestApp, token: &str, path: &str, body: &Value) -> Response {
    app.client
        .post(v1(app, path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `POST /v1/chat/completions` with `token`.
pub async fn chat(app: &TestApp, token: &str, body: &Value) -> Response {
    post_v1(app, token, "chat/completions", body).await
}

/// `POST /v1/chat/completions` with `token`, answered 200; the completion.
pub async fn answered(app: &TestApp, token: &str, body: &Value) -> Value {
    expect_status(chat(app, token, body).await, StatusCode::OK).await
}

/// A one-message chat request for `model`.
pub fn hello(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "Hello!" }], "max_tokens": 100 })
}

/// `GET /v1/{path}` with `token`.
pub async fn v1_get(app: &TestApp, token: &str, path: &str) -> Response {
    app.client
        .get(v1(app, path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Asserts an error in OpenAI's shape: the status, `error.code`, and the four fields.
pub async fn expect_openai_error(response: Response, status: StatusCode, code: &str) -> Value {
    let body = expect_status(response, status).await;
    let error = &body["error"];
    assert_eq!(error["code"], code, "unexpected error: {body}");
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(error.as_object().unwrap().contains_key("param"), "{body}");
    body
}

/// The tenant pool's `used` and `reserved` credits.
pub async fn pool_spent(app: &TestApp, tenant_id: &str) -> (i64, i64) {
    let rows = app
        .query(
            "SELECT used, reserved FROM credit_accounts WHERE id = ?",
            vec![format!("pool:{tenant_id}").into()],
        )
        .await;
    rows.first().map_or((0, 0), |row| {
        (row[0].as_i64().unwrap(), row[1].as_i64().unwrap())
    })
}

/// The user's `llm_tokens` counter for today.
pub async fn tokens_counted_today(app: &TestApp, user: &TestUser) -> i64 {
    let rows = app
        .query(
            "SELECT value FROM usage_counters WHERE tenant_id = ? AND user_id = ? AND metric = 'llm_tokens'
             AND period = 'day'",
            vec![user.tenant_id.clone().into(), user.user_id.clone().into()],
        )
        .await;
    rows.first().map_or(0, |row| row[0].as_i64().unwrap())
}

/// The tenant's interactions as its owner lists them.
pub async fn interactions(app: &TestApp, owner: &TestUser, query: &str) -> Vec<Value> {
    let body = expect_status(
        app.get(&format!("llm/interactions{query}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    body["data"].as_array().unwrap().clone()
}

/// A global model `name` deployed only on an Anthropic platform key calling `base_url`.
pub async fn anthropic_model(app: &TestApp, admin: &str, name: &str, base_url: &str) {
    let key = json!({ "name": format!("{name}-key"), "kind": "anthropic", "base_url": base_url,
                      "api_key": "sk-ant-000000000000001" });
    let key = expect_status(
        app.post("admin/llm/provider-keys", admin, &key).await,
        StatusCode::CREATED,
    )
    .await;
    let model = model_body(name, &[(key["id"].as_str().unwrap(), "claude-sonnet-4")]);
    create_model(app, "admin/llm/models", admin, &model).await;
}

/// A platform provider key for `double`, whose key is `api_key`; its id.
pub async fn platform_key(
    app: &TestApp,
    admin: &str,
    double: &OpenAiDouble,
    api_key: &str,
) -> String {
    let key = create_key(
        app,
        "admin/llm/provider-keys",
        admin,
        api_key,
        &double.base_url(),
        api_key,
    )
    .await;
    key["id"].as_str().unwrap().to_owned()
}
