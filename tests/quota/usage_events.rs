//! `POST usage/events`: metering consumption for the caller and its tenant, refused
//! atomically at the limit, exact under concurrency, and reset with each period.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tollgate::{clock::rfc3339, quota::metrics::Period};
use tollgate_tests::{expect_error, expect_status};

use crate::support::{
    advance_to_next_day, advance_to_next_month, counter, counter_in, header, lift_rate_limit,
    limit_user, now, record, record_ok, seconds_to_reset, set_tenant_limit, spawn_quota_app,
};

#[tokio::test]
async fn a_member_records_usage_and_gets_the_counters_after_it() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let answer = record_ok(&app, &member, "jobs", 3).await;

    assert_eq!(answer["metric"], "jobs");
    assert_eq!(answer["amount"], 3);
    assert_eq!(answer["counters"].as_array().unwrap().len(), 4);
    let day = counter_in(&answer, "user", "day");
    assert_eq!(day["used"], 3);
    assert_eq!(day["limit"], 50, "the FREE plan's daily jobs");
    assert_eq!(day["remaining"], 47);
    let next_midnight = now(&app) + seconds_to_reset(&app, Period::Day);
    assert_eq!(day["resets_at"], rfc3339(next_midnight));
    assert_eq!(counter_in(&answer, "user", "month")["limit"], 500);
    assert_eq!(counter_in(&answer, "tenant", "day")["used"], 3);
    assert_eq!(counter_in(&answer, "tenant", "month")["used"], 3);
}

#[tokio::test]
async fn every_users_consumption_adds_up_in_the_tenants_counters() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    record_ok(&app, &owner, "llm_tokens", 1200).await;
    record_ok(&app, &member, "llm_tokens", 800).await;
    record_ok(&app, &member, "gpu_seconds", 42).await;

    let tenant = &owner.tenant_id;
    assert_eq!(
        counter(&app, tenant, &owner.user_id, "llm_tokens", Period::Day).await,
        1200
    );
    assert_eq!(
        counter(&app, tenant, &member.user_id, "llm_tokens", Period::Day).await,
        800
    );
    assert_eq!(
        counter(&app, tenant, "", "llm_tokens", Period::Day).await,
        2000
    );
    assert_eq!(
        counter(&app, tenant, "", "llm_tokens", Period::Month).await,
        2000
    );
    assert_eq!(
        counter(&app, tenant, "", "gpu_seconds", Period::Month).await,
        42
    );
    assert_eq!(counter(&app, tenant, "", "jobs", Period::Day).await, 0);
}

#[tokio::test]
async fn the_increment_past_the_limit_is_refused_with_the_counter_and_its_reset() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    limit_user(&app, &owner, &member, "jobs", "day", 3).await;
    for _ in 0..3 {
        record_ok(&app, &member, "jobs", 1).await;
    }

    let response = record(&app, &member.access_token, "jobs", 1).await;

    let retry_after = header(&response, "retry-after");
    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    let details = &body["error"]["details"];
    assert_eq!(details["scope"], "user");
    assert_eq!(details["metric"], "jobs");
    assert_eq!(details["period"], "day");
    assert_eq!(details["limit"], 3);
    assert_eq!(details["used"], 3);
    assert_eq!(details["requested"], 1);
    let wait = seconds_to_reset(&app, Period::Day);
    assert_eq!(details["retry_after_seconds"], wait);
    assert_eq!(details["resets_at"], rfc3339(now(&app) + wait));
    assert_eq!(retry_after, Some(wait.to_string()));
    let tenant = &owner.tenant_id;
    assert_eq!(
        counter(&app, tenant, &member.user_id, "jobs", Period::Day).await,
        3
    );
    assert_eq!(
        counter(&app, tenant, &member.user_id, "jobs", Period::Month).await,
        3
    );
    assert_eq!(
        counter(&app, tenant, "", "jobs", Period::Day).await,
        3,
        "nothing counted halfway"
    );
}

#[tokio::test]
async fn an_amount_larger_than_what_remains_is_refused_whole_and_what_fits_still_passes() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    limit_user(&app, &owner, &owner, "gpu_seconds", "day", 10).await;
    record_ok(&app, &owner, "gpu_seconds", 8).await;

    let refused = record(&app, &owner.access_token, "gpu_seconds", 3).await;
    let body = expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["used"], 8);
    assert_eq!(body["error"]["details"]["requested"], 3);

    let answer = record_ok(&app, &owner, "gpu_seconds", 2).await;
    assert_eq!(counter_in(&answer, "user", "day")["used"], 10);
    assert_eq!(counter_in(&answer, "user", "day")["remaining"], 0);
}

#[tokio::test]
async fn the_tenants_limit_binds_its_users_together() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let body = json!({ "metric": "jobs", "period": "day", "limit": 5 });
    expect_status(
        set_tenant_limit(&app, &admin, &owner.tenant_id, &body).await,
        StatusCode::OK,
    )
    .await;
    record_ok(&app, &owner, "jobs", 3).await;
    record_ok(&app, &member, "jobs", 2).await;

    let response = record(&app, &member.access_token, "jobs", 1).await;

    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["scope"], "tenant");
    assert_eq!(body["error"]["details"]["limit"], 5);
    assert_eq!(body["error"]["details"]["used"], 5);
    assert_eq!(
        counter(&app, &owner.tenant_id, &member.user_id, "jobs", Period::Day).await,
        2
    );
}

#[tokio::test]
async fn sixty_concurrent_events_against_a_limit_of_25_count_exactly_25() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    lift_rate_limit(&app, &admin, &owner).await;
    limit_user(&app, &owner, &member, "jobs", "day", 25).await;

    let responses = join_all((0..60).map(|_| record(&app, &member.access_token, "jobs", 1))).await;

    let statuses: Vec<StatusCode> = responses.iter().map(|response| response.status()).collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((created, refused), (25, 35), "{statuses:?}");
    for response in responses {
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            expect_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
        }
    }
    let tenant = &owner.tenant_id;
    assert_eq!(
        counter(&app, tenant, &member.user_id, "jobs", Period::Day).await,
        25
    );
    assert_eq!(
        counter(&app, tenant, &member.user_id, "jobs", Period::Month).await,
        25
    );
    assert_eq!(counter(&app, tenant, "", "jobs", Period::Day).await, 25);
}

#[tokio::test]
async fn the_next_day_resets_the_daily_counter_but_not_the_monthly_one() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    limit_user(&app, &owner, &owner, "jobs", "day", 2).await;
    record_ok(&app, &owner, "jobs", 2).await;
    expect_error(
        record(&app, &owner.access_token, "jobs", 1).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;

    advance_to_next_day(&app);
    let answer = record_ok(&app, &owner, "jobs", 1).await;

    assert_eq!(counter_in(&answer, "user", "day")["used"], 1);
    assert_eq!(counter_in(&answer, "user", "month")["used"], 3);
    assert_eq!(counter_in(&answer, "tenant", "month")["used"], 3);
    assert_eq!(
        counter(
            &app,
            &owner.tenant_id,
            &owner.user_id,
            "jobs",
            Period::Month
        )
        .await,
        3
    );
}

#[tokio::test]
async fn a_full_month_waits_for_the_next_month_and_says_so() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    limit_user(&app, &owner, &owner, "llm_tokens", "month", 1000).await;
    record_ok(&app, &owner, "llm_tokens", 1000).await;

    let response = record(&app, &owner.access_token, "llm_tokens", 1).await;
    let retry_after = header(&response, "retry-after");
    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    let wait = seconds_to_reset(&app, Period::Month);
    assert_eq!(body["error"]["details"]["period"], "month");
    assert_eq!(
        body["error"]["details"]["resets_at"],
        rfc3339(now(&app) + wait)
    );
    assert_eq!(retry_after, Some(wait.to_string()));

    advance_to_next_day(&app);
    expect_error(
        record(&app, &owner.access_token, "llm_tokens", 1).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;
    advance_to_next_month(&app);
    let answer = record_ok(&app, &owner, "llm_tokens", 1).await;
    assert_eq!(counter_in(&answer, "user", "month")["used"], 1);
}

#[tokio::test]
async fn a_viewer_may_not_record_usage() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vic", "viewer").await;

    let response = record(&app, &viewer.access_token, "jobs", 1).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(
        counter(&app, &owner.tenant_id, "", "jobs", Period::Day).await,
        0
    );
}

#[tokio::test]
async fn an_api_key_records_with_usage_write_and_is_refused_without_it() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let metering = app.create_api_key(&owner, &["usage:write"]).await;
    let reading = app.create_api_key(&owner, &["usage:read"]).await;

    let allowed = record(&app, metering["key"].as_str().unwrap(), "jobs", 1).await;
    let refused = record(&app, reading["key"].as_str().unwrap(), "jobs", 1).await;

    expect_status(allowed, StatusCode::CREATED).await;
    let body = expect_error(refused, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(body["error"]["details"]["required_scope"], "usage:write");
    assert_eq!(
        counter(&app, &owner.tenant_id, &owner.user_id, "jobs", Period::Day).await,
        1
    );
}

#[tokio::test]
async fn recording_without_credentials_answers_401() {
    let app = spawn_quota_app().await;

    let response = app
        .post_public("usage/events", &json!({ "metric": "jobs", "amount": 1 }))
        .await;

    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn bad_events_answer_4xx_and_count_nothing() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let cases = [
        (json!({ "metric": "minutes", "amount": 1 }), "metric"),
        (json!({ "metric": "jobs", "amount": 0 }), "amount"),
        (json!({ "metric": "jobs", "amount": -5 }), "amount"),
        (
            json!({ "metric": "jobs", "amount": 1_000_000_001 }),
            "amount",
        ),
    ];
    for (body, field) in cases {
        let response = app.post("usage/events", &owner.access_token, &body).await;
        let error = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
    for body in [
        json!({ "metric": "jobs", "amount": 1.5 }),
        json!({ "metric": "jobs" }),
        json!({ "metric": "jobs", "amount": 1, "model": "x" }),
    ] {
        let response = app.post("usage/events", &owner.access_token, &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let not_json = app
        .request(Method::POST, "usage/events")
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/json")
        .body("{metric")
        .send()
        .await
        .unwrap();
    expect_error(not_json, StatusCode::BAD_REQUEST, "invalid_json").await;
    let rows = app
        .query("SELECT COUNT(*) FROM usage_counters", vec![])
        .await;
    assert_eq!(rows[0][0], 0);
}

#[tokio::test]
async fn events_are_only_posted() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let response = app.get("usage/events", &owner.access_token).await;

    assert_eq!(header(&response, "allow").as_deref(), Some("POST"));
    expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

async fn record_with_key(
    app: &tollgate_tests::TestApp,
    token: &str,
    amount: i64,
    key: &str,
) -> reqwest::Response {
    app.request(Method::POST, "usage/events")
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "metric": "llm_tokens", "amount": amount }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_event_retried_with_its_idempotency_key_is_counted_once() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;

    let first = record_with_key(&app, &owner.access_token, 700, "call-1").await;
    let retry = record_with_key(&app, &owner.access_token, 700, "call-1").await;

    expect_status(first, StatusCode::CREATED).await;
    assert_eq!(expect_status(retry, StatusCode::OK).await["replayed"], true);
    let used = counter(
        &app,
        &owner.tenant_id,
        &owner.user_id,
        "llm_tokens",
        Period::Day,
    )
    .await;
    assert_eq!(used, 700);
}

#[tokio::test]
async fn a_key_reused_for_another_event_is_a_conflict() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    record_with_key(&app, &owner.access_token, 700, "call-1").await;

    let response = record_with_key(&app, &owner.access_token, 800, "call-1").await;

    expect_error(response, StatusCode::CONFLICT, "idempotency_conflict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_replayed_concurrently_is_counted_once() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    lift_rate_limit(&app, &admin, &owner).await;

    let responses =
        join_all((0..25).map(|_| record_with_key(&app, &owner.access_token, 40, "call-9"))).await;

    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    let replayed = responses
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!((created, replayed), (1, 24));
    let used = counter(&app, &owner.tenant_id, "", "llm_tokens", Period::Month).await;
    assert_eq!(used, 40);
}

#[tokio::test]
async fn another_members_idempotency_key_neither_conflicts_nor_skips_the_count() {
    let app = spawn_quota_app().await;
    let owner = app.register("acme").await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    expect_status(
        record_with_key(&app, &ada.access_token, 700, "call-1").await,
        StatusCode::CREATED,
    )
    .await;

    let same_event = record_with_key(&app, &max.access_token, 700, "call-1").await;
    let other_event = record_with_key(&app, &max.access_token, 800, "call-2").await;

    assert_eq!(
        expect_status(same_event, StatusCode::CREATED).await["amount"],
        700
    );
    expect_status(other_event, StatusCode::CREATED).await;
    let adas = counter(
        &app,
        &owner.tenant_id,
        &ada.user_id,
        "llm_tokens",
        Period::Day,
    )
    .await;
    let maxs = counter(
        &app,
        &owner.tenant_id,
        &max.user_id,
        "llm_tokens",
        Period::Day,
    )
    .await;
    assert_eq!((adas, maxs), (700, 1500));
}
