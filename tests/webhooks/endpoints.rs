//! Endpoint CRUD: statuses, the secret shown once, validation, roles and scopes, and
//! tenant isolation.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tollgate_tests::{expect_error, expect_status};

use crate::support::{create_endpoint, spawn_webhook_app};

#[tokio::test]
async fn an_endpoint_is_created_read_changed_and_deleted_with_its_secret_shown_once() {
    let app = spawn_webhook_app().await;
    let owner = app.register("acme").await;

    let created = create_endpoint(
        &app,
        &owner,
        "https://hooks.example.com/tollgate",
        &["credits.*", "apikey.created"],
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["enabled"], true);
    assert_eq!(
        created["event_types"],
        json!(["credits.*", "apikey.created"])
    );

    let read = expect_status(
        app.get(&format!("webhooks/endpoints/{id}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["url"], "https://hooks.example.com/tollgate");
    assert!(
        read.get("secret").is_none(),
        "the secret is shown once: {read}"
    );
    let listed = expect_status(
        app.get("webhooks/endpoints", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["data"][0].get("secret").is_none());

    let changed = expect_status(
        app.patch(
            &format!("webhooks/endpoints/{id}"),
            &owner.access_token,
            &json!({ "event_types": ["*"], "enabled": false, "description": "billing" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["event_types"], json!(["*"]));
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["disabled_reason"], "manual");
    assert_eq!(changed["description"], "billing");
    let enabled = expect_status(
        app.patch(
            &format!("webhooks/endpoints/{id}"),
            &owner.access_token,
            &json!({ "enabled": true }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["disabled_reason"], json!(null));

    expect_status(
        app.delete(&format!("webhooks/endpoints/{id}"), &owner.access_token)
            .await,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect_error(
        app.get(&format!("webhooks/endpoints/{id}"), &owner.access_token)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        app.delete(&format!("webhooks/endpoints/{id}"), &owner.access_token)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bad_urls_and_event_types_are_refused_with_422_and_bad_json_with_400() {
    let app = spawn_webhook_app().await;
    let owner = app.register("acme").await;
    for (body, field) in [
        (
            json!({ "url": "ftp://example.com/", "event_types": ["*"] }),
            "url",
        ),
        (
            json!({ "url": "example.com/hook", "event_types": ["*"] }),
            "url",
        ),
        (
            json!({ "url": "https://user:pw@example.com/", "event_types": ["*"] }),
            "url",
        ),
        (
            json!({ "url": "https://example.com/", "event_types": [] }),
            "event_types",
        ),
        (
            json!({ "url": "https://example.com/", "event_types": ["credits.alerts"] }),
            "event_types",
        ),
    ] {
        let response = app
            .post("webhooks/endpoints", &owner.access_token, &body)
            .await;
        let error = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
    let missing = app
        .post(
            "webhooks/endpoints",
            &owner.access_token,
            &json!({ "url": "https://example.com/" }),
        )
        .await;
    expect_error(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let not_json = app
        .request(Method::POST, "webhooks/endpoints")
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(not_json, StatusCode::BAD_REQUEST, "invalid_json").await;
    let listed = expect_status(
        app.get("webhooks/endpoints", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["data"], json!([]), "nothing was written");
}

#[tokio::test]
async fn members_are_refused_and_keys_need_the_webhooks_scopes() {
    let app = spawn_webhook_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "mia", "member").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let body = json!({ "url": "https://example.com/hook", "event_types": ["*"] });

    expect_error(
        app.post("webhooks/endpoints", &member.access_token, &body)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_error(
        app.get("webhooks/endpoints", &member.access_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let created = create_endpoint(&app, &admin, "https://example.com/hook", &["*"]).await;

    let reader = app.create_api_key(&owner, &["webhooks:read"]).await;
    let reader = reader["key"].as_str().unwrap();
    expect_status(app.get("webhooks/endpoints", reader).await, StatusCode::OK).await;
    expect_error(
        app.post("webhooks/endpoints", reader, &body).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_error(
        app.delete(
            &format!("webhooks/endpoints/{}", created["id"].as_str().unwrap()),
            reader,
        )
        .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    let other = app.create_api_key(&owner, &["credits:read"]).await;
    expect_error(
        app.get("webhooks/endpoints", other["key"].as_str().unwrap())
            .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    let writer = app.create_api_key(&owner, &["webhooks:write"]).await;
    expect_status(
        app.post("webhooks/endpoints", writer["key"].as_str().unwrap(), &body)
            .await,
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn another_tenants_endpoint_answers_404_on_every_route() {
    let app = spawn_webhook_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let created = create_endpoint(&app, &acme, "https://example.com/hook", &["*"]).await;
    let id = created["id"].as_str().unwrap();
    let token = &globex.access_token;

    let attempts = [
        app.get(&format!("webhooks/endpoints/{id}"), token).await,
        app.patch(
            &format!("webhooks/endpoints/{id}"),
            token,
            &json!({ "enabled": false }),
        )
        .await,
        app.delete(&format!("webhooks/endpoints/{id}"), token).await,
        app.post(
            &format!("webhooks/endpoints/{id}/rotate-secret"),
            token,
            &json!({}),
        )
        .await,
        app.post(&format!("webhooks/endpoints/{id}/test"), token, &json!({}))
            .await,
        app.get(&format!("webhooks/endpoints/{id}/deliveries"), token)
            .await,
    ];
    for response in attempts {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = expect_status(app.get("webhooks/endpoints", token).await, StatusCode::OK).await;
    assert_eq!(listed["data"], json!([]));
    let still_there = expect_status(
        app.get(&format!("webhooks/endpoints/{id}"), &acme.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        still_there["enabled"], true,
        "untouched by the other tenant"
    );
}

#[tokio::test]
async fn rotation_returns_a_new_secret_once_and_states_the_overlap() {
    let app = spawn_webhook_app().await;
    let owner = app.register("acme").await;
    let created = create_endpoint(&app, &owner, "https://example.com/hook", &["*"]).await;
    let id = created["id"].as_str().unwrap();

    let rotated = expect_status(
        app.post(
            &format!("webhooks/endpoints/{id}/rotate-secret"),
            &owner.access_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let secret = rotated["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_ne!(secret, created["secret"].as_str().unwrap());
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    app.advance_clock(24 * 3600 + 1);
    let later = expect_status(
        app.get(&format!("webhooks/endpoints/{id}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(later["previous_secret_expires_at"], json!(null));
}

#[tokio::test]
async fn the_event_types_are_listed() {
    let app = spawn_webhook_app().await;
    let owner = app.register("acme").await;
    let types = expect_status(
        app.get("webhooks/event-types", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = types["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    for expected in [
        "job.succeeded",
        "job.failed",
        "job.cancelled",
        "credits.alert",
        "credits.blocked",
        "credits.purchased",
        "plan.changed",
        "apikey.created",
        "apikey.revoked",
        "user.invited",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
}

#[tokio::test]
async fn every_change_to_an_endpoint_is_audited_once() {
    let app = spawn_webhook_app().await;
    let owner = app.register("acme").await;
    let created = create_endpoint(&app, &owner, "https://hooks.example.com/tollgate", &["*"]).await;
    let path = format!("webhooks/endpoints/{}", created["id"].as_str().unwrap());

    app.patch(&path, &owner.access_token, &json!({ "enabled": false }))
        .await;
    app.post(
        &format!("{path}/rotate-secret"),
        &owner.access_token,
        &json!({}),
    )
    .await;
    app.delete(&path, &owner.access_token).await;
    let missing = app.delete(&path, &owner.access_token).await;

    expect_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    let actions: Vec<String> = app
        .query(
            "SELECT action FROM audit_log WHERE tenant_id = ? AND action LIKE 'webhook.%' ORDER BY seq",
            vec![owner.tenant_id.clone().into()],
        )
        .await
        .into_iter()
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.created",
            "webhook.updated",
            "webhook.secret_rotated",
            "webhook.deleted"
        ]
    );
}
