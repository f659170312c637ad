//! `GET /metrics` on the native server: off without `TOLLGATE_METRICS_TOKEN`, behind its
//! bearer token with one, and telling what the benches tell: requests by route and status
//! with their durations, the database's reads and writes, and, read at each scrape, the
//! queue depth per worker pool, the runners online and the jobs running.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{TestApp, spawn_app, spawn_app_with};

use crate::support::{Runner, default_worker, free_tenant, queued, sdxl};

const TOKEN: &str = "metrics-token-0123456789";

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}/metrics", app.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The value of the sample named `name` with exactly `labels` (`{…}` as written, or empty).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn without_a_token_configured_there_are_no_metrics() {
    let app = spawn_app().await;
    assert_eq!(
        scrape(&app, Some(TOKEN)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_scrape_with_the_token_tells_requests_database_time_and_the_queue() {
    let app = spawn_app_with(|config| config.metrics_token = Some(TOKEN.into())).await;
    assert_eq!(scrape(&app, None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(&app, Some("not-the-token")).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    for _ in 0..2 {
        queued(&app, &owner, json!({ "workflow": sdxl(512, 4) })).await;
    }
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let job = runner.claim(&app, 24_576).await.expect("a job to claim");
    assert!(job["job_id"].is_string());
    let missing = app
        .get("jobs/no-such-job-0123456789", &owner.access_token)
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let response = scrape(&app, Some(TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    let queue = format!("{{worker_id=\"{worker}\"}}");
    assert_eq!(
        sample(&text, "tollgate_queue_depth", &queue),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "tollgate_jobs_running", ""), Some(1.0));
    assert_eq!(sample(&text, "tollgate_runners_online", ""), Some(1.0));
    assert!(sample(&text, "tollgate_webhook_backlog", "").is_some());
    assert!(sample(&text, "tollgate_outbox_backlog", "").is_some());
    assert_eq!(
        sample(
            &text,
            "tollgate_http_requests_total",
            "{method=\"POST\",route=\"/api/v1/jobs\",status=\"201\"}"
        ),
        Some(2.0),
        "{text}"
    );
    // Ids are folded, so a route is one series whatever it names.
    assert_eq!(
        sample(
            &text,
            "tollgate_http_requests_total",
            "{method=\"GET\",route=\"/api/v1/jobs/{id}\",status=\"404\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_http_request_duration_seconds_count",
            "{method=\"POST\",route=\"/api/v1/jobs\"}"
        ),
        Some(2.0)
    );
    for kind in ["read", "write"] {
        let count = sample(
            &text,
            "tollgate_db_seconds_count",
            &format!("{{kind=\"{kind}\"}}"),
        );
        assert!(count.is_some_and(|count| count > 0.0), "{kind}: {text}");
    }
}
