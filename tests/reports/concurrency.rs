//! Two cron runs at once leave the state one run leaves: each report built once with one
//! event, each mail sent once.

use std::collections::HashMap;

use crate::{
    provider::Provider,
    support::{advance_to_next_month, forgot_password, record, scalar, spawn_report_app},
};

#[tokio::test]
async fn concurrent_cron_runs_build_each_report_once_and_send_each_mail_once() {
    let provider = Provider::start().await;
    let app = spawn_report_app(Some(&provider)).await;
    let mut owners = Vec::new();
    for slug in ["acme", "globex", "initech"] {
        let owner = app.register(slug).await;
        record(&app, &owner, "jobs", 1).await;
        forgot_password(&app, &owner).await;
        owners.push(owner);
    }
    advance_to_next_month(&app);

    let (first, second) = futures::join!(app.run_cron(), app.run_cron());

    assert_eq!(first.reports.daily + second.reports.daily, 3);
    assert_eq!(first.reports.monthly + second.reports.monthly, 3);
    let count = |sql: &'static str| scalar(&app, sql, vec![]);
    assert_eq!(count("SELECT COUNT(*) FROM usage_reports").await, 6);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM outbox_events WHERE type IN ('report.daily', 'report.monthly')"
        )
        .await,
        6
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM email_outbox WHERE template = 'usage_report'").await,
        3,
        "one monthly mail per owner"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM email_outbox WHERE sent_at IS NULL").await,
        0
    );
    let mails = count("SELECT COUNT(*) FROM email_outbox").await;
    let mut sent: HashMap<(String, String), usize> = HashMap::new();
    for request in provider.sent() {
        *sent
            .entry((request.recipient().to_owned(), request.subject().to_owned()))
            .or_default() += 1;
    }
    assert_eq!(sent.len() as i64, mails, "{sent:?}");
    assert!(sent.values().all(|times| *times == 1), "{sent:?}");
    for owner in &owners {
        assert!(sent.contains_key(&(owner.email.clone(), "Reset your password".to_owned())));
    }

    let again = app.run_cron().await;
    assert_eq!(again.reports.daily + again.reports.monthly, 0);
    assert_eq!(again.emails.attempts, 0);
    assert_eq!(provider.sent().len() as i64, mails);
}
