//! Password rules and hashing.
//!
//! Argon2id with the OWASP minimum (19 MiB, 2 passes, 1 lane), which is argon2's default:
//! memory-hard where bcrypt is not, and its cost was measured against the edge's CPU budget
//! (`cargo bench -p tollgate --bench auth`; figures in the foundation issue's note).

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use crate::{ApiError, error::ApiResult};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;

/// A password that meets the length rules; only `parse` makes one.
pub struct Password(String);

impl Password {
    pub fn parse(field: &str, text: String) -> ApiResult<Self> {
        let length = text.chars().count();
        if length < MIN_LENGTH {
            return Err(ApiError::invalid_field(
                field,
                format!("must be at least {MIN_LENGTH} characters"),
            ));
        }
        if length > MAX_LENGTH {
            return Err(ApiError::invalid_field(
                field,
                format!("must be at most {MAX_LENGTH} characters"),
            ));
        }
        Ok(Self(text))
    }

    /// The PHC string to store.
    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters accepts any password of bounded length")
        .to_string()
}

/// Checks a password against a stored PHC string; a malformed hash never verifies.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the time of one verification, so that an unknown account answers as slowly as a
/// wrong password and response times do not reveal which accounts exist.
pub fn verify_against_nothing(password: &str) {
    static DECOY: OnceLock<String> = OnceLock::new();
    let decoy = DECOY.get_or_init(|| hash("decoy password, never matches"));
    verify(password, decoy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = Password::parse("password", "correct horse battery".into())
            .unwrap()
            .hash();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
    }

    #[test]
    fn short_and_overlong_passwords_are_rejected() {
        assert!(Password::parse("password", "123456789".into()).is_err());
        assert!(Password::parse("password", "x".repeat(MAX_LENGTH + 1)).is_err());
        assert!(Password::parse("password", "1234567890".into()).is_ok());
    }

    #[test]
    fn a_malformed_stored_hash_never_verifies() {
        assert!(!verify("anything at all", "not a phc string"));
    }
}
