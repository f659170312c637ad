use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{balances, funded_tenant, release, reserve, reserved, settle};

#[tokio::test]
async fn a_reserve_holds_credits_on_the_pool_and_the_user() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    let reservation = reserved(&app, &owner, 30).await;

    assert_eq!(reservation["status"], "held");
    assert_eq!(reservation["amount"], 30);
    let body = balances(&app, &owner).await;
    assert_eq!(body["pool"]["reserved"], 30);
    assert_eq!(body["pool"]["remaining"], 70);
    assert_eq!(body["user"]["reserved"], 30);
}

#[tokio::test]
async fn a_reserve_that_does_not_fit_answers_402_with_the_remaining_balance() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    reserved(&app, &owner, 70).await;

    let response = reserve(&app, &owner, 31, None).await;

    let body = expect_error(
        response,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(body["error"]["details"]["requested"], 31);
    assert_eq!(body["error"]["details"]["remaining"]["tenant"], 30);
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 70);
}

#[tokio::test]
async fn replaying_an_idempotency_key_returns_the_first_reservation_and_moves_nothing() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let first = reserve(&app, &owner, 30, Some("job-42")).await;
    let first = expect_status(first, StatusCode::CREATED).await;

    let replay = reserve(&app, &owner, 30, Some("job-42")).await;

    assert_eq!(
        expect_status(replay, StatusCode::OK).await["id"],
        first["id"]
    );
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 30);
}

#[tokio::test]
async fn a_key_reused_for_another_amount_is_a_conflict() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    reserve(&app, &owner, 30, Some("job-42")).await;

    let response = reserve(&app, &owner, 40, Some("job-42")).await;

    expect_error(response, StatusCode::CONFLICT, "idempotency_conflict").await;
}

#[tokio::test]
async fn a_non_positive_amount_is_refused() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    for amount in [0, -5] {
        let response = reserve(&app, &owner, amount, None).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn a_viewer_cannot_spend() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let vic = app.add_user(&owner, "vic", "viewer").await;

    let response = reserve(&app, &vic, 10, None).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn settling_charges_the_actual_cost_and_frees_the_rest() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;

    let settled = settle(&app, &owner, hold["id"].as_str().unwrap(), 25).await;

    let settled = expect_status(settled, StatusCode::OK).await;
    assert_eq!(settled["status"], "settled");
    assert_eq!(settled["charged"], 25);
    let pool = &balances(&app, &owner).await["pool"];
    assert_eq!(
        (
            pool["used"].clone(),
            pool["reserved"].clone(),
            pool["remaining"].clone()
        ),
        (json!(25), json!(0), json!(75))
    );
}

#[tokio::test]
async fn a_settle_over_the_estimate_is_charged_at_most_ten_percent_more() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;

    let settled = settle(&app, &owner, hold["id"].as_str().unwrap(), 40).await;

    let settled = expect_status(settled, StatusCode::OK).await;
    assert_eq!(settled["actual"], 40);
    assert_eq!(settled["charged"], 33);
    assert_eq!(balances(&app, &owner).await["pool"]["used"], 33);
}

#[tokio::test]
async fn an_overage_is_never_charged_beyond_what_remains() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 99).await;

    let settled = settle(&app, &owner, hold["id"].as_str().unwrap(), 120).await;

    assert_eq!(expect_status(settled, StatusCode::OK).await["charged"], 100);
    assert_eq!(balances(&app, &owner).await["pool"]["remaining"], 0);
}

#[tokio::test]
async fn settling_twice_is_a_replay_and_releasing_after_settling_a_conflict() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;
    let id = hold["id"].as_str().unwrap();
    settle(&app, &owner, id, 20).await;

    let again = settle(&app, &owner, id, 20).await;
    let other_amount = settle(&app, &owner, id, 21).await;
    let released = release(&app, &owner, id).await;

    assert_eq!(expect_status(again, StatusCode::OK).await["charged"], 20);
    expect_error(other_amount, StatusCode::CONFLICT, "reservation_finished").await;
    expect_error(released, StatusCode::CONFLICT, "reservation_finished").await;
    assert_eq!(balances(&app, &owner).await["pool"]["used"], 20);
}

#[tokio::test]
async fn releasing_returns_the_hold() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;

    let released = release(&app, &owner, hold["id"].as_str().unwrap()).await;

    assert_eq!(
        expect_status(released, StatusCode::OK).await["status"],
        "released"
    );
    let pool = &balances(&app, &owner).await["pool"];
    assert_eq!(
        (pool["used"].clone(), pool["reserved"].clone()),
        (json!(0), json!(0))
    );
}

#[tokio::test]
async fn a_negative_actual_is_refused() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;

    let response = settle(&app, &owner, hold["id"].as_str().unwrap(), -1).await;

    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn another_members_reservation_is_not_found_but_an_admin_may_finish_it() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    let hold = reserved(&app, &ada, 30).await;
    let id = hold["id"].as_str().unwrap();

    let by_peer = release(&app, &max, id).await;
    let by_admin = release(&app, &owner, id).await;

    expect_error(by_peer, StatusCode::NOT_FOUND, "not_found").await;
    expect_status(by_admin, StatusCode::OK).await;
}

#[tokio::test]
async fn another_tenants_reservation_is_not_found() {
    let app = spawn_app().await;
    let acme = funded_tenant(&app, "acme", 100).await;
    let globex = funded_tenant(&app, "globex", 100).await;
    let hold = reserved(&app, &acme, 30).await;
    let id = hold["id"].as_str().unwrap();

    let read = app
        .get(&format!("credits/reservations/{id}"), &globex.access_token)
        .await;
    let settled = settle(&app, &globex, id, 1).await;

    expect_error(read, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(settled, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(balances(&app, &acme).await["pool"]["reserved"], 30);
}

#[tokio::test]
async fn an_api_key_needs_the_credits_write_scope_to_spend() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let reader = app.create_api_key(&owner, &["credits:read"]).await;
    let spender = app.create_api_key(&owner, &["credits:write"]).await;
    let body = json!({ "amount": 5 });

    let refused = app
        .post(
            "credits/reservations",
            reader["key"].as_str().unwrap(),
            &body,
        )
        .await;
    let allowed = app
        .post(
            "credits/reservations",
            spender["key"].as_str().unwrap(),
            &body,
        )
        .await;

    expect_error(refused, StatusCode::FORBIDDEN, "insufficient_scope").await;
    expect_status(allowed, StatusCode::CREATED).await;
}

#[tokio::test]
async fn an_admin_refunds_a_settled_reservation_once() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;
    let id = hold["id"].as_str().unwrap();
    settle(&app, &owner, id, 25).await;
    let path = format!("credits/reservations/{id}/refund");

    let refunded = app.post(&path, &owner.access_token, &json!({})).await;
    let again = app.post(&path, &owner.access_token, &json!({})).await;

    assert!(!expect_status(refunded, StatusCode::OK).await["refunded_at"].is_null());
    expect_status(again, StatusCode::OK).await;
    let pool = &balances(&app, &owner).await["pool"];
    assert_eq!(
        (pool["used"].clone(), pool["remaining"].clone()),
        (json!(0), json!(100))
    );
    let (account, ledger) =
        crate::support::account_and_ledger(&app, &format!("pool:{}", owner.tenant_id)).await;
    assert_eq!(account, ledger);
}

#[tokio::test]
async fn a_held_reservation_cannot_be_refunded_and_a_member_cannot_refund() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let hold = reserved(&app, &ada, 30).await;
    let path = format!(
        "credits/reservations/{}/refund",
        hold["id"].as_str().unwrap()
    );

    let by_member = app.post(&path, &ada.access_token, &json!({})).await;
    let while_held = app.post(&path, &owner.access_token, &json!({})).await;

    expect_error(by_member, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(while_held, StatusCode::CONFLICT, "reservation_finished").await;
}

/// A member's job, submitted through `POST jobs`: its hold is the job's.
async fn job_of(
    app: &tollgate_tests::TestApp,
    user: &tollgate_tests::TestUser,
) -> serde_json::Value {
    let response = app
        .post(
            "jobs",
            &user.access_token,
            &json!({ "workflow": tollgate_tests::sdxl(512, 20) }),
        )
        .await;
    expect_status(response, StatusCode::CREATED).await
}

#[tokio::test]
async fn a_jobs_hold_cannot_be_released_or_settled_through_the_reservation_endpoints() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let job = job_of(&app, &ada).await;
    let hold = job["reservation_id"].as_str().unwrap();

    for (who, response) in [
        ("member", release(&app, &ada, hold).await),
        ("member", settle(&app, &ada, hold, 0).await),
        ("owner", release(&app, &owner, hold).await),
        ("owner", settle(&app, &owner, hold, 0).await),
    ] {
        let body = expect_error(response, StatusCode::CONFLICT, "reservation_owned_by_work").await;
        assert_eq!(body["error"]["details"]["owner"], "job", "{who}");
        assert_eq!(body["error"]["details"]["job_id"], job["id"], "{who}");
    }

    let reservation = expect_status(
        app.get(&format!("credits/reservations/{hold}"), &ada.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(reservation["status"], "held");
    assert_eq!(reservation["owner"], "job");
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 2);
}

#[tokio::test]
async fn a_callers_own_reservation_still_settles_and_releases() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    let first = reserved(&app, &owner, 10).await;
    let second = reserved(&app, &owner, 10).await;

    assert_eq!(first["owner"], "caller");
    let settled = settle(&app, &owner, first["id"].as_str().unwrap(), 4).await;
    assert_eq!(expect_status(settled, StatusCode::OK).await["charged"], 4);
    let released = release(&app, &owner, second["id"].as_str().unwrap()).await;
    assert_eq!(
        expect_status(released, StatusCode::OK).await["status"],
        "released"
    );
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_member_who_sent_them() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    let adas = expect_status(
        reserve(&app, &ada, 30, Some("render-1")).await,
        StatusCode::CREATED,
    )
    .await;

    // The same key from another member is that member's own first request: no conflict,
    // no 402 about ada's hold, and nothing of ada's in the answer.
    let maxs = reserve(&app, &max, 40, Some("render-1")).await;

    let maxs = expect_status(maxs, StatusCode::CREATED).await;
    assert_ne!(maxs["id"], adas["id"]);
    assert_eq!(maxs["user_id"], max.user_id.as_str());
    assert_eq!(maxs["idempotency_key"], "render-1");
    assert_eq!(adas["idempotency_key"], "render-1");
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 70);
    // Each member's replay still answers that member's own reservation.
    let replay = reserve(&app, &ada, 30, Some("render-1")).await;
    assert_eq!(
        expect_status(replay, StatusCode::OK).await["id"],
        adas["id"]
    );
}

#[tokio::test]
async fn a_job_idempotency_key_belongs_to_the_member_who_sent_it() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    let submit = |user: &tollgate_tests::TestUser| {
        app.request(reqwest::Method::POST, "jobs")
            .bearer_auth(&user.access_token)
            .header("Idempotency-Key", "nightly")
            .json(&json!({ "workflow": tollgate_tests::sdxl(512, 20) }))
            .send()
    };

    let adas = expect_status(submit(&ada).await.unwrap(), StatusCode::CREATED).await;
    let maxs = expect_status(submit(&max).await.unwrap(), StatusCode::CREATED).await;

    assert_ne!(adas["id"], maxs["id"]);
    assert_eq!(maxs["user_id"], max.user_id.as_str());
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 4);
}
