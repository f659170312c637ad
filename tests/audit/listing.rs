//! `GET audit-logs`: filters, pages, who may read it, and tenant isolation.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::clock::{Clock, rfc3339};
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{entries, verify};

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect()
}

/// Registers `slug` and has its owner create a member; the member signs in.
async fn tenant_with_member(app: &TestApp, slug: &str) -> (TestUser, TestUser) {
    let owner = app.register(slug).await;
    let member = app.add_user(&owner, "ada", "member").await;
    (owner, member)
}

#[tokio::test]
async fn filters_narrow_the_list_by_user_action_target_and_time() {
    let app = spawn_app().await;
    let (owner, member) = tenant_with_member(&app, "acme").await;
    app.advance_clock(60);
    let start = now(&app);
    let member_key = app.create_api_key(&member, &["usage:read"]).await;
    let owner_key = app.create_api_key(&owner, &["users:read"]).await;
    app.advance_clock(60);
    let later = now(&app);
    let key_path = format!("api-keys/{}", owner_key["id"].as_str().unwrap());
    expect_status(
        app.delete(&key_path, &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let by_member = entries(&app, &owner, &format!("user_id={}", member.user_id)).await;
    let keys = entries(&app, &owner, "action=apikey.*").await;
    let created = entries(&app, &owner, "action=apikey.created").await;
    let on_key = entries(
        &app,
        &owner,
        &format!(
            "target_type=api_key&target_id={}",
            owner_key["id"].as_str().unwrap()
        ),
    )
    .await;
    let window = entries(&app, &owner, &format!("since={start}&until={later}")).await;
    let before = entries(&app, &owner, &format!("until={start}")).await;
    let anonymous = entries(&app, &owner, "actor_type=anonymous").await;

    assert_eq!(actions(&by_member), ["apikey.created", "auth.login"]);
    assert_eq!(by_member[0]["target"]["id"], member_key["id"]);
    assert_eq!(
        actions(&keys),
        ["apikey.revoked", "apikey.created", "apikey.created"]
    );
    assert_eq!(created.len(), 2);
    assert_eq!(actions(&on_key), ["apikey.revoked", "apikey.created"]);
    assert_eq!(actions(&window), ["apikey.created", "apikey.created"]);
    assert_eq!(
        actions(&before),
        ["auth.login", "user.created", "tenant.created"]
    );
    assert!(anonymous.is_empty());
}

#[tokio::test]
async fn pages_run_newest_first_without_overlap() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    for _ in 0..6 {
        expect_status(
            app.login("acme", &owner.email, PASSWORD).await,
            StatusCode::OK,
        )
        .await;
    }

    let first = expect_status(
        app.get("audit-logs?limit=3", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let second = expect_status(
        app.get("audit-logs?limit=3&offset=3", &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    let last = expect_status(
        app.get("audit-logs?limit=3&offset=6", &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;

    let sequences = |page: &Value| -> Vec<i64> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["sequence"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(sequences(&first), [7, 6, 5]);
    assert_eq!(
        (first["has_more"].clone(), first["next_offset"].clone()),
        (json!(true), json!(3))
    );
    assert_eq!(sequences(&second), [4, 3, 2]);
    assert_eq!(sequences(&last), [1]);
    assert_eq!(
        (last["has_more"].clone(), last["next_offset"].clone()),
        (json!(false), Value::Null)
    );
}

#[tokio::test]
async fn bad_filters_are_refused_with_400() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for query in [
        "action=apikey.stolen",
        "action=*",
        "actor_type=robot",
        "since=yesterday",
        "until=2024-13-01T00:00:00Z",
        "since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
        "user_id=",
        "usr_id=someone",
        "limit=0",
        "limit=101",
        "offset=-1",
    ] {
        let response = app
            .get(&format!("audit-logs?{query}"), &owner.access_token)
            .await;
        let body = expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{query}"
        );
    }
}

#[tokio::test]
async fn only_owners_and_admins_read_the_log_and_keys_need_the_audit_scope() {
    let app = spawn_app().await;
    let (owner, member) = tenant_with_member(&app, "acme").await;
    let admin = app.add_user(&owner, "max", "admin").await;
    let narrow = app.create_api_key(&owner, &["users:read"]).await;
    let auditor = app.create_api_key(&owner, &["audit:read"]).await;
    let secret = |key: &Value| key["key"].as_str().unwrap().to_owned();

    for path in ["audit-logs", "audit-logs/verify"] {
        expect_error(
            app.get(path, &member.access_token).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        expect_error(
            app.get(path, &secret(&narrow)).await,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        )
        .await;
        expect_status(app.get(path, &secret(&auditor)).await, StatusCode::OK).await;
        expect_status(app.get(path, &admin.access_token).await, StatusCode::OK).await;
        expect_error(
            app.get(path, "").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let reader = app
        .request(reqwest::Method::POST, "audit-logs")
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    expect_error(reader, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let demoted = app
        .put(
            &format!("users/{}/role", member.user_id),
            &owner.access_token,
            &json!({ "role": "viewer" }),
        )
        .await;
    expect_status(demoted, StatusCode::OK).await;
    let as_viewer = app.get("audit-logs", &member.access_token).await;
    expect_error(as_viewer, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_entries() {
    let app = spawn_app().await;
    let (acme, acme_member) = tenant_with_member(&app, "acme").await;
    let (globex, _) = tenant_with_member(&app, "globex").await;
    app.create_api_key(&acme, &["users:read"]).await;

    let seen_by_globex = entries(&app, &globex, "").await;
    let acme_user_from_globex =
        entries(&app, &globex, &format!("user_id={}", acme_member.user_id)).await;
    let globex_report = verify(&app, &globex.access_token).await;

    assert_eq!(
        actions(&seen_by_globex),
        ["auth.login", "user.created", "tenant.created"]
    );
    assert!(
        seen_by_globex
            .iter()
            .all(|entry| entry["actor"]["user_id"] != acme.user_id.as_str())
    );
    assert!(acme_user_from_globex.is_empty());
    assert_eq!(globex_report["entries_checked"], 3);
    assert_eq!(entries(&app, &acme, "").await.len(), 4);
}

#[tokio::test]
async fn platform_admins_read_any_tenants_log_and_only_they_may() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let path = format!("admin/tenants/{}/audit-logs", owner.tenant_id);

    let listed = expect_status(app.get(&path, &admin).await, StatusCode::OK).await;
    let verified = expect_status(
        app.get(&format!("{path}/verify"), &admin).await,
        StatusCode::OK,
    )
    .await;
    let by_owner = app.get(&path, &owner.access_token).await;
    let unknown = app.get("admin/tenants/nowhere/audit-logs", &admin).await;
    let unknown_verify = app
        .get("admin/tenants/nowhere/audit-logs/verify", &admin)
        .await;

    assert_eq!(
        actions(listed["data"].as_array().unwrap()),
        ["tenant.created"]
    );
    assert_eq!(verified["valid"], true);
    expect_error(by_owner, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(unknown_verify, StatusCode::NOT_FOUND, "not_found").await;
}

/// The server's time now, as a query string takes it.
fn now(app: &TestApp) -> String {
    rfc3339(app.clock.now())
}
