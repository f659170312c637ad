//! `/api/v1/invitations`: an admin invites an email with a role, the token travels by
//! mail, and accepting it (once, before it expires, unless revoked) creates the user.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::helpers::count;

const INVITATION_TTL: i64 = 7 * 24 * 3600;

async fn invite(app: &TestApp, admin: &TestUser, email: &str, role: &str) -> Value {
    let response = app
        .post(
            "invitations",
            &admin.access_token,
            &json!({ "email": email, "role": role }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await
}

async fn accept(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_public(
        "invitations/accept",
        &json!({ "token": token, "name": "Invited", "password": PASSWORD }),
    )
    .await
}

async fn users_named(app: &TestApp, email: &str) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM users WHERE email = ?",
        vec![email.into()],
    )
    .await
}

#[tokio::test]
async fn an_admin_invites_an_email_and_the_mail_carries_the_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;

    let invitation = invite(&app, &admin, "New@Example.test", "member").await;

    assert_eq!(invitation["email"], "new@example.test");
    assert_eq!(invitation["role"], "member");
    assert_eq!(invitation["status"], "pending");
    let mails = app.mailbox("new@example.test").await;
    assert_eq!(mails.len(), 1);
    let (template, payload) = &mails[0];
    assert_eq!(template, "invitation");
    assert_eq!(payload["tenant"], "acme");
    assert_eq!(payload["role"], "member");
    let token = payload["token"].as_str().unwrap();
    assert!(payload["link"].as_str().unwrap().contains(token));
    let stored = app
        .query(
            "SELECT token_hash FROM invitations WHERE id = ?",
            vec![invitation["id"].as_str().unwrap().into()],
        )
        .await;
    assert_eq!(
        stored[0][0],
        tollgate::tokens::sha256_hex(token).as_str(),
        "only the token's hash is stored"
    );
}

#[tokio::test]
async fn a_member_inviting_is_forbidden_and_nothing_is_mailed() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .post(
            "invitations",
            &member.access_token,
            &json!({ "email": "friend@example.test", "role": "member" }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(app.mailbox("friend@example.test").await.is_empty());
    expect_error(
        app.get("invitations", &member.access_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn inviting_an_owner_or_an_unknown_role_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for role in ["owner", "superuser"] {
        let response = app
            .post(
                "invitations",
                &owner.access_token,
                &json!({ "email": "boss@example.test", "role": role }),
            )
            .await;

        let body = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "role");
    }
    assert!(app.mailbox("boss@example.test").await.is_empty());
}

#[tokio::test]
async fn inviting_the_email_of_an_existing_user_answers_409() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .post(
            "invitations",
            &owner.access_token,
            &json!({ "email": member.email, "role": "admin" }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "email_taken").await;
    let invitations = count(&app, "SELECT COUNT(*) FROM invitations", vec![]).await;
    assert_eq!(invitations, 0);
    let mails = app.mailbox(&member.email).await;
    assert!(mails.iter().all(|(template, _)| template != "invitation"));
}

#[tokio::test]
async fn accepting_creates_the_user_with_the_invited_role_and_signs_it_in() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    invite(&app, &owner, "new@example.test", "admin").await;
    let token = app.mailed_token("new@example.test", "invitation").await;

    let response = accept(&app, &token).await;

    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["user"]["email"], "new@example.test");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["tenant"]["slug"], "acme");
    let access = body["access_token"].as_str().unwrap();
    let me = expect_status(app.get("auth/me", access).await, StatusCode::OK).await;
    assert_eq!(me["user"]["email"], "new@example.test");
    assert_eq!(
        me["user"]["email_verified"], true,
        "the mailed token proves the email"
    );
    assert_eq!(me["role"], "admin");
    expect_status(app.get("users", access).await, StatusCode::OK).await;
    expect_status(
        app.login("acme", "new@example.test", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let refreshed = app
        .post_public(
            "auth/refresh",
            &json!({ "refresh_token": body["refresh_token"] }),
        )
        .await;
    expect_status(refreshed, StatusCode::OK).await;
}

#[tokio::test]
async fn accepting_twice_answers_400_invalid_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    invite(&app, &owner, "new@example.test", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;
    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;

    let response = accept(&app, &token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert_eq!(users_named(&app, "new@example.test").await, 1);
}

#[tokio::test]
async fn an_unknown_token_answers_400_invalid_token() {
    let app = spawn_app().await;
    app.register("acme").await;

    let response = accept(&app, "not-a-real-token").await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn a_revoked_invitation_cannot_be_accepted() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let invitation = invite(&app, &owner, "new@example.test", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;

    let revoked = app
        .delete(
            &format!("invitations/{}", invitation["id"].as_str().unwrap()),
            &owner.access_token,
        )
        .await;

    expect_status(revoked, StatusCode::NO_CONTENT).await;
    expect_error(
        accept(&app, &token).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
    )
    .await;
    assert_eq!(users_named(&app, "new@example.test").await, 0);
}

#[tokio::test]
async fn revoking_is_for_admins_and_for_invitations_that_exist() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let invitation = invite(&app, &owner, "new@example.test", "member").await;
    let path = format!("invitations/{}", invitation["id"].as_str().unwrap());

    let by_member = app.delete(&path, &member.access_token).await;
    let unknown = app
        .delete("invitations/no-such-invitation", &owner.access_token)
        .await;

    expect_error(by_member, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let token = app.mailed_token("new@example.test", "invitation").await;
    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;
}

#[tokio::test]
async fn an_accepted_invitation_can_no_longer_be_revoked() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let invitation = invite(&app, &owner, "new@example.test", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;
    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;

    let response = app
        .delete(
            &format!("invitations/{}", invitation["id"].as_str().unwrap()),
            &owner.access_token,
        )
        .await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_expired_invitation_cannot_be_accepted() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    invite(&app, &owner, "new@example.test", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;

    app.advance_clock(INVITATION_TTL + 1);

    expect_error(
        accept(&app, &token).await,
        StatusCode::BAD_REQUEST,
        "invalid_token",
    )
    .await;
    assert_eq!(users_named(&app, "new@example.test").await, 0);
}

#[tokio::test]
async fn an_invitation_is_still_good_just_before_it_expires() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    invite(&app, &owner, "new@example.test", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;

    app.advance_clock(INVITATION_TTL - 60);

    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;
}

#[tokio::test]
async fn the_list_shows_each_invitations_status() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    invite(&app, &owner, "late@example.test", "viewer").await;
    app.advance_clock(INVITATION_TTL + 1);
    // The owner's access token expired with the clock: sign in again.
    let tokens = expect_status(
        app.login("acme", &owner.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let owner = TestUser {
        access_token: tokens["access_token"].as_str().unwrap().into(),
        ..owner
    };
    invite(&app, &owner, "pending@example.test", "member").await;
    invite(&app, &owner, "accepted@example.test", "member").await;
    let revoked = invite(&app, &owner, "revoked@example.test", "admin").await;
    let token = app
        .mailed_token("accepted@example.test", "invitation")
        .await;
    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;
    let path = format!("invitations/{}", revoked["id"].as_str().unwrap());
    expect_status(
        app.delete(&path, &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let list = expect_status(
        app.get("invitations", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;

    let mut statuses: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["email"].as_str().unwrap().to_owned(),
                item["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    let expected = [
        ("accepted@example.test", "accepted"),
        ("late@example.test", "expired"),
        ("pending@example.test", "pending"),
        ("revoked@example.test", "revoked"),
    ]
    .map(|(email, status)| (email.to_owned(), status.to_owned()));
    assert_eq!(statuses, expected);
    assert_eq!(list["has_more"], false);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item.get("token").is_none() && item.get("token_hash").is_none()),
        "the list never shows tokens"
    );
}

#[tokio::test]
async fn accepting_with_no_seat_left_answers_403_and_keeps_the_invitation() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.add_user(&owner, "ada", "admin").await;
    invite(&app, &owner, "new@example.test", "member").await;
    let member = app.add_user(&owner, "max", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;

    let full = accept(&app, &token).await;

    let body = expect_error(full, StatusCode::FORBIDDEN, "plan_limit_reached").await;
    assert_eq!(body["error"]["details"]["limit"], "max_users");
    assert_eq!(users_named(&app, "new@example.test").await, 0);
    let response = app
        .delete(&format!("users/{}", member.user_id), &owner.access_token)
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;
}

#[tokio::test]
async fn accepting_with_a_bad_password_answers_422_and_keeps_the_invitation() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    invite(&app, &owner, "new@example.test", "member").await;
    let token = app.mailed_token("new@example.test", "invitation").await;

    let response = app
        .post_public(
            "invitations/accept",
            &json!({ "token": token, "name": "Invited", "password": "short" }),
        )
        .await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    expect_status(accept(&app, &token).await, StatusCode::CREATED).await;
}
