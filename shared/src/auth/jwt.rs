//! Access tokens: HS256 JWTs naming the signing key in `kid`, so secrets can rotate.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;

pub const ISSUER: &str = "tollgate";
/// The `role` claim of an operator's token; such a token names no tenant.
pub const PLATFORM_ADMIN_ROLE: &str = "platform_admin";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user (or platform admin) id.
    pub sub: String,
    /// The tenant id; empty for a platform admin.
    pub tid: String,
    pub role: String,
    /// The session: the refresh-token family this token was issued from.
    pub sid: String,
    /// Space-separated scopes.
    pub scope: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn new(
        sub: &str,
        tid: &str,
        role: &str,
        sid: &str,
        scope: String,
        issued_at: i64,
        ttl: i64,
    ) -> Self {
        Self {
            sub: sub.to_owned(),
            tid: tid.to_owned(),
            role: role.to_owned(),
            sid: sid.to_owned(),
            scope,
            iss: ISSUER.to_owned(),
            iat: issued_at,
            exp: issued_at + ttl,
        }
    }
}

/// Signs with the current key. The same claims always give the same token (HS256 is
/// deterministic), which is what lets a refresh in the grace window answer the same pair.
pub fn sign(config: &Config, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(config.jwt_current.kid.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(&config.jwt_current.secret),
    )
    .expect("HS256 signing of serializable claims cannot fail")
}

#[derive(Debug, PartialEq)]
pub enum JwtError {
    Malformed,
    UnknownKey,
    Invalid,
    Expired,
}

/// Verifies signature, issuer and expiry against the key the header names.
pub fn verify(config: &Config, token: &str, now: i64) -> Result<Claims, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(JwtError::Invalid);
    }
    let kid = header.kid.ok_or(JwtError::UnknownKey)?;
    let key = config.jwt_key(&kid).ok_or(JwtError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    // Expiry is checked against the Clock port below, not the library's own clock.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.secret), &validation)
            .map_err(|_| JwtError::Invalid)?;
    if data.claims.exp <= now {
        return Err(JwtError::Expired);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtKey;

    fn config(secret: &str, previous: &[&str]) -> Config {
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.jwt_current = JwtKey::from_secret(secret);
        config.jwt_previous = previous.iter().map(|s| JwtKey::from_secret(s)).collect();
        config
    }

    fn claims(issued_at: i64) -> Claims {
        Claims::new(
            "user",
            "tenant",
            "member",
            "session",
            "*".into(),
            issued_at,
            900,
        )
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let config = config(&"a".repeat(32), &[]);
        let token = sign(&config, &claims(1_000));
        assert_eq!(verify(&config, &token, 1_899).unwrap(), claims(1_000));
        assert_eq!(verify(&config, &token, 1_900), Err(JwtError::Expired));
    }

    #[test]
    fn the_same_claims_sign_to_the_same_token() {
        let config = config(&"a".repeat(32), &[]);
        assert_eq!(sign(&config, &claims(5)), sign(&config, &claims(5)));
    }

    #[test]
    fn a_token_of_a_rotated_out_secret_still_verifies_while_listed() {
        let old = config(&"o".repeat(32), &[]);
        let token = sign(&old, &claims(1_000));
        let rotated = config(&"n".repeat(32), &[&"o".repeat(32)]);
        assert!(verify(&rotated, &token, 1_001).is_ok());
        let forgotten = config(&"n".repeat(32), &[]);
        assert_eq!(verify(&forgotten, &token, 1_001), Err(JwtError::UnknownKey));
    }

    #[test]
    fn a_tampered_token_is_invalid() {
        let config = config(&"a".repeat(32), &[]);
        let token = sign(&config, &claims(1_000));
        let (head, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &signature[1..]);
        assert_eq!(verify(&config, &tampered, 1_001), Err(JwtError::Invalid));
        assert_eq!(
            verify(&config, "not.a.jwt", 1_001),
            Err(JwtError::Malformed)
        );
    }
}
