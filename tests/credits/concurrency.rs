//! The money invariants under concurrency, on the real database through the real server.

use futures::future::join_all;
use reqwest::StatusCode;
use tollgate_tests::{expect_status, spawn_app};

use crate::support::{
    account_and_ledger, balances, funded_tenant, release, reserve, reserved, settle,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_reserves_of_ten_against_a_thousand_leave_exactly_one_hundred() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 1_000).await;

    let statuses: Vec<StatusCode> = join_all((0..200).map(|_| reserve(&app, &owner, 10, None)))
        .await
        .into_iter()
        .map(|response| response.status())
        .collect();

    let succeeded = statuses
        .iter()
        .filter(|status| **status == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|status| **status == StatusCode::PAYMENT_REQUIRED)
        .count();
    assert_eq!((succeeded, refused), (100, 100), "{statuses:?}");
    let pool = &balances(&app, &owner).await["pool"];
    assert_eq!(pool["remaining"], 0);
    assert_eq!(pool["reserved"], 1_000);
    let (account, ledger) = account_and_ledger(&app, &format!("pool:{}", owner.tenant_id)).await;
    assert_eq!(account, ledger, "the ledger sums to the balance");
    let holds = app
        .query(
            "SELECT COUNT(*) FROM credit_reservations WHERE status = 'held'",
            vec![],
        )
        .await;
    assert_eq!(holds[0][0], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settles_and_releases_of_one_reservation_finish_it_once() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;
    let hold = reserved(&app, &owner, 40).await;
    let id = hold["id"].as_str().unwrap();

    let settles = (0..20).map(|_| settle(&app, &owner, id, 30));
    let releases = (0..20).map(|_| release(&app, &owner, id));
    let (settled, released) = futures::join!(join_all(settles), join_all(releases));

    let ok = settled
        .iter()
        .chain(&released)
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    let conflicts = settled
        .iter()
        .chain(&released)
        .filter(|r| r.status() == StatusCode::CONFLICT)
        .count();
    assert_eq!(ok + conflicts, 40);
    let pool = &balances(&app, &owner).await["pool"];
    assert_eq!(pool["reserved"], 0, "never negative, never left held");
    let used = pool["used"].as_i64().unwrap();
    assert!(used == 0 || used == 30, "charged once at most: {used}");
    let (account, ledger) = account_and_ledger(&app, &format!("pool:{}", owner.tenant_id)).await;
    assert_eq!(account, ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_replayed_concurrently_reserves_once() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 100).await;

    let responses = join_all((0..30).map(|_| reserve(&app, &owner, 25, Some("job-7")))).await;

    let mut ids = Vec::new();
    for response in responses {
        assert!(response.status().is_success(), "{}", response.status());
        ids.push(response.json::<serde_json::Value>().await.unwrap()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every replay answers the same reservation");
    assert_eq!(balances(&app, &owner).await["pool"]["reserved"], 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spend_across_users_never_passes_the_pool_or_an_allowance() {
    let app = spawn_app().await;
    let owner = funded_tenant(&app, "acme", 300).await;
    let ada = app.add_user(&owner, "ada", "member").await;
    let max = app.add_user(&owner, "max", "member").await;
    let allowance = serde_json::json!({ "allowance": 100 });
    let response = app
        .put(
            &format!("users/{}/credits/allowance", ada.user_id),
            &owner.access_token,
            &allowance,
        )
        .await;
    expect_status(response, StatusCode::OK).await;

    // Ada asks for twice her allowance and max for the rest of the pool, so whatever order
    // the requests land in, only the allowance can refuse ada and the pool ends exactly spent.
    let by_ada = (0..40).map(|_| reserve(&app, &ada, 5, None));
    let by_max = (0..40).map(|_| reserve(&app, &max, 5, None));
    let (ada_results, max_results) = futures::join!(join_all(by_ada), join_all(by_max));

    let tally = |results: &[reqwest::Response]| {
        results
            .iter()
            .filter(|r| r.status() == StatusCode::CREATED)
            .count() as i64
    };
    let statuses = |results: &[reqwest::Response]| {
        results
            .iter()
            .map(|r| r.status().as_u16())
            .collect::<Vec<_>>()
    };
    let (ada_won, max_won) = (tally(&ada_results), tally(&max_results));
    assert_eq!(
        ada_won * 5,
        100,
        "ada's allowance is exactly used up: {:?}",
        statuses(&ada_results)
    );
    assert_eq!(
        max_won * 5,
        200,
        "max takes the rest of the pool: {:?}",
        statuses(&max_results)
    );
    assert_eq!(balances(&app, &owner).await["pool"]["remaining"], 0);
    for user in [&ada, &max] {
        let (account, ledger) = account_and_ledger(&app, &format!("user:{}", user.user_id)).await;
        assert_eq!(account[1..], ledger[1..]);
    }
}
