//! Events written by the changes they report, in the same batch: API keys created and
//! revoked, users invited.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::expect_status;

use crate::support::{Receiver, create_endpoint, spawn_webhook_app};

#[tokio::test]
async fn key_creation_and_revocation_are_announced_once_each() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let owner = app.register("acme").await;
    create_endpoint(&app, &owner, &receiver.url("/keys"), &["apikey.*"]).await;

    let key = app.create_api_key(&owner, &["credits:read"]).await;
    let id = key["id"].as_str().unwrap();
    for _ in 0..2 {
        expect_status(
            app.delete(&format!("api-keys/{id}"), &owner.access_token)
                .await,
            StatusCode::NO_CONTENT,
        )
        .await;
    }
    app.run_cron().await;

    // One round sends both at once, so they may arrive in either order.
    let mut bodies: Vec<_> = receiver.received().iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|body| body["type"].as_str().unwrap().to_owned());
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["apikey.created", "apikey.revoked"]);
    assert_eq!(bodies[0]["data"]["id"], id);
    assert_eq!(bodies[0]["data"]["scopes"], json!(["credits:read"]));
    assert!(
        bodies[0]["data"].get("key").is_none(),
        "the secret stays out"
    );
    assert_eq!(bodies[1]["data"]["id"], id);
    assert_eq!(bodies[1]["data"]["prefix"], key["prefix"]);
}

#[tokio::test]
async fn an_invitation_is_announced_without_its_token() {
    let app = spawn_webhook_app().await;
    let receiver = Receiver::start().await;
    let owner = app.register("acme").await;
    create_endpoint(&app, &owner, &receiver.url("/users"), &["user.invited"]).await;

    expect_status(
        app.post(
            "invitations",
            &owner.access_token,
            &json!({ "email": "new@acme.test", "role": "member" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    app.run_cron().await;

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let body = received[0].json();
    assert_eq!(body["type"], "user.invited");
    assert_eq!(body["data"]["email"], "new@acme.test");
    assert_eq!(body["data"]["role"], "member");
    assert_eq!(body["data"]["invited_by"], owner.user_id);
    assert!(!received[0].body.contains("token"), "{}", received[0].body);
}
