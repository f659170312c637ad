//! Tenant isolation: whatever id a caller of tenant B names, it never reaches a row of
//! tenant A. Another tenant's row answers 404 (403 where the caller's permission is checked
//! first), never A's data, and A's rows stay as they were.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::helpers::{ids, secret};

/// Tenant A with a member, an API key and a pending invitation; tenant B with an owner, an
/// owner's API key, a member and a viewer.
struct Tenants {
    a_owner: TestUser,
    a_member: TestUser,
    a_key: Value,
    a_invitation: Value,
    b_owner: TestUser,
    b_owner_key: String,
    b_member: TestUser,
    b_viewer: TestUser,
}

async fn arrange(app: &TestApp) -> Tenants {
    let a_owner = app.register("acme").await;
    let a_member = app.add_user(&a_owner, "max", "member").await;
    let a_key = app.create_api_key(&a_member, &["tenant:read"]).await;
    let response = app
        .post(
            "invitations",
            &a_owner.access_token,
            &json!({ "email": "a-invitee@example.test", "role": "member" }),
        )
        .await;
    let a_invitation = expect_status(response, StatusCode::CREATED).await;
    let b_owner = app.register("globex").await;
    let b_owner_key = secret(&app.create_api_key(&b_owner, &["*"]).await);
    let b_member = app.add_user(&b_owner, "max", "member").await;
    let b_viewer = app.add_user(&b_owner, "vic", "viewer").await;
    // B also has rows of its own in every list.
    app.create_api_key(&b_member, &["tenant:read"]).await;
    let response = app
        .post(
            "invitations",
            &b_owner.access_token,
            &json!({ "email": "b-invitee@example.test", "role": "viewer" }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await;
    Tenants {
        a_owner,
        a_member,
        a_key,
        a_invitation,
        b_owner,
        b_owner_key,
        b_member,
        b_viewer,
    }
}

/// Everything A can see of itself, read as A's owner.
async fn snapshot_of_a(app: &TestApp, a_owner: &TestUser) -> Value {
    let mut snapshot = json!({});
    for path in ["tenant", "users", "api-keys", "invitations"] {
        snapshot[path] =
            expect_status(app.get(path, &a_owner.access_token).await, StatusCode::OK).await;
    }
    for row in [
        "SELECT id, tenant_id, email, name, role, status, updated_at FROM users ORDER BY id",
        "SELECT id, tenant_id, user_id, name, scopes, expires_at, revoked_at, updated_at FROM api_keys ORDER BY id",
        "SELECT id, tenant_id, email, role, accepted_at, revoked_at FROM invitations ORDER BY id",
    ] {
        snapshot[row] = json!(app.query(row, vec![]).await);
    }
    snapshot
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    credential: &str,
    body: &Value,
) -> reqwest::Response {
    let request = app.request(method.clone(), path).bearer_auth(credential);
    let request = if method == Method::GET || method == Method::DELETE {
        request
    } else {
        request.json(body)
    };
    request.send().await.unwrap()
}

#[tokio::test]
async fn no_id_of_tenant_a_reaches_a_row_when_tenant_b_calls() {
    let app = spawn_app().await;
    let t = arrange(&app).await;
    let before = snapshot_of_a(&app, &t.a_owner).await;
    let a_key_path = format!("api-keys/{}", t.a_key["id"].as_str().unwrap());
    let a_invitation_path = format!("invitations/{}", t.a_invitation["id"].as_str().unwrap());
    let a_secrets = [
        t.a_owner.email.clone(),
        t.a_member.email.clone(),
        t.a_key["prefix"].as_str().unwrap().to_owned(),
        "a-invitee@example.test".to_owned(),
    ];
    let user_paths = [&t.a_owner.user_id, &t.a_member.user_id].map(|id| format!("users/{id}"));
    let mut routes: Vec<(Method, String, Value)> = Vec::new();
    for path in &user_paths {
        routes.push((Method::GET, path.clone(), json!(null)));
        routes.push((
            Method::PUT,
            path.clone(),
            json!({ "name": "Hijacked", "email": "x@globex.test" }),
        ));
        routes.push((
            Method::PUT,
            format!("{path}/role"),
            json!({ "role": "viewer" }),
        ));
        routes.push((Method::DELETE, path.clone(), json!(null)));
    }
    routes.push((Method::GET, a_key_path.clone(), json!(null)));
    routes.push((
        Method::PATCH,
        a_key_path.clone(),
        json!({ "name": "Hijacked", "scopes": ["tenant:read"], "expires_at": null }),
    ));
    routes.push((Method::DELETE, a_key_path.clone(), json!(null)));
    routes.push((Method::DELETE, a_invitation_path.clone(), json!(null)));

    // What each caller of B may meet: 404 wherever its permission lets the lookup run;
    // members and viewers manage only their own keys, so the key's lookup runs for them too.
    type Expected = fn(&str) -> (StatusCode, &'static str);
    fn any_lookup(_: &str) -> (StatusCode, &'static str) {
        (StatusCode::NOT_FOUND, "not_found")
    }
    fn own_keys_only(path: &str) -> (StatusCode, &'static str) {
        if path.starts_with("api-keys/") {
            (StatusCode::NOT_FOUND, "not_found")
        } else {
            (StatusCode::FORBIDDEN, "forbidden")
        }
    }
    let callers: [(&str, &str, Expected); 4] = [
        ("B's owner", &t.b_owner.access_token, any_lookup),
        ("B's owner's API key", &t.b_owner_key, any_lookup),
        ("B's member", &t.b_member.access_token, own_keys_only),
        ("B's viewer", &t.b_viewer.access_token, own_keys_only),
    ];
    for (caller, credential, expected) in callers {
        for (method, path, body) in &routes {
            let (status, code) = expected(path);

            let response = send(&app, method.clone(), path, credential, body).await;

            let answer = response.status();
            let text = response.text().await.unwrap();
            assert_eq!(answer, status, "{caller}: {method} {path} answered {text}");
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                error["error"]["code"], code,
                "{caller}: {method} {path}: {text}"
            );
            for secret in &a_secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{caller}: {method} {path} leaked {secret}: {text}"
                );
            }
        }
        // Stay clear of the per-minute request limit between callers.
        app.advance_clock(61);
    }

    let after = snapshot_of_a(&app, &t.a_owner).await;
    assert_eq!(after, before, "A's rows are unchanged");
    expect_status(app.get("tenant", &secret(&t.a_key)).await, StatusCode::OK).await;
    expect_status(
        app.get("tenant", &t.a_member.access_token).await,
        StatusCode::OK,
    )
    .await;
    let token = app
        .mailed_token("a-invitee@example.test", "invitation")
        .await;
    let accepted = app
        .post_public(
            "invitations/accept",
            &json!({ "token": token, "name": "Invitee", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        expect_status(accepted, StatusCode::CREATED).await["tenant"]["slug"],
        "acme",
        "A's invitation survived and still joins A"
    );
}

#[tokio::test]
async fn tenant_bs_lists_never_contain_tenant_as_rows() {
    let app = spawn_app().await;
    let t = arrange(&app).await;
    let a_ids: Vec<String> = [
        t.a_owner.user_id.clone(),
        t.a_member.user_id.clone(),
        t.a_key["id"].as_str().unwrap().to_owned(),
        t.a_invitation["id"].as_str().unwrap().to_owned(),
    ]
    .into();

    for credential in [&t.b_owner.access_token, &t.b_owner_key] {
        for (path, expected_len) in [("users", 3), ("api-keys", 2), ("invitations", 1)] {
            let list = expect_status(app.get(path, credential).await, StatusCode::OK).await;

            let listed = ids(&list);
            assert_eq!(listed.len(), expected_len, "{path}: {list}");
            assert!(
                listed.iter().all(|id| !a_ids.contains(id)),
                "{path}: {list}"
            );
            let text = list.to_string();
            assert!(
                !text.contains(&t.a_owner.email) && !text.contains("a-invitee@example.test"),
                "{path}: {text}"
            );
        }
        let tenant = expect_status(app.get("tenant", credential).await, StatusCode::OK).await;
        assert_eq!(tenant["id"], t.b_owner.tenant_id.as_str());
    }
    let own_keys = expect_status(
        app.get("api-keys", &t.b_member.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ids(&own_keys).len(), 1);
    assert!(ids(&own_keys).iter().all(|id| !a_ids.contains(id)));
}

#[tokio::test]
async fn a_user_of_tenant_a_cannot_sign_in_through_tenant_b() {
    let app = spawn_app().await;
    let t = arrange(&app).await;

    let response = app.login("globex", &t.a_owner.email, PASSWORD).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn the_same_email_in_two_tenants_names_two_separate_users() {
    let app = spawn_app().await;
    let t = arrange(&app).await;
    // Both tenants have a `max@…` member but with different domains; give B an A address.
    let response = app
        .put(
            &format!("users/{}", t.b_member.user_id),
            &t.b_member.access_token,
            &json!({ "email": t.a_member.email }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;

    let in_a = expect_status(
        app.login("acme", &t.a_member.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let in_b = expect_status(
        app.login("globex", &t.a_member.email, PASSWORD).await,
        StatusCode::OK,
    )
    .await;

    let me_a = expect_status(
        app.get("auth/me", in_a["access_token"].as_str().unwrap())
            .await,
        StatusCode::OK,
    )
    .await;
    let me_b = expect_status(
        app.get("auth/me", in_b["access_token"].as_str().unwrap())
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me_a["user"]["id"], t.a_member.user_id.as_str());
    assert_eq!(me_b["user"]["id"], t.b_member.user_id.as_str());
    assert_eq!(me_a["tenant"]["slug"], "acme");
    assert_eq!(me_b["tenant"]["slug"], "globex");
}
