//! `GET usage`, `GET usage?scope=tenant` and `GET users/{id}/usage`: consumption against the
//! limits in force, history, average, projection and last activity, for the caller and, for
//! a tenant admin, any user of the tenant and the tenant as a whole.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::{
    clock::rfc3339,
    quota::{
        metrics::Period,
        periods::{MonthProgress, Window, date_label},
    },
};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status};

use crate::support::{
    advance_to_next_day, limit_user, now, record_ok, set_tenant_limit, spawn_quota_app,
};

async fn usage_of(app: &TestApp, user: &TestUser, path: &str) -> Value {
    expect_status(app.get(path, &user.access_token).await, StatusCode::OK).await
}

#[tokio::test]
async fn the_caller_sees_consumption_limit_remaining_and_share_used() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    record_ok(&app, &owner, "jobs", 5).await;
    record_ok(&app, &owner, "llm_tokens", 25_000).await;

    let usage = usage_of(&app, &owner, "usage").await;

    assert_eq!(usage["scope"], "user");
    assert_eq!(usage["user_id"], owner.user_id.as_str());
    assert_eq!(usage["as_of"], rfc3339(now(&app)));
    let jobs = &usage["metrics"]["jobs"];
    assert_eq!(jobs["day"]["used"], 5);
    assert_eq!(jobs["day"]["limit"], 50);
    assert_eq!(jobs["day"]["limit_source"], "plan");
    assert_eq!(jobs["day"]["remaining"], 45);
    assert_eq!(jobs["day"]["percent_used"], 10.0);
    assert_eq!(
        jobs["day"]["resets_at"],
        rfc3339(Window::containing(Period::Day, now(&app)).end)
    );
    assert_eq!(jobs["month"]["used"], 5);
    assert_eq!(jobs["month"]["limit"], 500);
    assert_eq!(jobs["month"]["percent_used"], 1.0);
    assert_eq!(jobs["last_activity_at"], rfc3339(now(&app)));
    let tokens = &usage["metrics"]["llm_tokens"];
    assert_eq!(tokens["day"]["percent_used"], 25.0);
    assert_eq!(tokens["month"]["remaining"], 975_000);
    let gpu = &usage["metrics"]["gpu_seconds"];
    assert_eq!(gpu["day"]["used"], 0);
    assert_eq!(gpu["last_activity_at"], Value::Null);
    assert_eq!(usage["last_activity_at"], rfc3339(now(&app)));
}

#[tokio::test]
async fn history_average_and_projection_cover_the_month_so_far() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    record_ok(&app, &owner, "jobs", 2).await;
    let yesterday = now(&app);
    advance_to_next_day(&app);
    record_ok(&app, &owner, "jobs", 4).await;

    let usage = usage_of(&app, &owner, "usage").await;

    let jobs = &usage["metrics"]["jobs"];
    let progress = MonthProgress::at(now(&app));
    let history = jobs["daily_history"].as_array().unwrap();
    assert_eq!(history.len() as i64, progress.days_elapsed);
    let last = &history[history.len() - 1];
    assert_eq!(last, &json!({ "date": date_label(now(&app)), "used": 4 }));
    let before = &history[history.len() - 2];
    assert_eq!(before, &json!({ "date": date_label(yesterday), "used": 2 }));
    let earlier: i64 = history[..history.len() - 2]
        .iter()
        .map(|day| day["used"].as_i64().unwrap())
        .sum();
    assert_eq!(earlier, 0);
    assert_eq!(jobs["day"]["used"], 4);
    assert_eq!(jobs["month"]["used"], 6);
    let elapsed = progress.days_elapsed as f64;
    let average = (6.0 / elapsed * 100.0).round() / 100.0;
    assert_eq!(jobs["daily_average"], average);
    let projected = (6.0 * progress.days_in_month as f64 / elapsed).round() as i64;
    assert_eq!(jobs["projected_month_end"], projected);
    assert_eq!(jobs["projected_to_exceed"], false);
    assert_eq!(usage["month"]["days_in_month"], progress.days_in_month);
    assert_eq!(usage["month"]["days_elapsed"], progress.days_elapsed);
}

#[tokio::test]
async fn a_pace_beyond_the_monthly_limit_is_flagged() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    limit_user(&app, &owner, &owner, "gpu_seconds", "month", 100).await;
    record_ok(&app, &owner, "gpu_seconds", 99).await;

    let usage = usage_of(&app, &owner, "usage").await;

    let gpu = &usage["metrics"]["gpu_seconds"];
    let days_left = MonthProgress::at(now(&app));
    assert!(
        days_left.days_elapsed < days_left.days_in_month,
        "the fixture avoids the last day"
    );
    assert_eq!(gpu["projected_to_exceed"], true);
    assert_eq!(gpu["month"]["limit_source"], "user_override");
}

#[tokio::test]
async fn a_users_remaining_counts_what_the_tenant_has_left() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let body = json!({ "metric": "jobs", "period": "day", "limit": 10 });
    expect_status(
        set_tenant_limit(&app, &admin, &owner.tenant_id, &body).await,
        StatusCode::OK,
    )
    .await;
    record_ok(&app, &owner, "jobs", 8).await;

    let usage = usage_of(&app, &member, "usage").await;

    let day = &usage["metrics"]["jobs"]["day"];
    assert_eq!(day["used"], 0);
    assert_eq!(day["limit"], 10);
    assert_eq!(day["limit_source"], "tenant_override");
    assert_eq!(day["remaining"], 2);
    assert_eq!(day["limited_by"], "tenant");
    let month = &usage["metrics"]["jobs"]["month"];
    assert_eq!(month["limit"], 500);
    assert_eq!(month["remaining"], 492);
    assert_eq!(month["limited_by"], "tenant");
    let owner_usage = usage_of(&app, &owner, "usage").await;
    assert_eq!(owner_usage["metrics"]["jobs"]["day"]["remaining"], 2);
    assert_eq!(owner_usage["metrics"]["jobs"]["day"]["percent_used"], 80.0);
}

#[tokio::test]
async fn a_user_without_usage_sees_zeros() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let usage = usage_of(&app, &owner, "usage").await;

    for metric in ["jobs", "gpu_seconds", "llm_tokens"] {
        let figures = &usage["metrics"][metric];
        assert_eq!(figures["day"]["used"], 0);
        assert_eq!(figures["month"]["percent_used"], 0.0);
        assert_eq!(figures["daily_average"], 0.0);
        assert_eq!(figures["projected_month_end"], 0);
        assert_eq!(figures["last_activity_at"], Value::Null);
    }
    assert_eq!(usage["last_activity_at"], Value::Null);
}

#[tokio::test]
async fn a_tenant_admin_sees_the_tenant_total_and_each_user() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    record_ok(&app, &owner, "jobs", 3).await;
    record_ok(&app, &member, "jobs", 4).await;
    record_ok(&app, &member, "llm_tokens", 100).await;

    let usage = usage_of(&app, &owner, "usage?scope=tenant").await;

    assert_eq!(usage["scope"], "tenant");
    assert_eq!(usage["user_id"], Value::Null);
    assert_eq!(usage["metrics"]["jobs"]["day"]["used"], 7);
    assert_eq!(usage["metrics"]["jobs"]["day"]["limit"], 50);
    assert_eq!(usage["metrics"]["jobs"]["day"]["remaining"], 43);
    assert_eq!(usage["metrics"]["llm_tokens"]["month"]["used"], 100);
    let users = usage["by_user"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    let max = users
        .iter()
        .find(|user| user["user_id"] == member.user_id.as_str())
        .unwrap();
    assert_eq!(max["email"], member.email.as_str());
    assert_eq!(
        max["month"],
        json!({ "jobs": 4, "gpu_seconds": 0, "llm_tokens": 100 })
    );
}

#[tokio::test]
async fn a_tenant_admin_reads_any_users_usage_and_a_user_their_own() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    record_ok(&app, &member, "gpu_seconds", 30).await;
    let path = format!("users/{}/usage", member.user_id);

    let by_admin = usage_of(&app, &owner, &path).await;
    let by_self = usage_of(&app, &member, &path).await;

    assert_eq!(by_admin["user_id"], member.user_id.as_str());
    assert_eq!(by_admin["metrics"]["gpu_seconds"]["day"]["used"], 30);
    assert_eq!(by_self["metrics"], by_admin["metrics"]);
}

#[tokio::test]
async fn a_viewer_reads_their_own_usage() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;

    let usage = usage_of(&app, &viewer, "usage").await;

    assert_eq!(usage["user_id"], viewer.user_id.as_str());
}

#[tokio::test]
async fn a_member_may_not_read_the_tenant_or_another_user() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let tenant = app.get("usage?scope=tenant", &member.access_token).await;
    let other = app
        .get(
            &format!("users/{}/usage", owner.user_id),
            &member.access_token,
        )
        .await;

    expect_error(tenant, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(other, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn another_tenants_user_or_an_unknown_one_is_not_found() {
    let app = spawn_quota_app().await;
    let acme = app.register("acme").await;
    let globex = app.register("globex").await;
    record_ok(&app, &globex, "jobs", 1).await;

    let foreign = app
        .get(
            &format!("users/{}/usage", globex.user_id),
            &acme.access_token,
        )
        .await;
    let unknown = app
        .get("users/no-such-user/usage", &acme.access_token)
        .await;

    expect_error(foreign, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_deleted_user_is_not_found() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let path = format!("users/{}", member.user_id);
    expect_status(
        app.delete(&path, &owner.access_token).await,
        StatusCode::NO_CONTENT,
    )
    .await;

    let response = app.get(&format!("{path}/usage"), &owner.access_token).await;

    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_unknown_scope_answers_400() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let response = app.get("usage?scope=everyone", &owner.access_token).await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
}

#[tokio::test]
async fn usage_needs_credentials_and_is_only_read() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let anonymous = app
        .request(reqwest::Method::GET, "usage")
        .send()
        .await
        .unwrap();
    let posted = app.post("usage", &owner.access_token, &json!({})).await;

    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(posted, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn an_api_key_reads_usage_with_usage_read_only() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let reading = app.create_api_key(&owner, &["usage:read"]).await;
    let other = app.create_api_key(&owner, &["jobs:read"]).await;

    let allowed = app
        .get("usage?scope=tenant", reading["key"].as_str().unwrap())
        .await;
    let refused = app.get("usage", other["key"].as_str().unwrap()).await;

    expect_status(allowed, StatusCode::OK).await;
    let body = expect_error(refused, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(body["error"]["details"]["required_scope"], "usage:read");
}
