//! Cron's part: it seals what requests left unsealed, prunes entries past the plan's
//! retention while the rest of the chain still verifies, and two runs at once do what one
//! run does.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{append_unsealed, entries, snapshot, stored, verify};

const DAY: i64 = 86_400;

/// Signs `owner` in again (after the clock moved past the access token's life).
async fn signed_in_again(app: &TestApp, owner: &TestUser) -> TestUser {
    let login = app.login(&owner.tenant_slug, &owner.email, PASSWORD).await;
    let tokens = expect_status(login, StatusCode::OK).await;
    TestUser {
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
        ..owner.clone()
    }
}

async fn unsealed(app: &TestApp) -> i64 {
    app.query("SELECT COUNT(*) FROM audit_log WHERE hash IS NULL", vec![])
        .await[0][0]
        .as_i64()
        .unwrap()
}

/// A tenant with a few entries: registration, a key, a member.
async fn tenant_with_history(app: &TestApp, slug: &str) -> TestUser {
    let owner = app.register(slug).await;
    app.create_api_key(&owner, &["users:read"]).await;
    app.add_user(&owner, "ada", "member").await;
    owner
}

#[tokio::test]
async fn cron_seals_the_entries_a_request_left_unsealed() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    for _ in 0..3 {
        append_unsealed(&app, &owner.tenant_id).await;
    }
    assert_eq!(unsealed(&app).await, 3);

    let report = app.run_cron().await;

    assert_eq!(report.audit_entries_sealed, 3);
    assert_eq!(unsealed(&app).await, 0);
    let verified = verify(&app, &owner.access_token).await;
    assert_eq!(
        (
            verified["valid"].clone(),
            verified["entries_checked"].clone()
        ),
        (json!(true), json!(4))
    );
}

#[tokio::test]
async fn cron_prunes_past_the_plans_retention_and_the_rest_still_verifies() {
    let app = spawn_app().await;
    let owner = tenant_with_history(&app, "acme").await;
    let old = stored(&app, &owner.tenant_id).await;

    app.advance_clock(30 * DAY);
    let at_the_limit = app.run_cron().await;
    app.advance_clock(1);
    let owner = signed_in_again(&app, &owner).await;
    let past_it = app.run_cron().await;

    assert_eq!(
        at_the_limit.audit_entries_pruned, 0,
        "30 days are kept on FREE"
    );
    assert_eq!(past_it.audit_entries_pruned as i64, old);
    let remaining = entries(&app, &owner, "").await;
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["action"], "auth.login");
    assert_eq!(remaining[0]["sequence"], old + 1);
    let report = verify(&app, &owner.access_token).await;
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["entries_checked"], 1);
    assert_eq!(report["checkpoint"]["sequence"], old);
    assert_eq!(report["checkpoint"]["hash"], remaining[0]["previous_hash"]);

    app.create_api_key(&owner, &["users:read"]).await;
    let report = verify(&app, &owner.access_token).await;
    assert_eq!(
        (report["valid"].clone(), report["entries_checked"].clone()),
        (json!(true), json!(2))
    );
}

#[tokio::test]
async fn a_plan_override_sets_the_retention_and_bad_values_are_refused() {
    let app = spawn_app().await;
    let owner = tenant_with_history(&app, "acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let plan = format!("admin/tenants/{}/plan", owner.tenant_id);
    let retention =
        |days: Value| json!({ "plan": "FREE", "overrides": { "audit_retention_days": days } });
    for bad in [json!(0), json!(3651), json!("long")] {
        let response = app.put(&plan, &admin, &retention(bad)).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    expect_status(
        app.put(&plan, &admin, &retention(json!(1))).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    let plans = expect_status(app.get("plans", &owner.access_token).await, StatusCode::OK).await;
    let all = stored(&app, &owner.tenant_id).await;

    app.advance_clock(DAY + 1);
    let report = app.run_cron().await;

    assert_eq!(tenant["plan_limits"]["audit_retention_days"], 1);
    let defaults: Vec<&Value> = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plan| &plan["limits"]["audit_retention_days"])
        .collect();
    assert_eq!(defaults, [&json!(30), &json!(365), &json!(2555)]);
    assert_eq!(
        report.audit_entries_pruned as i64, all,
        "every entry, plan.changed included"
    );
    assert_eq!(stored(&app, &owner.tenant_id).await, 0);
    let owner = signed_in_again(&app, &owner).await;
    let report = verify(&app, &owner.access_token).await;
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["checkpoint"]["sequence"], all);
    assert_eq!(entries(&app, &owner, "").await[0]["sequence"], all + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cron_twice_at_once_leaves_the_same_state_as_once() {
    let app = spawn_app().await;
    let acme = tenant_with_history(&app, "acme").await;
    let globex = tenant_with_history(&app, "globex").await;
    let old = stored(&app, &acme.tenant_id).await + stored(&app, &globex.tenant_id).await;
    app.advance_clock(31 * DAY);
    for tenant in [&acme, &globex] {
        signed_in_again(&app, tenant).await;
        append_unsealed(&app, &tenant.tenant_id).await;
        append_unsealed(&app, &tenant.tenant_id).await;
    }

    let (first, second) = futures::join!(app.run_cron(), app.run_cron());
    let after_both = snapshot(&app).await;
    let third = app.run_cron().await;

    assert_eq!(first.audit_entries_sealed + second.audit_entries_sealed, 4);
    assert_eq!(
        (first.audit_entries_pruned + second.audit_entries_pruned) as i64,
        old
    );
    assert_eq!(
        (third.audit_entries_sealed, third.audit_entries_pruned),
        (0, 0)
    );
    assert_eq!(
        snapshot(&app).await,
        after_both,
        "a further run changes nothing"
    );
    assert_eq!(unsealed(&app).await, 0);
    let admin = app.platform_admin("ops@tollgate.test").await;
    for tenant in [&acme, &globex] {
        let path = format!("admin/tenants/{}/audit-logs/verify", tenant.tenant_id);
        let report = expect_status(app.get(&path, &admin).await, StatusCode::OK).await;
        assert_eq!(report["valid"], true, "{report:#}");
        assert_eq!(
            report["entries_checked"], 3,
            "the new login and the two appended"
        );
    }
}
