//! Reports built by cron once their period has ended: what they count, when they appear,
//! the outbox event each one writes, and the monthly mail to the owners.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_status};

use crate::support::{
    advance_to_next_day, advance_to_next_month, get_report, list, only_report, record, scalar,
    spawn_report_app, this_month, today,
};

/// Reserves `estimate` credits for `user` and settles `actual` of them.
async fn spend(app: &TestApp, user: &TestUser, estimate: i64, actual: i64) {
    let response = app
        .post(
            "credits/reservations",
            &user.access_token,
            &json!({ "amount": estimate, "reason": "render" }),
        )
        .await;
    let reservation = expect_status(response, StatusCode::CREATED).await;
    let response = app
        .post(
            &format!(
                "credits/reservations/{}/settle",
                reservation["id"].as_str().unwrap()
            ),
            &user.access_token,
            &json!({ "actual": actual }),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
}

/// The payloads of the tenant's outbox events of `event_type`.
async fn events(app: &TestApp, tenant: &TestUser, event_type: &str) -> Vec<Value> {
    app.query(
        "SELECT payload FROM outbox_events WHERE tenant_id = ? AND type = ? ORDER BY created_at, rowid",
        vec![tenant.tenant_id.as_str().into(), event_type.into()],
    )
    .await
    .into_iter()
    .map(|row| serde_json::from_str(row[0].as_str().unwrap()).unwrap())
    .collect()
}

#[tokio::test]
async fn a_days_usage_appears_in_its_daily_report_once_the_day_has_ended() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;
    let day = today(&app);
    record(&app, &owner, "jobs", 2).await;
    record(&app, &member, "jobs", 1).await;
    record(&app, &member, "llm_tokens", 500).await;

    let same_day = app.run_cron().await;
    assert_eq!(same_day.reports.daily, 0, "the day has not ended");
    assert!(list(&app, &owner, "").await.is_empty());

    advance_to_next_day(&app);
    record(&app, &owner, "gpu_seconds", 60).await;
    let next_day = app.run_cron().await;

    assert_eq!(next_day.reports.daily, 1);
    let listed = only_report(&app, &owner, "daily").await;
    assert_eq!(listed["period"], day.as_str());
    assert_eq!(listed["period_start"], format!("{day}T00:00:00Z"));
    assert_eq!(
        listed["usage"],
        json!({ "jobs": 3, "gpu_seconds": 0, "llm_tokens": 500 }),
        "the next day's usage belongs to the next report"
    );
    assert!(listed.get("users").is_none(), "lists carry totals only");
    let report = get_report(&app, &owner, listed["id"].as_str().unwrap()).await;
    let users = report["users"].as_array().unwrap();
    let line = |user: &TestUser| {
        users
            .iter()
            .find(|line| line["user_id"] == user.user_id.as_str())
            .unwrap_or_else(|| panic!("no line for {}", user.email))
            .clone()
    };
    assert_eq!(users.len(), 2);
    assert_eq!(line(&owner)["email"], owner.email.as_str());
    assert_eq!(
        line(&owner)["usage"],
        json!({ "jobs": 2, "gpu_seconds": 0, "llm_tokens": 0 })
    );
    assert_eq!(
        line(&member)["usage"],
        json!({ "jobs": 1, "gpu_seconds": 0, "llm_tokens": 500 })
    );
    assert!(list(&app, &owner, "?kind=monthly").await.is_empty());
}

#[tokio::test]
async fn the_monthly_report_sums_the_month_once_it_has_ended_and_is_mailed_to_the_owners() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;
    let month = this_month(&app);
    record(&app, &owner, "jobs", 2).await;
    advance_to_next_day(&app);
    record(&app, &owner, "jobs", 3).await;
    app.run_cron().await;
    assert!(list(&app, &owner, "?kind=monthly").await.is_empty());

    advance_to_next_month(&app);
    let report = app.run_cron().await;

    assert_eq!(report.reports.monthly, 1);
    let monthly = only_report(&app, &owner, "monthly").await;
    assert_eq!(monthly["period"], month.as_str());
    assert_eq!(monthly["period_start"], format!("{month}-01T00:00:00Z"));
    assert_eq!(monthly["usage"]["jobs"], 5);
    let mails: Vec<Value> = app
        .mailbox(&owner.email)
        .await
        .into_iter()
        .filter(|(template, _)| template == "usage_report")
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["report_id"], monthly["id"]);
    assert_eq!(mails[0]["period"], month.as_str());
    assert_eq!(mails[0]["usage"]["jobs"], 5);
}

#[tokio::test]
async fn each_report_writes_its_event_to_the_outbox() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;
    record(&app, &owner, "llm_tokens", 42).await;

    advance_to_next_month(&app);
    app.run_cron().await;

    let daily = events(&app, &owner, "report.daily").await;
    let monthly = events(&app, &owner, "report.monthly").await;
    assert_eq!((daily.len(), monthly.len()), (1, 1));
    let report = only_report(&app, &owner, "monthly").await;
    assert_eq!(monthly[0]["report_id"], report["id"]);
    assert_eq!(monthly[0]["kind"], "monthly");
    assert_eq!(monthly[0]["period"], report["period"]);
    assert_eq!(monthly[0]["usage"]["llm_tokens"], 42);
    assert_eq!(monthly[0]["credits"], report["credits"]);
    assert_eq!(daily[0]["kind"], "daily");
    assert_eq!(
        daily[0]["report_id"],
        only_report(&app, &owner, "daily").await["id"]
    );
}

#[tokio::test]
async fn credits_are_reported_as_they_stood_when_the_period_ended() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@platform.test").await;
    app.grant_pool_credits(&admin, &owner, 100).await;
    spend(&app, &owner, 40, 30).await;

    advance_to_next_day(&app);
    app.grant_pool_credits(&admin, &owner, 50).await;
    spend(&app, &owner, 5, 5).await;
    app.run_cron().await;

    let daily = only_report(&app, &owner, "daily").await;
    assert_eq!(
        daily["credits"],
        json!({ "added": 100, "removed": 0, "used": 30, "balance_at_end": 70 })
    );
    let report = get_report(&app, &owner, daily["id"].as_str().unwrap()).await;
    assert_eq!(report["users"][0]["user_id"], owner.user_id.as_str());
    assert_eq!(report["users"][0]["credits_used"], 30);
}

#[tokio::test]
async fn tenants_are_reported_only_for_periods_they_existed_in() {
    let app = spawn_report_app(None).await;
    let acme = app.register("acme").await;
    advance_to_next_day(&app);
    let globex = app.register("globex").await;

    app.run_cron().await;

    assert_eq!(list(&app, &acme, "").await.len(), 1);
    assert!(list(&app, &globex, "").await.is_empty());
    let quiet = only_report(&app, &acme, "daily").await;
    assert_eq!(
        quiet["usage"],
        json!({ "jobs": 0, "gpu_seconds": 0, "llm_tokens": 0 }),
        "a day without usage is reported as such"
    );
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM usage_reports", vec![]).await,
        1
    );
}
