//! Values parsed once at the boundary: a [`Slug`] or an [`Email`] that exists is valid.

use std::fmt;

use crate::{ApiError, db::Value, error::ApiResult};

/// A tenant's slug: 3–40 characters of `a-z`, `0-9` and `-`, starting with a letter, not
/// ending with `-`, and not a name the platform keeps for itself (it becomes a subdomain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

const RESERVED_SLUGS: &[&str] = &[
    "admin", "api", "app", "auth", "billing", "docs", "mail", "platform", "status", "static",
    "support", "tollgate", "www",
];

impl Slug {
    pub fn parse(field: &str, text: &str) -> ApiResult<Self> {
        let slug = text.trim().to_ascii_lowercase();
        let well_formed = (3..=40).contains(&slug.len())
            && slug.starts_with(|c: char| c.is_ascii_lowercase())
            && !slug.ends_with('-')
            && slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !well_formed {
            return Err(ApiError::invalid_field(
                field,
                "must be 3 to 40 characters of a-z, 0-9 and '-', starting with a letter",
            ));
        }
        if RESERVED_SLUGS.contains(&slug.as_str()) {
            return Err(ApiError::invalid_field(
                field,
                format!("{slug:?} is reserved"),
            ));
        }
        Ok(Self(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, lower-cased: one `@`, a local part, and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, text: &str) -> ApiResult<Self> {
        let email = text.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        if !valid {
            return Err(ApiError::invalid_field(field, "must be an email address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Email> for Value {
    fn from(email: &Email) -> Self {
        Value::Text(email.0.clone())
    }
}

impl From<&Slug> for Value {
    fn from(slug: &Slug) -> Self {
        Value::Text(slug.0.clone())
    }
}

/// A person's or a tenant's display name: 1–100 characters once trimmed.
pub fn parse_display_name(field: &str, text: &str) -> ApiResult<String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            "must be 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
}

/// A domain name, lower-cased and without its final dot: labels of letters, digits and
/// dashes, at least two of them.
pub fn parse_domain_name(field: &str, text: &str) -> ApiResult<String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(ApiError::invalid_field(
            field,
            "must be a domain name like app.example.com",
        ));
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_cased_and_checked() {
        assert_eq!(Slug::parse("s", " Acme-2 ").unwrap().as_str(), "acme-2");
        for bad in [
            "ab",
            "2acme",
            "acme-",
            "ac me",
            "acme_co",
            "www",
            &"a".repeat(41),
        ] {
            assert!(Slug::parse("s", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            Email::parse("e", "Ada@Example.COM").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.d",
            "ada@example..com",
        ] {
            assert!(Email::parse("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(parse_display_name("n", "  Ada  ").unwrap(), "Ada");
        assert!(parse_display_name("n", "   ").is_err());
        assert!(parse_display_name("n", &"x".repeat(101)).is_err());
    }

    #[test]
    fn domains_are_checked_and_lower_cased() {
        assert_eq!(
            parse_domain_name("d", " Forge.Example. ").unwrap(),
            "forge.example"
        );
        for bad in ["localhost", "-a.example", "a..example", "a b.example", ""] {
            assert!(parse_domain_name("d", bad).is_err(), "{bad}");
        }
    }
}
