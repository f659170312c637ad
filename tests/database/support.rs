//! The app over a Hrana test server, and the answer a database problem gets.

use reqwest::{Response, StatusCode};
use tollgate_tests::{
    Setup, TestApp, expect_error, hrana_server::HranaSettings, spawn_app_with_setup,
};

pub async fn app_over_hrana(settings: HranaSettings) -> TestApp {
    let setup = Setup {
        hrana: Some(settings),
    };
    spawn_app_with_setup(setup, |_| {}).await
}

/// 503 with `Retry-After` and the error `code`: never a bare 500.
pub async fn expect_unavailable(response: Response, code: &str) {
    assert!(
        response.headers().contains_key("retry-after"),
        "no Retry-After: {:?}",
        response.headers()
    );
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, code).await;
}

pub async fn health(app: &TestApp) -> Response {
    app.request(reqwest::Method::GET, "health")
        .send()
        .await
        .unwrap()
}
