//! The HTTP email provider: a SendGrid-compatible v3 Mail Send API, reached through the
//! `Outbound` port.
//!
//! One request per mail: `POST {url}/v3/mail/send` with `Authorization: Bearer {key}` and
//! the v3 body (`personalizations[].to[]`, `from`, `subject`, `content[]` of `text/plain`).
//! SendGrid answers 202 Accepted with the message's id in `X-Message-Id`, which is kept so
//! an operator can trace a mail at the provider. One recipient per request on purpose: a
//! mail's outcome is then exactly its request's, and a bad address fails that mail alone.

use bytes::Bytes;
use http::{Method, header};
use serde_json::{Value as Json, json};

use super::templates::Rendered;
use crate::tenancy::Email;

const USER_AGENT: &str = "Tollgate-Mail/1";

/// Where and as whom mail is sent: `TOLLGATE_EMAIL_API_URL`, `TOLLGATE_EMAIL_API_KEY` and
/// `TOLLGATE_EMAIL_FROM`, which go together.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailProvider {
    /// The API's base, without a trailing slash (`https://api.sendgrid.com`).
    pub api_url: String,
    pub api_key: String,
    /// The sender address every mail is from.
    pub from: String,
}

/// The key stays out of logs.
impl std::fmt::Debug for EmailProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailProvider")
            .field("api_url", &self.api_url)
            .field("api_key", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

impl EmailProvider {
    /// The provider the three settings describe: `None` when none is set (mail then waits
    /// in the outbox), an error naming the problem when only some are set or one is
    /// malformed, since a half-configured provider would otherwise fail silently.
    pub fn from_settings(
        url: Option<String>,
        key: Option<String>,
        from: Option<String>,
    ) -> Result<Option<Self>, String> {
        // An empty value counts as unset, as runtimes that declare every variable pass them.
        let given = |value: Option<String>| {
            value
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
        };
        let (url, key, from) = match (given(url), given(key), given(from)) {
            (None, None, None) => return Ok(None),
            (Some(url), Some(key), Some(from)) => (url, key, from),
            _ => {
                return Err("TOLLGATE_EMAIL_API_URL, TOLLGATE_EMAIL_API_KEY and \
                            TOLLGATE_EMAIL_FROM must be set together (or none of them)"
                    .into());
            }
        };
        let api_url = url.trim_end_matches('/').to_owned();
        let valid_url = (api_url.starts_with("https://") || api_url.starts_with("http://"))
            && api_url
                .parse::<http::Uri>()
                .is_ok_and(|uri| uri.host().is_some_and(|host| !host.is_empty()));
        if !valid_url {
            return Err(format!(
                "TOLLGATE_EMAIL_API_URL must be an http(s) URL, got {url:?}"
            ));
        }
        let from = Email::parse("TOLLGATE_EMAIL_FROM", &from)
            .map_err(|_| format!("TOLLGATE_EMAIL_FROM must be an email address, got {from:?}"))?;
        Ok(Some(Self {
            api_url,
            api_key: key,
            from: from.as_str().to_owned(),
        }))
    }

    /// The Mail Send endpoint.
    pub fn send_url(&self) -> String {
        format!("{}/v3/mail/send", self.api_url)
    }

    /// The request that sends `mail` to `recipient`.
    pub fn request(
        &self,
        recipient: &str,
        mail: &Rendered,
    ) -> Result<http::Request<Bytes>, http::Error> {
        http::Request::builder()
            .method(Method::POST)
            .uri(self.send_url())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.api_key))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Bytes::from(body(&self.from, recipient, mail).to_string()))
    }
}

/// The v3 Mail Send body of one plain-text mail to one recipient.
pub fn body(from: &str, recipient: &str, mail: &Rendered) -> Json {
    let from = match &mail.from_name {
        Some(name) => json!({ "email": from, "name": name }),
        None => json!({ "email": from }),
    };
    json!({
        "personalizations": [{ "to": [{ "email": recipient }] }],
        "from": from,
        "subject": mail.subject,
        "content": [{ "type": "text/plain", "value": mail.text }],
    })
}

/// The provider's id of an accepted message, from its answer's headers.
pub fn message_id(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-message-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, key: &str, from: &str) -> Result<Option<EmailProvider>, String> {
        let set = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        EmailProvider::from_settings(set(url), set(key), set(from))
    }

    #[test]
    fn no_settings_means_no_provider_and_some_settings_are_an_error() {
        assert_eq!(settings("", "", ""), Ok(None));
        assert!(settings("https://api.sendgrid.com", "", "").is_err());
        assert!(settings("", "SG.key", "noreply@acme.test").is_err());
        let blank = EmailProvider::from_settings(
            Some("https://mail.test".into()),
            Some("  ".into()),
            Some("a@b.test".into()),
        );
        assert!(blank.is_err());
    }

    #[test]
    fn the_url_must_be_http_and_the_sender_an_address() {
        assert!(settings("mail.test", "k", "a@b.test").is_err());
        assert!(settings("ftp://mail.test", "k", "a@b.test").is_err());
        assert!(settings("https://mail.test", "k", "nobody").is_err());
        let provider = settings("https://mail.test/", "k", "NoReply@Acme.test")
            .unwrap()
            .unwrap();
        assert_eq!(provider.send_url(), "https://mail.test/v3/mail/send");
        assert_eq!(provider.from, "noreply@acme.test");
        assert!(!format!("{provider:?}").contains("\"k\""));
    }

    #[test]
    fn the_request_is_a_v3_mail_send_with_a_bearer_key() {
        let provider = settings("https://mail.test", "SG.secret", "noreply@acme.test")
            .unwrap()
            .unwrap();
        let mut mail = Rendered {
            subject: "Hello".into(),
            text: "Body".into(),
            from_name: None,
        };
        let request = provider.request("ada@acme.test", &mail).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "https://mail.test/v3/mail/send");
        assert_eq!(request.headers()[header::AUTHORIZATION], "Bearer SG.secret");
        assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
        let sent: Json = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            sent,
            json!({
                "personalizations": [{ "to": [{ "email": "ada@acme.test" }] }],
                "from": { "email": "noreply@acme.test" },
                "subject": "Hello",
                "content": [{ "type": "text/plain", "value": "Body" }],
            })
        );
        // A branded tenant's mail goes out under its brand's name.
        mail.from_name = Some("Pixel Forge".into());
        let sent = body("noreply@acme.test", "ada@acme.test", &mail);
        assert_eq!(
            sent["from"],
            json!({ "email": "noreply@acme.test", "name": "Pixel Forge" })
        );
    }
}
