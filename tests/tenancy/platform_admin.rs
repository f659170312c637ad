//! `/api/v1/admin/...`: the platform operator signs in, lists tenants, suspends and
//! reinstates them; tenant credentials have no say here, nor admin tokens in a tenant.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{PASSWORD, expect_error, expect_status, spawn_app};

use crate::helpers::{count, get_public, secret};

#[tokio::test]
async fn a_platform_admin_signs_in_with_its_password_only() {
    let app = spawn_app().await;
    app.platform_admin("ops@tollgate.test").await;

    let right = app
        .post_public(
            "admin/login",
            &json!({ "email": "ops@tollgate.test", "password": PASSWORD }),
        )
        .await;
    let wrong = app
        .post_public(
            "admin/login",
            &json!({ "email": "ops@tollgate.test", "password": "not the password at all" }),
        )
        .await;
    let unknown = app
        .post_public(
            "admin/login",
            &json!({ "email": "nobody@tollgate.test", "password": PASSWORD }),
        )
        .await;

    let tokens = expect_status(right, StatusCode::OK).await;
    assert!(tokens["access_token"].is_string());
    assert!(tokens.get("refresh_token").is_none());
    expect_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    expect_error(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_tenant_owner_cannot_sign_in_as_platform_admin() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post_public(
            "admin/login",
            &json!({ "email": owner.email, "password": PASSWORD }),
        )
        .await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_platform_admin_lists_every_tenant() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    app.add_user(&acme, "max", "member").await;
    let globex = app.register("globex").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let list = expect_status(app.get("admin/tenants", &admin).await, StatusCode::OK).await;

    let tenants = list["data"].as_array().unwrap();
    assert_eq!(tenants.len(), 2);
    let acme_row = tenants
        .iter()
        .find(|tenant| tenant["id"] == acme.tenant_id.as_str())
        .expect("acme is listed");
    assert_eq!(acme_row["slug"], "acme");
    assert_eq!(acme_row["users"], 2);
    assert_eq!(acme_row["plan"], "FREE");
    assert!(
        tenants
            .iter()
            .any(|tenant| tenant["id"] == globex.tenant_id.as_str())
    );
    let page = expect_status(
        app.get("admin/tenants?limit=1", &admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);
}

#[tokio::test]
async fn tenant_credentials_on_admin_routes_are_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let tenant_path = format!("admin/tenants/{}/suspend", owner.tenant_id);

    let list = app.get("admin/tenants", &owner.access_token).await;
    let suspend = app
        .post(&tenant_path, &owner.access_token, &json!({}))
        .await;
    let plan = app
        .put(
            &format!("admin/tenants/{}/plan", owner.tenant_id),
            &owner.access_token,
            &json!({ "plan": "ENTERPRISE" }),
        )
        .await;

    for response in [list, suspend, plan] {
        expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["plan"], "FREE");
}

#[tokio::test]
async fn admin_routes_without_a_valid_token_answer_401() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = secret(&app.create_api_key(&owner, &["*"]).await);

    let anonymous = get_public(&app, "admin/tenants").await;
    let garbage = app.get("admin/tenants", "not-a-token").await;
    let api_key = app.get("admin/tenants", &key).await;

    for response in [anonymous, garbage, api_key] {
        expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn a_platform_admin_token_opens_no_tenant() {
    let app = spawn_app().await;
    app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let response = app.get("tenant", &admin).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_suspended_tenant_refuses_its_users_until_reactivated() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = secret(&app.create_api_key(&owner, &["*"]).await);
    let other = app.register("globex").await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let response = app
        .post(
            &format!("admin/tenants/{}/suspend", owner.tenant_id),
            &admin,
            &json!({}),
        )
        .await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    for credential in [&owner.access_token, &key] {
        expect_error(
            app.get("tenant", credential).await,
            StatusCode::FORBIDDEN,
            "tenant_suspended",
        )
        .await;
    }
    expect_error(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    expect_status(app.get("tenant", &other.access_token).await, StatusCode::OK).await;
    let list = expect_status(app.get("admin/tenants", &admin).await, StatusCode::OK).await;
    let row = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tenant| tenant["id"] == owner.tenant_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["status"], "suspended");

    let response = app
        .post(
            &format!("admin/tenants/{}/reactivate", owner.tenant_id),
            &admin,
            &json!({}),
        )
        .await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    for credential in [&owner.access_token, &key] {
        let tenant = expect_status(app.get("tenant", credential).await, StatusCode::OK).await;
        assert_eq!(tenant["status"], "active");
    }
    expect_status(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn an_invitation_to_a_suspended_tenant_cannot_be_accepted() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let response = app
        .post(
            "invitations",
            &owner.access_token,
            &json!({ "email": "new@example.test", "role": "member" }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;
    let token = app.mailed_token("new@example.test", "invitation").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let path = format!("admin/tenants/{}/suspend", owner.tenant_id);
    expect_status(
        app.post(&path, &admin, &json!({})).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let response = app
        .post_public(
            "invitations/accept",
            &json!({ "token": token, "name": "New", "password": PASSWORD }),
        )
        .await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    let users = count(
        &app,
        "SELECT COUNT(*) FROM users WHERE email = 'new@example.test'",
        vec![],
    )
    .await;
    assert_eq!(users, 0);
}

#[tokio::test]
async fn an_unknown_tenant_answers_404() {
    let app = spawn_app().await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    let suspend = app
        .post("admin/tenants/no-such-tenant/suspend", &admin, &json!({}))
        .await;
    let reactivate = app
        .post(
            "admin/tenants/no-such-tenant/reactivate",
            &admin,
            &json!({}),
        )
        .await;
    let plan = app
        .put(
            "admin/tenants/no-such-tenant/plan",
            &admin,
            &json!({ "plan": "PRO" }),
        )
        .await;

    for response in [suspend, reactivate, plan] {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_deleted_tenant_stays_deleted() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    expect_status(
        app.delete("tenant", &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let reactivate = app
        .post(
            &format!("admin/tenants/{}/reactivate", owner.tenant_id),
            &admin,
            &json!({}),
        )
        .await;
    let plan = app
        .put(
            &format!("admin/tenants/{}/plan", owner.tenant_id),
            &admin,
            &json!({ "plan": "PRO", "overrides": { "max_users": 50 } }),
        )
        .await;

    expect_error(reactivate, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(plan, StatusCode::NOT_FOUND, "not_found").await;
    let rows = app
        .query(
            "SELECT status, plan_code FROM tenants WHERE id = ?",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(rows[0], vec![json!("deleted"), json!("FREE")]);
    let overrides = count(
        &app,
        "SELECT COUNT(*) FROM plans WHERE tenant_id = ?",
        vec![owner.tenant_id.clone().into()],
    )
    .await;
    assert_eq!(overrides, 0, "a refused change writes nothing");
    expect_error(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn a_platform_admin_finds_tenants_by_slug_name_or_domain() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    app.register("globex").await;
    let response = app
        .put(
            "tenant",
            &acme.access_token,
            &json!({ "name": "Pixel Forge", "custom_domain": "studio.forge.example" }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;
    let admin = app.platform_admin("ops@tollgate.test").await;

    for query in ["acm", "PIXEL", "forge.example"] {
        let found = expect_status(
            app.get(&format!("admin/tenants?q={query}"), &admin).await,
            StatusCode::OK,
        )
        .await;
        let slugs: Vec<&str> = found["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tenant| tenant["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["acme"], "searching {query:?}");
    }
    let none = expect_status(
        app.get("admin/tenants?q=initech", &admin).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(none["data"], json!([]));
    expect_error(
        app.get("admin/tenants?search=acme", &admin).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}
