//! Email delivery by cron: the outbox sent to a SendGrid-compatible provider, once per
//! mail, retried with backoff while the provider is down or failing, and left in the
//! outbox (visible to operators) when no provider is configured.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate::mail::delivery::RETRY_SCHEDULE;
use tollgate_tests::{TestApp, expect_error, expect_status};

use crate::{
    provider::{API_KEY, FROM, Provider},
    support::{forgot_password, mail_state, spawn_report_app},
};

const RESET_SUBJECT: &str = "Reset your password";

/// Past the wait after the `failures`-th failed attempt, jitter included.
fn past_retry(app: &TestApp, failures: usize) {
    let wait = RETRY_SCHEDULE[failures - 1];
    app.advance_clock(wait + wait / 10 + 1);
}

async fn admin_emails(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("admin/emails{query}"), token).await;
    expect_status(response, StatusCode::OK).await
}

#[tokio::test]
async fn a_password_reset_mail_is_sent_once_as_a_v3_mail_send_with_the_bearer_key() {
    let provider = Provider::start().await;
    let app = spawn_report_app(Some(&provider)).await;
    let owner = app.register("acme").await;
    forgot_password(&app, &owner).await;
    let token = app.mailed_token(&owner.email, "password_reset").await;

    let report = app.run_cron().await;
    app.run_cron().await;

    let sent = provider.sent_to(&owner.email, RESET_SUBJECT);
    assert_eq!(sent.len(), 1, "{:?}", provider.sent());
    let request = &sent[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v3/mail/send");
    assert_eq!(request.authorization, format!("Bearer {API_KEY}"));
    assert_eq!(request.content_type, "application/json");
    assert_eq!(
        request.body,
        json!({
            "personalizations": [{ "to": [{ "email": owner.email }] }],
            "from": { "email": FROM },
            "subject": RESET_SUBJECT,
            "content": [{ "type": "text/plain", "value": request.text() }],
        })
    );
    assert!(
        request
            .text()
            .contains(&format!("/reset-password?token={token}")),
        "{}",
        request.text()
    );
    assert!(report.emails.sent >= 1, "{report:?}");
    assert_eq!(
        mail_state(&app, &owner.email, "password_reset").await,
        (1, true, false, None)
    );
    let message_ids = app
        .query(
            "SELECT provider_message_id FROM email_outbox WHERE template = 'password_reset'",
            vec![],
        )
        .await;
    assert!(
        message_ids[0][0]
            .as_str()
            .is_some_and(|id| id.starts_with("msg-"))
    );
}

#[tokio::test]
async fn a_provider_that_is_down_then_up_receives_each_mail_exactly_once() {
    let provider = Provider::start().await;
    let app = spawn_report_app(Some(&provider)).await;
    let owner = app.register("acme").await;
    provider.down().await;
    forgot_password(&app, &owner).await;

    app.run_cron().await;
    let (attempts, sent, failed, error) = mail_state(&app, &owner.email, "password_reset").await;
    assert_eq!((attempts, sent, failed), (1, false, false));
    assert!(error.is_some_and(|error| error.contains("connect")));

    provider.up().await;
    app.run_cron().await;
    assert!(
        provider.sent_to(&owner.email, RESET_SUBJECT).is_empty(),
        "retried before its backoff ran out"
    );

    past_retry(&app, 1);
    app.run_cron().await;
    past_retry(&app, 2);
    app.run_cron().await;

    assert_eq!(provider.sent_to(&owner.email, RESET_SUBJECT).len(), 1);
    let (attempts, sent, _, error) = mail_state(&app, &owner.email, "password_reset").await;
    assert_eq!((attempts, sent, error), (2, true, None));
}

#[tokio::test]
async fn a_failing_provider_is_retried_on_the_schedule_until_it_accepts() {
    let provider = Provider::start().await;
    let app = spawn_report_app(Some(&provider)).await;
    let owner = app.register("acme").await;
    forgot_password(&app, &owner).await;
    provider.answer(503);

    app.run_cron().await;
    let (_, sent, _, error) = mail_state(&app, &owner.email, "password_reset").await;
    assert!(!sent);
    assert!(error.is_some_and(|error| error.starts_with("HTTP 503")));
    past_retry(&app, 1);
    app.run_cron().await;
    provider.answer(202);
    past_retry(&app, 2);
    app.run_cron().await;
    past_retry(&app, 3);
    app.run_cron().await;

    assert_eq!(provider.sent_to(&owner.email, RESET_SUBJECT).len(), 3);
    assert_eq!(
        mail_state(&app, &owner.email, "password_reset").await,
        (3, true, false, None)
    );
}

#[tokio::test]
async fn a_mail_the_provider_refuses_as_malformed_fails_at_once() {
    let provider = Provider::start().await;
    let app = spawn_report_app(Some(&provider)).await;
    let owner = app.register("acme").await;
    forgot_password(&app, &owner).await;
    provider.answer(400);

    app.run_cron().await;
    app.advance_clock(3 * 86_400);
    app.run_cron().await;

    assert_eq!(provider.sent_to(&owner.email, RESET_SUBJECT).len(), 1);
    let (attempts, sent, failed, error) = mail_state(&app, &owner.email, "password_reset").await;
    assert_eq!((attempts, sent, failed), (1, false, true));
    assert!(error.is_some_and(|error| error.contains("refused by the test provider")));
    let admin = app.platform_admin("ops@platform.test").await;
    let failed = admin_emails(&app, &admin, "?status=failed").await;
    assert_eq!(failed["data"][0]["template"], "password_reset");
    assert_eq!(failed["data"][0]["status"], "failed");
}

#[tokio::test]
async fn without_a_provider_mails_stay_in_the_outbox_where_operators_see_them() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;
    forgot_password(&app, &owner).await;

    let report = app.run_cron().await;
    app.advance_clock(2 * 86_400);
    app.run_cron().await;

    assert_eq!(report.emails.attempts, 0);
    assert_eq!(
        mail_state(&app, &owner.email, "password_reset").await,
        (0, false, false, None)
    );
    let admin = app.platform_admin("ops@platform.test").await;
    let pending = admin_emails(&app, &admin, "?status=pending").await;
    assert_eq!(pending["delivery_configured"], false);
    let mails = pending["data"].as_array().unwrap();
    let reset = mails
        .iter()
        .find(|mail| mail["template"] == "password_reset")
        .expect("the reset mail is listed");
    assert_eq!(reset["recipient"], owner.email.as_str());
    assert_eq!(reset["tenant_id"], owner.tenant_id.as_str());
    assert_eq!(reset["status"], "pending");
    assert_eq!(reset["attempts"], 0);
    assert!(reset.get("payload").is_none(), "tokens must not be listed");
    let sent = admin_emails(&app, &admin, "?status=sent").await;
    assert_eq!(sent["data"], json!([]));
}

#[tokio::test]
async fn the_outbox_listing_is_for_platform_admins_and_refuses_bad_filters() {
    let app = spawn_report_app(None).await;
    let owner = app.register("acme").await;
    let admin = app.platform_admin("ops@platform.test").await;

    let response = app.get("admin/emails", &owner.access_token).await;
    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get("admin/emails?status=lost", &admin).await;
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    let response = app.get("admin/emails?recipient=x", &admin).await;
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    let listed = admin_emails(
        &app,
        &admin,
        &format!("?tenant_id={}&limit=1", owner.tenant_id),
    )
    .await;
    assert_eq!(listed["data"][0]["template"], "verify_email");
}

#[tokio::test]
async fn a_branded_tenants_mail_goes_out_under_its_name_and_links_to_its_own_domain() {
    let provider = Provider::start().await;
    let app = spawn_report_app(Some(&provider)).await;
    let owner = app.register("acme").await;
    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({
                "custom_domain": "studio.forge.example",
                "branding": { "display_name": "Pixel Forge" },
            }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;
    forgot_password(&app, &owner).await;
    let token = app.mailed_token(&owner.email, "password_reset").await;

    app.run_cron().await;

    let sent = provider.sent_to(&owner.email, RESET_SUBJECT);
    assert_eq!(sent.len(), 1, "{:?}", provider.sent());
    assert_eq!(
        sent[0].body["from"],
        json!({ "email": FROM, "name": "Pixel Forge" })
    );
    // On the public URL's scheme and port: a proxy in front serves every host alike.
    let link = sent[0]
        .text()
        .lines()
        .find(|line| line.contains("/console/reset-password"))
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with("http://studio.forge.example:")
            && link.ends_with(&format!("/console/reset-password?token={token}")),
        "{link}"
    );
}
