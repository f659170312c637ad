//! Secret rotation: during the overlap every message carries both signatures, so a
//! receiver holding either secret accepts it; after the overlap only the new one signs.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::expect_status;

use crate::support::{Receiver, create_endpoint, grant, spawn_webhook_app, tenant};

#[tokio::test]
async fn both_secrets_sign_during_the_overlap_and_only_the_new_one_after() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let acme = tenant(&app, "acme").await;
    // Only the event the test makes: crossing midnight brings a daily report too.
    let created = create_endpoint(
        &app,
        &acme.owner,
        &receiver.url("/hook"),
        &["credits.granted"],
    )
    .await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let rotated = expect_status(
        app.post(
            &format!(
                "webhooks/endpoints/{}/rotate-secret",
                created["id"].as_str().unwrap()
            ),
            &acme.owner.access_token,
            &json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();

    grant(&app, &acme).await;
    app.run_cron().await;
    app.advance_clock(23 * 3600);
    grant(&app, &acme).await;
    app.run_cron().await;
    app.advance_clock(3600 + 1);
    grant(&app, &acme).await;
    app.run_cron().await;

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for within in &received[..2] {
        assert_eq!(within.signatures().len(), 2, "{within:?}");
        assert!(within.signed_with(&old) && within.signed_with(&new));
    }
    let after = &received[2];
    assert_eq!(after.signatures().len(), 1, "{after:?}");
    assert!(after.signed_with(&new));
    assert!(!after.signed_with(&old), "the old secret still signs");
}
