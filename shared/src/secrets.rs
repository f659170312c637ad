//! Secrets Tollgate must use again later (LLM provider keys), sealed at rest.
//!
//! Each value is encrypted with ChaCha20-Poly1305 under a master key from configuration
//! (`TOLLGATE_SECRETS_KEYS`), stored as `<key id>:<base64(nonce || ciphertext)>`. The
//! associated data binds the key id and the caller's context (the table and row the value
//! belongs to), so a sealed value copied into another row, or relabelled with another key
//! id, no longer opens. Master keys rotate by id: the first key of the setting seals, every
//! key listed opens, so an operator adds the new key in front, re-saves the secrets (or
//! lets them be replaced over time), then drops the old key.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD},
};
use chacha20poly1305::{
    ChaCha20Poly1305, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// The master keys, the sealing one first. Never printed: `Debug` shows the ids only.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

#[derive(Clone)]
struct MasterKey {
    id: String,
    key: [u8; KEY_BYTES],
}

/// 503 `secrets_not_configured`: `what` (a tenant's provider keys, SSO client secrets)
/// cannot be stored without a master key.
pub fn not_configured(what: &str) -> crate::ApiError {
    crate::ApiError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "secrets_not_configured",
        format!(
            "{what} cannot be stored: the operator has not configured a master key (TOLLGATE_SECRETS_KEYS)"
        ),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsError {
    /// No master key is configured: nothing can be sealed.
    NoKey,
    /// The value was sealed under a key id this deployment does not have (rotated out).
    UnknownKey(String),
    /// The stored text is not a sealed value, or it was altered, moved to another row or
    /// sealed under another key of the same id: it does not authenticate.
    Unreadable,
}

impl std::fmt::Display for SecretsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretsError::NoKey => {
                f.write_str("no master key is configured (TOLLGATE_SECRETS_KEYS)")
            }
            SecretsError::UnknownKey(id) => {
                write!(
                    f,
                    "the secret was sealed under master key {id:?}, which is not configured"
                )
            }
            SecretsError::Unreadable => f.write_str("the sealed secret does not authenticate"),
        }
    }
}

impl std::error::Error for SecretsError {}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|key| &key.id))
            .finish()
    }
}

impl Keyring {
    /// Reads `id:<base64 of 32 bytes>,id:…`; an empty setting is an empty keyring. Ids are
    /// 1 to 32 letters, digits, `-` or `_`, each used once.
    pub fn parse(setting: &str) -> Result<Self, String> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for entry in setting
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (id, encoded) = entry
                .split_once(':')
                .ok_or("each master key is written <id>:<base64 of 32 bytes>")?;
            let id = id.trim();
            if !(1..=32).contains(&id.len())
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "master key id {id:?} must be 1 to 32 letters, digits, - or _"
                ));
            }
            if keys.iter().any(|key| key.id == id) {
                return Err(format!("master key id {id:?} is listed twice"));
            }
            let encoded = encoded.trim();
            let bytes = STANDARD
                .decode(encoded)
                .or_else(|_| STANDARD_NO_PAD.decode(encoded))
                .map_err(|_| format!("master key {id:?} is not base64"))?;
            let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| {
                format!("master key {id:?} must be {KEY_BYTES} bytes (44 base64 characters)")
            })?;
            keys.push(MasterKey {
                id: id.to_owned(),
                key,
            });
        }
        Ok(Keyring { keys })
    }

    /// True when no master key is configured, so nothing can be sealed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plaintext` for `context` (what it belongs to, e.g. `llm_provider_keys/<id>`)
    /// under the first master key, with a fresh random nonce.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SecretsError> {
        let master = self.keys.first().ok_or(SecretsError::NoKey)?;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the platform provides randomness");
        let sealed = cipher(master)
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data(&master.id, context).as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 seals any secret short of 256 GiB");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!("{}:{}", master.id, STANDARD_NO_PAD.encode(stored)))
    }

    /// Opens what [`Keyring::seal`] stored for the same `context`.
    pub fn open(&self, context: &str, stored: &str) -> Result<Vec<u8>, SecretsError> {
        let (id, encoded) = stored.split_once(':').ok_or(SecretsError::Unreadable)?;
        let master = self
            .keys
            .iter()
            .find(|key| key.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_owned()))?;
        let bytes = STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretsError::Unreadable)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SecretsError::Unreadable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SecretsError::Unreadable)?;
        cipher(master)
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: associated_data(&master.id, context).as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Unreadable)
    }
}

fn cipher(master: &MasterKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(master.key))
}

/// The key id and the context, separated by a byte neither may contain.
fn associated_data(key_id: &str, context: &str) -> String {
    format!("{key_id}\n{context}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_BYTES])
    }

    fn keyring(setting: &str) -> Keyring {
        Keyring::parse(setting).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_for_its_context_only() {
        let keys = keyring(&format!("k1:{}", key(1)));
        let stored = keys.seal("llm_provider_keys/a", b"sk-live-123").unwrap();
        assert!(stored.starts_with("k1:"));
        assert!(!stored.contains("sk-live"));
        assert_eq!(
            keys.open("llm_provider_keys/a", &stored).unwrap(),
            b"sk-live-123"
        );
        assert_eq!(
            keys.open("llm_provider_keys/b", &stored),
            Err(SecretsError::Unreadable)
        );
    }

    #[test]
    fn each_seal_draws_a_fresh_nonce() {
        let keys = keyring(&format!("k1:{}", key(1)));
        assert_ne!(
            keys.seal("c", b"same").unwrap(),
            keys.seal("c", b"same").unwrap()
        );
    }

    #[test]
    fn the_first_key_seals_and_every_listed_key_opens() {
        let old = keyring(&format!("k1:{}", key(1)));
        let sealed_before = old.seal("c", b"secret").unwrap();
        let rotated = keyring(&format!("k2:{}, k1:{}", key(2), key(1)));
        assert_eq!(rotated.open("c", &sealed_before).unwrap(), b"secret");
        assert!(rotated.seal("c", b"secret").unwrap().starts_with("k2:"));
        let retired = keyring(&format!("k2:{}", key(2)));
        assert_eq!(
            retired.open("c", &sealed_before),
            Err(SecretsError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn an_altered_or_relabelled_value_does_not_open() {
        let keys = keyring(&format!("k2:{},k1:{}", key(2), key(1)));
        let stored = keys.seal("c", b"secret").unwrap();
        let relabelled = stored.replacen("k2:", "k1:", 1);
        assert_eq!(keys.open("c", &relabelled), Err(SecretsError::Unreadable));
        let (id, body) = stored.split_once(':').unwrap();
        let mut bytes = STANDARD_NO_PAD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{id}:{}", STANDARD_NO_PAD.encode(bytes));
        assert_eq!(keys.open("c", &altered), Err(SecretsError::Unreadable));
        assert_eq!(keys.open("c", "k2:!!"), Err(SecretsError::Unreadable));
        assert_eq!(keys.open("c", "plain"), Err(SecretsError::Unreadable));
    }

    #[test]
    fn without_a_master_key_nothing_is_sealed() {
        let empty = keyring("");
        assert!(empty.is_empty());
        assert_eq!(empty.seal("c", b"x"), Err(SecretsError::NoKey));
    }

    #[test]
    fn malformed_settings_are_refused_with_the_reason() {
        for (setting, reason) in [
            ("k1", "<id>:<base64"),
            (&format!("k 1:{}", key(1)) as &str, "letters, digits"),
            ("k1:not base64!", "not base64"),
            (&format!("k1:{}", STANDARD.encode([0u8; 16])), "32 bytes"),
            (&format!("k1:{},k1:{}", key(1), key(2)), "twice"),
        ] {
            let error = Keyring::parse(setting).unwrap_err();
            assert!(error.contains(reason), "{setting}: {error}");
        }
    }

    #[test]
    fn debug_shows_key_ids_not_keys() {
        let keys = keyring(&format!("k2:{},k1:{}", key(2), key(1)));
        assert_eq!(format!("{keys:?}"), r#"["k2", "k1"]"#);
    }
}
