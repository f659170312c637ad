//! `GET reports` and `GET reports/{id}`: who may read them, tenant isolation, the kind
//! filter, pagination, and clear refusals of bad queries.

use reqwest::StatusCode;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status};

use crate::support::{
    advance_to_next_day, advance_to_next_month, get_report, list, only_report, record,
    spawn_report_app,
};

/// A tenant with a daily report of yesterday; returns the owner and the report's id.
async fn reported_tenant(app: &TestApp, slug: &str) -> TestUser {
    let owner = app.register(slug).await;
    record(app, &owner, "jobs", 1).await;
    owner
}

#[tokio::test]
async fn owners_and_admins_read_reports_and_members_are_refused() {
    let app = spawn_report_app(None).await;
    let owner = reported_tenant(&app, "acme").await;
    let admin = app.add_user(&owner, "ada", "admin").await;
    let member = app.add_user(&owner, "max", "member").await;
    advance_to_next_day(&app);
    app.run_cron().await;
    let id = only_report(&app, &owner, "daily").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(list(&app, &admin, "").await.len(), 1);
    assert_eq!(get_report(&app, &admin, &id).await["id"], id.as_str());
    let response = app.get("reports", &member.access_token).await;
    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .get(&format!("reports/{id}"), &member.access_token)
        .await;
    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.client.get(app.url("reports")).send().await.unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn another_tenants_report_is_not_found_and_not_listed() {
    let app = spawn_report_app(None).await;
    let acme = reported_tenant(&app, "acme").await;
    let globex = reported_tenant(&app, "globex").await;
    advance_to_next_day(&app);
    app.run_cron().await;
    let acme_report = only_report(&app, &acme, "daily").await;
    let globex_report = only_report(&app, &globex, "daily").await;

    assert_ne!(acme_report["id"], globex_report["id"]);
    let response = app
        .get(
            &format!("reports/{}", globex_report["id"].as_str().unwrap()),
            &acme.access_token,
        )
        .await;
    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.get("reports/no-such-report", &acme.access_token).await;
    expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn reports_are_listed_latest_first_by_kind_and_page() {
    let app = spawn_report_app(None).await;
    let owner = reported_tenant(&app, "acme").await;
    advance_to_next_day(&app);
    app.run_cron().await;
    advance_to_next_month(&app);
    app.run_cron().await;

    let all = list(&app, &owner, "").await;
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(all.len(), 3, "two days and a month: {kinds:?}");
    let starts: Vec<&str> = all
        .iter()
        .map(|r| r["period_start"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(starts, sorted, "latest period first");
    assert_eq!(list(&app, &owner, "?kind=daily").await.len(), 2);
    assert_eq!(list(&app, &owner, "?kind=monthly").await.len(), 1);

    let response = app.get("reports?limit=2", &owner.access_token).await;
    let first = expect_status(response, StatusCode::OK).await;
    assert_eq!(first["has_more"], true);
    assert_eq!(first["next_offset"], 2);
    let response = app
        .get("reports?limit=2&offset=2", &owner.access_token)
        .await;
    let second = expect_status(response, StatusCode::OK).await;
    assert_eq!(second["has_more"], false);
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["id"], all[2]["id"]);
}

#[tokio::test]
async fn bad_queries_answer_400() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;

    for query in [
        "?kind=weekly",
        "?limit=0",
        "?limit=abc",
        "?since=2024-01-01",
    ] {
        let response = app
            .get(&format!("reports{query}"), &owner.access_token)
            .await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let response = app.delete("reports", &owner.access_token).await;
    expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn an_api_key_needs_the_reports_read_scope() {
    let app = spawn_report_app(None).await;
    let owner = reported_tenant(&app, "acme").await;
    let reader = app.create_api_key(&owner, &["reports:read"]).await;
    let other = app.create_api_key(&owner, &["usage:read"]).await;
    advance_to_next_day(&app);
    app.run_cron().await;

    let response = app.get("reports", reader["key"].as_str().unwrap()).await;
    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let response = app.get("reports", other["key"].as_str().unwrap()).await;
    expect_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
}
