//! A database server that turns requests away unheard (sqld shutting down answers 503, a
//! crowded one 429): the server sends them again a few times, then answers 503 with
//! `Retry-After`, never 500.

use reqwest::StatusCode;
use tollgate_tests::{expect_status, hrana_server::HranaSettings};

use crate::support::{app_over_hrana, expect_unavailable, health};

#[tokio::test]
async fn a_database_server_shutting_down_gets_a_few_tries_then_the_client_a_503() {
    let app = app_over_hrana(HranaSettings::default()).await;
    app.hrana().set_shutting_down(true);

    expect_unavailable(health(&app).await, "busy").await;
    assert_eq!(
        app.hrana().turned_away().shutting_down,
        6,
        "the first try and five more"
    );

    app.hrana().set_shutting_down(false);
    expect_status(health(&app).await, StatusCode::OK).await;
}
