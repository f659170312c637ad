//! The words of each mail: a subject and a plain-text body, rendered from the template
//! name and the JSON payload queued with it.
//!
//! Rendering happens at send time, not at queue time, so the outbox keeps the facts (a
//! link, a period's figures) and a wording fix reaches mails already waiting. A payload
//! that lacks what its template needs is a bug in the code that queued it; it is reported
//! as a [`RenderError`] and the mail is given up on, never sent half-filled.

use serde_json::Value as Json;

use super::{
    TEMPLATE_INVITATION, TEMPLATE_PASSWORD_RESET, TEMPLATE_USAGE_REPORT, TEMPLATE_VERIFY_EMAIL,
    TEMPLATE_WEBHOOK_ENDPOINT_DISABLED,
};

/// A mail ready to hand to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    /// The name the mail is sent under: the tenant's brand, when it has one.
    pub from_name: Option<String>,
}

/// Why a queued mail cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The subject and body of `template` filled from `payload`.
pub fn render(template: &str, payload: &Json) -> Result<Rendered, RenderError> {
    let field = |name: &str| -> Result<String, RenderError> {
        match &payload[name] {
            Json::String(text) if !text.is_empty() => Ok(text.clone()),
            Json::Number(number) => Ok(number.to_string()),
            _ => Err(RenderError(format!(
                "the {template} mail has no {name} in its payload"
            ))),
        }
    };
    let (subject, text) = match template {
        TEMPLATE_VERIFY_EMAIL => (
            "Confirm your email address".to_owned(),
            format!(
                "Please confirm your email address by opening this link:\n\n{}\n\n\
                 If you did not create an account, you can ignore this mail.",
                field("link")?
            ),
        ),
        TEMPLATE_PASSWORD_RESET => (
            "Reset your password".to_owned(),
            format!(
                "Someone asked to reset the password of your account. To choose a new \
                 password, open this link:\n\n{}\n\nThe link works once and expires soon. \
                 If you did not ask for this, ignore this mail: your password stays as it is.",
                field("link")?
            ),
        ),
        TEMPLATE_INVITATION => {
            let tenant = field("tenant")?;
            (
                format!("You are invited to join {tenant}"),
                format!(
                    "You have been invited to join {tenant} as {}. To accept the invitation, \
                     open this link:\n\n{}\n\nIf you did not expect this invitation, you can \
                     ignore this mail.",
                    field("role")?,
                    field("link")?
                ),
            )
        }
        TEMPLATE_WEBHOOK_ENDPOINT_DISABLED => (
            format!("Webhook endpoint disabled: {}", field("url")?),
            format!(
                "{}\n\nEndpoint: {}\nReason: {}",
                field("message")?,
                field("endpoint_id")?,
                field("reason")?
            ),
        ),
        TEMPLATE_USAGE_REPORT => usage_report(payload, &field)?,
        other => return Err(RenderError(format!("unknown mail template {other:?}"))),
    };
    Ok(Rendered {
        subject,
        text,
        from_name: None,
    })
}

/// The monthly report: the tenant's totals and its pool's credits over the month.
fn usage_report(
    payload: &Json,
    field: &dyn Fn(&str) -> Result<String, RenderError>,
) -> Result<(String, String), RenderError> {
    let period = field("period")?;
    let tenant = field("tenant")?;
    let number = |section: &str, name: &str| -> Result<i64, RenderError> {
        payload[section][name].as_i64().ok_or_else(|| {
            RenderError(format!(
                "the usage_report mail has no {section}.{name} in its payload"
            ))
        })
    };
    let text = format!(
        "Usage of {tenant} in {period} (UTC):\n\n\
         Jobs: {}\nGPU seconds: {}\nLLM tokens: {}\n\n\
         Credits added: {}\nCredits removed: {}\nCredits used: {}\n\
         Credits available at the end of the month: {}\n\n\
         The full report, with each user's usage, is report {} (GET /api/v1/reports/{}).",
        number("usage", "jobs")?,
        number("usage", "gpu_seconds")?,
        number("usage", "llm_tokens")?,
        number("credits", "added")?,
        number("credits", "removed")?,
        number("credits", "used")?,
        number("credits", "balance_at_end")?,
        field("report_id")?,
        field("report_id")?,
    );
    Ok((format!("Your usage report for {period}: {tenant}"), text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_password_reset_mail_carries_its_link() {
        let mail = render(
            TEMPLATE_PASSWORD_RESET,
            &json!({ "token": "t0k", "link": "https://app.test/reset-password?token=t0k" }),
        )
        .unwrap();
        assert_eq!(mail.subject, "Reset your password");
        assert!(
            mail.text
                .contains("\n\nhttps://app.test/reset-password?token=t0k\n\n")
        );
    }

    #[test]
    fn verification_and_invitation_mails_name_what_they_are_for() {
        let verify = render(TEMPLATE_VERIFY_EMAIL, &json!({ "link": "https://v" })).unwrap();
        assert_eq!(verify.subject, "Confirm your email address");
        assert!(verify.text.contains("https://v"));
        let invite = render(
            TEMPLATE_INVITATION,
            &json!({ "tenant": "acme", "role": "member", "link": "https://i", "token": "x" }),
        )
        .unwrap();
        assert_eq!(invite.subject, "You are invited to join acme");
        assert!(invite.text.contains("join acme as member"));
        assert!(invite.text.contains("https://i"));
    }

    #[test]
    fn the_disabled_endpoint_notice_says_which_and_why() {
        let mail = render(
            TEMPLATE_WEBHOOK_ENDPOINT_DISABLED,
            &json!({
                "endpoint_id": "e1",
                "url": "https://hooks.test/x",
                "reason": "gone",
                "message": "Webhook endpoint https://hooks.test/x was disabled.",
            }),
        )
        .unwrap();
        assert_eq!(
            mail.subject,
            "Webhook endpoint disabled: https://hooks.test/x"
        );
        assert!(
            mail.text
                .starts_with("Webhook endpoint https://hooks.test/x was disabled.")
        );
        assert!(mail.text.contains("Endpoint: e1\nReason: gone"));
    }

    #[test]
    fn the_usage_report_lists_every_figure() {
        let mail = render(
            TEMPLATE_USAGE_REPORT,
            &json!({
                "report_id": "r1",
                "tenant": "Acme",
                "period": "2024-02",
                "usage": { "jobs": 3, "gpu_seconds": 120, "llm_tokens": 4000 },
                "credits": { "added": 100, "removed": 0, "used": 40, "balance_at_end": 60 },
            }),
        )
        .unwrap();
        assert_eq!(mail.subject, "Your usage report for 2024-02: Acme");
        for line in [
            "Jobs: 3\n",
            "GPU seconds: 120\n",
            "LLM tokens: 4000\n",
            "Credits used: 40\n",
            "end of the month: 60\n",
            "report r1",
        ] {
            assert!(mail.text.contains(line), "{line:?} in {}", mail.text);
        }
    }

    #[test]
    fn unknown_templates_and_incomplete_payloads_are_refused() {
        assert!(render("newsletter", &json!({})).is_err());
        let error = render(TEMPLATE_PASSWORD_RESET, &json!({ "token": "t" })).unwrap_err();
        assert!(error.0.contains("link"), "{error}");
        assert!(render(TEMPLATE_PASSWORD_RESET, &json!({ "link": "" })).is_err());
        let report = json!({ "report_id": "r", "tenant": "a", "period": "2024-01", "usage": {} });
        assert!(render(TEMPLATE_USAGE_REPORT, &report).is_err());
    }
}
