//! Whose jobs a caller sees and acts on, by one rule for every verb: members and viewers
//! their own, owners and admins every job of the tenant. A job outside the rule answers
//! 404, to a read as to a cancel.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{job, queued, sdxl, tenant};

async fn funded_tenant(app: &TestApp) -> TestUser {
    tenant(app, "acme", "FREE", json!({ "max_users": 10 }), 10_000).await
}

async fn cancel(app: &TestApp, user: &TestUser, id: &str) -> reqwest::Response {
    app.post(&format!("jobs/{id}/cancel"), &user.access_token, &json!({}))
        .await
}

async fn listed_ids(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let page = expect_status(app.get("jobs", &user.access_token).await, StatusCode::OK).await;
    let mut ids: Vec<Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].clone())
        .collect();
    ids.sort_by_key(|id| id.to_string());
    ids
}

fn sorted(mut ids: Vec<Value>) -> Vec<Value> {
    ids.sort_by_key(|id| id.to_string());
    ids
}

#[tokio::test]
async fn another_members_job_answers_404_to_a_cancel_as_to_a_read() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let bob = app.add_user(&owner, "bob", "member").await;
    let adas = queued(&app, &ada, json!({ "workflow": sdxl(512, 20) })).await;
    let id = adas["id"].as_str().unwrap();

    let read = app.get(&format!("jobs/{id}"), &bob.access_token).await;
    let cancelled = cancel(&app, &bob, id).await;

    expect_error(read, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(cancelled, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(job(&app, &ada, id).await["status"], "queued");
    let audited = app
        .query(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'job.cancelled'",
            vec![],
        )
        .await;
    assert_eq!(audited[0][0], 0);
}

#[tokio::test]
async fn a_member_lists_its_own_jobs_and_an_admin_sees_and_cancels_every_one() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let bob = app.add_user(&owner, "bob", "member").await;
    let viewer = app.add_user(&owner, "vera", "viewer").await;
    let admin = app.add_user(&owner, "ian", "admin").await;
    let adas = queued(&app, &ada, json!({ "workflow": sdxl(512, 20) })).await["id"].clone();
    let bobs = queued(&app, &bob, json!({ "workflow": sdxl(512, 20) })).await["id"].clone();

    assert_eq!(listed_ids(&app, &ada).await, vec![adas.clone()]);
    assert_eq!(listed_ids(&app, &bob).await, vec![bobs.clone()]);
    assert_eq!(listed_ids(&app, &viewer).await, Vec::<Value>::new());
    let everyone = sorted(vec![adas.clone(), bobs.clone()]);
    assert_eq!(listed_ids(&app, &owner).await, everyone);
    assert_eq!(listed_ids(&app, &admin).await, everyone);

    let cancelled = cancel(&app, &admin, adas.as_str().unwrap()).await;

    assert_eq!(
        expect_status(cancelled, StatusCode::OK).await["status"],
        "cancelled"
    );
}

#[tokio::test]
async fn an_admins_read_only_key_sees_every_job_but_cannot_cancel() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let adas = queued(&app, &ada, json!({ "workflow": sdxl(512, 20) })).await;
    let id = adas["id"].as_str().unwrap();
    let key = app.create_api_key(&owner, &["jobs:read"]).await;
    let key = key["key"].as_str().unwrap();

    let read = app.get(&format!("jobs/{id}"), key).await;
    let cancelled = app
        .post(&format!("jobs/{id}/cancel"), key, &json!({}))
        .await;

    assert_eq!(expect_status(read, StatusCode::OK).await["id"], adas["id"]);
    expect_error(cancelled, StatusCode::FORBIDDEN, "insufficient_scope").await;
}
