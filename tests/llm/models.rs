//! The catalogue: global models (`admin/llm/models`), a tenant's own that add or override
//! (`llm/models`), and what `GET /v1/models` shows each caller.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, expect_error, expect_status};

use crate::support::{
    create_key, create_model, expect_openai_error, model_body, spawn_gateway, v1_get,
};

const SECRET: &str = "sk-proj-0123456789abcdefWXYZ";

async fn platform_key(app: &TestApp, admin: &str) -> String {
    create_key(
        app,
        "admin/llm/provider-keys",
        admin,
        "main",
        "https://api.openai.com/v1",
        SECRET,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn listed_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_model_is_checked_field_by_field() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let key = platform_key(&app, &admin).await;
    for (change, field) in [
        (json!({ "name": "with space" }), "name"),
        (json!({ "aliases": ["gpt", "gpt"] }), "aliases[1]"),
        (json!({ "deployments": [] }), "deployments"),
        (json!({ "context_window": 0 }), "context_window"),
        (json!({ "max_output_tokens": 200_000 }), "max_output_tokens"),
        (json!({ "input_price": -1 }), "input_price"),
        (json!({ "plans": ["GOLD"] }), "plans[0]"),
        (
            json!({ "deployments": [{ "provider_key_id": "no-such-key", "model": "gpt-4o" }] }),
            "deployments[0].provider_key_id",
        ),
    ] {
        let mut body = model_body("chat", &[(&key, "gpt-4o")]);
        for (name, value) in change.as_object().unwrap() {
            body[name] = value.clone();
        }
        let error = expect_error(
            app.post("admin/llm/models", &admin, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], field, "{change}");
    }
    let unknown = json!({ "name": "x", "deployments": [], "surprise": 1 });
    expect_error(
        app.post("admin/llm/models", &admin, &unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_global_model_deploys_on_platform_keys_only_and_a_tenants_on_its_own_or_the_platforms() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let platform = platform_key(&app, &admin).await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let acme_key = create_key(
        &app,
        "llm/provider-keys",
        &acme.access_token,
        "byok",
        "https://api.openai.com/v1",
        SECRET,
    )
    .await;
    let acme_key = acme_key["id"].as_str().unwrap();
    let global_on_tenant_key = model_body("chat", &[(acme_key, "gpt-4o")]);
    expect_error(
        app.post("admin/llm/models", &admin, &global_on_tenant_key)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let mixed = model_body(
        "acme-chat",
        &[(acme_key, "gpt-4o"), (&platform, "gpt-4o-mini")],
    );
    let created = create_model(&app, "llm/models", &acme.access_token, &mixed).await;
    assert_eq!(created["owner"], "tenant");
    assert_eq!(
        created["deployments"][1]["provider_key_id"],
        platform.as_str()
    );
    let on_foreign_key = model_body("globex-chat", &[(acme_key, "gpt-4o")]);
    let error = expect_error(
        app.post("llm/models", &globex.access_token, &on_foreign_key)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        error["error"]["details"]["field"],
        "deployments[0].provider_key_id"
    );
}

#[tokio::test]
async fn a_tenants_row_overrides_the_global_model_of_the_same_name_for_that_tenant_only() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let key = platform_key(&app, &admin).await;
    let mut global = model_body("chat", &[(&key, "gpt-4o")]);
    global["aliases"] = json!(["default"]);
    create_model(&app, "admin/llm/models", &admin, &global).await;
    create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("other", &[(&key, "gpt-4o-mini")]),
    )
    .await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let mut overriding = model_body("chat", &[(&key, "gpt-4o-mini")]);
    overriding["aliases"] = json!(["cheap"]);
    create_model(&app, "llm/models", &acme.access_token, &overriding).await;

    let acme_models = expect_status(
        v1_get(&app, &acme.access_token, "models").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(acme_models["object"], "list");
    assert_eq!(listed_ids(&acme_models), ["chat", "other"]);
    assert_eq!(acme_models["data"][0]["owned_by"], "acme");
    assert_eq!(acme_models["data"][0]["aliases"], json!(["cheap"]));
    assert_eq!(acme_models["data"][0]["object"], "model");
    let globex_models = expect_status(
        v1_get(&app, &globex.access_token, "models").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed_ids(&globex_models), ["chat", "other"]);
    assert_eq!(globex_models["data"][0]["owned_by"], "tollgate");
    assert_eq!(globex_models["data"][0]["aliases"], json!(["default"]));

    let by_alias = expect_status(
        v1_get(&app, &acme.access_token, "models/cheap").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_alias["id"], "chat");
    // The overridden global row is gone for acme, aliases and all.
    expect_openai_error(
        v1_get(&app, &acme.access_token, "models/default").await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    )
    .await;
    expect_openai_error(
        v1_get(&app, &globex.access_token, "models/cheap").await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    )
    .await;
    let catalogue = expect_status(
        app.get("llm/models", &acme.access_token).await,
        StatusCode::OK,
    )
    .await;
    let owners: Vec<(&str, &str)> = catalogue["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            (
                model["name"].as_str().unwrap(),
                model["owner"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(owners, [("chat", "tenant"), ("other", "platform")]);
}

#[tokio::test]
async fn names_and_aliases_are_unique_within_one_catalogue() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let key = platform_key(&app, &admin).await;
    let mut first = model_body("chat", &[(&key, "gpt-4o")]);
    first["aliases"] = json!(["gpt"]);
    let first = create_model(&app, "admin/llm/models", &admin, &first).await;
    for clash in [
        model_body("gpt", &[(&key, "x")]),
        model_body("chat", &[(&key, "x")]),
    ] {
        expect_error(
            app.post("admin/llm/models", &admin, &clash).await,
            StatusCode::CONFLICT,
            "model_name_taken",
        )
        .await;
    }
    let mut clashing_alias = model_body("other", &[(&key, "x")]);
    clashing_alias["aliases"] = json!(["chat"]);
    expect_error(
        app.post("admin/llm/models", &admin, &clashing_alias).await,
        StatusCode::CONFLICT,
        "model_name_taken",
    )
    .await;
    // A model may keep its own names when it is replaced.
    let path = format!("admin/llm/models/{}", first["id"].as_str().unwrap());
    let mut replaced = model_body("chat", &[(&key, "gpt-4o-mini")]);
    replaced["aliases"] = json!(["gpt"]);
    let updated = expect_status(app.put(&path, &admin, &replaced).await, StatusCode::OK).await;
    assert_eq!(updated["deployments"][0]["model"], "gpt-4o-mini");
    assert_eq!(updated["created_at"], first["created_at"]);
    expect_error(
        app.put("admin/llm/models/nope", &admin, &replaced).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_model_reserved_for_some_plans_is_invisible_to_the_others() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let key = platform_key(&app, &admin).await;
    let mut premium = model_body("premium", &[(&key, "gpt-4o")]);
    premium["plans"] = json!(["PRO", "ENTERPRISE"]);
    create_model(&app, "admin/llm/models", &admin, &premium).await;
    let free = app.register("freeco").await;
    let pro = app.register("proco").await;
    app.assign_plan(&admin, &pro, &json!({ "plan": "PRO" }))
        .await;
    let free_models = expect_status(
        v1_get(&app, &free.access_token, "models").await,
        StatusCode::OK,
    )
    .await;
    assert!(listed_ids(&free_models).is_empty());
    expect_openai_error(
        v1_get(&app, &free.access_token, "models/premium").await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    )
    .await;
    let pro_models = expect_status(
        v1_get(&app, &pro.access_token, "models").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed_ids(&pro_models), ["premium"]);
}

#[tokio::test]
async fn members_may_list_usable_models_but_not_manage_the_catalogue() {
    let app = spawn_gateway().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "mia", "member").await;
    expect_error(
        app.get("llm/models", &member.access_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_status(
        v1_get(&app, &member.access_token, "models").await,
        StatusCode::OK,
    )
    .await;
    let unsigned = app
        .client
        .get(crate::support::v1(&app, "models"))
        .send()
        .await
        .unwrap();
    let error = expect_openai_error(unsigned, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    assert_eq!(error["error"]["type"], "authentication_error");
}
