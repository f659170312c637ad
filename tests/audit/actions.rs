//! Each audited action leaves exactly one entry naming its actor, target, client address and
//! user agent; an action that fails, or repeats what already happened, leaves none.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{
    Origin, admin_entries, assert_actor, assert_target, entries, only_entry, origin, send,
};

/// The id of the platform admin signed in as `email`.
async fn admin_id(app: &TestApp, email: &str) -> String {
    app.query(
        "SELECT id FROM platform_admins WHERE email = ?",
        vec![email.into()],
    )
    .await[0][0]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_origin_recorded_is_the_address_the_proxy_appended_not_a_forged_leftmost_one() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    // The client wrote the first entry; the test server's one trusted proxy hop the second.
    let forging = Origin {
        ip: "198.51.100.66, 203.0.113.5".into(),
        agent: "audit-test/forging".into(),
    };
    let login = |password: &str| {
        let body = json!({ "tenant": "acme", "email": owner.email, "password": password });
        send(&app, &forging, Method::POST, "auth/login", None, Some(body))
    };

    let signed_in = login(PASSWORD).await;
    let failed = login("not the password at all").await;

    expect_status(signed_in, StatusCode::OK).await;
    expect_error(failed, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    for action in ["auth.login", "auth.login_failed"] {
        let entry = only_entry(&app, &owner, action).await;
        assert_eq!(entry["ip"], "203.0.113.5", "{entry:#}");
    }
    let everything = entries(&app, &owner, "").await;
    assert!(
        everything
            .iter()
            .all(|entry| !entry.to_string().contains("198.51.100.66")),
        "the forged address reached the log: {everything:#?}"
    );
}

#[tokio::test]
async fn a_sign_in_and_each_failed_one_are_audited() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let login = |n: u8, email: &str, password: &str| {
        let body = json!({ "tenant": "acme", "email": email, "password": password });
        let app = &app;
        async move {
            send(
                app,
                &origin(n),
                Method::POST,
                "auth/login",
                None,
                Some(body),
            )
            .await
        }
    };

    expect_status(login(1, &owner.email, PASSWORD).await, StatusCode::OK).await;
    let wrong = login(2, &owner.email, "not the password at all").await;
    let unknown = login(3, "nobody@acme.test", PASSWORD).await;
    let elsewhere = send(
        &app,
        &origin(4),
        Method::POST,
        "auth/login",
        None,
        Some(json!({ "tenant": "nowhere", "email": owner.email, "password": "x" })),
    )
    .await;

    expect_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    expect_error(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    expect_error(elsewhere, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let success = only_entry(&app, &owner, "auth.login").await;
    assert_actor(&success, "user", &owner.user_id, &origin(1));
    assert_target(&success, "user", &owner.user_id);
    let failures = entries(&app, &owner, "action=auth.login_failed").await;
    assert_eq!(failures.len(), 2, "a tenant that does not exist has no log");
    let (unknown, wrong) = (&failures[0], &failures[1]);
    assert_eq!(
        wrong["actor"],
        json!({ "type": "anonymous", "id": null, "user_id": null })
    );
    assert_eq!(wrong["ip"], origin(2).ip.as_str());
    assert_eq!(wrong["user_agent"], origin(2).agent.as_str());
    assert_target(wrong, "user", &owner.user_id);
    assert_eq!(
        wrong["metadata"],
        json!({ "email": owner.email, "reason": "wrong_password" })
    );
    assert_eq!(unknown["ip"], origin(3).ip.as_str());
    assert_eq!(unknown["target"], json!(null));
    assert_eq!(unknown["metadata"]["reason"], "unknown_user");
}

#[tokio::test]
async fn api_key_changes_are_audited_once_each() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = Some(owner.access_token.as_str());

    let created = send(
        &app,
        &origin(1),
        Method::POST,
        "api-keys",
        token,
        Some(json!({ "name": "ci", "scopes": ["users:read"] })),
    )
    .await;
    let key = expect_status(created, StatusCode::CREATED).await;
    let id = key["id"].as_str().unwrap();
    let path = format!("api-keys/{id}");
    let renamed = json!({ "name": "deploy" });
    let updated = send(
        &app,
        &origin(2),
        Method::PATCH,
        &path,
        token,
        Some(renamed.clone()),
    )
    .await;
    let revoked = send(&app, &origin(3), Method::DELETE, &path, token, None).await;
    let revoked_again = send(&app, &origin(4), Method::DELETE, &path, token, None).await;
    let changed_after = send(&app, &origin(5), Method::PATCH, &path, token, Some(renamed)).await;

    expect_status(updated, StatusCode::OK).await;
    expect_status(revoked, StatusCode::NO_CONTENT).await;
    expect_status(revoked_again, StatusCode::NO_CONTENT).await;
    expect_error(changed_after, StatusCode::CONFLICT, "api_key_revoked").await;
    let created = only_entry(&app, &owner, "apikey.created").await;
    assert_actor(&created, "user", &owner.user_id, &origin(1));
    assert_target(&created, "api_key", id);
    assert_eq!(created["metadata"]["name"], "ci");
    assert_eq!(created["metadata"]["scopes"], json!(["users:read"]));
    let updated = only_entry(&app, &owner, "apikey.updated").await;
    assert_actor(&updated, "user", &owner.user_id, &origin(2));
    assert_eq!(updated["metadata"]["name"], "deploy");
    let revoked = only_entry(&app, &owner, "apikey.revoked").await;
    assert_actor(&revoked, "user", &owner.user_id, &origin(3));
    assert_target(&revoked, "api_key", id);
}

#[tokio::test]
async fn user_changes_are_audited_and_an_api_key_is_named_as_its_actor() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let (key_id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    let token = Some(owner.access_token.as_str());
    let ada =
        json!({ "email": "ada@acme.test", "name": "Ada", "password": PASSWORD, "role": "member" });

    let created = send(
        &app,
        &origin(1),
        Method::POST,
        "users",
        Some(secret),
        Some(ada.clone()),
    )
    .await;
    let user_id = expect_status(created, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let duplicate = send(&app, &origin(2), Method::POST, "users", token, Some(ada)).await;
    let path = format!("users/{user_id}");
    let renamed = send(
        &app,
        &origin(3),
        Method::PUT,
        &path,
        token,
        Some(json!({ "name": "Ada L." })),
    )
    .await;
    let role = format!("{path}/role");
    let promoted = send(
        &app,
        &origin(4),
        Method::PUT,
        &role,
        token,
        Some(json!({ "role": "admin" })),
    )
    .await;
    let own_role = format!("users/{}/role", owner.user_id);
    let last_owner = send(
        &app,
        &origin(5),
        Method::PUT,
        &own_role,
        token,
        Some(json!({ "role": "member" })),
    )
    .await;
    let deleted = send(&app, &origin(6), Method::DELETE, &path, token, None).await;

    expect_error(duplicate, StatusCode::CONFLICT, "email_taken").await;
    expect_status(renamed, StatusCode::OK).await;
    expect_status(promoted, StatusCode::OK).await;
    expect_error(last_owner, StatusCode::CONFLICT, "last_owner").await;
    expect_status(deleted, StatusCode::NO_CONTENT).await;
    let created = only_entry(&app, &owner, "user.created").await;
    assert_actor(&created, "api_key", key_id, &origin(1));
    assert_eq!(created["actor"]["user_id"], owner.user_id.as_str());
    assert_target(&created, "user", &user_id);
    assert_eq!(created["metadata"]["role"], "member");
    let updated = only_entry(&app, &owner, "user.updated").await;
    assert_actor(&updated, "user", &owner.user_id, &origin(3));
    assert_eq!(updated["metadata"]["name"], "Ada L.");
    let promoted = only_entry(&app, &owner, "user.role_changed").await;
    assert_actor(&promoted, "user", &owner.user_id, &origin(4));
    assert_target(&promoted, "user", &user_id);
    assert_eq!(
        promoted["metadata"],
        json!({ "from": "member", "to": "admin" })
    );
    let deleted = only_entry(&app, &owner, "user.deleted").await;
    assert_actor(&deleted, "user", &owner.user_id, &origin(6));
    assert_target(&deleted, "user", &user_id);
}

#[tokio::test]
async fn invitations_are_audited_from_invite_to_acceptance_or_revocation() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let token = Some(owner.access_token.as_str());
    let invite = |n: u8, email: &str| {
        let body = json!({ "email": email, "role": "member" });
        let app = &app;
        async move {
            send(
                app,
                &origin(n),
                Method::POST,
                "invitations",
                token,
                Some(body),
            )
            .await
        }
    };

    let invited = expect_status(invite(1, "ada@acme.test").await, StatusCode::CREATED).await;
    let mailed = app.mailed_token("ada@acme.test", "invitation").await;
    let accepted = send(
        &app,
        &origin(2),
        Method::POST,
        "invitations/accept",
        None,
        Some(json!({ "token": mailed, "name": "Ada", "password": PASSWORD })),
    )
    .await;
    let ada_id = expect_status(accepted, StatusCode::CREATED).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = expect_status(invite(3, "max@acme.test").await, StatusCode::CREATED).await;
    let path = format!("invitations/{}", second["id"].as_str().unwrap());
    let revoked = send(&app, &origin(4), Method::DELETE, &path, token, None).await;
    let revoked_again = send(&app, &origin(5), Method::DELETE, &path, token, None).await;
    let member_again = invite(6, "ada@acme.test").await;

    expect_status(revoked, StatusCode::NO_CONTENT).await;
    expect_status(revoked_again, StatusCode::NO_CONTENT).await;
    expect_error(member_again, StatusCode::CONFLICT, "email_taken").await;
    let created = entries(&app, &owner, "action=invitation.created").await;
    assert_eq!(created.len(), 2, "{created:#?}");
    assert_actor(&created[1], "user", &owner.user_id, &origin(1));
    assert_target(&created[1], "invitation", invited["id"].as_str().unwrap());
    assert_eq!(created[1]["metadata"]["email"], "ada@acme.test");
    let accepted = only_entry(&app, &owner, "invitation.accepted").await;
    assert_actor(&accepted, "user", &ada_id, &origin(2));
    assert_target(&accepted, "invitation", invited["id"].as_str().unwrap());
    let revoked = only_entry(&app, &owner, "invitation.revoked").await;
    assert_actor(&revoked, "user", &owner.user_id, &origin(4));
}

#[tokio::test]
async fn tenant_changes_are_audited_and_the_log_outlives_the_tenant() {
    let app = spawn_app().await;
    let registered = send(
        &app,
        &origin(1),
        Method::POST,
        "auth/register",
        None,
        Some(json!({
            "tenant_name": "Acme", "tenant_slug": "acme", "email": "owner@acme.test",
            "password": PASSWORD, "name": "Owner",
        })),
    )
    .await;
    let body = expect_status(registered, StatusCode::CREATED).await;
    let (tenant_id, owner_id) = (
        body["tenant"]["id"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    );
    let token = body["access_token"].as_str();
    let globex = app.register("globex").await;
    let claimed = json!({ "custom_domain": "app.globex.example" });
    expect_status(
        app.put("tenant", &globex.access_token, &claimed).await,
        StatusCode::OK,
    )
    .await;

    let renamed = send(
        &app,
        &origin(2),
        Method::PUT,
        "tenant",
        token,
        Some(json!({ "name": "Acme Corp" })),
    )
    .await;
    let taken = send(
        &app,
        &origin(3),
        Method::PUT,
        "tenant",
        token,
        Some(claimed),
    )
    .await;
    let deleted = send(&app, &origin(4), Method::DELETE, "tenant", token, None).await;

    expect_status(renamed, StatusCode::OK).await;
    expect_error(taken, StatusCode::CONFLICT, "domain_taken").await;
    expect_status(deleted, StatusCode::NO_CONTENT).await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let read = |action: &'static str| {
        let (app, admin, tenant_id) = (&app, &admin, &tenant_id);
        async move { admin_entries(app, admin, tenant_id, &format!("action={action}")).await }
    };
    let [created] = read("tenant.created").await.try_into().unwrap();
    assert_actor(&created, "user", &owner_id, &origin(1));
    assert_target(&created, "tenant", &tenant_id);
    assert_eq!(created["metadata"]["slug"], "acme");
    let [updated] = read("tenant.updated").await.try_into().unwrap();
    assert_actor(&updated, "user", &owner_id, &origin(2));
    assert_eq!(updated["metadata"]["name"], "Acme Corp");
    let [deleted] = read("tenant.deleted").await.try_into().unwrap();
    assert_actor(&deleted, "user", &owner_id, &origin(4));
}

#[tokio::test]
async fn platform_admin_actions_are_audited_in_the_tenants_log() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let admin_id = admin_id(&app, "ops@tollgate.test").await;
    let tenant = format!("admin/tenants/{}", owner.tenant_id);
    let as_admin = |n: u8, method: Method, path: String, body: Option<serde_json::Value>| {
        let (app, admin) = (&app, &admin);
        async move { send(app, &origin(n), method, &path, Some(admin), body).await }
    };
    let pro = json!({ "plan": "PRO", "overrides": { "max_users": 40 } });
    let grant = json!({ "amount": 100, "reason": "welcome", "idempotency_key": "welcome-1" });
    let adjust = |amount: i64| json!({ "amount": amount, "reason": "correction" });

    let planned = as_admin(1, Method::PUT, format!("{tenant}/plan"), Some(pro.clone())).await;
    let nowhere = as_admin(
        2,
        Method::PUT,
        "admin/tenants/nowhere/plan".into(),
        Some(pro),
    )
    .await;
    let suspended = as_admin(3, Method::POST, format!("{tenant}/suspend"), None).await;
    let suspended_again = as_admin(4, Method::POST, format!("{tenant}/suspend"), None).await;
    let reactivated = as_admin(5, Method::POST, format!("{tenant}/reactivate"), None).await;
    let granted = as_admin(
        6,
        Method::POST,
        format!("{tenant}/credits/grants"),
        Some(grant.clone()),
    )
    .await;
    let replayed = as_admin(
        7,
        Method::POST,
        format!("{tenant}/credits/grants"),
        Some(grant),
    )
    .await;
    let adjusted = as_admin(
        8,
        Method::POST,
        format!("{tenant}/credits/adjustments"),
        Some(adjust(-30)),
    )
    .await;
    let hold = app
        .post(
            "credits/reservations",
            &owner.access_token,
            &json!({ "amount": 60 }),
        )
        .await;
    expect_status(hold, StatusCode::CREATED).await;
    let below = as_admin(
        9,
        Method::POST,
        format!("{tenant}/credits/adjustments"),
        Some(adjust(-20)),
    )
    .await;

    expect_status(planned, StatusCode::NO_CONTENT).await;
    expect_error(nowhere, StatusCode::NOT_FOUND, "not_found").await;
    expect_status(suspended, StatusCode::NO_CONTENT).await;
    expect_status(suspended_again, StatusCode::NO_CONTENT).await;
    expect_status(reactivated, StatusCode::NO_CONTENT).await;
    expect_status(granted, StatusCode::CREATED).await;
    expect_status(replayed, StatusCode::OK).await;
    expect_status(adjusted, StatusCode::CREATED).await;
    expect_error(below, StatusCode::CONFLICT, "adjustment_below_spend").await;
    let plan = only_entry(&app, &owner, "plan.changed").await;
    assert_actor(&plan, "platform_admin", &admin_id, &origin(1));
    assert_target(&plan, "tenant", &owner.tenant_id);
    assert_eq!(
        plan["metadata"],
        json!({ "plan": "PRO", "overrides": { "max_users": 40 } })
    );
    let suspension = only_entry(&app, &owner, "tenant.suspended").await;
    assert_actor(&suspension, "platform_admin", &admin_id, &origin(3));
    let reactivation = only_entry(&app, &owner, "tenant.reactivated").await;
    assert_actor(&reactivation, "platform_admin", &admin_id, &origin(5));
    let grant = only_entry(&app, &owner, "credits.granted").await;
    assert_actor(&grant, "platform_admin", &admin_id, &origin(6));
    assert_target(
        &grant,
        "credit_account",
        &format!("pool:{}", owner.tenant_id),
    );
    assert_eq!(grant["metadata"]["amount"], 100);
    let adjustment = only_entry(&app, &owner, "credits.adjusted").await;
    assert_actor(&adjustment, "platform_admin", &admin_id, &origin(8));
    assert_eq!(adjustment["metadata"]["amount"], -30);
}

/// A tenant with 100 credits in its pool, granted by a platform admin.
async fn funded(app: &TestApp) -> TestUser {
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.grant_pool_credits(&admin, &owner, 100).await;
    owner
}

#[tokio::test]
async fn credit_changes_by_tenant_admins_are_audited() {
    let app = spawn_app().await;
    let owner = funded(&app).await;
    let member = app.add_user(&owner, "ada", "member").await;
    let token = Some(owner.access_token.as_str());
    let credits = format!("users/{}/credits", member.user_id);
    let account = format!("user:{}", member.user_id);

    let granted = send(
        &app,
        &origin(1),
        Method::POST,
        &format!("{credits}/grants"),
        token,
        Some(json!({ "amount": 20 })),
    )
    .await;
    let allowance = send(
        &app,
        &origin(2),
        Method::PUT,
        &format!("{credits}/allowance"),
        token,
        Some(json!({ "allowance": 50 })),
    )
    .await;
    let hold = app
        .post(
            "credits/reservations",
            &member.access_token,
            &json!({ "amount": 10 }),
        )
        .await;
    let id = expect_status(hold, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let settled = app
        .post(
            &format!("credits/reservations/{id}/settle"),
            &member.access_token,
            &json!({ "actual": 10 }),
        )
        .await;
    expect_status(settled, StatusCode::OK).await;
    let too_low = send(
        &app,
        &origin(3),
        Method::PUT,
        &format!("{credits}/allowance"),
        token,
        Some(json!({ "allowance": 5 })),
    )
    .await;
    let refund = format!("credits/reservations/{id}/refund");
    let refunded = send(
        &app,
        &origin(4),
        Method::POST,
        &refund,
        token,
        Some(json!({})),
    )
    .await;
    let refunded_again = send(
        &app,
        &origin(5),
        Method::POST,
        &refund,
        token,
        Some(json!({})),
    )
    .await;

    expect_status(granted, StatusCode::CREATED).await;
    expect_status(allowance, StatusCode::OK).await;
    expect_error(too_low, StatusCode::CONFLICT, "allowance_below_spend").await;
    expect_status(refunded, StatusCode::OK).await;
    expect_status(refunded_again, StatusCode::OK).await;
    let grants = entries(
        &app,
        &owner,
        &format!("action=credits.granted&target_id={account}"),
    )
    .await;
    let [grant] = grants.try_into().unwrap();
    assert_actor(&grant, "user", &owner.user_id, &origin(1));
    assert_eq!(grant["metadata"]["amount"], 20);
    let allowance = only_entry(&app, &owner, "credits.allowance_set").await;
    assert_actor(&allowance, "user", &owner.user_id, &origin(2));
    assert_target(&allowance, "credit_account", &account);
    assert_eq!(allowance["metadata"]["allowance"], 50);
    let refund = only_entry(&app, &owner, "credits.refunded").await;
    assert_actor(&refund, "user", &owner.user_id, &origin(4));
    assert_target(&refund, "reservation", &id);
}

#[tokio::test]
async fn password_changes_and_resets_are_audited() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let new_password = "an entirely new passphrase";

    let changed = send(
        &app,
        &origin(1),
        Method::POST,
        "auth/change-password",
        Some(&owner.access_token),
        Some(json!({ "current_password": PASSWORD, "new_password": new_password })),
    )
    .await;
    let wrong = send(
        &app,
        &origin(2),
        Method::POST,
        "auth/change-password",
        Some(&owner.access_token),
        Some(json!({ "current_password": "wrong", "new_password": new_password })),
    )
    .await;
    let forgot = json!({ "email": owner.email, "tenant": "acme" });
    expect_status(
        app.post_public("auth/forgot-password", &forgot).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let mailed = app.mailed_token(&owner.email, "password_reset").await;
    let reset = json!({ "token": mailed, "password": PASSWORD });
    let first = send(
        &app,
        &origin(3),
        Method::POST,
        "auth/reset-password",
        None,
        Some(reset.clone()),
    )
    .await;
    let reused = send(
        &app,
        &origin(4),
        Method::POST,
        "auth/reset-password",
        None,
        Some(reset),
    )
    .await;

    expect_status(changed, StatusCode::OK).await;
    expect_error(wrong, StatusCode::FORBIDDEN, "wrong_password").await;
    expect_status(first, StatusCode::OK).await;
    expect_error(reused, StatusCode::BAD_REQUEST, "invalid_token").await;
    let owner = TestUser {
        access_token: {
            let login = app.login("acme", &owner.email, PASSWORD).await;
            expect_status(login, StatusCode::OK).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        },
        ..owner
    };
    let change = only_entry(&app, &owner, "auth.password_changed").await;
    assert_actor(&change, "user", &owner.user_id, &origin(1));
    assert_target(&change, "user", &owner.user_id);
    let reset = only_entry(&app, &owner, "auth.password_reset").await;
    assert_actor(&reset, "user", &owner.user_id, &origin(3));
    assert_target(&reset, "user", &owner.user_id);
}
