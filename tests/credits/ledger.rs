use reqwest::StatusCode;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{funded_tenant, release, reserved, settle};

#[tokio::test]
async fn the_ledger_records_every_movement_newest_first() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 30).await;
    settle(&app, &owner, hold["id"].as_str().unwrap(), 20).await;

    let ledger = expect_status(
        app.get("credits/ledger", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;

    let kinds: Vec<&str> = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["settle", "reserve"]);
    assert_eq!(
        ledger["data"][0]["amount"], 10,
        "settling 20 of 30 frees 10"
    );
    assert_eq!(ledger["data"][1]["amount"], -30);
    assert_eq!(ledger["data"][0]["reservation_id"], hold["id"]);
}

#[tokio::test]
async fn the_pools_ledger_sums_to_what_remains() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let first = reserved(&app, &owner, 30).await;
    let second = reserved(&app, &owner, 10).await;
    settle(&app, &owner, first["id"].as_str().unwrap(), 31).await;
    release(&app, &owner, second["id"].as_str().unwrap()).await;

    let ledger = expect_status(
        app.get("credits/ledger?account=pool", &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;

    let sum: i64 = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 100 - 31);
}

#[tokio::test]
async fn the_ledger_filters_by_kind_and_pages() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    for _ in 0..3 {
        reserved(&app, &owner, 1).await;
    }

    let page = expect_status(
        app.get("credits/ledger?kind=reserve&limit=2", &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    let grants = expect_status(
        app.get("credits/ledger?kind=grant", &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(
        grants["data"].as_array().unwrap().len(),
        0,
        "grants go to the pool, not the user"
    );
}

#[tokio::test]
async fn an_unknown_kind_is_a_bad_query() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = app
        .get("credits/ledger?kind=gift", &owner.access_token)
        .await;

    expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
}

#[tokio::test]
async fn only_admins_read_the_pools_ledger() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let ada = app.add_user(&owner, "ada", "member").await;

    let response = app
        .get("credits/ledger?account=pool", &ada.access_token)
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_member_cannot_read_another_users_ledger() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    reserved(&app, &ada, 5).await;

    let by_peer = app
        .get(
            &format!("users/{}/credits/ledger", ada.user_id),
            &max.access_token,
        )
        .await;
    let by_admin = app
        .get(
            &format!("users/{}/credits/ledger", ada.user_id),
            &owner.access_token,
        )
        .await;

    expect_error(by_peer, StatusCode::FORBIDDEN, "forbidden").await;
    let ledger = expect_status(by_admin, StatusCode::OK).await;
    assert_eq!(ledger["data"].as_array().unwrap().len(), 1);
}
