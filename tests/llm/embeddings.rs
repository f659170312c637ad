//! `POST /v1/embeddings`: OpenAI's shape, the hold of the input's bound, the charge of the
//! reported prompt tokens, the record, and the refusals, against the OpenAI double.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_status};

use tollgate_tests::openai_double::{EMBEDDING_DIMENSIONS, Fault, OpenAiDouble, Reported};

use crate::support::{
    INPUT_PRICE, anthropic_model, create_model, expect_openai_error, funded_tenant, interactions,
    model_body, platform_key, pool_spent, post_v1, spawn_gateway, tokens_counted_today,
};

const KEY: &str = "sk-embeddings-0000000001";

struct Gateway {
    app: TestApp,
    admin: String,
    provider: OpenAiDouble,
    owner: TestUser,
}

/// A server with an OpenAI double behind a platform key, a global model `embed` on it, and
/// a tenant whose pool holds `credits`.
async fn gateway(credits: i64) -> Gateway {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let provider = OpenAiDouble::start(KEY).await;
    let key = platform_key(&app, &admin, &provider, KEY).await;
    let model = model_body("embed", &[(key.as_str(), "text-embedding-3-small")]);
    create_model(&app, "admin/llm/models", &admin, &model).await;
    let owner = funded_tenant(&app, &admin, "acme", credits).await;
    Gateway {
        app,
        admin,
        provider,
        owner,
    }
}

async fn embed(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    post_v1(app, token, "embeddings", body).await
}

#[tokio::test]
async fn embeddings_are_answered_in_openais_shape_and_charged_their_reported_prompt_tokens() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.provider.reports(Reported {
        prompt_tokens: 9,
        completion_tokens: 0,
        cached_tokens: 0,
    });
    let body = json!({ "model": "embed", "input": ["The food was delicious", "and the waiter"], "dimensions": 8 });
    let response = embed(app, &owner.access_token, &body).await;
    let interaction_id = response.headers()["x-tollgate-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let list = expect_status(response, StatusCode::OK).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["model"], "embed", "clients see the catalogue's name");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    assert_eq!(
        data[1]["embedding"].as_array().unwrap().len(),
        EMBEDDING_DIMENSIONS
    );
    assert_eq!(list["usage"]["prompt_tokens"], 9);
    let sent = &gateway.provider.requests()[0];
    assert_eq!(sent["model"], "text-embedding-3-small");
    assert_eq!(sent["input"], body["input"]);
    assert_eq!(sent["dimensions"], 8, "the client's fields pass through");

    assert_eq!(
        pool_spent(app, &owner.tenant_id).await,
        (9 * INPUT_PRICE / 1_000_000, 0)
    );
    assert_eq!(tokens_counted_today(app, owner).await, 9);
    let recorded = interactions(app, owner, "?endpoint=embeddings").await;
    assert_eq!(recorded.len(), 1);
    let interaction = &recorded[0];
    assert_eq!(interaction["id"], interaction_id.as_str());
    assert_eq!(interaction["endpoint"], "embeddings");
    assert_eq!(interaction["status"], "succeeded");
    assert_eq!(interaction["prompt_tokens"], 9);
    assert_eq!(interaction["completion_tokens"], 0);
    assert_eq!(interaction["cost"], 18);
    assert!(
        interactions(app, owner, "?endpoint=chat").await.is_empty(),
        "filtered by endpoint"
    );
    // The hold was each input's bytes plus 8 markers, at the prompt price.
    let held = app
        .query(
            "SELECT amount, status FROM credit_reservations WHERE id = ?",
            vec![interaction["reservation_id"].as_str().unwrap().into()],
        )
        .await;
    assert_eq!(held[0][0], (22 + 8 + 14 + 8) * 2);
    assert_eq!(held[0][1], "settled");
}

#[tokio::test]
async fn malformed_inputs_and_models_without_embeddings_answer_400_before_anything_is_held() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    for input in [
        json!(""),
        json!([]),
        json!(["a", 1]),
        json!([[1], []]),
        json!({}),
    ] {
        let refused = expect_openai_error(
            embed(
                app,
                &owner.access_token,
                &json!({ "model": "embed", "input": input }),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        )
        .await;
        assert_eq!(refused["error"]["param"], "input", "{input}");
    }
    let no_model = expect_openai_error(
        embed(app, &owner.access_token, &json!({ "input": "hi" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    )
    .await;
    assert_eq!(no_model["error"]["param"], "model");
    expect_openai_error(
        embed(
            app,
            &owner.access_token,
            &json!({ "model": "nope", "input": "hi" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    )
    .await;

    // A model served only by Anthropic has no embeddings.
    anthropic_model(app, &gateway.admin, "claude", &gateway.provider.base_url()).await;
    let refused = expect_openai_error(
        embed(
            app,
            &owner.access_token,
            &json!({ "model": "claude", "input": "hi" }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    )
    .await;
    assert_eq!(refused["error"]["param"], "model");

    assert!(gateway.provider.requests().is_empty());
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (0, 0));
    let holds = app
        .query("SELECT COUNT(*) FROM credit_reservations", vec![])
        .await;
    assert_eq!(holds[0][0], 0);
}

#[tokio::test]
async fn an_input_that_does_not_fit_answers_402_and_a_failing_provider_releases_the_hold() {
    // "hi" holds (2 + 8) * 2 credits: exactly the pool.
    let gateway = gateway(20).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let too_long = json!({ "model": "embed", "input": "x".repeat(100) });
    expect_openai_error(
        embed(app, &owner.access_token, &too_long).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert!(gateway.provider.requests().is_empty());

    gateway.provider.fails_with(Fault::ServerError);
    expect_status(
        embed(
            app,
            &owner.access_token,
            &json!({ "model": "embed", "input": "hi" }),
        )
        .await,
        StatusCode::BAD_GATEWAY,
    )
    .await;
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (0, 0));
    let recorded = interactions(app, owner, "").await;
    assert_eq!(recorded[0]["status"], "failed");
    assert_eq!(recorded[0]["endpoint"], "embeddings");
}
