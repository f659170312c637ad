//! `/api/v1/api-keys`: `tg_` secrets shown once and stored as SHA-256, scoped within the
//! owner's role, expiring, revocable; members manage their own keys, admins all of them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::{clock::Clock, tokens::sha256_hex};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::helpers::{count, get_with_x_api_key, ids, secret, server_time_in};

async fn create(app: &TestApp, user: &TestUser, body: &Value) -> reqwest::Response {
    app.post("api-keys", &user.access_token, body).await
}

fn key_path(key: &Value) -> String {
    format!("api-keys/{}", key["id"].as_str().unwrap())
}

// --- creation and the secret ---

#[tokio::test]
async fn a_new_key_shows_its_secret_once() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = create(
        &app,
        &owner,
        &json!({ "name": "CI deploys", "scopes": ["users:read", "tenant:read"] }),
    )
    .await;

    let key = expect_status(response, StatusCode::CREATED).await;
    let secret = secret(&key);
    assert!(secret.starts_with("tg_"), "{secret}");
    assert!(secret.len() > 30, "{secret}");
    assert_eq!(key["prefix"], &secret[..11]);
    assert_eq!(key["name"], "CI deploys");
    assert_eq!(key["scopes"], json!(["users:read", "tenant:read"]));
    assert_eq!(key["user_id"], owner.user_id.as_str());
    let listed = expect_status(
        app.get("api-keys", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let fetched = expect_status(
        app.get(&key_path(&key), &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    for shown in [&listed["data"][0], &fetched] {
        assert_eq!(shown["id"], key["id"]);
        assert_eq!(shown["prefix"], &secret[..11]);
        assert!(
            shown.get("key").is_none(),
            "the secret is shown once: {shown}"
        );
        assert!(!shown.to_string().contains(&secret), "{shown}");
    }
}

#[tokio::test]
async fn only_a_sha256_of_the_secret_is_stored() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let secret = secret(&key);

    let rows = app
        .query(
            "SELECT key_hash, prefix, name, scopes FROM api_keys WHERE id = ?",
            vec![key["id"].as_str().unwrap().into()],
        )
        .await;

    assert_eq!(rows[0][0], sha256_hex(&secret).as_str());
    assert!(
        rows[0]
            .iter()
            .all(|column| column.as_str() != Some(&secret)),
        "the secret is not stored: {:?}",
        rows[0]
    );
}

#[tokio::test]
async fn a_key_authenticates_as_a_bearer_token_and_as_x_api_key() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let secret = secret(&key);

    let bearer = expect_status(app.get("auth/me", &secret).await, StatusCode::OK).await;
    let header = expect_status(
        get_with_x_api_key(&app, "auth/me", &secret).await,
        StatusCode::OK,
    )
    .await;

    for me in [bearer, header] {
        assert_eq!(me["user"]["id"], owner.user_id.as_str());
        assert_eq!(me["tenant"]["id"], owner.tenant_id.as_str());
    }
}

#[tokio::test]
async fn an_unknown_key_answers_401() {
    let app = spawn_app().await;
    app.register("acme").await;

    let bearer = app.get("tenant", "tg_not-a-key-anyone-was-given").await;
    let header = get_with_x_api_key(&app, "tenant", "tg_not-a-key-anyone-was-given").await;

    expect_error(bearer, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(header, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_users_read_key_reads_users_but_cannot_create_them() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let key = secret(&app.create_api_key(&admin, &["users:read"]).await);

    let listed = app.get("users", &key).await;
    let created = app
        .post(
            "users",
            &key,
            &json!({ "email": "new@acme.test", "name": "New", "password": tollgate_tests::PASSWORD, "role": "member" }),
        )
        .await;

    expect_status(listed, StatusCode::OK).await;
    let body = expect_error(created, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(body["error"]["details"]["required_scope"], "users:write");
    let users = count(
        &app,
        "SELECT COUNT(*) FROM users WHERE email = 'new@acme.test'",
        vec![],
    )
    .await;
    assert_eq!(users, 0);
}

#[tokio::test]
async fn a_key_never_exceeds_its_owners_role() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let key = secret(&app.create_api_key(&member, &["*"]).await);

    let response = app.get("users", &key).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_viewer_cannot_create_a_key_with_a_write_scope() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;

    for scopes in [json!(["users:write"]), json!(["*"]), json!(["tenant:*"])] {
        let response = create(&app, &viewer, &json!({ "name": "k", "scopes": scopes })).await;

        let body = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "scopes");
    }
    let keys = count(&app, "SELECT COUNT(*) FROM api_keys", vec![]).await;
    assert_eq!(keys, 0);
    let response = create(&app, &viewer, &json!({ "name": "k", "scopes": ["*:read"] })).await;
    expect_status(response, StatusCode::CREATED).await;
}

#[tokio::test]
async fn malformed_key_requests_answer_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for body in [
        json!({ "name": "k", "scopes": [] }),
        json!({ "name": "k", "scopes": ["users:delete"] }),
        json!({ "name": "k", "scopes": ["Users:read"] }),
        json!({ "name": " ", "scopes": ["*"] }),
        json!({ "name": "k", "scopes": ["*"], "expires_at": "tomorrow" }),
        json!({ "name": "k" }),
    ] {
        let response = create(&app, &owner, &body).await;

        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let keys = count(&app, "SELECT COUNT(*) FROM api_keys", vec![]).await;
    assert_eq!(keys, 0);
}

// --- expiry and use ---

#[tokio::test]
async fn an_expiry_in_the_past_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    for expires_at in [server_time_in(&app, -60), server_time_in(&app, 0)] {
        let response = create(
            &app,
            &owner,
            &json!({ "name": "k", "scopes": ["*"], "expires_at": expires_at }),
        )
        .await;

        let body = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(body["error"]["details"]["field"], "expires_at");
    }
}

#[tokio::test]
async fn a_key_stops_working_once_it_expires() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let expires_at = server_time_in(&app, 3600);
    let response = create(
        &app,
        &owner,
        &json!({ "name": "k", "scopes": ["*"], "expires_at": expires_at }),
    )
    .await;
    let key = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(key["expires_at"], expires_at.as_str());
    let secret = secret(&key);
    app.advance_clock(3599);
    expect_status(app.get("tenant", &secret).await, StatusCode::OK).await;

    app.advance_clock(1);

    expect_error(
        app.get("tenant", &secret).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn last_used_at_is_set_once_the_key_is_used() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let before = expect_status(
        app.get(&key_path(&key), &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(before["last_used_at"], json!(null));

    expect_status(app.get("tenant", &secret(&key)).await, StatusCode::OK).await;

    let after = expect_status(
        app.get(&key_path(&key), &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["last_used_at"], server_time_in(&app, 0).as_str());
}

// --- changes and revocation ---

#[tokio::test]
async fn patching_a_key_changes_its_name_scopes_and_expiry() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let expires_at = server_time_in(&app, 86_400);

    let response = app
        .patch(
            &key_path(&key),
            &owner.access_token,
            &json!({ "name": "read only", "scopes": ["tenant:read"], "expires_at": expires_at }),
        )
        .await;

    let patched = expect_status(response, StatusCode::OK).await;
    assert_eq!(patched["name"], "read only");
    assert_eq!(patched["scopes"], json!(["tenant:read"]));
    assert_eq!(patched["expires_at"], expires_at.as_str());
    let secret = secret(&key);
    expect_status(app.get("tenant", &secret).await, StatusCode::OK).await;
    expect_error(
        app.get("users", &secret).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    let response = app
        .patch(
            &key_path(&key),
            &owner.access_token,
            &json!({ "expires_at": null }),
        )
        .await;
    let patched = expect_status(response, StatusCode::OK).await;
    assert_eq!(patched["expires_at"], json!(null));
    assert_eq!(patched["name"], "read only", "absent fields stay");
}

#[tokio::test]
async fn patching_with_a_past_expiry_or_a_scope_beyond_the_role_answers_422() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;
    let key = app.create_api_key(&viewer, &["tenant:read"]).await;

    let past = app
        .patch(
            &key_path(&key),
            &viewer.access_token,
            &json!({ "expires_at": server_time_in(&app, -1) }),
        )
        .await;
    let beyond = app
        .patch(
            &key_path(&key),
            &viewer.access_token,
            &json!({ "scopes": ["users:write"] }),
        )
        .await;

    expect_error(past, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    expect_error(
        beyond,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let stored = expect_status(
        app.get(&key_path(&key), &viewer.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(stored["scopes"], json!(["tenant:read"]));
    assert_eq!(stored["expires_at"], json!(null));
}

#[tokio::test]
async fn revoking_a_key_makes_it_answer_401() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let secret = secret(&key);
    expect_status(app.get("tenant", &secret).await, StatusCode::OK).await;

    let response = app.delete(&key_path(&key), &owner.access_token).await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get("tenant", &secret).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        get_with_x_api_key(&app, "tenant", &secret).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let listed = expect_status(
        app.get("api-keys", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        listed["data"][0]["revoked_at"].is_string(),
        "a revoked key stays listed"
    );
    let again = app.delete(&key_path(&key), &owner.access_token).await;
    expect_status(again, StatusCode::NO_CONTENT).await;
}

#[tokio::test]
async fn patching_a_revoked_key_answers_409() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["tenant:read"]).await;
    expect_status(
        app.delete(&key_path(&key), &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let response = app
        .patch(
            &key_path(&key),
            &owner.access_token,
            &json!({ "scopes": ["*"] }),
        )
        .await;

    expect_error(response, StatusCode::CONFLICT, "api_key_revoked").await;
    let rows = app
        .query(
            "SELECT scopes FROM api_keys WHERE id = ?",
            vec![key["id"].as_str().unwrap().into()],
        )
        .await;
    assert_eq!(rows[0][0], "tenant:read");
}

/// `count` keys of `owner` that expire in a minute, and the clock moved past it.
async fn expired_keys(app: &TestApp, owner: &TestUser, count: usize) -> Vec<Value> {
    let mut keys = Vec::new();
    for _ in 0..count {
        let body = json!({ "name": "k", "scopes": ["*"], "expires_at": server_time_in(app, 60) });
        keys.push(expect_status(create(app, owner, &body).await, StatusCode::CREATED).await);
    }
    app.advance_clock(61);
    keys
}

#[tokio::test]
async fn an_expired_key_cannot_be_revived_by_a_new_expiry() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = expired_keys(&app, &owner, 1).await.remove(0);

    for expires_at in [json!(null), json!(server_time_in(&app, 86_400))] {
        let response = app
            .patch(
                &key_path(&key),
                &owner.access_token,
                &json!({ "expires_at": expires_at }),
            )
            .await;
        expect_error(response, StatusCode::CONFLICT, "api_key_expired").await;
    }

    expect_error(
        app.get("tenant", &secret(&key)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let stored = app
        .query(
            "SELECT expires_at FROM api_keys WHERE id = ?",
            vec![key["id"].as_str().unwrap().into()],
        )
        .await;
    assert_eq!(stored[0][0], app.clock.now() - 1);
}

#[tokio::test]
async fn expired_keys_make_room_for_new_ones_but_never_return_beyond_the_limit() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let old = expired_keys(&app, &owner, 5).await;
    for _ in 0..5 {
        app.create_api_key(&owner, &["tenant:read"]).await;
    }
    let sixth = create(&app, &owner, &json!({ "name": "k", "scopes": ["*"] })).await;
    expect_error(sixth, StatusCode::FORBIDDEN, "plan_limit_reached").await;

    for key in &old {
        let response = app
            .patch(
                &key_path(key),
                &owner.access_token,
                &json!({ "expires_at": null }),
            )
            .await;
        expect_error(response, StatusCode::CONFLICT, "api_key_expired").await;
    }

    let usable = count(
        &app,
        "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > ?)",
        vec![owner.tenant_id.clone().into(), app.clock.now().into()],
    )
    .await;
    assert_eq!(usable, 5, "FREE allows 5 keys in force");
}

#[tokio::test]
async fn an_unknown_key_id_answers_404() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let get = app.get("api-keys/no-such-key", &owner.access_token).await;
    let patch = app
        .patch(
            "api-keys/no-such-key",
            &owner.access_token,
            &json!({ "name": "x" }),
        )
        .await;
    let delete = app
        .delete("api-keys/no-such-key", &owner.access_token)
        .await;

    for response in [get, patch, delete] {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

// --- whose keys ---

#[tokio::test]
async fn a_member_lists_only_its_own_keys_and_an_admin_sees_all() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let other = app.add_user(&owner, "mia", "member").await;
    let owners_key = app.create_api_key(&owner, &["*"]).await;
    let members_key = app.create_api_key(&member, &["*"]).await;
    let others_key = app.create_api_key(&other, &["*"]).await;

    let as_member = expect_status(
        app.get("api-keys", &member.access_token).await,
        StatusCode::OK,
    )
    .await;
    let as_owner = expect_status(
        app.get("api-keys", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(ids(&as_member), [members_key["id"].as_str().unwrap()]);
    let mut all = ids(&as_owner);
    all.sort();
    let mut expected: Vec<String> = [&owners_key, &members_key, &others_key]
        .iter()
        .map(|key| key["id"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn another_members_key_answers_404_to_a_member() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let other = app.add_user(&owner, "mia", "member").await;
    let others_key = app.create_api_key(&other, &["tenant:read"]).await;
    let path = key_path(&others_key);

    let get = app.get(&path, &member.access_token).await;
    let patch = app
        .patch(&path, &member.access_token, &json!({ "scopes": ["*"] }))
        .await;
    let delete = app.delete(&path, &member.access_token).await;

    for response in [get, patch, delete] {
        let body = expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
        assert!(!body.to_string().contains(&other.user_id));
    }
    let stored = expect_status(app.get(&path, &other.access_token).await, StatusCode::OK).await;
    assert_eq!(stored["scopes"], json!(["tenant:read"]));
    assert_eq!(stored["revoked_at"], json!(null));
    expect_status(
        app.get("tenant", &secret(&others_key)).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn an_admin_revokes_a_members_key() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;
    let key = app.create_api_key(&member, &["*"]).await;

    let response = app.delete(&key_path(&key), &admin.access_token).await;

    expect_status(response, StatusCode::NO_CONTENT).await;
    expect_error(
        app.get("tenant", &secret(&key)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn a_key_cannot_mint_a_key_with_more_scopes_than_it_holds() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = secret(&app.create_api_key(&owner, &["keys:write"]).await);

    let response = app
        .post(
            "api-keys",
            &key,
            &json!({ "name": "escalated", "scopes": ["*"] }),
        )
        .await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let response = app
        .post(
            "api-keys",
            &key,
            &json!({ "name": "narrower", "scopes": ["keys:read"] }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;
}

#[tokio::test]
async fn a_viewers_session_manages_its_keys_but_a_viewers_key_cannot() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;
    let key = app.create_api_key(&viewer, &["*:read"]).await;

    let minted = app
        .post(
            "api-keys",
            &secret(&key),
            &json!({ "name": "from a key", "scopes": ["tenant:read"] }),
        )
        .await;
    let renamed = app
        .patch(
            &key_path(&key),
            &viewer.access_token,
            &json!({ "name": "renamed" }),
        )
        .await;

    let body = expect_error(minted, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(body["error"]["details"]["required_scope"], "keys:write");
    assert_eq!(
        expect_status(renamed, StatusCode::OK).await["name"],
        "renamed"
    );
    expect_status(app.get("tenant", &secret(&key)).await, StatusCode::OK).await;
    let revoked = app.delete(&key_path(&key), &viewer.access_token).await;
    expect_status(revoked, StatusCode::NO_CONTENT).await;
}
