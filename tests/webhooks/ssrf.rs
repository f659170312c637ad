//! With `TOLLGATE_WEBHOOKS_ALLOW_PRIVATE` off (the production default), endpoints cannot
//! reach private, loopback or link-local addresses: literal ones are refused when saved,
//! and names that resolve to them are refused at send time, before any connection.
//!
//! Every target here is on loopback or refused before a packet leaves, so a broken guard
//! could only ever reach this machine.

use std::net::IpAddr;

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{TestApp, expect_error, expect_status, spawn_app_with};

use crate::support::{Receiver, Tenant, deliveries, grant};

async fn spawn_guarded_app() -> TestApp {
    spawn_app_with(|config| {
        config.access_token_ttl = 30 * 24 * 3600;
        config.webhooks_allow_private = false;
    })
    .await
}

async fn guarded_tenant(app: &TestApp) -> Tenant {
    crate::support::tenant(app, "acme").await
}

/// A name that resolves to loopback only: this machine's host name (which sandboxes map to
/// loopback in /etc/hosts), or another loopback alias the hosts file knows. It passes every
/// check on the URL's text and is caught only once resolved.
async fn loopback_host_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut candidates = vec![hostname.trim().to_owned()];
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    candidates.extend(
        hosts
            .lines()
            .filter(|line| line.starts_with("127.") || line.starts_with("::1"))
            .flat_map(|line| line.split_whitespace().skip(1).map(str::to_owned))
            .filter(|name| name != "localhost" && !name.ends_with(".localhost")),
    );
    for name in candidates.into_iter().filter(|name| !name.is_empty()) {
        let Ok(resolved) = tokio::net::lookup_host((name.as_str(), 0)).await else {
            continue;
        };
        let addresses: Vec<IpAddr> = resolved.map(|address| address.ip()).collect();
        if !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback) {
            return name;
        }
    }
    panic!(
        "this test needs a host name other than localhost that resolves to loopback only (/etc/hosts)"
    );
}

#[tokio::test]
async fn literal_private_loopback_and_link_local_urls_are_refused_when_saved() {
    let app = spawn_guarded_app().await;
    let acme = guarded_tenant(&app).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://localhost:9000/hook",
        "http://api.localhost/hook",
        "http://10.0.0.5/hook",
        "http://172.16.3.4/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:0:127.0.0.1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://127.1/hook",
        "http://2130706433/hook",
    ] {
        let response = app
            .post(
                "webhooks/endpoints",
                &acme.owner.access_token,
                &json!({ "url": url, "event_types": ["*"] }),
            )
            .await;
        let error = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], "url", "{url}");
    }
    let created = expect_status(
        app.post(
            "webhooks/endpoints",
            &acme.owner.access_token,
            &json!({ "url": "https://hooks.example.com/", "event_types": ["*"] }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let moved = app
        .patch(
            &format!("webhooks/endpoints/{}", created["id"].as_str().unwrap()),
            &acme.owner.access_token,
            &json!({ "url": "http://192.168.0.1/" }),
        )
        .await;
    expect_error(moved, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_at_send_time() {
    let app = spawn_guarded_app().await;
    let receiver = Receiver::start().await;
    let acme = guarded_tenant(&app).await;
    let host = loopback_host_name().await;
    let url = format!("http://{host}:{}/hook", receiver.port());
    let created = expect_status(
        app.post(
            "webhooks/endpoints",
            &acme.owner.access_token,
            &json!({ "url": url, "event_types": ["*"] }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    grant(&app, &acme).await;

    app.run_cron().await;
    let tested = expect_status(
        app.post(
            &format!("webhooks/endpoints/{id}/test"),
            &acme.owner.access_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    assert!(receiver.received().is_empty(), "the receiver was reached");
    assert_eq!(tested["attempts"][0]["error"], "refused_address");
    let log = deliveries(&app, &acme.owner, id).await;
    assert_eq!(log.len(), 2);
    for delivery in &log {
        assert_eq!(delivery["status"], "pending");
        assert_eq!(
            delivery["attempts"][0]["error"], "refused_address",
            "{delivery}"
        );
        assert!(
            delivery["attempts"][0]["error_message"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1"),
            "{delivery}"
        );
    }
}
