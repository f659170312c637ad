//! Verification of `Stripe-Signature`: `t=<unix>,v1=<hex>[,v1=<hex>...]`, where each `v1` is
//! the hex HMAC-SHA256 of `"<t>.<raw body>"` keyed with the endpoint secret (`whsec_...`,
//! used as raw bytes), as Stripe signs.

use subtle::ConstantTimeEq;

use crate::tokens::hmac_sha256;

/// How far the signed time may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, PartialEq)]
pub enum SignatureError {
    Missing,
    Malformed,
    OutsideTolerance,
    Mismatch,
}

impl SignatureError {
    pub fn message(&self) -> &'static str {
        match self {
            SignatureError::Missing => "the Stripe-Signature header is missing",
            SignatureError::Malformed => {
                "the Stripe-Signature header needs t= and at least one v1="
            }
            SignatureError::OutsideTolerance => "the signed timestamp is more than 300 s from now",
            SignatureError::Mismatch => "no v1 signature matches the payload",
        }
    }
}

/// Checks the header against the raw body: one matching `v1` suffices (Stripe sends one per
/// active secret while a secret rolls).
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" if !value.is_empty() => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // abs_diff: a forged `t` near i64::MIN or MAX must not wrap into the window.
    if now.abs_diff(timestamp) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::OutsideTolerance);
    }
    let expected = hex::encode(sign(timestamp, payload, secret));
    let matches = signatures.iter().any(|candidate| {
        // Length first: ct_eq on unequal lengths is false anyway, but says so in constant time
        // only for equal lengths.
        candidate.len() == expected.len()
            && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The HMAC Stripe computes over `"<t>.<payload>"`.
pub fn sign(timestamp: i64, payload: &[u8], secret: &str) -> [u8; 32] {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(payload);
    hmac_sha256(secret.as_bytes(), &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    fn header(timestamp: i64, secret: &str) -> String {
        format!(
            "t={timestamp},v1={}",
            hex::encode(sign(timestamp, BODY, secret))
        )
    }

    #[test]
    fn a_valid_signature_verifies() {
        assert_eq!(
            verify(Some(&header(1_000, SECRET)), BODY, SECRET, 1_000),
            Ok(())
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_tolerance() {
        let signed = header(1_000, SECRET);
        assert_eq!(verify(Some(&signed), BODY, SECRET, 1_300), Ok(()));
        assert_eq!(
            verify(Some(&signed), BODY, SECRET, 1_301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            verify(Some(&signed), BODY, SECRET, 699),
            Err(SignatureError::OutsideTolerance)
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_the_range_do_not_wrap_into_the_window() {
        for forged in [i64::MIN, i64::MIN + 1, i64::MAX] {
            assert_eq!(
                verify(Some(&header(forged, SECRET)), BODY, SECRET, 1_700_000_000),
                Err(SignatureError::OutsideTolerance),
                "t={forged}"
            );
        }
    }

    #[test]
    fn a_wrong_secret_or_a_changed_body_does_not_verify() {
        assert_eq!(
            verify(Some(&header(1_000, "whsec_other")), BODY, SECRET, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header(1_000, SECRET)), b"{}", SECRET, 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_bare_v1_or_a_missing_timestamp_is_malformed() {
        assert_eq!(
            verify(Some("t=1000,v1="), BODY, SECRET, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1000,v1"), BODY, SECRET, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("v1=abc"), BODY, SECRET, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=soon,v1=abc"), BODY, SECRET, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(None, BODY, SECRET, 1_000),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn any_one_of_several_v1_signatures_may_match() {
        let good = hex::encode(sign(1_000, BODY, SECRET));
        let several = format!("t=1000,v1={},v0=ignored,v1={good}", "0".repeat(64));
        assert_eq!(verify(Some(&several), BODY, SECRET, 1_000), Ok(()));
        let short = format!("t=1000,v1={}", &good[..10]);
        assert_eq!(
            verify(Some(&short), BODY, SECRET, 1_000),
            Err(SignatureError::Mismatch)
        );
    }
}
