//! What a tenant decides on top of the catalogue (`llm/settings`, `llm/users/{id}/models`):
//! the models its users see, each user's allow-list, and whether the text of calls is kept,
//! for how long.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status};

use tollgate_tests::openai_double::OpenAiDouble;

use crate::support::{
    answered, chat, create_model, expect_openai_error, funded_tenant, hello, model_body,
    platform_key, spawn_gateway, v1_get,
};

const KEY: &str = "sk-policy-000000000001";

struct Gateway {
    app: TestApp,
    _double: OpenAiDouble,
    owner: TestUser,
    other: TestUser,
}

/// Global models `chat` and `premium` on one OpenAI double, and two funded tenants.
async fn gateway() -> Gateway {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let double = OpenAiDouble::start(KEY).await;
    let key = platform_key(&app, &admin, &double, KEY).await;
    for name in ["chat", "premium"] {
        let mut body = model_body(name, &[(&key, "gpt-4o")]);
        body["aliases"] = json!([format!("{name}-latest")]);
        create_model(&app, "admin/llm/models", &admin, &body).await;
    }
    let owner = funded_tenant(&app, &admin, "acme", 1_000_000).await;
    let other = funded_tenant(&app, &admin, "globex", 1_000_000).await;
    Gateway {
        app,
        _double: double,
        owner,
        other,
    }
}

async fn listed(app: &TestApp, user: &TestUser) -> Vec<String> {
    let list = expect_status(
        v1_get(app, &user.access_token, "models").await,
        StatusCode::OK,
    )
    .await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn put_settings(app: &TestApp, owner: &TestUser, body: Value) -> Value {
    expect_status(
        app.put("llm/settings", &owner.access_token, &body).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn a_tenants_users_see_and_call_only_the_models_it_shows() {
    let Gateway {
        app,
        owner,
        other,
        _double: _provider,
    } = gateway().await;
    let defaults = expect_status(
        app.get("llm/settings", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        defaults,
        json!({ "visible_models": null, "content_logging": false, "content_retention_days": 30,
                "user_requests_per_minute": null, "user_tokens_per_minute": null })
    );
    assert_eq!(listed(&app, &owner).await, ["chat", "premium"]);

    let saved = put_settings(&app, &owner, json!({ "visible_models": ["chat", "chat"] })).await;
    assert_eq!(
        saved["visible_models"],
        json!(["chat"]),
        "repeats are dropped"
    );
    assert_eq!(listed(&app, &owner).await, ["chat"]);
    // A hidden model does not exist for the tenant's users, by name or alias.
    for name in ["premium", "premium-latest"] {
        expect_openai_error(
            chat(&app, &owner.access_token, &hello(name)).await,
            StatusCode::NOT_FOUND,
            "model_not_found",
        )
        .await;
        expect_openai_error(
            v1_get(&app, &owner.access_token, &format!("models/{name}")).await,
            StatusCode::NOT_FOUND,
            "model_not_found",
        )
        .await;
    }
    answered(&app, &owner.access_token, &hello("chat-latest")).await;
    // Another tenant's choice is its own.
    assert_eq!(listed(&app, &other).await, ["chat", "premium"]);
    answered(&app, &other.access_token, &hello("premium")).await;

    let audit = expect_status(
        app.get(
            "audit-logs?action=llm_settings.updated",
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");

    // Back to every model.
    put_settings(&app, &owner, json!({})).await;
    assert_eq!(listed(&app, &owner).await, ["chat", "premium"]);
}

#[tokio::test]
async fn settings_are_checked_and_only_owners_and_admins_change_them() {
    let Gateway {
        app,
        owner,
        _double: _provider,
        ..
    } = gateway().await;
    for (body, field) in [
        (json!({ "visible_models": ["gpt-5"] }), "visible_models"),
        (
            json!({ "content_logging": true, "content_retention_days": 0 }),
            "content_retention_days",
        ),
        (
            json!({ "content_retention_days": 3651 }),
            "content_retention_days",
        ),
    ] {
        let error = expect_error(
            app.put("llm/settings", &owner.access_token, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
    expect_error(
        app.put(
            "llm/settings",
            &owner.access_token,
            &json!({ "surprise": 1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let member = app.add_user(&owner, "mia", "member").await;
    expect_error(
        app.put("llm/settings", &member.access_token, &json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        app.put(
            &format!("llm/users/{}/models", member.user_id),
            &member.access_token,
            &json!({ "models": ["chat"] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Nothing was written by the refused changes.
    let settings = expect_status(
        app.get("llm/settings", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(settings["visible_models"], Value::Null);
}

#[tokio::test]
async fn a_user_calls_only_the_models_on_their_allow_list() {
    let Gateway {
        app,
        owner,
        other,
        _double: _provider,
    } = gateway().await;
    let member = app.add_user(&owner, "mia", "member").await;
    let path = format!("llm/users/{}/models", member.user_id);
    let set = expect_status(
        app.put(&path, &owner.access_token, &json!({ "models": ["chat"] }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        set,
        json!({ "user_id": member.user_id, "models": ["chat"] })
    );
    assert_eq!(listed(&app, &member).await, ["chat"]);
    let refused = expect_openai_error(
        chat(&app, &member.access_token, &hello("premium-latest")).await,
        StatusCode::FORBIDDEN,
        "model_not_allowed",
    )
    .await;
    assert_eq!(refused["error"]["param"], "model");
    answered(&app, &member.access_token, &hello("chat")).await;
    // The list binds that user only.
    assert_eq!(listed(&app, &owner).await, ["chat", "premium"]);

    // Unknown models are refused; another tenant's user is not found; the list comes off.
    expect_error(
        app.put(&path, &owner.access_token, &json!({ "models": ["nope"] }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    expect_error(
        app.put(
            &format!("llm/users/{}/models", other.user_id),
            &owner.access_token,
            &json!({ "models": ["chat"] }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.get(
            &format!("llm/users/{}/models", other.user_id),
            &owner.access_token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_status(
        app.put(&path, &owner.access_token, &json!({ "models": null }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed(&app, &member).await, ["chat", "premium"]);
}

async fn content_of(app: &TestApp, user: &TestUser, interaction: &str) -> Value {
    let shown = expect_status(
        app.get(
            &format!("llm/interactions/{interaction}"),
            &user.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    shown["content"].clone()
}

/// `user` with a fresh access token, for after the clock moved past the old one.
async fn signed_in_again(app: &TestApp, mut user: TestUser) -> TestUser {
    let tokens = expect_status(
        app.login(&user.tenant_slug, &user.email, &user.password)
            .await,
        StatusCode::OK,
    )
    .await;
    user.access_token = tokens["access_token"].as_str().unwrap().to_owned();
    user
}

fn interaction_of(response: &reqwest::Response) -> String {
    response.headers()["x-tollgate-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_text_of_calls_is_kept_only_while_the_tenant_logs_it_and_for_its_retention() {
    let Gateway {
        app,
        owner,
        other,
        _double: _provider,
    } = gateway().await;
    let unlogged = chat(&app, &owner.access_token, &hello("chat")).await;
    let unlogged = interaction_of(&unlogged);
    assert_eq!(content_of(&app, &owner, &unlogged).await, Value::Null);

    put_settings(
        &app,
        &owner,
        json!({ "content_logging": true, "content_retention_days": 2 }),
    )
    .await;
    let response = chat(&app, &owner.access_token, &hello("chat")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let logged = interaction_of(&response);
    assert_eq!(
        content_of(&app, &owner, &logged).await,
        json!({
            "request": [{ "role": "user", "content": "Hello!" }],
            "response": [{ "role": "assistant", "content": "Hello! How can I assist you today?",
                           "refusal": null, "annotations": [] }],
        })
    );
    // A member sees the text of their own calls only; another tenant sees none of them.
    let member = app.add_user(&owner, "mia", "member").await;
    expect_error(
        app.get(&format!("llm/interactions/{logged}"), &member.access_token)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.get(&format!("llm/interactions/{logged}"), &other.access_token)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Kept for two days, dropped by the first cron run after them.
    app.advance_clock(2 * 86_400 - 60);
    assert_eq!(app.run_cron().await.llm_contents_purged, 0);
    let owner = signed_in_again(&app, owner).await;
    assert!(content_of(&app, &owner, &logged).await.is_object());
    app.advance_clock(60);
    assert_eq!(app.run_cron().await.llm_contents_purged, 1);
    assert_eq!(content_of(&app, &owner, &logged).await, Value::Null);
    // The record itself stays.
    let record = expect_status(
        app.get(&format!("llm/interactions/{logged}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(record["status"], "succeeded");
}

#[tokio::test]
async fn a_streamed_calls_text_is_kept_as_the_messages_its_deltas_add_up_to() {
    let Gateway {
        app,
        owner,
        _double: _provider,
        ..
    } = gateway().await;
    put_settings(&app, &owner, json!({ "content_logging": true })).await;
    let mut body = hello("chat");
    body["stream"] = json!(true);
    let response = chat(&app, &owner.access_token, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let interaction = interaction_of(&response);
    // Read to its end: the call is recorded before the body ends.
    response.text().await.unwrap();
    assert_eq!(
        content_of(&app, &owner, &interaction).await["response"],
        json!([{ "role": "assistant", "content": "Hello! How can I assist you today?" }])
    );
}
