//! Delivery from the outbox by cron: signed, filtered by subscription, retried on the
//! schedule, exactly once per endpoint however often cron runs, and endpoints switched off
//! by 410 or by persistent failure.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;
use tollgate::{clock::Clock, webhooks::schedule::RETRY_SCHEDULE};
use tollgate_tests::expect_status;

use crate::support::{
    Receiver, Reply, create_endpoint, deliveries, endpoint, grant, retry_after_failure,
    spawn_webhook_app, tenant,
};

#[tokio::test]
async fn an_event_arrives_signed_in_the_standard_envelope() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let created = create_endpoint(
        &app,
        &acme.owner,
        &receiver.url("/hook"),
        &["credits.granted"],
    )
    .await;
    grant(&app, &acme).await;

    let report = app.run_cron().await;

    assert_eq!(report.webhooks.succeeded, 1, "{report:?}");
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert!(request.signed_with(created["secret"].as_str().unwrap()));
    assert_eq!(request.signatures().len(), 1);
    assert_eq!(request.timestamp, app.clock.now().to_string());
    let body = request.json();
    assert_eq!(body["type"], "credits.granted");
    assert!(body["timestamp"].is_string());
    assert_eq!(body["data"]["amount"], 1);
    let log = deliveries(&app, &acme.owner, created["id"].as_str().unwrap()).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["message_id"], request.webhook_id);
    assert_eq!(log[0]["status"], "succeeded");
    assert_eq!(log[0]["attempts"][0]["status_code"], 200);
    assert_eq!(log[0]["attempts"][0]["response_excerpt"], "ok");
}

#[tokio::test]
async fn endpoints_receive_only_what_they_subscribe_to_and_only_from_their_tenant() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let globex = tenant(&app, "globex").await;
    create_endpoint(&app, &acme.owner, &receiver.url("/all"), &["*"]).await;
    create_endpoint(&app, &acme.owner, &receiver.url("/credits"), &["credits.*"]).await;
    create_endpoint(
        &app,
        &acme.owner,
        &receiver.url("/jobs"),
        &["job.succeeded"],
    )
    .await;
    create_endpoint(&app, &globex.owner, &receiver.url("/globex"), &["*"]).await;

    grant(&app, &acme).await;
    app.run_cron().await;

    assert_eq!(receiver.received_at("/all").len(), 1);
    assert_eq!(receiver.received_at("/credits").len(), 1);
    assert!(receiver.received_at("/jobs").is_empty());
    assert!(
        receiver.received_at("/globex").is_empty(),
        "another tenant's event"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_every_event_exactly_once_per_endpoint() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    for path in ["/a", "/b"] {
        create_endpoint(&app, &acme.owner, &receiver.url(path), &["credits.granted"]).await;
    }
    receiver.down().await;
    for _ in 0..3 {
        grant(&app, &acme).await;
    }

    // Down through three attempts; cron also runs again between them, with nothing due.
    app.run_cron().await;
    app.run_cron().await;
    retry_after_failure(&app, 1).await;
    retry_after_failure(&app, 2).await;
    assert!(receiver.received().is_empty());
    receiver.up().await;
    retry_after_failure(&app, 3).await;
    app.run_cron().await;
    retry_after_failure(&app, 4).await;

    for path in ["/a", "/b"] {
        let got = receiver.received_at(path);
        let mut ids: Vec<&str> = got
            .iter()
            .map(|request| request.webhook_id.as_str())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(got.len(), 3, "{path}: {got:?}");
        assert_eq!(ids.len(), 3, "{path}: each event once");
    }
    // Both endpoints got the same three messages.
    let mut a: Vec<String> = receiver
        .received_at("/a")
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    let mut b: Vec<String> = receiver
        .received_at("/b")
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let attempts = app
        .query(
            "SELECT error, COUNT(*) FROM webhook_attempts GROUP BY error ORDER BY error",
            vec![],
        )
        .await;
    assert_eq!(
        attempts,
        vec![
            vec![json!(null), json!(6)],
            vec![json!("connect"), json!(18)]
        ]
    );
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let created = create_endpoint(&app, &acme.owner, &receiver.url("/old"), &["*"]).await;
    receiver.answer(Reply::status(301).with_header("location", receiver.url("/new")));
    grant(&app, &acme).await;

    app.run_cron().await;

    assert_eq!(receiver.received_at("/old").len(), 1);
    assert!(receiver.received_at("/new").is_empty(), "redirect followed");
    let log = deliveries(&app, &acme.owner, created["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["status"], "pending");
    assert_eq!(log[0]["last_status_code"], 301);
    assert!(log[0]["next_attempt_at"].is_string());

    receiver.answer(Reply::status(204));
    retry_after_failure(&app, 1).await;
    let log = deliveries(&app, &acme.owner, created["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["status"], "succeeded");
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn gone_disables_the_endpoint_at_once_and_tells_the_owner() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let created = create_endpoint(&app, &acme.owner, &receiver.url("/gone"), &["*"]).await;
    let id = created["id"].as_str().unwrap();
    receiver.answer(Reply::status(410));
    grant(&app, &acme).await;

    let report = app.run_cron().await;

    assert_eq!(report.webhooks.endpoints_disabled, 1);
    let disabled = endpoint(&app, &acme.owner, id).await;
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_reason"], "gone");
    let log = deliveries(&app, &acme.owner, id).await;
    assert_eq!(log[0]["status"], "failed");
    let mail = app.mailbox(&acme.owner.email).await;
    let notices: Vec<_> = mail
        .iter()
        .filter(|(template, _)| template == "webhook_endpoint_disabled")
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].1["endpoint_id"], id);
    assert_eq!(notices[0].1["reason"], "gone");

    // Nothing more is sent to it, even for new events and after the schedule's waits.
    grant(&app, &acme).await;
    app.advance_clock(RETRY_SCHEDULE[0] * 2);
    app.run_cron().await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_receiver_failing_through_the_whole_schedule_is_disabled_once_and_resumes_when_enabled() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    // Only the event the test makes: the days the schedule spans bring daily reports too.
    let created = create_endpoint(
        &app,
        &acme.owner,
        &receiver.url("/flaky"),
        &["credits.granted"],
    )
    .await;
    let id = created["id"].as_str().unwrap();
    receiver.answer(Reply::status(500).with_body("database on fire"));
    grant(&app, &acme).await;

    app.run_cron().await;
    for failures in 1..=RETRY_SCHEDULE.len() {
        assert_eq!(endpoint(&app, &acme.owner, id).await["enabled"], true);
        retry_after_failure(&app, failures).await;
    }

    assert_eq!(receiver.received().len(), RETRY_SCHEDULE.len() + 1);
    let disabled = endpoint(&app, &acme.owner, id).await;
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_reason"], "failing");
    let log = deliveries(&app, &acme.owner, id).await;
    assert_eq!(log[0]["status"], "failed");
    let attempts = log[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), RETRY_SCHEDULE.len() + 1);
    assert!(attempts.iter().all(|attempt| attempt["status_code"] == 500));
    assert_eq!(attempts[0]["response_excerpt"], "database on fire");
    let notices = app
        .mailbox(&acme.owner.email)
        .await
        .into_iter()
        .filter(|(template, _)| template == "webhook_endpoint_disabled")
        .count();
    assert_eq!(notices, 1);

    // While disabled it receives nothing new; enabled again, it does.
    receiver.answer(Reply::status(200));
    grant(&app, &acme).await;
    app.run_cron().await;
    assert_eq!(receiver.received().len(), RETRY_SCHEDULE.len() + 1);
    expect_status(
        app.patch(
            &format!("webhooks/endpoints/{id}"),
            &acme.owner.access_token,
            &json!({ "enabled": true }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    grant(&app, &acme).await;
    app.run_cron().await;
    assert_eq!(receiver.received().len(), RETRY_SCHEDULE.len() + 2);
}

#[tokio::test]
async fn a_disabled_endpoint_keeps_its_pending_deliveries_until_enabled_again() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let created = create_endpoint(&app, &acme.owner, &receiver.url("/paused"), &["*"]).await;
    let path = format!("webhooks/endpoints/{}", created["id"].as_str().unwrap());
    receiver.answer_once(Reply::status(503));
    grant(&app, &acme).await;
    app.run_cron().await;
    let (off, on) = (json!({ "enabled": false }), json!({ "enabled": true }));
    let toggle = |body| app.patch(&path, &acme.owner.access_token, body);
    expect_status(toggle(&off).await, StatusCode::OK).await;

    retry_after_failure(&app, 1).await;
    retry_after_failure(&app, 2).await;
    assert_eq!(receiver.received().len(), 1, "sent while disabled");
    expect_status(toggle(&on).await, StatusCode::OK).await;
    app.run_cron().await;

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].webhook_id, received[1].webhook_id);
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    create_endpoint(&app, &acme.owner, &receiver.url("/busy"), &["*"]).await;
    receiver.answer_once(Reply::status(429).with_header("retry-after", "600"));
    grant(&app, &acme).await;

    app.run_cron().await;
    retry_after_failure(&app, 1).await;
    assert_eq!(receiver.received().len(), 1, "retried before Retry-After");
    app.advance_clock(600);
    app.run_cron().await;

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].webhook_id, received[1].webhook_id);
    assert_ne!(received[0].timestamp, received[1].timestamp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crons_running_at_once_deliver_each_event_once_per_endpoint() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let paths = ["/one", "/two", "/three"];
    for path in paths {
        create_endpoint(&app, &acme.owner, &receiver.url(path), &["credits.granted"]).await;
    }
    for _ in 0..8 {
        grant(&app, &acme).await;
    }

    // Two runs on two threads, each with its own database connection and runtime, as two
    // runtimes triggering cron at once would.
    let reports: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(app.run_cron())
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });

    let mut per_endpoint: HashMap<(String, String), usize> = HashMap::new();
    for request in receiver.received() {
        *per_endpoint
            .entry((request.path.clone(), request.webhook_id.clone()))
            .or_default() += 1;
    }
    assert_eq!(per_endpoint.len(), 24, "3 endpoints × 8 events");
    assert!(
        per_endpoint.values().all(|count| *count == 1),
        "{per_endpoint:?}"
    );
    let created: u64 = reports.iter().map(|r| r.webhooks.deliveries_created).sum();
    let fanned: u64 = reports.iter().map(|r| r.webhooks.events_fanned_out).sum();
    let attempts: u64 = reports.iter().map(|r| r.webhooks.attempts).sum();
    assert_eq!((created, fanned, attempts), (24, 8, 24), "{reports:?}");
    let rows = app
        .query(
            "SELECT COUNT(*), SUM(attempts) FROM webhook_deliveries WHERE status = 'succeeded'",
            vec![],
        )
        .await;
    assert_eq!(rows[0], vec![json!(24), json!(24)]);
}

#[tokio::test]
async fn an_event_is_marked_delivered_once_fanned_out_even_without_endpoints() {
    let app = spawn_webhook_app().await;
    let acme = tenant(&app, "acme").await;
    grant(&app, &acme).await;

    let report = app.run_cron().await;

    assert_eq!(report.webhooks.events_fanned_out, 1);
    assert_eq!(report.webhooks.deliveries_created, 0);
    let pending = app
        .query(
            "SELECT COUNT(*) FROM outbox_events WHERE delivered_at IS NULL",
            vec![],
        )
        .await;
    assert_eq!(pending[0][0], 0);
    assert_eq!(app.run_cron().await.webhooks.events_fanned_out, 0);
}
