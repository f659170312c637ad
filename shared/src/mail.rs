//! The email outbox: mail is written in the same batch as the change it reports, and a
//! delivery job sends it later, so no mail is lost and none is sent for a change that
//! rolled back.

use serde_json::Value as Json;

use crate::{db::Statement, ids::new_id, sql};

pub const TEMPLATE_VERIFY_EMAIL: &str = "verify_email";
pub const TEMPLATE_PASSWORD_RESET: &str = "password_reset";
pub const TEMPLATE_INVITATION: &str = "invitation";

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
