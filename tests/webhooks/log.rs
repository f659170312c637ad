//! The delivery log, manual redelivery and test messages.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status};

use crate::support::{
    Receiver, Reply, create_endpoint, deliveries, grant, spawn_webhook_app, tenant,
};

#[tokio::test]
async fn a_test_message_is_sent_now_to_that_endpoint_only() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let target =
        create_endpoint(&app, &acme.owner, &receiver.url("/target"), &["job.failed"]).await;
    create_endpoint(&app, &acme.owner, &receiver.url("/other"), &["*"]).await;
    receiver.answer(Reply::status(202).with_body("thanks"));

    let response = app
        .post(
            &format!("webhooks/endpoints/{}/test", target["id"].as_str().unwrap()),
            &acme.owner.access_token,
            &json!({}),
        )
        .await;
    let delivery = expect_status(response, StatusCode::OK).await;

    assert_eq!(delivery["event_type"], "webhook.test");
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["attempts"][0]["status_code"], 202);
    assert_eq!(delivery["attempts"][0]["response_excerpt"], "thanks");
    assert_eq!(delivery["attempts"][0]["source"], "manual");
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/target");
    assert_eq!(received[0].webhook_id, delivery["message_id"]);
    assert!(received[0].signed_with(target["secret"].as_str().unwrap()));
    assert_eq!(received[0].json()["type"], "webhook.test");
    // Cron does not send it again.
    app.run_cron().await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_failed_test_message_reports_why_and_joins_the_retry_schedule() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let target = create_endpoint(&app, &acme.owner, &receiver.url("/down"), &["*"]).await;
    receiver.down().await;

    let delivery = expect_status(
        app.post(
            &format!("webhooks/endpoints/{}/test", target["id"].as_str().unwrap()),
            &acme.owner.access_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["attempts"][0]["error"], "connect");
    assert!(delivery["next_attempt_at"].is_string());
}

#[tokio::test]
async fn redelivery_resends_the_same_message_now_and_is_logged() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let created = create_endpoint(&app, &acme.owner, &receiver.url("/hook"), &["*"]).await;
    let endpoint_id = created["id"].as_str().unwrap();
    grant(&app, &acme).await;
    app.run_cron().await;
    let delivery_id = deliveries(&app, &acme.owner, endpoint_id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.advance_clock(60);

    let redelivered = expect_status(
        app.post(
            &format!("webhooks/deliveries/{delivery_id}/redeliver"),
            &acme.owner.access_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].webhook_id, received[1].webhook_id);
    assert_eq!(received[0].body, received[1].body);
    assert_ne!(received[0].timestamp, received[1].timestamp);
    assert!(received[1].signed_with(created["secret"].as_str().unwrap()));
    assert_eq!(redelivered["attempt_count"], 2);
    let sources: Vec<&str> = redelivered["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["cron", "manual"]);
    let read = expect_status(
        app.get(
            &format!("webhooks/deliveries/{delivery_id}"),
            &acme.owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn sends_to_a_disabled_endpoint_are_refused_and_other_tenants_get_404() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let globex = app.register("globex").await;
    let created = create_endpoint(&app, &acme.owner, &receiver.url("/hook"), &["*"]).await;
    let endpoint_id = created["id"].as_str().unwrap();
    grant(&app, &acme).await;
    app.run_cron().await;
    let delivery_id = deliveries(&app, &acme.owner, endpoint_id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for path in [
        format!("webhooks/deliveries/{delivery_id}/redeliver"),
        format!("webhooks/endpoints/{endpoint_id}/test"),
    ] {
        expect_error(
            app.post(&path, &globex.access_token, &json!({})).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    expect_error(
        app.get(
            &format!("webhooks/deliveries/{delivery_id}"),
            &globex.access_token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_status(
        app.patch(
            &format!("webhooks/endpoints/{endpoint_id}"),
            &acme.owner.access_token,
            &json!({ "enabled": false }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    for path in [
        format!("webhooks/deliveries/{delivery_id}/redeliver"),
        format!("webhooks/endpoints/{endpoint_id}/test"),
    ] {
        expect_error(
            app.post(&path, &acme.owner.access_token, &json!({})).await,
            StatusCode::CONFLICT,
            "endpoint_disabled",
        )
        .await;
    }
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn the_log_filters_by_status_and_pages() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    let created = create_endpoint(&app, &acme.owner, &receiver.url("/hook"), &["*"]).await;
    let endpoint_id = created["id"].as_str().unwrap();
    receiver.answer_once(Reply::status(500));
    grant(&app, &acme).await;
    grant(&app, &acme).await;
    app.run_cron().await;

    let path = |query: &str| format!("webhooks/endpoints/{endpoint_id}/deliveries?{query}");
    let failing = expect_status(
        app.get(&path("status=pending"), &acme.owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(failing["data"].as_array().unwrap().len(), 1);
    assert_eq!(failing["data"][0]["attempts"][0]["status_code"], 500);
    let first_page = expect_status(
        app.get(&path("limit=1"), &acme.owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(first_page["data"].as_array().unwrap().len(), 1);
    assert_eq!(first_page["has_more"], true);
    expect_error(
        app.get(&path("status=lost"), &acme.owner.access_token)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}
