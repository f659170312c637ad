//! Provider keys: the platform's (`admin/llm/provider-keys`) and a tenant's own
//! (`llm/provider-keys`), sealed at rest and never returned.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status};

use crate::support::{
    create_key, create_model, model_body, spawn_gateway, spawn_without_master_key,
};

const SECRET: &str = "sk-proj-0123456789abcdefWXYZ";

#[tokio::test]
async fn a_platform_key_is_stored_sealed_and_shown_by_its_last_four_characters_only() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let key = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "openai main",
        "https://api.openai.com/v1",
        SECRET,
    )
    .await;
    assert_eq!(key["owner"], "platform");
    assert_eq!(key["api_key_last4"], "WXYZ");
    assert!(!key.to_string().contains("0123456789"), "{key}");
    let listed = expect_status(
        app.get("admin/llm/provider-keys", &admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["data"][0]["id"], key["id"]);
    assert!(!listed.to_string().contains("0123456789"), "{listed}");
    let stored = app
        .query(
            "SELECT api_key_sealed FROM llm_provider_keys WHERE id = ?",
            vec![key["id"].as_str().unwrap().into()],
        )
        .await;
    let sealed = stored[0][0].as_str().unwrap();
    assert!(sealed.starts_with("k1:"), "{sealed}");
    assert!(!sealed.contains("0123456789"));
}

#[tokio::test]
async fn without_a_master_key_a_provider_key_is_refused_with_503() {
    let app = spawn_without_master_key().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let body = json!({ "name": "k", "kind": "openai", "api_key": SECRET });
    let error = expect_error(
        app.post("admin/llm/provider-keys", &admin, &body).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "secrets_not_configured",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_SECRETS_KEYS")
    );
    let owner = app.register("acme").await;
    expect_error(
        app.post("llm/provider-keys", &owner.access_token, &body)
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "secrets_not_configured",
    )
    .await;
}

#[tokio::test]
async fn bad_keys_are_refused_with_422_naming_the_field() {
    let app = spawn_gateway().await;
    let owner = app.register("acme").await;
    for (body, field) in [
        (
            json!({ "name": "", "kind": "openai", "api_key": SECRET }),
            "name",
        ),
        (
            json!({ "name": "k", "kind": "cohere", "api_key": SECRET }),
            "kind",
        ),
        (
            json!({ "name": "k", "kind": "openai", "api_key": "sk with space" }),
            "api_key",
        ),
        (
            json!({ "name": "k", "kind": "openai", "base_url": "ftp://x", "api_key": SECRET }),
            "base_url",
        ),
    ] {
        let error = expect_error(
            app.post("llm/provider-keys", &owner.access_token, &body)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn a_tenant_brings_its_own_key_and_only_owners_and_admins_manage_keys() {
    let app = spawn_gateway().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "mia", "member").await;
    let body = json!({ "name": "byok", "kind": "anthropic", "api_key": SECRET });
    expect_error(
        app.post("llm/provider-keys", &member.access_token, &body)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let key = expect_status(
        app.post("llm/provider-keys", &owner.access_token, &body)
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(key["owner"], "tenant");
    assert_eq!(key["kind"], "anthropic");
    assert_eq!(key["base_url"], "https://api.anthropic.com");
    let audit = expect_status(
        app.get(
            "audit-logs?action=llm_provider_key.created",
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(audit["data"][0]["target"]["id"], key["id"]);
    assert!(!audit.to_string().contains("0123456789"));
}

#[tokio::test]
async fn a_tenant_never_sees_nor_deletes_another_tenants_key_and_sees_the_platforms_by_name_only() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let platform = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "platform",
        "https://api.openai.com/v1",
        SECRET,
    )
    .await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let acme_key = create_key(
        &app,
        "llm/provider-keys",
        &acme.access_token,
        "acme",
        "https://api.openai.com/v1",
        SECRET,
    )
    .await;
    let listed = expect_status(
        app.get("llm/provider-keys", &globex.access_token).await,
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [platform["id"].as_str().unwrap()]);
    assert_eq!(listed["data"][0]["owner"], "platform");
    assert_eq!(listed["data"][0]["base_url"], serde_json::Value::Null);
    assert_eq!(listed["data"][0]["api_key_last4"], serde_json::Value::Null);
    let path = format!("llm/provider-keys/{}", acme_key["id"].as_str().unwrap());
    expect_error(
        app.delete(&path, &globex.access_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let platform_path = format!("llm/provider-keys/{}", platform["id"].as_str().unwrap());
    expect_error(
        app.delete(&platform_path, &acme.access_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_status(
        app.delete(&path, &acme.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;
}

#[tokio::test]
async fn a_key_a_model_deploys_on_cannot_be_deleted_and_platform_changes_are_audited() {
    let app = spawn_gateway().await;
    let admin = app.platform_admin("ops@platform.test").await;
    let key = create_key(
        &app,
        "admin/llm/provider-keys",
        &admin,
        "main",
        "https://api.openai.com/v1",
        SECRET,
    )
    .await;
    let key_id = key["id"].as_str().unwrap();
    let model = create_model(
        &app,
        "admin/llm/models",
        &admin,
        &model_body("chat", &[(key_id, "gpt-4o")]),
    )
    .await;
    let key_path = format!("admin/llm/provider-keys/{key_id}");
    let error = expect_error(
        app.delete(&key_path, &admin).await,
        StatusCode::CONFLICT,
        "provider_key_in_use",
    )
    .await;
    assert_eq!(error["error"]["details"]["models"], 1);
    let model_path = format!("admin/llm/models/{}", model["id"].as_str().unwrap());
    expect_status(
        app.delete(&model_path, &admin).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect_status(app.delete(&key_path, &admin).await, StatusCode::NO_CONTENT).await;
    expect_error(
        app.delete(&key_path, &admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let log = expect_status(app.get("admin/audit-logs", &admin).await, StatusCode::OK).await;
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "llm_provider_key.deleted",
            "llm_model.deleted",
            "llm_model.created",
            "llm_provider_key.created"
        ]
    );
    assert_eq!(log["data"][0]["actor"]["type"], "platform_admin");
    assert_eq!(log["data"][0]["target"]["id"], key_id);
    let filtered = expect_status(
        app.get("admin/audit-logs?action=llm_model.*", &admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 2);
}
