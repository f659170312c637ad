//! Settings and secrets, read once per runtime from whatever it calls its environment
//! (process variables natively, `spin.toml` variables, worker vars and secrets).

use sha2::{Digest, Sha256};

use crate::{
    jobs::outputs::OutputBucket, mail::EmailProvider, secrets::Keyring, tokens::random_token,
};

/// One HS256 signing secret and the key id (`kid`) that names it in token headers.
#[derive(Clone)]
pub struct JwtKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl JwtKey {
    /// The kid is derived from the secret, so rotating a secret needs no second setting.
    pub fn from_secret(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        Self {
            kid: hex::encode(&digest[..4]),
            secret: secret.as_bytes().to_vec(),
        }
    }
}

#[derive(Clone)]
pub struct Config {
    /// Signs new tokens.
    pub jwt_current: JwtKey,
    /// Still verify tokens signed before a rotation.
    pub jwt_previous: Vec<JwtKey>,
    /// True when no secret was configured and a throwaway one was generated.
    pub jwt_secret_generated: bool,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    /// How long after a rotation the rotated refresh token still yields the same new pair,
    /// so that two tabs refreshing at once are not taken for a stolen token.
    pub refresh_grace_seconds: i64,
    pub password_reset_ttl: i64,
    pub email_verification_ttl: i64,
    pub invitation_ttl: i64,
    pub max_body_bytes: usize,
    /// `acme.<base_domain>` selects tenant `acme` at login.
    pub base_domain: Option<String>,
    /// How many reverse proxies in front of Tollgate each append the address they saw to
    /// `X-Forwarded-For`: the client address is the entry that many from the right, the
    /// one the outermost trusted proxy wrote (entries further left are the client's own
    /// words). `None` ignores the header (`TOLLGATE_TRUST_FORWARDED_FOR` off).
    pub trusted_proxy_hops: Option<usize>,
    /// Attempts per minute at login, registration and password recovery, per client address.
    pub auth_attempts_per_ip: i64,
    /// Attempts per minute at login and password recovery, per account.
    pub auth_attempts_per_account: i64,
    /// Base of links in emails.
    pub public_url: String,
    /// The domain the browser session cookie is set for (`TOLLGATE_COOKIE_DOMAIN`), so that
    /// every host under it behind the proxy shares the sign-in; `None`: Tollgate's host only.
    pub cookie_domain: Option<String>,
    /// Whether cookies are `Secure` (`TOLLGATE_COOKIE_SECURE`, true unless `false`): only
    /// plain-HTTP development turns it off.
    pub cookie_secure: bool,
    /// The signing secret of the Stripe webhook endpoint (`whsec_...`); without it Stripe
    /// events are not accepted.
    pub stripe_webhook_secret: Option<String>,
    /// The bearer token of `POST /api/v1/cron/run`, for runtimes without a scheduler of their
    /// own (Spin, plain WASI HTTP): an external scheduler calls it. Without it the endpoint
    /// does not exist.
    pub cron_secret: Option<String>,
    /// The bearer token of the native server's `GET /metrics` (Prometheus); without it the
    /// endpoint does not exist.
    pub metrics_token: Option<String>,
    /// How long a tenant whose invoice failed keeps its plan before the downgrade to FREE.
    pub billing_grace_seconds: i64,
    /// Stripe's secret API key (`sk_...`): checkout, portal, invoices, off-session top-ups.
    pub stripe_secret_key: Option<String>,
    /// Where Stripe's API is (tests point it at a double on loopback).
    pub stripe_api_base: String,
    /// What one credit costs, in the smallest unit of `billing_currency`.
    pub credit_price_cents: i64,
    pub billing_currency: String,
    /// Let tenant webhooks reach private, loopback and link-local addresses: for tests and
    /// for deployments whose receivers live on a private network. Off by default, since
    /// otherwise any tenant could make Tollgate probe the network it runs in.
    pub webhooks_allow_private: bool,
    /// A DNS-over-HTTPS resolver answering the JSON API (`application/dns-json`), with
    /// which a tenant proves it owns an email domain by a TXT record; `None`: only an
    /// operator's approval proves it.
    pub doh_url: Option<String>,
    /// How long after a secret rotation deliveries are still signed with the old secret too,
    /// so receivers can switch over without dropping a message.
    pub webhook_secret_overlap_seconds: i64,
    /// The HTTP email provider cron delivers the outbox to; `None` keeps mail in the outbox.
    pub email_provider: Option<EmailProvider>,
    /// The S3-compatible bucket runners upload job outputs to, for download links
    /// (`TOLLGATE_OUTPUT_S3_*`, see `jobs::outputs`); `None`: outputs carry no link.
    pub output_bucket: Option<OutputBucket>,
    /// The master keys that seal stored secrets (`TOLLGATE_SECRETS_KEYS`, see `secrets`);
    /// empty: provider keys cannot be saved.
    pub secrets: Keyring,
    /// How long one attempt at an LLM provider may take before the next deployment is tried.
    pub llm_timeout: std::time::Duration,
    /// The most requests the native server has in flight to a remote libSQL server at once
    /// (the rest wait their turn), kept below what the server admits (a sqld: 128
    /// connections). The edge adapters do not cap (see `db::hrana::HranaShared::uncapped`).
    pub database_max_inflight: usize,
    /// Whether the native server counts the per-minute limit of authenticated callers in the
    /// database, exact across processes, instead of in its own memory
    /// (`TOLLGATE_RATE_LIMITER`: `process` or `database`; see `rate_limit`). The edge
    /// builds always count in the database.
    pub rate_limits_in_database: bool,
}

#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `TOLLGATE_*` settings through `lookup`; unset ones take their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |name: &str, default: i64| -> Result<i64, ConfigError> {
            match lookup(name) {
                None => Ok(default),
                Some(text) => text
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|value| *value > 0)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "{name} must be a positive whole number, got {text:?}"
                        ))
                    }),
            }
        };
        let (jwt_current, jwt_secret_generated) = match lookup("TOLLGATE_JWT_SECRET") {
            Some(secret) if secret.len() < 32 => {
                return Err(ConfigError(
                    "TOLLGATE_JWT_SECRET must be at least 32 characters".into(),
                ));
            }
            Some(secret) => (JwtKey::from_secret(&secret), false),
            None => (JwtKey::from_secret(&random_token(32)), true),
        };
        let jwt_previous = lookup("TOLLGATE_JWT_PREVIOUS_SECRETS")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|secret| !secret.is_empty())
                    .map(JwtKey::from_secret)
                    .collect()
            })
            .unwrap_or_default();
        let flag = |name: &str| {
            lookup(name).is_some_and(|value| matches!(value.trim(), "1" | "true" | "yes"))
        };
        Ok(Self {
            jwt_current,
            jwt_previous,
            jwt_secret_generated,
            access_token_ttl: number("TOLLGATE_ACCESS_TOKEN_TTL", 15 * 60)?,
            refresh_token_ttl: number("TOLLGATE_REFRESH_TOKEN_TTL", 30 * 24 * 3600)?,
            refresh_grace_seconds: number("TOLLGATE_REFRESH_GRACE_SECONDS", 10)?,
            password_reset_ttl: number("TOLLGATE_PASSWORD_RESET_TTL", 3600)?,
            email_verification_ttl: number("TOLLGATE_EMAIL_VERIFICATION_TTL", 48 * 3600)?,
            invitation_ttl: number("TOLLGATE_INVITATION_TTL", 7 * 24 * 3600)?,
            max_body_bytes: number("TOLLGATE_MAX_BODY_BYTES", 1024 * 1024)? as usize,
            base_domain: lookup("TOLLGATE_BASE_DOMAIN")
                .map(|domain| domain.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|domain| !domain.is_empty()),
            trusted_proxy_hops: match (
                flag("TOLLGATE_TRUST_FORWARDED_FOR"),
                lookup("TOLLGATE_TRUSTED_PROXY_HOPS"),
            ) {
                (true, _) => Some(number("TOLLGATE_TRUSTED_PROXY_HOPS", 1)? as usize),
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(ConfigError(
                        "TOLLGATE_TRUSTED_PROXY_HOPS takes effect only with \
                         TOLLGATE_TRUST_FORWARDED_FOR=true"
                            .into(),
                    ));
                }
            },
            auth_attempts_per_ip: number("TOLLGATE_AUTH_ATTEMPTS_PER_IP", 30)?,
            auth_attempts_per_account: number("TOLLGATE_AUTH_ATTEMPTS_PER_ACCOUNT", 10)?,
            public_url: lookup("TOLLGATE_PUBLIC_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8787".into())
                .trim_end_matches('/')
                .to_owned(),
            cookie_domain: lookup("TOLLGATE_COOKIE_DOMAIN")
                .map(|domain| domain.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|domain| !domain.is_empty()),
            cookie_secure: !lookup("TOLLGATE_COOKIE_SECURE")
                .is_some_and(|value| matches!(value.trim(), "0" | "false" | "no")),
            stripe_webhook_secret: lookup("TOLLGATE_STRIPE_WEBHOOK_SECRET")
                .filter(|secret| !secret.is_empty()),
            cron_secret: lookup("TOLLGATE_CRON_SECRET").filter(|secret| !secret.is_empty()),
            metrics_token: lookup("TOLLGATE_METRICS_TOKEN").filter(|token| !token.is_empty()),
            billing_grace_seconds: number("TOLLGATE_BILLING_GRACE_SECONDS", 7 * 24 * 3600)?,
            stripe_secret_key: lookup("TOLLGATE_STRIPE_SECRET_KEY").filter(|key| !key.is_empty()),
            stripe_api_base: lookup("TOLLGATE_STRIPE_API_BASE")
                .unwrap_or_else(|| "https://api.stripe.com".into())
                .trim_end_matches('/')
                .to_owned(),
            credit_price_cents: number("TOLLGATE_CREDIT_PRICE_CENTS", 1)?,
            billing_currency: lookup("TOLLGATE_BILLING_CURRENCY")
                .map(|currency| currency.trim().to_ascii_lowercase())
                .unwrap_or_else(|| "usd".into()),
            webhooks_allow_private: flag("TOLLGATE_WEBHOOKS_ALLOW_PRIVATE"),
            doh_url: lookup("TOLLGATE_DOH_URL").filter(|url| !url.trim().is_empty()),
            webhook_secret_overlap_seconds: number(
                "TOLLGATE_WEBHOOK_SECRET_OVERLAP_SECONDS",
                24 * 3600,
            )?,
            email_provider: EmailProvider::from_settings(
                lookup("TOLLGATE_EMAIL_API_URL"),
                lookup("TOLLGATE_EMAIL_API_KEY"),
                lookup("TOLLGATE_EMAIL_FROM"),
            )
            .map_err(ConfigError)?,
            output_bucket: OutputBucket::from_lookup(&lookup).map_err(ConfigError)?,
            secrets: Keyring::parse(&lookup("TOLLGATE_SECRETS_KEYS").unwrap_or_default())
                .map_err(|reason| ConfigError(format!("TOLLGATE_SECRETS_KEYS: {reason}")))?,
            llm_timeout: std::time::Duration::from_secs(
                number("TOLLGATE_LLM_TIMEOUT_SECONDS", 120)? as u64,
            ),
            database_max_inflight: number(
                "TOLLGATE_DATABASE_MAX_INFLIGHT",
                crate::db::hrana::DEFAULT_MAX_INFLIGHT as i64,
            )? as usize,
            rate_limits_in_database: match lookup("TOLLGATE_RATE_LIMITER").as_deref() {
                None | Some("process") => false,
                Some("database") => true,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "TOLLGATE_RATE_LIMITER must be process or database, not {other:?}"
                    )));
                }
            },
        })
    }

    /// The key a token header names, current or previous.
    pub fn jwt_key(&self, kid: &str) -> Option<&JwtKey> {
        std::iter::once(&self.jwt_current)
            .chain(&self.jwt_previous)
            .find(|key| key.kid == kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn a_missing_secret_is_generated_and_flagged() {
        let config = Config::from_lookup(lookup(&[])).unwrap();
        assert!(config.jwt_secret_generated);
        assert_eq!(config.jwt_current.secret.len(), 43);
    }

    #[test]
    fn a_short_secret_is_rejected() {
        let result = Config::from_lookup(lookup(&[("TOLLGATE_JWT_SECRET", "short")]));
        assert!(result.is_err());
    }

    #[test]
    fn previous_secrets_still_verify_by_kid() {
        let old = "o".repeat(40);
        let config = Config::from_lookup(lookup(&[
            ("TOLLGATE_JWT_SECRET", &"n".repeat(40)),
            ("TOLLGATE_JWT_PREVIOUS_SECRETS", &old),
        ]))
        .unwrap();
        let old_kid = JwtKey::from_secret(&old).kid;
        assert_eq!(config.jwt_key(&old_kid).unwrap().secret, old.as_bytes());
        assert!(config.jwt_key("00000000").is_none());
    }

    #[test]
    fn private_webhook_targets_are_refused_unless_allowed() {
        let default = Config::from_lookup(lookup(&[])).unwrap();
        assert!(!default.webhooks_allow_private);
        assert_eq!(default.webhook_secret_overlap_seconds, 24 * 3600);
        let allowed =
            Config::from_lookup(lookup(&[("TOLLGATE_WEBHOOKS_ALLOW_PRIVATE", "true")])).unwrap();
        assert!(allowed.webhooks_allow_private);
    }

    #[test]
    fn database_requests_in_flight_are_capped_below_a_sqld() {
        let default = Config::from_lookup(lookup(&[])).unwrap();
        assert_eq!(default.database_max_inflight, 64);
        let raised =
            Config::from_lookup(lookup(&[("TOLLGATE_DATABASE_MAX_INFLIGHT", "200")])).unwrap();
        assert_eq!(raised.database_max_inflight, 200);
        assert!(Config::from_lookup(lookup(&[("TOLLGATE_DATABASE_MAX_INFLIGHT", "0")])).is_err());
    }

    #[test]
    fn rate_limits_are_counted_in_process_unless_the_database_is_chosen() {
        let default = Config::from_lookup(lookup(&[])).unwrap();
        assert!(!default.rate_limits_in_database);
        let exact = Config::from_lookup(lookup(&[("TOLLGATE_RATE_LIMITER", "database")])).unwrap();
        assert!(exact.rate_limits_in_database);
        assert!(Config::from_lookup(lookup(&[("TOLLGATE_RATE_LIMITER", "redis")])).is_err());
    }

    #[test]
    fn secrets_keys_are_optional_and_a_malformed_one_stops_the_start() {
        assert!(Config::from_lookup(lookup(&[])).unwrap().secrets.is_empty());
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let configured =
            Config::from_lookup(lookup(&[("TOLLGATE_SECRETS_KEYS", &format!("k1:{key}"))]))
                .unwrap();
        assert!(!configured.secrets.is_empty());
        let error = Config::from_lookup(lookup(&[("TOLLGATE_SECRETS_KEYS", "k1:short")]))
            .err()
            .unwrap();
        assert!(error.0.starts_with("TOLLGATE_SECRETS_KEYS: "), "{error}");
    }

    #[test]
    fn the_email_provider_takes_all_three_settings_or_none() {
        assert!(
            Config::from_lookup(lookup(&[]))
                .unwrap()
                .email_provider
                .is_none()
        );
        let provider = Config::from_lookup(lookup(&[
            ("TOLLGATE_EMAIL_API_URL", "https://api.sendgrid.com/"),
            ("TOLLGATE_EMAIL_API_KEY", "SG.key"),
            ("TOLLGATE_EMAIL_FROM", "noreply@acme.test"),
        ]))
        .unwrap()
        .email_provider
        .unwrap();
        assert_eq!(provider.send_url(), "https://api.sendgrid.com/v3/mail/send");
        let Err(error) = Config::from_lookup(lookup(&[("TOLLGATE_EMAIL_API_KEY", "SG.key")]))
        else {
            panic!("a key without a URL was accepted");
        };
        assert!(error.0.contains("TOLLGATE_EMAIL_API_URL"));
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted_and_then_one_hop_by_default() {
        assert_eq!(
            Config::from_lookup(lookup(&[])).unwrap().trusted_proxy_hops,
            None
        );
        let trusted =
            Config::from_lookup(lookup(&[("TOLLGATE_TRUST_FORWARDED_FOR", "true")])).unwrap();
        assert_eq!(trusted.trusted_proxy_hops, Some(1));
        let two_hops = Config::from_lookup(lookup(&[
            ("TOLLGATE_TRUST_FORWARDED_FOR", "true"),
            ("TOLLGATE_TRUSTED_PROXY_HOPS", "2"),
        ]))
        .unwrap();
        assert_eq!(two_hops.trusted_proxy_hops, Some(2));
    }

    #[test]
    fn proxy_hops_must_be_positive_and_need_trust() {
        for hops in ["0", "-1", "two"] {
            let result = Config::from_lookup(lookup(&[
                ("TOLLGATE_TRUST_FORWARDED_FOR", "true"),
                ("TOLLGATE_TRUSTED_PROXY_HOPS", hops),
            ]));
            assert!(result.is_err(), "{hops}");
        }
        let Err(error) = Config::from_lookup(lookup(&[("TOLLGATE_TRUSTED_PROXY_HOPS", "2")]))
        else {
            panic!("hops without trusting X-Forwarded-For were accepted");
        };
        assert!(error.0.contains("TOLLGATE_TRUST_FORWARDED_FOR"));
    }

    #[test]
    fn a_non_numeric_limit_is_rejected() {
        let Err(error) = Config::from_lookup(lookup(&[("TOLLGATE_MAX_BODY_BYTES", "lots")])) else {
            panic!("a non-numeric limit was accepted");
        };
        assert!(error.0.contains("TOLLGATE_MAX_BODY_BYTES"));
    }
}
