//! `PUT users/{id}/quota` (tenant admin) and `PUT admin/tenants/{id}/quota` (platform
//! admin): per-user and per-tenant overrides of the plan's quotas, and plan overrides of the
//! quota columns themselves.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate::quota::metrics::Period;
use tollgate_tests::{expect_error, expect_status};

use crate::support::{
    counter, limit_user, record, record_ok, set_tenant_limit, set_user_limit, spawn_quota_app,
};

/// The entry for one counter in a limits answer.
fn entry<'a>(answer: &'a Value, metric: &str, period: &str) -> &'a Value {
    answer["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["metric"] == metric && entry["period"] == period)
        .unwrap_or_else(|| panic!("no {metric}/{period} in {answer}"))
}

#[tokio::test]
async fn a_tenant_admin_sets_a_users_limit_and_removes_it_with_null() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let set = set_user_limit(
        &app,
        &owner,
        &member.user_id,
        &json!({ "metric": "jobs", "period": "day", "limit": 10 }),
    )
    .await;
    let set = expect_status(set, StatusCode::OK).await;
    assert_eq!(set["user_id"], member.user_id.as_str());
    assert_eq!(set["limits"].as_array().unwrap().len(), 6);
    let jobs_day = entry(&set, "jobs", "day");
    assert_eq!(jobs_day["override"], 10);
    assert_eq!(jobs_day["limit"], 10);
    assert_eq!(jobs_day["source"], "user_override");
    assert_eq!(entry(&set, "jobs", "month")["source"], "plan");
    let usage = expect_status(app.get("usage", &member.access_token).await, StatusCode::OK).await;
    assert_eq!(usage["metrics"]["jobs"]["day"]["limit"], 10);

    let removed = set_user_limit(
        &app,
        &owner,
        &member.user_id,
        &json!({ "metric": "jobs", "period": "day", "limit": null }),
    )
    .await;

    let removed = expect_status(removed, StatusCode::OK).await;
    let jobs_day = entry(&removed, "jobs", "day");
    assert_eq!(jobs_day["override"], Value::Null);
    assert_eq!(jobs_day["limit"], 50);
    assert_eq!(jobs_day["source"], "plan");
    let rows = app.query("SELECT COUNT(*) FROM quota_limits", vec![]).await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test]
async fn a_second_limit_replaces_the_first() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    limit_user(&app, &owner, &owner, "llm_tokens", "month", 10).await;

    limit_user(&app, &owner, &owner, "llm_tokens", "month", 20).await;

    record_ok(&app, &owner, "llm_tokens", 20).await;
    expect_error(
        record(&app, &owner.access_token, "llm_tokens", 1).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;
}

#[tokio::test]
async fn a_users_limit_binds_that_user_only() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    limit_user(&app, &owner, &ada, "jobs", "day", 1).await;
    record_ok(&app, &ada, "jobs", 1).await;

    let refused = record(&app, &ada.access_token, "jobs", 1).await;
    let allowed = record(&app, &max.access_token, "jobs", 2).await;

    expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    expect_status(allowed, StatusCode::CREATED).await;
}

#[tokio::test]
async fn a_users_limit_wins_over_the_tenants_for_that_user() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let tenant_limit = json!({ "metric": "jobs", "period": "day", "limit": 10 });
    let answer = set_tenant_limit(&app, &admin, &owner.tenant_id, &tenant_limit).await;
    let answer = expect_status(answer, StatusCode::OK).await;
    assert_eq!(answer["user_id"], Value::Null);
    assert_eq!(entry(&answer, "jobs", "day")["source"], "tenant_override");
    limit_user(&app, &owner, &member, "jobs", "day", 3).await;
    record_ok(&app, &member, "jobs", 3).await;

    let refused = record(&app, &member.access_token, "jobs", 1).await;
    let body = expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["scope"], "user");
    assert_eq!(body["error"]["details"]["limit"], 3);

    record_ok(&app, &owner, "jobs", 7).await;
    let body = expect_error(
        record(&app, &owner.access_token, "jobs", 1).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], 10);
}

#[tokio::test]
async fn lowering_a_limit_below_what_is_used_refuses_the_next_event() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    record_ok(&app, &owner, "gpu_seconds", 40).await;
    limit_user(&app, &owner, &owner, "gpu_seconds", "day", 30).await;

    let response = record(&app, &owner.access_token, "gpu_seconds", 1).await;

    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["used"], 40);
    assert_eq!(body["error"]["details"]["limit"], 30);
    let tenant = &owner.tenant_id;
    assert_eq!(
        counter(&app, tenant, &owner.user_id, "gpu_seconds", Period::Day).await,
        40
    );
}

#[tokio::test]
async fn a_zero_limit_refuses_everything() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    limit_user(&app, &owner, &owner, "jobs", "month", 0).await;

    let response = record(&app, &owner.access_token, "jobs", 1).await;

    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["period"], "month");
    assert_eq!(
        counter(&app, &owner.tenant_id, "", "jobs", Period::Day).await,
        0
    );
}

#[tokio::test]
async fn the_plans_quota_columns_take_overrides_and_null_means_unlimited() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    app.assign_plan(
        &admin,
        &owner,
        &json!({ "plan": "FREE", "overrides": { "daily_jobs": 2, "monthly_llm_tokens": null } }),
    )
    .await;

    record_ok(&app, &owner, "jobs", 2).await;
    let refused = record(&app, &owner.access_token, "jobs", 1).await;
    let unlimited = record_ok(&app, &owner, "llm_tokens", 100_000).await;

    let body = expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["limit"], 2);
    let month = crate::support::counter_in(&unlimited, "tenant", "month");
    assert_eq!(month["limit"], Value::Null);
    assert_eq!(month["remaining"], Value::Null);
    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["plan_limits"]["daily_jobs"], 2);
    assert_eq!(tenant["plan_limits"]["monthly_llm_tokens"], Value::Null);
    assert_eq!(
        tenant["plan_limits"]["monthly_jobs"], 500,
        "the rest keep the plan's"
    );
}

#[tokio::test]
async fn a_member_or_viewer_may_not_set_limits() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;
    let body = json!({ "metric": "jobs", "period": "day", "limit": 1000 });

    let by_member = set_user_limit(&app, &member, &member.user_id, &body).await;
    let by_viewer = set_user_limit(&app, &viewer, &member.user_id, &body).await;

    expect_error(by_member, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(by_viewer, StatusCode::FORBIDDEN, "forbidden").await;
    let rows = app.query("SELECT COUNT(*) FROM quota_limits", vec![]).await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test]
async fn an_admins_key_needs_users_write_to_set_limits() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["usage:write"]).await;
    let body = json!({ "metric": "jobs", "period": "day", "limit": 1 });

    let response = app
        .put(
            &format!("users/{}/quota", owner.user_id),
            key["key"].as_str().unwrap(),
            &body,
        )
        .await;

    let error = expect_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(error["error"]["details"]["required_scope"], "users:write");
}

#[tokio::test]
async fn another_tenants_user_or_an_unknown_one_is_not_found() {
    let app = spawn_quota_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    let body = json!({ "metric": "jobs", "period": "day", "limit": 0 });

    let foreign = set_user_limit(&app, &acme, &globex.user_id, &body).await;
    let unknown = set_user_limit(&app, &acme, "no-such-user", &body).await;
    let removing = set_user_limit(
        &app,
        &acme,
        &globex.user_id,
        &json!({ "metric": "jobs", "period": "day", "limit": null }),
    )
    .await;

    expect_error(foreign, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(removing, StatusCode::NOT_FOUND, "not_found").await;
    let rows = app.query("SELECT COUNT(*) FROM quota_limits", vec![]).await;
    assert_eq!(rows[0][0], 0);
    record_ok(&app, &globex, "jobs", 1).await;
}

#[tokio::test]
async fn bad_limits_answer_4xx_and_change_nothing() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let cases = [
        (
            json!({ "metric": "minutes", "period": "day", "limit": 1 }),
            Some("metric"),
        ),
        (
            json!({ "metric": "jobs", "period": "week", "limit": 1 }),
            Some("period"),
        ),
        (
            json!({ "metric": "jobs", "period": "day", "limit": -1 }),
            Some("limit"),
        ),
        (json!({ "metric": "jobs", "period": "day" }), Some("limit")),
        (
            json!({ "metric": "jobs", "period": "day", "limit": "10" }),
            None,
        ),
        (json!({ "metric": "jobs", "limit": 10 }), None),
        (
            json!({ "metric": "jobs", "period": "day", "limit": 1, "user": "x" }),
            None,
        ),
    ];
    for (body, field) in cases {
        let response = set_user_limit(&app, &owner, &owner.user_id, &body).await;
        let error = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        if let Some(field) = field {
            assert_eq!(error["error"]["details"]["field"], field, "{body}");
        }
    }
    let not_json = app
        .request(Method::PUT, &format!("users/{}/quota", owner.user_id))
        .bearer_auth(&owner.access_token)
        .body("limit=1")
        .send()
        .await
        .unwrap();
    expect_error(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let rows = app.query("SELECT COUNT(*) FROM quota_limits", vec![]).await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test]
async fn only_a_platform_admin_sets_a_tenants_limit() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let body = json!({ "metric": "jobs", "period": "month", "limit": 100000 });

    let by_owner = set_tenant_limit(&app, &owner.access_token, &owner.tenant_id, &body).await;
    let anonymous = app
        .request(
            Method::PUT,
            &format!("admin/tenants/{}/quota", owner.tenant_id),
        )
        .json(&body)
        .send()
        .await
        .unwrap();

    expect_error(by_owner, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let rows = app.query("SELECT COUNT(*) FROM quota_limits", vec![]).await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test]
async fn a_tenant_limit_for_an_unknown_tenant_is_not_found_and_bad_input_is_422() {
    let app = spawn_quota_app().await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let owner = app.register("acme").await;

    let unknown = set_tenant_limit(
        &app,
        &admin,
        "no-such-tenant",
        &json!({ "metric": "jobs", "period": "day", "limit": 1 }),
    )
    .await;
    let bad = set_tenant_limit(
        &app,
        &admin,
        &owner.tenant_id,
        &json!({ "metric": "jobs", "period": "day", "limit": -3 }),
    )
    .await;

    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn removing_the_tenants_limit_falls_back_to_the_plan() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let path_body =
        |limit: Value| json!({ "metric": "llm_tokens", "period": "day", "limit": limit });
    expect_status(
        set_tenant_limit(&app, &admin, &owner.tenant_id, &path_body(json!(5))).await,
        StatusCode::OK,
    )
    .await;

    let removed = set_tenant_limit(&app, &admin, &owner.tenant_id, &path_body(Value::Null)).await;

    let removed = expect_status(removed, StatusCode::OK).await;
    assert_eq!(entry(&removed, "llm_tokens", "day")["limit"], 100_000);
    assert_eq!(entry(&removed, "llm_tokens", "day")["source"], "plan");
    record_ok(&app, &owner, "llm_tokens", 6).await;
}
