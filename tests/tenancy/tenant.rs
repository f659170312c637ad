//! `GET/PUT/DELETE /api/v1/tenant`: every role reads its tenant; owners and admins edit it;
//! only the owner deletes it, and with it every way in.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{PASSWORD, expect_error, expect_status, spawn_app};

use crate::helpers::secret;

#[tokio::test]
async fn the_owner_reads_its_tenant_with_the_plan_in_force() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;

    assert_eq!(tenant["id"], owner.tenant_id.as_str());
    assert_eq!(tenant["plan"], "FREE");
    assert_eq!(tenant["plan_limits"]["requests_per_minute"], 60);
}

#[tokio::test]
async fn every_role_reads_its_tenant() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;
    let mut readers = vec![owner.clone(), admin, viewer.clone()];
    // The FREE plan seats three: the viewer makes room for a member once it has read.
    let tenant = expect_status(
        app.get("tenant", &viewer.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tenant["id"], owner.tenant_id.as_str());
    let response = app
        .delete(&format!("users/{}", viewer.user_id), &owner.access_token)
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;
    readers.pop();
    readers.push(app.add_user(&owner, "max", "member").await);

    for user in &readers {
        let tenant =
            expect_status(app.get("tenant", &user.access_token).await, StatusCode::OK).await;

        assert_eq!(tenant["id"], owner.tenant_id.as_str(), "as {}", user.email);
        assert_eq!(tenant["slug"], "acme");
        assert_eq!(tenant["name"], "acme Inc.");
        assert_eq!(tenant["status"], "active");
    }
}

#[tokio::test]
async fn the_owner_renames_the_tenant_and_sets_a_custom_domain() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "name": "Acme Corp", "custom_domain": "App.Acme.example." }),
        )
        .await;

    let updated = expect_status(response, StatusCode::OK).await;
    assert_eq!(updated["name"], "Acme Corp");
    assert_eq!(updated["custom_domain"], "app.acme.example");
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["name"], "Acme Corp");
    assert_eq!(tenant["custom_domain"], "app.acme.example");
}

#[tokio::test]
async fn an_admin_updates_the_tenant() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let response = app
        .put(
            "tenant",
            &admin.access_token,
            &json!({ "custom_domain": "acme.example" }),
        )
        .await;

    let updated = expect_status(response, StatusCode::OK).await;
    assert_eq!(updated["custom_domain"], "acme.example");
    assert_eq!(updated["name"], "acme Inc.", "an absent name stays");
}

#[tokio::test]
async fn a_member_or_viewer_updating_the_tenant_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;

    for user in [&member, &viewer] {
        let response = app
            .put(
                "tenant",
                &user.access_token,
                &json!({ "name": "Taken Over" }),
            )
            .await;

        expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["name"], "acme Inc.");
}

#[tokio::test]
async fn a_custom_domain_another_tenant_uses_answers_409_domain_taken() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let response = app
        .put(
            "tenant",
            &acme.access_token,
            &json!({ "custom_domain": "portal.example" }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;

    let response = app
        .put(
            "tenant",
            &globex.access_token,
            &json!({ "name": "Globex Two", "custom_domain": "Portal.example" }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "domain_taken").await;
    let tenant = expect_status(
        app.get("tenant", &globex.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tenant["custom_domain"], json!(null));
    assert_eq!(
        tenant["name"], "globex Inc.",
        "nothing of the update is written"
    );
}

#[tokio::test]
async fn a_custom_domain_set_to_null_is_released_for_other_tenants() {
    let app = spawn_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let domain = json!({ "custom_domain": "portal.example" });
    expect_status(
        app.put("tenant", &acme.access_token, &domain).await,
        StatusCode::OK,
    )
    .await;

    let released = app
        .put(
            "tenant",
            &acme.access_token,
            &json!({ "custom_domain": null }),
        )
        .await;
    let taken = app.put("tenant", &globex.access_token, &domain).await;

    assert_eq!(
        expect_status(released, StatusCode::OK).await["custom_domain"],
        json!(null)
    );
    assert_eq!(
        expect_status(taken, StatusCode::OK).await["custom_domain"],
        "portal.example"
    );
}

#[tokio::test]
async fn an_invalid_custom_domain_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for domain in [
        "localhost",
        "not a domain.example",
        "-acme.example",
        "acme-.example",
        "acme..example",
        "acme.tollgate.test",
        "tollgate.test",
    ] {
        let response = app
            .put(
                "tenant",
                &owner.access_token,
                &json!({ "custom_domain": domain }),
            )
            .await;

        let body = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(
            body["error"]["details"]["field"], "custom_domain",
            "{domain}"
        );
    }
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["custom_domain"], json!(null));
}

#[tokio::test]
async fn a_malformed_tenant_update_answers_400_or_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let not_json = app
        .request(reqwest::Method::PUT, "tenant")
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let unknown_field = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "plan": "ENTERPRISE" }),
        )
        .await;
    let blank_name = app
        .put("tenant", &owner.access_token, &json!({ "name": "  " }))
        .await;

    expect_error(not_json, StatusCode::BAD_REQUEST, "invalid_json").await;
    expect_error(
        unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    expect_error(
        blank_name,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan"], "FREE");
    assert_eq!(tenant["name"], "acme Inc.");
}

#[tokio::test]
async fn an_admin_deleting_the_tenant_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let response = app.delete("tenant", &admin.access_token).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["status"], "active");
}

#[tokio::test]
async fn a_deleted_tenant_refuses_its_tokens_keys_and_logins() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let key = secret(&app.create_api_key(&member, &["*"]).await);

    let response = app.delete("tenant", &owner.access_token).await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    for token in [&owner.access_token, &member.access_token, &key] {
        expect_error(
            app.get("tenant", token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    for email in [&owner.email, &member.email] {
        expect_error(
            app.login("acme", email, PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    let refresh = app
        .post_public(
            "auth/refresh",
            &json!({ "refresh_token": owner.refresh_token }),
        )
        .await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    let status = app
        .query(
            "SELECT status FROM tenants WHERE id = ?",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(status[0][0], "deleted", "the row stays for audit");
}
