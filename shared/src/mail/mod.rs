//! The email outbox: mail is written in the same batch as the change it reports, and a
//! delivery job sends it later, so no mail is lost and none is sent for a change that
//! rolled back.
//!
//! - this file: queueing (`enqueue`, `enqueue_to_owners`) and the template names;
//! - `templates`: the subject and plain-text body of each template, from its payload;
//! - `provider`: the HTTP email provider (a SendGrid-compatible v3 Mail Send API);
//! - `delivery`: cron's sender: claims with leases, retries with backoff, retention;
//! - `http`: the operator's view of the outbox (`GET admin/emails`);
//! - `links`: a mail's link moved to the tenant's own domain.
//!
//! Without a provider configured nothing is sent: mails wait in the outbox, listed to
//! platform admins, and go out once one is configured.

pub mod delivery;
pub mod http;
pub mod links;
pub mod provider;
pub mod templates;

pub use delivery::MailReport;
pub use provider::EmailProvider;

use serde_json::Value as Json;

use crate::{db::Statement, ids::new_id, sql};

pub const TEMPLATE_VERIFY_EMAIL: &str = "verify_email";
pub const TEMPLATE_PASSWORD_RESET: &str = "password_reset";
pub const TEMPLATE_INVITATION: &str = "invitation";
/// A webhook endpoint was switched off by delivery (410 Gone, or failing for days).
pub const TEMPLATE_WEBHOOK_ENDPOINT_DISABLED: &str = "webhook_endpoint_disabled";
/// A tenant's monthly usage report, to its owners.
pub const TEMPLATE_USAGE_REPORT: &str = "usage_report";

/// Queues one mail.
pub fn enqueue(
    tenant_id: &str,
    recipient: &str,
    template: &str,
    payload: &Json,
    now: i64,
) -> Statement {
    sql!(
        "INSERT INTO email_outbox (id, tenant_id, recipient, template, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        new_id(),
        tenant_id,
        recipient,
        template,
        payload.to_string(),
        now
    )
}

/// Queues one mail to each active owner of `tenant_id`, only when `only_if` returns a row
/// as the batch runs: how a batch tells the owners about a change it may or may not make.
pub fn enqueue_to_owners(
    tenant_id: &str,
    template: &str,
    payload: &Json,
    now: i64,
    only_if: &Statement,
) -> Statement {
    let mut statement = sql!(
        format!(
            "INSERT INTO email_outbox (id, tenant_id, recipient, template, payload, created_at)
             SELECT lower(hex(randomblob(16))), tenant_id, email, ?, ?, ?
             FROM users WHERE tenant_id = ? AND role = 'owner' AND status = 'active'
               AND EXISTS ({})",
            only_if.sql
        ),
        template,
        payload.to_string(),
        now,
        tenant_id
    );
    statement.params.extend(only_if.params.iter().cloned());
    statement
}
