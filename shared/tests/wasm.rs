//! The core's platform-sensitive code — randomness, password hashing, JWTs, HMACs, the
//! clock, ids, JSON and the router over the Hrana protocol — run where the edge runs it:
//! on `wasm32-unknown-unknown` under Node, with wasm-bindgen-test:
//!
//! ```sh
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!     cargo test -p tollgate --target wasm32-unknown-unknown --test wasm
//! ```
//!
//! (`scripts/tools/cloudflare.sh wasm-test` installs the runner and does exactly that.)
//! Natively the same tests run as ordinary `#[test]`s, so both targets are held to one
//! expectation. Nothing here waits on I/O, so futures are driven by `now_or_never`.

use std::cell::RefCell;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use serde_json::{Value as Json, json};
use tollgate::{
    Env,
    auth::{jwt, password},
    billing::signature,
    clock::{Clock, SystemClock, parse_rfc3339, rfc3339},
    config::Config,
    db::hrana::{HranaDb, Transport},
    ids::new_id,
    outbound::NoOutbound,
    tokens,
    webhooks::signing::{SigningKey, new_secret},
};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECRET: &str = "wasm-test-secret-wasm-test-secret-012345";

fn config() -> Config {
    Config::from_lookup(|name| (name == "TOLLGATE_JWT_SECRET").then(|| SECRET.to_owned()))
        .expect("the configuration is valid")
}

#[test]
fn randomness_reaches_the_platform() {
    let first = tokens::random_token(32);
    assert_eq!(first.len(), 43);
    assert_ne!(first, tokens::random_token(32));
    // No secret configured: the throwaway one is drawn from the same source.
    let generated = Config::from_lookup(|_| None).unwrap();
    assert!(generated.jwt_secret_generated);
    assert_ne!(
        generated.jwt_current.kid,
        Config::from_lookup(|_| None).unwrap().jwt_current.kid
    );
}

#[test]
fn ids_are_time_ordered_uuids() {
    let id = new_id();
    assert_eq!(id.len(), 36);
    assert_eq!(id.as_bytes()[14], b'7', "a version-7 UUID: {id}");
    assert_ne!(id, new_id());
}

#[test]
fn passwords_hash_with_argon2_and_verify_only_themselves() {
    let stored = password::Password::parse("password", "correct horse battery".into())
        .unwrap()
        .hash();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(password::verify("correct horse battery", &stored));
    assert!(!password::verify("correct horse batterY", &stored));
    assert!(!password::verify("correct horse battery", "not a hash"));
    assert!(password::Password::parse("password", "short".into()).is_err());
}

#[test]
fn access_tokens_sign_and_verify() {
    let config = config();
    let now = SystemClock.now();
    let claims = jwt::Claims::new(
        "user",
        "tenant",
        "member",
        "session",
        "jobs:read".into(),
        now,
        900,
    );
    let token = jwt::sign(&config, &claims);
    assert_eq!(token.split('.').count(), 3);
    // HS256 is deterministic: the same claims give the same token.
    assert_eq!(token, jwt::sign(&config, &claims));
    assert_eq!(jwt::verify(&config, &token, now).unwrap(), claims);
    assert_eq!(
        jwt::verify(&config, &token, now + 900),
        Err(jwt::JwtError::Expired)
    );
    let (unsigned, signature) = token.rsplit_once('.').unwrap();
    let forged = format!("{unsigned}.{}", tokens::base64url(&[0u8; 32]));
    assert_ne!(signature, tokens::base64url(&[0u8; 32]));
    assert_eq!(
        jwt::verify(&config, &forged, now),
        Err(jwt::JwtError::Invalid)
    );
    let other = Config::from_lookup(|name| {
        (name == "TOLLGATE_JWT_SECRET").then(|| "another-secret-another-secret-0123456".into())
    })
    .unwrap();
    assert_eq!(
        jwt::verify(&other, &token, now),
        Err(jwt::JwtError::UnknownKey)
    );
}

#[test]
fn hmac_and_digests_match_known_values() {
    // RFC 4231, test case 2.
    assert_eq!(
        hex::encode(tokens::hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing?"
        )),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        tokens::sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(tokens::base64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn stripe_and_webhook_signatures_round_trip() {
    let now = SystemClock.now();
    let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    let header = format!(
        "t={now},v1={}",
        hex::encode(signature::sign(now, body, "whsec_test"))
    );
    assert_eq!(
        signature::verify(Some(&header), body, "whsec_test", now),
        Ok(())
    );
    assert_eq!(
        signature::verify(Some(&header), body, "whsec_other", now),
        Err(signature::SignatureError::Mismatch)
    );
    let secret = new_secret();
    let key = SigningKey::parse(&secret).expect("a fresh secret parses");
    let signed = key.sign("msg_1", now, body);
    assert!(signed.starts_with("v1,"));
    assert_eq!(signed, key.sign("msg_1", now, body));
    assert_ne!(signed, key.sign("msg_2", now, body));
}

#[test]
fn the_system_clock_reads_the_wall_clock() {
    let now = SystemClock.now();
    // After 2024-01-01 and before 2100: the platform's clock, in seconds.
    assert!((1_704_067_200..4_102_444_800).contains(&now), "{now}");
    let text = rfc3339(now);
    assert!(text.ends_with('Z'), "{text}");
    assert_eq!(parse_rfc3339(&text), Some(now));
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
}

#[test]
fn json_keeps_64_bit_integers_exact() {
    let big = i64::MAX - 1;
    let text = serde_json::to_string(&json!({ "balance": big, "tiny": -1 })).unwrap();
    let back: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(back["balance"].as_i64(), Some(big));
    assert_eq!(back["tiny"].as_i64(), Some(-1));
}

/// Answers every pipeline with `SELECT 1`'s result, and records what was posted.
struct OneRow {
    posted: RefCell<Vec<Json>>,
}

#[async_trait(?Send)]
impl Transport for &'static OneRow {
    async fn post(
        &self,
        _url: &str,
        _token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        self.posted
            .borrow_mut()
            .push(serde_json::from_slice(&body).unwrap());
        let reply = json!({
            "baton": null, "base_url": null,
            "results": [
                {"type": "ok", "response": {"type": "execute", "result": {
                    "cols": [{"name": "1", "decltype": null}],
                    "rows": [[{"type": "integer", "value": "1"}]],
                    "affected_row_count": 0, "last_insert_rowid": null}}},
                {"type": "ok", "response": {"type": "close"}}
            ]
        });
        Ok((200, serde_json::to_vec(&reply).unwrap().into()))
    }

    async fn pause(&self, _duration: std::time::Duration) {}
}

#[test]
fn the_router_answers_over_the_hrana_protocol() {
    let transport: &'static OneRow = Box::leak(Box::new(OneRow {
        posted: RefCell::default(),
    }));
    let env = Env::new(
        Box::new(HranaDb::new(
            "http://127.0.0.1:8080",
            None,
            Box::new(transport),
        )),
        Box::new(SystemClock),
        Box::new(NoOutbound),
        config(),
    );
    let get = |path: &str| {
        let request = http::Request::get(path).body(Bytes::new()).unwrap();
        tollgate::handle(request, &env)
            .now_or_never()
            .expect("the canned transport never waits")
    };
    let health = get("/api/v1/health");
    assert_eq!(health.status(), 200);
    let body: Json = serde_json::from_slice(health.body()).unwrap();
    assert_eq!(body, json!({ "status": "ok" }));
    assert_eq!(
        transport.posted.borrow()[0]["requests"][0]["stmt"]["sql"],
        "SELECT 1"
    );
    let missing = get("/api/v1/no-such-route");
    assert_eq!(missing.status(), 404);
    let error: Json = serde_json::from_slice(missing.body()).unwrap();
    assert_eq!(error["error"]["code"], "not_found");
}
