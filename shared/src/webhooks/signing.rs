//! Standard Webhooks signatures (standardwebhooks.com): a receiver's existing library must
//! verify what we send, so the format is followed to the byte.
//!
//! A secret is `whsec_` followed by the base64 of random bytes; the key is those bytes. A
//! message is signed as `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), and the
//! `webhook-signature` header carries one such signature per live secret, space-separated,
//! which is how a rotation overlaps: receivers accept the message if any signature matches.

use base64::{Engine, engine::general_purpose::STANDARD};

use crate::tokens::hmac_sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret; the spec asks for 24 to 64.
const SECRET_BYTES: usize = 32;

/// A signing key, decoded from its `whsec_…` text.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// Reads a `whsec_…` secret; `None` when it is not one.
    pub fn parse(secret: &str) -> Option<Self> {
        let encoded = secret.strip_prefix(SECRET_PREFIX)?;
        STANDARD
            .decode(encoded)
            .ok()
            .filter(|key| !key.is_empty())
            .map(SigningKey)
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut signed = format!("{message_id}.{timestamp}.").into_bytes();
        signed.extend_from_slice(body);
        format!("v1,{}", STANDARD.encode(hmac_sha256(&self.0, &signed)))
    }
}

/// A fresh `whsec_…` secret.
pub fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    getrandom::fill(&mut key).expect("the platform provides randomness");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header: one signature per key, space-separated.
pub fn signature_header(
    keys: &[SigningKey],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    keys.iter()
        .map(|key| key.sign(message_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector every Standard Webhooks reference library checks.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_published_test_vector_is_reproduced_exactly() {
        let key = SigningKey::parse(SPEC_SECRET).unwrap();
        assert_eq!(key.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
    }

    #[test]
    fn any_change_to_id_timestamp_or_body_changes_the_signature() {
        let key = SigningKey::parse(SPEC_SECRET).unwrap();
        assert_ne!(
            key.sign("msg_other", SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_ne!(
            key.sign(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY),
            SPEC_SIGNATURE
        );
        assert_ne!(
            key.sign(SPEC_ID, SPEC_TIMESTAMP, br#"{"test": 2432232315}"#),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn the_key_is_the_decoded_secret_not_its_text() {
        // Signing with the secret's characters instead of its bytes is the classic mistake.
        let wrong = SigningKey(SPEC_SECRET.as_bytes().to_vec());
        assert_ne!(
            wrong.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn several_keys_give_space_separated_signatures_in_order() {
        let spec = SigningKey::parse(SPEC_SECRET).unwrap();
        let other = SigningKey::parse(&new_secret()).unwrap();
        let header = signature_header(&[other.clone(), spec], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], other.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY));
        assert_eq!(parts[1], SPEC_SIGNATURE);
    }

    #[test]
    fn new_secrets_carry_the_prefix_and_enough_random_bytes() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        let key = SigningKey::parse(&secret).unwrap();
        assert_eq!(key.0.len(), 32);
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn text_that_is_not_a_secret_is_refused() {
        for text in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
        ] {
            assert!(SigningKey::parse(text).is_none(), "{text:?}");
        }
    }
}
