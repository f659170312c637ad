//! The email outbox: mail is written in the same batch as the change it reports, and a
//! delivery job sends it later, so no mail is lost and none is sent for a change that
//! rolled back.

use serde_json::Value as Json;

use crate::{db::Statement, ids::new_id, sql};

pub const TEMPLATE_VERIFY_EMAIL: &str = "verify_email";
pub const TEMPLATE_PASSWORD_RESET: &str = "password_reset";
pub const TEMPLATE_INVITATION: &str = "invitation";
/// A webhook endpoint was switched off by delivery (410 Gone, or failing for days).
pub const TEMPLATE_WEBHOOK_ENDPOINT_DISABLED: &str = "webhook_endpoint_disabled";

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
