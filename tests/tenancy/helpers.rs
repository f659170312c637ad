//! Small helpers the tenancy tests share; the harness itself lives in `tollgate_tests`.

use reqwest::{Method, Response};
use serde_json::Value;
use tollgate::clock::{Clock, rfc3339};
use tollgate_tests::TestApp;

/// `GET` with an API key in the `X-API-Key` header instead of `Authorization`.
pub async fn get_with_x_api_key(app: &TestApp, path: &str, key: &str) -> Response {
    app.request(Method::GET, path)
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
}

/// `GET` without credentials.
pub async fn get_public(app: &TestApp, path: &str) -> Response {
    app.request(Method::GET, path).send().await.unwrap()
}

/// The first column of the first row of a counting query.
pub async fn count(app: &TestApp, sql: &str, params: Vec<libsql::Value>) -> i64 {
    app.query(sql, params).await[0][0].as_i64().unwrap()
}

/// The `id`s of a list answer's `data`.
pub fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("a list answer")
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The server's time `seconds` from now, as RFC 3339.
pub fn server_time_in(app: &TestApp, seconds: i64) -> String {
    rfc3339(app.clock.now() + seconds)
}

/// The API key secret of a `create_api_key` answer.
pub fn secret(key: &Value) -> String {
    key["key"].as_str().unwrap().to_owned()
}
