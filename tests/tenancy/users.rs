//! `/api/v1/users`: admins list, add, edit, promote and remove users within the plan's
//! seats; members see and edit only themselves; a tenant never loses its last owner.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{PASSWORD, expect_error, expect_status, spawn_app};

use crate::helpers::{count, ids, secret};

fn new_user(email: &str, role: &str) -> serde_json::Value {
    json!({ "email": email, "name": "New User", "password": PASSWORD, "role": role })
}

// --- listing ---

#[tokio::test]
async fn an_admin_lists_the_users_of_its_tenant_page_by_page() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;

    let first = expect_status(
        app.get("users?limit=2", &admin.access_token).await,
        StatusCode::OK,
    )
    .await;
    let second = expect_status(
        app.get("users?limit=2&offset=2", &admin.access_token).await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    assert_eq!(first["next_offset"], 2);
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["next_offset"], json!(null));
    let mut seen = [ids(&first), ids(&second)].concat();
    seen.sort();
    let mut expected = vec![owner.user_id, admin.user_id, member.user_id];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(
        first["data"][0].get("password_hash").is_none(),
        "a user answer never carries the password hash"
    );
}

#[tokio::test]
async fn a_page_outside_the_bounds_answers_400_invalid_query() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for query in ["limit=0", "limit=101", "limit=ten", "offset=-1"] {
        let response = app
            .get(&format!("users?{query}"), &owner.access_token)
            .await;

        expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
}

#[tokio::test]
async fn a_member_listing_users_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app.get("users", &member.access_token).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn listing_users_without_credentials_answers_401() {
    let app = spawn_app().await;
    app.register("acme").await;

    let response = crate::helpers::get_public(&app, "users").await;

    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

// --- creation ---

#[tokio::test]
async fn an_admin_adds_a_user_who_can_sign_in_and_must_verify_the_email() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let response = app
        .post(
            "users",
            &admin.access_token,
            &new_user("Max@Acme.test", "member"),
        )
        .await;

    let user = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(user["email"], "max@acme.test");
    assert_eq!(user["role"], "member");
    assert_eq!(user["status"], "active");
    assert_eq!(user["email_verified"], false);
    expect_status(
        app.login("acme", "max@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let mails = app.mailbox("max@acme.test").await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0, "verify_email");
}

#[tokio::test]
async fn a_member_adding_a_user_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .post(
            "users",
            &member.access_token,
            &new_user("friend@acme.test", "member"),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let users = count(
        &app,
        "SELECT COUNT(*) FROM users WHERE email = 'friend@acme.test'",
        vec![],
    )
    .await;
    assert_eq!(users, 0);
}

#[tokio::test]
async fn an_email_already_in_the_tenant_answers_409_email_taken() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            "users",
            &owner.access_token,
            &new_user("OWNER@acme.test", "member"),
        )
        .await;

    let body = expect_error(response, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(body["error"]["details"]["field"], "email");
    let users = count(&app, "SELECT COUNT(*) FROM users", vec![]).await;
    assert_eq!(users, 1);
}

#[tokio::test]
async fn the_same_email_may_belong_to_users_of_two_tenants() {
    let app = spawn_app().await;
    app.register("acme").await;
    let globex = app.register("globex").await;

    let response = app
        .post(
            "users",
            &globex.access_token,
            &new_user("owner@acme.test", "member"),
        )
        .await;

    expect_status(response, StatusCode::CREATED).await;
}

#[tokio::test]
async fn an_unknown_role_or_a_bad_field_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for body in [
        new_user("new@acme.test", "superuser"),
        new_user("not-an-email", "member"),
        json!({ "email": "new@acme.test", "name": "New", "password": "short", "role": "member" }),
        json!({ "email": "new@acme.test", "name": "", "password": PASSWORD, "role": "member" }),
        json!({ "email": "new@acme.test", "name": "New", "role": "member" }),
    ] {
        let response = app.post("users", &owner.access_token, &body).await;

        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let users = count(&app, "SELECT COUNT(*) FROM users", vec![]).await;
    assert_eq!(users, 1);
}

#[tokio::test]
async fn an_admin_creating_an_owner_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let response = app
        .post(
            "users",
            &admin.access_token,
            &new_user("boss@acme.test", "owner"),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let users = count(
        &app,
        "SELECT COUNT(*) FROM users WHERE email = 'boss@acme.test'",
        vec![],
    )
    .await;
    assert_eq!(users, 0);
}

#[tokio::test]
async fn an_owner_may_create_another_owner() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .post(
            "users",
            &owner.access_token,
            &new_user("boss@acme.test", "owner"),
        )
        .await;

    assert_eq!(
        expect_status(response, StatusCode::CREATED).await["role"],
        "owner"
    );
}

#[tokio::test]
async fn the_free_plan_refuses_a_fourth_active_user_and_writes_nothing() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.add_user(&owner, "ada", "admin").await;
    app.add_user(&owner, "max", "member").await;

    let response = app
        .post(
            "users",
            &owner.access_token,
            &new_user("fourth@acme.test", "member"),
        )
        .await;

    let body = expect_error(response, StatusCode::FORBIDDEN, "plan_limit_reached").await;
    assert_eq!(body["error"]["details"]["limit"], "max_users");
    let rows = count(
        &app,
        "SELECT COUNT(*) FROM users WHERE email = 'fourth@acme.test'",
        vec![],
    )
    .await;
    assert_eq!(rows, 0, "no user row");
    assert!(app.mailbox("fourth@acme.test").await.is_empty(), "no mail");
    let tokens = count(
        &app,
        "SELECT COUNT(*) FROM one_time_tokens WHERE tenant_id = ?",
        vec![owner.tenant_id.clone().into()],
    )
    .await;
    assert_eq!(tokens, 3, "only the three users' verification tokens");
}

#[tokio::test]
async fn removing_a_user_frees_a_seat() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;
    let response = app
        .delete(&format!("users/{}", member.user_id), &owner.access_token)
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;

    let response = app
        .post(
            "users",
            &owner.access_token,
            &new_user("max@acme.test", "member"),
        )
        .await;

    expect_status(response, StatusCode::CREATED).await;
}

// --- reading one ---

#[tokio::test]
async fn a_user_reads_its_own_profile() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;

    let response = app
        .get(&format!("users/{}", viewer.user_id), &viewer.access_token)
        .await;

    let user = expect_status(response, StatusCode::OK).await;
    assert_eq!(user["id"], viewer.user_id.as_str());
    assert_eq!(user["email"], viewer.email.as_str());
    assert_eq!(user["role"], "viewer");
}

#[tokio::test]
async fn a_member_reading_another_users_profile_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .get(&format!("users/{}", owner.user_id), &member.access_token)
        .await;

    let body = expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(!body.to_string().contains(&owner.email));
}

#[tokio::test]
async fn an_admin_reads_any_user_of_its_tenant() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let response = app
        .get(&format!("users/{}", owner.user_id), &admin.access_token)
        .await;

    let user = expect_status(response, StatusCode::OK).await;
    assert_eq!(user["email"], owner.email.as_str());
    assert_eq!(user["role"], "owner");
}

#[tokio::test]
async fn an_unknown_user_id_answers_404() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app.get("users/no-such-user", &owner.access_token).await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

// --- editing ---

#[tokio::test]
async fn a_user_changes_its_own_name() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            &format!("users/{}", member.user_id),
            &member.access_token,
            &json!({ "name": "Maxine" }),
        )
        .await;

    assert_eq!(
        expect_status(response, StatusCode::OK).await["name"],
        "Maxine"
    );
    let response = app
        .get(&format!("users/{}", member.user_id), &owner.access_token)
        .await;
    let user = expect_status(response, StatusCode::OK).await;
    assert_eq!(user["name"], "Maxine");
    assert_eq!(
        user["email"],
        member.email.as_str(),
        "an absent email stays"
    );
}

#[tokio::test]
async fn a_changed_email_must_be_verified_again() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = app.mailed_token(&owner.email, "verify_email").await;
    expect_status(
        app.post_public("auth/verify-email", &json!({ "token": token }))
            .await,
        StatusCode::OK,
    )
    .await;

    let response = app
        .put(
            &format!("users/{}", owner.user_id),
            &owner.access_token,
            &json!({ "email": "boss@acme.test" }),
        )
        .await;

    let user = expect_status(response, StatusCode::OK).await;
    assert_eq!(user["email"], "boss@acme.test");
    assert_eq!(user["email_verified"], false);
    app.mailed_token("boss@acme.test", "verify_email").await;
    expect_status(
        app.login("acme", "boss@acme.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn changing_to_an_email_another_user_has_answers_409() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            &format!("users/{}", member.user_id),
            &member.access_token,
            &json!({ "email": owner.email }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "email_taken").await;
    let rows = app
        .query(
            "SELECT email FROM users WHERE id = ?",
            vec![member.user_id.clone().into()],
        )
        .await;
    assert_eq!(rows[0][0], member.email.as_str());
}

#[tokio::test]
async fn a_member_changing_another_users_profile_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            &format!("users/{}", owner.user_id),
            &member.access_token,
            &json!({ "name": "Pwned", "email": "max@acme.test" }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let rows = app
        .query(
            "SELECT name, email FROM users WHERE id = ?",
            vec![owner.user_id.clone().into()],
        )
        .await;
    assert_eq!(rows[0], vec![json!("Owner"), json!(owner.email)]);
}

#[tokio::test]
async fn an_admin_edits_a_members_profile() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            &format!("users/{}", member.user_id),
            &admin.access_token,
            &json!({ "name": "Max Power" }),
        )
        .await;

    assert_eq!(
        expect_status(response, StatusCode::OK).await["name"],
        "Max Power"
    );
}

#[tokio::test]
async fn an_admin_editing_an_owners_profile_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    // Taking over the owner's email would hand the admin the owner's password reset.
    let response = app
        .put(
            &format!("users/{}", owner.user_id),
            &admin.access_token,
            &json!({ "email": "ada-owns-this@acme.test" }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let rows = app
        .query(
            "SELECT email FROM users WHERE id = ?",
            vec![owner.user_id.clone().into()],
        )
        .await;
    assert_eq!(rows[0][0], owner.email.as_str());
    assert!(app.mailbox("ada-owns-this@acme.test").await.is_empty());
}

#[tokio::test]
async fn editing_an_unknown_user_answers_404() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .put(
            "users/no-such-user",
            &owner.access_token,
            &json!({ "name": "Ghost" }),
        )
        .await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

// --- roles ---

#[tokio::test]
async fn the_owner_promotes_a_member_to_admin_and_demotes_it_again() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let role_path = format!("users/{}/role", member.user_id);

    let promoted = app
        .put(&role_path, &owner.access_token, &json!({ "role": "admin" }))
        .await;

    assert_eq!(
        expect_status(promoted, StatusCode::OK).await["role"],
        "admin"
    );
    // The role is read on every request: the member's session now lists users.
    expect_status(app.get("users", &member.access_token).await, StatusCode::OK).await;

    let demoted = app
        .put(
            &role_path,
            &owner.access_token,
            &json!({ "role": "viewer" }),
        )
        .await;

    assert_eq!(
        expect_status(demoted, StatusCode::OK).await["role"],
        "viewer"
    );
    expect_error(
        app.get("users", &member.access_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn an_owner_steps_down_once_another_owner_exists() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let heir = app.add_user(&owner, "hal", "admin").await;
    let response = app
        .put(
            &format!("users/{}/role", heir.user_id),
            &owner.access_token,
            &json!({ "role": "owner" }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;

    let response = app
        .put(
            &format!("users/{}/role", owner.user_id),
            &owner.access_token,
            &json!({ "role": "member" }),
        )
        .await;

    assert_eq!(
        expect_status(response, StatusCode::OK).await["role"],
        "member"
    );
    let owners = count(
        &app,
        "SELECT COUNT(*) FROM users WHERE tenant_id = ? AND role = 'owner'",
        vec![owner.tenant_id.clone().into()],
    )
    .await;
    assert_eq!(owners, 1);
}

#[tokio::test]
async fn the_last_owner_cannot_be_demoted() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .put(
            &format!("users/{}/role", owner.user_id),
            &owner.access_token,
            &json!({ "role": "admin" }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "last_owner").await;
    let me = expect_status(
        app.get("auth/me", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["role"], "owner");
}

#[tokio::test]
async fn an_admin_cannot_change_an_owners_role_nor_make_an_owner() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;

    let demote_owner = app
        .put(
            &format!("users/{}/role", owner.user_id),
            &admin.access_token,
            &json!({ "role": "viewer" }),
        )
        .await;
    let crown_member = app
        .put(
            &format!("users/{}/role", member.user_id),
            &admin.access_token,
            &json!({ "role": "owner" }),
        )
        .await;
    let crown_self = app
        .put(
            &format!("users/{}/role", admin.user_id),
            &admin.access_token,
            &json!({ "role": "owner" }),
        )
        .await;

    expect_error(demote_owner, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(crown_member, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(crown_self, StatusCode::FORBIDDEN, "forbidden").await;
    let roles = app
        .query(
            "SELECT role FROM users WHERE tenant_id = ? ORDER BY role",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(
        roles,
        vec![
            vec![json!("admin")],
            vec![json!("member")],
            vec![json!("owner")]
        ]
    );
}

#[tokio::test]
async fn an_admin_changes_a_members_role() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            &format!("users/{}/role", member.user_id),
            &admin.access_token,
            &json!({ "role": "viewer" }),
        )
        .await;

    assert_eq!(
        expect_status(response, StatusCode::OK).await["role"],
        "viewer"
    );
}

#[tokio::test]
async fn a_member_changing_a_role_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            &format!("users/{}/role", member.user_id),
            &member.access_token,
            &json!({ "role": "admin" }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_unknown_role_or_user_in_a_role_change_answers_422_or_404() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let bad_role = app
        .put(
            &format!("users/{}/role", member.user_id),
            &owner.access_token,
            &json!({ "role": "god" }),
        )
        .await;
    let unknown_user = app
        .put(
            "users/no-such-user/role",
            &owner.access_token,
            &json!({ "role": "admin" }),
        )
        .await;

    expect_error(
        bad_role,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    expect_error(unknown_user, StatusCode::NOT_FOUND, "not_found").await;
}

// --- removal ---

#[tokio::test]
async fn a_removed_user_loses_its_tokens_keys_and_login() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;
    let key = secret(&app.create_api_key(&member, &["*"]).await);
    expect_status(app.get("tenant", &key).await, StatusCode::OK).await;

    let response = app
        .delete(&format!("users/{}", member.user_id), &admin.access_token)
        .await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    for credential in [&member.access_token, &key] {
        expect_error(
            app.get("tenant", credential).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let refresh = app
        .post_public(
            "auth/refresh",
            &json!({ "refresh_token": member.refresh_token }),
        )
        .await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    expect_error(
        app.login("acme", &member.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let response = app
        .get(&format!("users/{}", member.user_id), &admin.access_token)
        .await;
    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let listed = expect_status(app.get("users", &admin.access_token).await, StatusCode::OK).await;
    assert!(!ids(&listed).contains(&member.user_id));
}

#[tokio::test]
async fn removing_a_user_twice_answers_404() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let path = format!("users/{}", member.user_id);
    expect_status(
        app.delete(&path, &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let response = app.delete(&path, &owner.access_token).await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_last_owner_cannot_be_removed() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .delete(&format!("users/{}", owner.user_id), &owner.access_token)
        .await;

    expect_error(response, StatusCode::CONFLICT, "last_owner").await;
    expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn an_admin_removing_an_owner_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let response = app
        .delete(&format!("users/{}", owner.user_id), &admin.access_token)
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn a_member_removing_a_user_is_forbidden() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;

    let response = app
        .delete(&format!("users/{}", viewer.user_id), &member.access_token)
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    expect_status(
        app.get("tenant", &viewer.access_token).await,
        StatusCode::OK,
    )
    .await;
}
