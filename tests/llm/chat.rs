//! `POST /v1/chat/completions`: the money (hold, settle at the reported usage, release),
//! the quota, the fallbacks, pass-through and isolation, against provider doubles.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, account_and_ledger, expect_error, expect_status};

use tollgate_tests::openai_double::{Fault, OpenAiDouble, Reported};

use crate::support::{
    CACHED_PRICE, INPUT_PRICE, MAX_OUTPUT, OUTPUT_PRICE, answered, chat, create_key, create_model,
    expect_openai_error, funded_tenant, hello, interactions, model_body, pool_spent, spawn_gateway,
    tokens_counted_today,
};

const PRIMARY_KEY: &str = "sk-primary-000000000001";
const FALLBACK_KEY: &str = "sk-fallback-00000000002";

/// A server with two provider doubles behind two platform keys, a global model `chat`
/// deploying on the first then the second, and a funded tenant.
struct Gateway {
    app: TestApp,
    admin: String,
    primary: OpenAiDouble,
    fallback: OpenAiDouble,
    owner: TestUser,
}

async fn gateway(credits: i64) -> Gateway {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let primary = OpenAiDouble::start(PRIMARY_KEY).await;
    let fallback = OpenAiDouble::start(FALLBACK_KEY).await;
    let first = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "primary",
        &primary.base_url(),
        PRIMARY_KEY,
    )
    .await;
    let second = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "fallback",
        &fallback.base_url(),
        FALLBACK_KEY,
    )
    .await;
    let mut model = model_body(
        "chat",
        &[
            (first["id"].as_str().unwrap(), "gpt-4o"),
            (second["id"].as_str().unwrap(), "gpt-4o-mini"),
        ],
    );
    model["aliases"] = json!(["default"]);
    create_model(&app, "admin/llm/models", &admin, &model).await;
    let owner = funded_tenant(&app, &admin, "acme", credits).await;
    Gateway {
        app,
        admin,
        primary,
        fallback,
        owner,
    }
}

/// The hold of [`hello`]: its prompt bound (8 per request, 8 for the message, "user" 4 and
/// "Hello!" 6 bytes) at the higher prompt price, and its 100 completion tokens.
const HELLO_HOLD: i64 = (8 + 8 + 4 + 6) * 2 + 100 * 8;

#[tokio::test]
async fn a_completion_is_answered_in_openais_shape_and_charged_exactly_its_reported_usage() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.primary.reports(Reported {
        prompt_tokens: 12,
        completion_tokens: 7,
        cached_tokens: 4,
    });
    let response = chat(app, &owner.access_token, &hello("default")).await;
    let interaction_id = response.headers()["x-tollgate-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(response.headers().contains_key("ratelimit-limit"));
    let completion = expect_status(response, StatusCode::OK).await;
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(
        completion["model"], "chat",
        "clients see the catalogue's name"
    );
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello! How can I assist you today?"
    );
    assert_eq!(completion["usage"]["total_tokens"], 19);
    let sent = gateway.primary.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["model"], "gpt-4o");
    assert!(gateway.fallback.requests().is_empty());

    // 8 uncached prompt tokens at 2, 4 cached at 1, 7 completion tokens at 8.
    let expected = (8 * INPUT_PRICE + 4 * CACHED_PRICE + 7 * OUTPUT_PRICE) / 1_000_000;
    assert_eq!(expected, 76);
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (expected, 0));
    assert_eq!(tokens_counted_today(app, owner).await, 19);
    let recorded = interactions(app, owner, "").await;
    assert_eq!(recorded.len(), 1);
    let interaction = &recorded[0];
    assert_eq!(interaction["id"], interaction_id.as_str());
    assert_eq!(interaction["status"], "succeeded");
    assert_eq!(interaction["model"], "chat");
    assert_eq!(interaction["requested_model"], "default");
    assert_eq!(interaction["deployment_model"], "gpt-4o");
    assert_eq!(interaction["attempts"], 1);
    assert_eq!(
        (
            interaction["prompt_tokens"].as_i64(),
            interaction["completion_tokens"].as_i64()
        ),
        (Some(12), Some(7))
    );
    assert_eq!(interaction["cached_tokens"], 4);
    assert_eq!(interaction["cost"], expected);
    assert_eq!(interaction["user_id"], owner.user_id.as_str());
    // The hold was the worst case, and the ledger moved it once each way.
    let reservation = interaction["reservation_id"].as_str().unwrap();
    let held = app
        .query(
            "SELECT amount, status, charged, owner FROM credit_reservations WHERE id = ?",
            vec![reservation.into()],
        )
        .await;
    assert_eq!(
        held[0],
        vec![
            json!(HELLO_HOLD),
            json!("settled"),
            json!(expected),
            json!("llm_call")
        ]
    );
}

#[tokio::test]
async fn a_provider_that_reports_no_usage_is_charged_the_hold() {
    let gateway = gateway(10_000).await;
    gateway.primary.fails_with(Fault::NoUsage);
    answered(&gateway.app, &gateway.owner.access_token, &hello("chat")).await;
    assert_eq!(
        pool_spent(&gateway.app, &gateway.owner.tenant_id).await,
        (HELLO_HOLD, 0)
    );
    assert_eq!(
        tokens_counted_today(&gateway.app, &gateway.owner).await,
        8 + 8 + 4 + 6 + 100
    );
}

#[tokio::test]
async fn a_call_that_does_not_fit_answers_402_before_any_provider_is_called() {
    let gateway = gateway(HELLO_HOLD - 1).await;
    let response = chat(&gateway.app, &gateway.owner.access_token, &hello("chat")).await;
    let error = expect_openai_error(
        response,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(error["error"]["type"], "insufficient_quota");
    assert!(gateway.primary.requests().is_empty());
    assert!(gateway.fallback.requests().is_empty());
    assert_eq!(
        pool_spent(&gateway.app, &gateway.owner.tenant_id).await,
        (0, 0)
    );
    assert!(
        interactions(&gateway.app, &gateway.owner, "")
            .await
            .is_empty()
    );
    // A smaller completion fits.
    let small = json!({ "model": "chat", "messages": [{ "role": "user", "content": "Hello!" }], "max_tokens": 90 });
    answered(&gateway.app, &gateway.owner.access_token, &small).await;
}

#[tokio::test]
async fn a_rate_limited_or_failing_deployment_falls_back_to_the_next() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway
        .primary
        .fails_with(Fault::RateLimited { retry_after: 20 });
    gateway.primary.fails_with(Fault::ServerError);
    for _ in 0..2 {
        let completion = answered(app, &owner.access_token, &hello("chat")).await;
        assert_eq!(completion["model"], "chat");
    }
    // Each call reached the fallback with its own model name, after one primary attempt.
    let sent = gateway.fallback.requests();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|body| body["model"] == "gpt-4o-mini"));
    assert_eq!(gateway.primary.requests().len(), 2);
    let recorded = interactions(app, owner, "").await;
    assert!(
        recorded
            .iter()
            .all(|interaction| interaction["attempts"] == 2
                && interaction["deployment_model"] == "gpt-4o-mini"
                && interaction["status"] == "succeeded")
    );
    let expected_each = (19 * INPUT_PRICE + 10 * OUTPUT_PRICE) / 1_000_000;
    assert_eq!(
        pool_spent(app, &owner.tenant_id).await,
        (2 * expected_each, 0)
    );
}

#[tokio::test]
async fn when_every_deployment_fails_the_hold_is_released_and_the_client_hears_the_provider_status()
{
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.primary.fails_with(Fault::ServerError);
    gateway.fallback.fails_with(Fault::ServerError);
    expect_openai_error(
        chat(app, &owner.access_token, &hello("chat")).await,
        StatusCode::BAD_GATEWAY,
        "provider_error",
    )
    .await;
    gateway.primary.fails_with(Fault::ServerError);
    gateway
        .fallback
        .fails_with(Fault::RateLimited { retry_after: 30 });
    let response = chat(app, &owner.access_token, &hello("chat")).await;
    assert_eq!(response.headers()["retry-after"], "30");
    let error = expect_openai_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "provider_rate_limited",
    )
    .await;
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (0, 0));
    assert_eq!(tokens_counted_today(app, owner).await, 0);
    let recorded = interactions(app, owner, "?status=failed").await;
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded
            .iter()
            .all(|interaction| interaction["cost"] == 0 && interaction["attempts"] == 2)
    );
    assert!(
        recorded[1]["error"]
            .as_str()
            .unwrap()
            .contains("server had an error")
    );
}

#[tokio::test]
async fn a_request_the_provider_refuses_goes_back_to_the_client_without_a_fallback() {
    let gateway = gateway(10_000).await;
    gateway.primary.fails_with(Fault::BadRequest(
        "Invalid 'messages[0].content': string too long.",
    ));
    let response = chat(&gateway.app, &gateway.owner.access_token, &hello("chat")).await;
    let error = expect_openai_error(
        response,
        StatusCode::BAD_REQUEST,
        "provider_rejected_request",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("string too long")
    );
    assert!(gateway.fallback.requests().is_empty());
    assert_eq!(
        pool_spent(&gateway.app, &gateway.owner.tenant_id).await,
        (0, 0)
    );
}

#[tokio::test]
async fn the_clients_other_fields_pass_through_to_an_openai_compatible_provider() {
    let gateway = gateway(1_000_000).await;
    let body = json!({
        "model": "chat",
        "messages": [{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "Weather?" }],
        "max_completion_tokens": 50,
        "n": 2,
        "stop": ["END"],
        "user": "end-user-42",
        "tools": [{ "type": "function", "function": { "name": "get_weather",
                    "parameters": { "type": "object", "properties": { "city": { "type": "string" } } } } }],
        "response_format": { "type": "json_object" },
        "seed": 7,
        "vendor_option": { "top_k": 3 },
    });
    answered(&gateway.app, &gateway.owner.access_token, &body).await;
    let sent = &gateway.primary.requests()[0];
    for field in [
        "messages",
        "max_completion_tokens",
        "n",
        "stop",
        "user",
        "tools",
        "response_format",
        "seed",
        "vendor_option",
    ] {
        assert_eq!(sent[field], body[field], "{field}");
    }
    assert_eq!(sent["model"], "gpt-4o");
}

#[tokio::test]
async fn a_request_naming_no_maximum_is_sent_with_the_maximum_its_hold_paid_for() {
    let gateway = gateway(1_000_000).await;
    let body =
        json!({ "model": "chat", "n": 2, "messages": [{ "role": "user", "content": "Hello!" }] });
    answered(&gateway.app, &gateway.owner.access_token, &body).await;
    let sent = &gateway.primary.requests()[0];
    assert_eq!(sent["max_tokens"], MAX_OUTPUT, "per choice, as the hold");
    let held = gateway
        .app
        .query(
            "SELECT amount FROM credit_reservations WHERE owner = 'llm_call'",
            vec![],
        )
        .await;
    assert_eq!(
        held[0][0],
        (8 + 8 + 4 + 6) * 2 + 2 * MAX_OUTPUT * OUTPUT_PRICE / 1_000_000
    );
}

#[tokio::test]
async fn malformed_requests_answer_400_naming_the_parameter_before_anything_is_held() {
    let gateway = gateway(10_000).await;
    let token = &gateway.owner.access_token;
    for (body, param) in [
        (
            json!({ "messages": [{ "role": "user", "content": "x" }] }),
            "model",
        ),
        (json!({ "model": "chat", "messages": [] }), "messages"),
        (
            json!({ "model": "chat", "messages": [{ "role": "user", "content": "x" }], "max_tokens": MAX_OUTPUT + 1 }),
            "max_tokens",
        ),
        (
            json!({ "model": "chat", "messages": [{ "role": "user", "content": "x" }], "n": 0 }),
            "n",
        ),
    ] {
        let error = expect_openai_error(
            chat(&gateway.app, token, &body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        )
        .await;
        assert_eq!(error["error"]["param"], param, "{body}");
    }
    let error = expect_openai_error(
        chat(&gateway.app, token, &hello("gpt-5")).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    )
    .await;
    assert_eq!(error["error"]["param"], "model");
    assert!(gateway.primary.requests().is_empty());
    assert_eq!(
        pool_spent(&gateway.app, &gateway.owner.tenant_id).await,
        (0, 0)
    );
}

#[tokio::test]
async fn credentials_and_scopes_are_those_of_the_rest_of_the_api() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let unsigned = app
        .client
        .post(crate::support::v1(app, "chat/completions"))
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert!(unsigned.headers().contains_key("www-authenticate"));
    expect_openai_error(unsigned, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let reader = app.create_api_key(owner, &["llm:read"]).await;
    let error = expect_openai_error(
        chat(app, reader["key"].as_str().unwrap(), &hello("chat")).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    assert_eq!(error["error"]["type"], "permission_error");
    let viewer = app.add_user(owner, "vic", "viewer").await;
    expect_openai_error(
        chat(app, &viewer.access_token, &hello("chat")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let writer = app.create_api_key(owner, &["llm:write"]).await;
    answered(app, writer["key"].as_str().unwrap(), &hello("chat")).await;
    let recorded = interactions(app, owner, "").await;
    assert_eq!(recorded[0]["api_key_id"], writer["id"]);
    let wrong_method = app
        .client
        .get(crate::support::v1(app, "chat/completions"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.headers()["allow"], "POST");
    expect_openai_error(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_used_up_llm_tokens_quota_answers_429_with_retry_after_before_any_provider_call() {
    let gateway = gateway(100_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let limit = json!({ "metric": "llm_tokens", "period": "day", "limit": 19 });
    expect_status(
        app.put(
            &format!("users/{}/quota", owner.user_id),
            &owner.access_token,
            &limit,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    answered(app, &owner.access_token, &hello("chat")).await;
    assert_eq!(tokens_counted_today(app, owner).await, 19);
    let response = chat(app, &owner.access_token, &hello("chat")).await;
    let retry_after: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after));
    let error =
        expect_openai_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(error["error"]["type"], "insufficient_quota");
    assert_eq!(gateway.primary.requests().len(), 1);
}

#[tokio::test]
async fn tokens_past_the_quota_are_counted_up_to_the_limit_and_still_charged() {
    let gateway = gateway(100_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    let limit = json!({ "metric": "llm_tokens", "period": "day", "limit": 10 });
    expect_status(
        app.put(
            &format!("users/{}/quota", owner.user_id),
            &owner.access_token,
            &limit,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    answered(app, &owner.access_token, &hello("chat")).await;
    assert_eq!(tokens_counted_today(app, owner).await, 10);
    assert_eq!(
        pool_spent(app, &owner.tenant_id).await.0,
        (19 * INPUT_PRICE + 10 * OUTPUT_PRICE) / 1_000_000
    );
}

#[tokio::test]
async fn the_generic_reservation_endpoints_refuse_an_llm_calls_hold() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    answered(app, &owner.access_token, &hello("chat")).await;
    let reservation = interactions(app, owner, "").await[0]["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for step in ["settle", "release"] {
        let path = format!("credits/reservations/{reservation}/{step}");
        let error = expect_error(
            app.post(&path, &owner.access_token, &json!({ "actual": 0 }))
                .await,
            StatusCode::CONFLICT,
            "reservation_owned_by_work",
        )
        .await;
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("an LLM call"),
            "{error}"
        );
        assert_eq!(error["error"]["details"]["owner"], "llm_call");
    }
}

#[tokio::test]
async fn a_tenant_never_uses_another_tenants_model_nor_key() {
    let gateway = gateway(10_000).await;
    let (app, admin) = (&gateway.app, &gateway.admin);
    let acme = &gateway.owner;
    let own = OpenAiDouble::start("sk-acme-own-key-0000003").await;
    let acme_key = create_key(
        app,
        "llm/provider-keys",
        &acme.access_token,
        "byok",
        &own.base_url(),
        "sk-acme-own-key-0000003",
    )
    .await;
    create_model(
        app,
        "llm/models",
        &acme.access_token,
        &model_body(
            "acme-private",
            &[(acme_key["id"].as_str().unwrap(), "llama-3")],
        ),
    )
    .await;
    answered(app, &acme.access_token, &hello("acme-private")).await;
    assert_eq!(
        own.requests().len(),
        1,
        "acme's own key serves acme's model"
    );

    let globex = funded_tenant(app, admin, "globex", 10_000).await;
    expect_openai_error(
        chat(app, &globex.access_token, &hello("acme-private")).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    )
    .await;
    let borrowing = model_body("borrowed", &[(acme_key["id"].as_str().unwrap(), "llama-3")]);
    expect_error(
        app.post("llm/models", &globex.access_token, &borrowing)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(own.requests().len(), 1);
    answered(app, &globex.access_token, &hello("chat")).await;
    let globex_sees: Vec<Value> = interactions(app, &globex, "").await;
    assert_eq!(globex_sees.len(), 1);
    assert_eq!(globex_sees[0]["user_id"], globex.user_id.as_str());
    assert_eq!(interactions(app, acme, "").await.len(), 1);
}

#[tokio::test]
async fn cron_releases_the_hold_of_a_call_that_never_finished_once_it_is_an_hour_old() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    // Two holds of calls whose server stopped mid-call: one an hour old, one just made.
    let mut holds = Vec::new();
    for _ in 0..2 {
        let hold = expect_status(
            app.post(
                "credits/reservations",
                &owner.access_token,
                &json!({ "amount": 300 }),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        holds.push(hold["id"].as_str().unwrap().to_owned());
    }
    app.query("UPDATE credit_reservations SET owner = 'llm_call'", vec![])
        .await;
    app.query(
        "UPDATE credit_reservations SET created_at = created_at - 3601 WHERE id = ?",
        vec![holds[0].clone().into()],
    )
    .await;

    assert_eq!(app.run_cron().await.llm_holds_released, 1);
    assert_eq!(app.run_cron().await.llm_holds_released, 0, "once");
    let statuses = app
        .query(
            "SELECT id, status FROM credit_reservations ORDER BY id = ? DESC",
            vec![holds[0].clone().into()],
        )
        .await;
    assert_eq!(statuses[0][1], "released");
    assert_eq!(statuses[1][1], "held");
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (0, 300));
    let (account, ledger) = account_and_ledger(app, &format!("pool:{}", owner.tenant_id)).await;
    assert_eq!(account, ledger, "the ledger sums to the balance");
}

#[tokio::test]
async fn a_client_that_hangs_up_before_the_answer_is_charged_once_for_what_the_provider_did() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    gateway.primary.hold_answers();
    let impatient = app
        .client
        .post(crate::support::v1(app, "chat/completions"))
        .bearer_auth(&owner.access_token)
        .json(&hello("chat"))
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(impatient.is_err(), "the client gave up before the answer");
    gateway.primary.release_answers();
    // Bounded wait for the call, which runs on without its client, to be recorded.
    let mut calls = Vec::new();
    for _ in 0..200 {
        calls = interactions(app, owner, "").await;
        if !calls.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(calls.len(), 1, "the call was recorded once");
    assert_eq!(calls[0]["status"], "succeeded");
    // The double's default usage: 19 prompt and 10 completion tokens.
    let cost = (19 * INPUT_PRICE + 10 * OUTPUT_PRICE) / 1_000_000;
    assert_eq!(pool_spent(app, &owner.tenant_id).await, (cost, 0));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_in_openais_shape() {
    let gateway = gateway(10_000).await;
    let (app, owner) = (&gateway.app, &gateway.owner);
    // One byte over the default TOLLGATE_MAX_BODY_BYTES (1 MiB), and the rest of the body.
    let mut huge = hello("chat");
    huge["messages"][0]["content"] = json!("x".repeat(1024 * 1024 + 1));
    let refused = expect_openai_error(
        chat(app, &owner.access_token, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_eq!(refused["error"]["type"], "invalid_request_error");
    assert!(gateway.primary.requests().is_empty());
}
