//! The gateway's calls by model in `GET usage` (today and this month, a user's own or the
//! tenant's) and in the stored daily report.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::{
    clock::Clock,
    quota::{metrics::Period, periods::Window},
    secrets::Keyring,
};
use tollgate_tests::{TestApp, TestUser, expect_status, spawn_app_with};

use tollgate_tests::openai_double::{OpenAiDouble, Reported};

use crate::support::{
    MASTER_KEYS, answered, chat, create_model, funded_tenant, hello, model_body, platform_key,
};

const KEY: &str = "sk-usage-provider-00001";

async fn usage(app: &TestApp, user: &TestUser, query: &str) -> Value {
    expect_status(
        app.get(&format!("usage{query}"), &user.access_token).await,
        StatusCode::OK,
    )
    .await
}

/// `{model, calls, prompt_tokens, completion_tokens, cached_tokens, cost}`.
fn line(model: &str, calls: i64, prompt: i64, completion: i64, cost: i64) -> Value {
    json!({
        "model": model, "calls": calls, "prompt_tokens": prompt,
        "completion_tokens": completion, "cached_tokens": 0, "cost": cost,
    })
}

#[tokio::test]
async fn calls_are_summed_by_model_in_the_usage_report_and_the_daily_report() {
    // Access tokens outlive the day the test moves on by.
    let app = spawn_app_with(|config| {
        config.secrets = Keyring::parse(MASTER_KEYS).unwrap();
        config.access_token_ttl = 7 * 24 * 3600;
    })
    .await;
    let admin = app.platform_admin("ops@platform.test").await;
    let provider = OpenAiDouble::start(KEY).await;
    let key = platform_key(&app, &admin, &provider, KEY).await;
    let key = key.as_str();
    for (name, deployed) in [("chat", "gpt-4o"), ("mini", "gpt-4o-mini")] {
        create_model(
            &app,
            "admin/llm/models",
            &admin,
            &model_body(name, &[(key, deployed)]),
        )
        .await;
    }
    let owner = funded_tenant(&app, &admin, "acme", 100_000).await;
    let member = app.add_user(&owner, "mia", "member").await;
    // 10 prompt tokens at 2 credits and 5 completion tokens at 8: 60 credits a call.
    provider.reports(Reported {
        prompt_tokens: 10,
        completion_tokens: 5,
        cached_tokens: 0,
    });
    for (user, model) in [(&owner, "chat"), (&member, "chat"), (&member, "mini")] {
        answered(&app, &user.access_token, &hello(model)).await;
    }

    let own = usage(&app, &member, "").await;
    let expected = json!([line("chat", 1, 10, 5, 60), line("mini", 1, 10, 5, 60)]);
    assert_eq!(own["llm_by_model"]["day"], expected, "{own}");
    assert_eq!(own["llm_by_model"]["month"], expected);
    let tenant = usage(&app, &owner, "?scope=tenant").await;
    assert_eq!(
        tenant["llm_by_model"]["day"],
        json!([line("chat", 2, 20, 10, 120), line("mini", 1, 10, 5, 60)])
    );

    // The next day: nothing today, the month still counts, and the ended day is reported.
    let now = app.clock.now();
    app.advance_clock(Window::containing(Period::Day, now).end + 3_600 - now);
    let tenant = usage(&app, &owner, "?scope=tenant").await;
    assert_eq!(tenant["llm_by_model"]["day"], json!([]));
    assert_eq!(tenant["llm_by_model"]["month"].as_array().unwrap().len(), 2);
    app.run_cron().await;
    let reports = expect_status(
        app.get("reports?kind=daily", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let id = reports["data"][0]["id"].as_str().unwrap();
    let report = expect_status(
        app.get(&format!("reports/{id}"), &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        report["llm_by_model"],
        json!([line("chat", 2, 20, 10, 120), line("mini", 1, 10, 5, 60)]),
        "{report}"
    );
}

#[tokio::test]
async fn the_gateways_spending_raises_the_credit_alerts_and_blocks_like_any_other() {
    let app = crate::support::spawn_gateway().await;
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
    let owner = funded_tenant(&app, &admin, "acme", 1_000).await;
    let alerts = || async {
        app.query(
            "SELECT threshold FROM credit_alerts WHERE account_id = ? ORDER BY threshold",
            vec![format!("pool:{}", owner.tenant_id).into()],
        )
        .await
        .into_iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect::<Vec<_>>()
    };
    // Each call holds 132 first (a 26-token prompt bound at 2, 10 completion tokens at 8)
    // and is charged 118 (19 prompt tokens at 2, 10 completion tokens at 8): six calls use
    // 708 (70.8 %), the seventh 826 (82.6 %); the eighth's hold brings what is used or held
    // to 958 (95.8 %) before it settles at 944.
    let mut small = hello("chat");
    small["max_tokens"] = json!(10);
    for _ in 0..6 {
        answered(&app, &owner.access_token, &small).await;
    }
    assert!(alerts().await.is_empty());
    answered(&app, &owner.access_token, &small).await;
    assert_eq!(alerts().await, [80]);
    answered(&app, &owner.access_token, &small).await;
    assert_eq!(alerts().await, [80, 95]);
    let events = app
        .query(
            "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = 'credits.alert'",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(events.len(), 2);
    // What is left (56) cannot hold another call's worst case.
    let refused = chat(&app, &owner.access_token, &small).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        provider.requests().len(),
        8,
        "the refused call reached no provider"
    );
}
