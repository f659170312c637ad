//! The money invariants when the database server is crowded: a sqld admits a bounded number
//! of connections, lets up to 128 requests wait for one (1 s at most) and turns the rest
//! away with 429, before running any of their statements. Here the Hrana test server admits
//! two at once, so that a load a test can make crowds it.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use tollgate_tests::{
    Setup, TestApp, TestUser,
    hrana_server::{HranaSettings, TurnedAway},
    spawn_app_with_setup,
};

use crate::support::{account_and_ledger, balances, funded_tenant, reserve};

/// Two connections, each new stream busy for `busy_for` first, as on a server other
/// clients share.
async fn crowded_app(
    connection_wait: Duration,
    busy_for: Duration,
    max_inflight: Option<usize>,
) -> TestApp {
    let setup = Setup {
        hrana: Some(HranaSettings {
            max_concurrent_connections: 2,
            connection_wait,
            busy_for,
            ..HranaSettings::default()
        }),
    };
    spawn_app_with_setup(setup, |config| {
        if let Some(max_inflight) = max_inflight {
            config.database_max_inflight = max_inflight;
        }
    })
    .await
}

/// 200 concurrent holds of 10 against a pool of 1,000: each answer is a hold (201), a
/// refusal for want of credits (402), or, if the database stayed crowded past every retry,
/// 503 with `Retry-After`; never a 500. The pool, the holds and the ledger agree.
async fn reserve_two_hundred_and_check_the_money(app: &TestApp, owner: &TestUser) -> Vec<u16> {
    let responses = join_all((0..200).map(|_| reserve(app, owner, 10, None))).await;
    let mut statuses = Vec::new();
    for response in &responses {
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                response.headers().contains_key("retry-after"),
                "a 503 without Retry-After"
            );
        }
        statuses.push(status.as_u16());
    }
    assert!(
        statuses
            .iter()
            .all(|status| [201, 402, 503].contains(status)),
        "{statuses:?}"
    );
    let held = statuses.iter().filter(|status| **status == 201).count() as i64;
    let refused = statuses.iter().filter(|status| **status == 402).count() as i64;
    assert!(held <= 100, "{held} holds of 10 out of 1,000");
    assert!(
        refused == 0 || held == 100,
        "refused while credits remained"
    );
    let pool = &balances(app, owner).await["pool"];
    assert_eq!(pool["reserved"], held * 10);
    assert_eq!(pool["remaining"], 1_000 - held * 10);
    let (account, ledger) = account_and_ledger(app, &format!("pool:{}", owner.tenant_id)).await;
    assert_eq!(account, ledger, "the ledger sums to the balance");
    let holds = app
        .query(
            "SELECT COUNT(*) FROM credit_reservations WHERE status = 'held'",
            vec![],
        )
        .await;
    assert_eq!(holds[0][0], held);
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_on_requests_in_flight_keeps_the_database_server_from_turning_any_away_unheard() {
    let app = crowded_app(Duration::from_secs(1), Duration::ZERO, None).await;
    let owner = funded_tenant(&app, "acme", 1_000).await;

    let statuses = reserve_two_hundred_and_check_the_money(&app, &owner).await;

    // 64 in flight at most: 2 at work and 62 waiting, never the 128 waiting at which sqld
    // turns a request away at once.
    assert_eq!(app.hrana().turned_away().too_many, 0, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_the_database_server_turns_away_unheard_are_sent_again_and_none_fails() {
    // Past the server's limits, as when other processes share it, and with a wait short
    // enough that requests also time out waiting: 200 requests at 5 ms each on two
    // connections take half a second, five times the wait.
    let app = crowded_app(
        Duration::from_millis(100),
        Duration::from_millis(5),
        Some(1_000),
    )
    .await;
    let owner = funded_tenant(&app, "acme", 1_000).await;

    let statuses = reserve_two_hundred_and_check_the_money(&app, &owner).await;

    let turned_away = app.hrana().turned_away();
    assert_ne!(
        turned_away,
        TurnedAway::default(),
        "the database server never turned a request away: {statuses:?}"
    );
}
