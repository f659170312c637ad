//! What the gate costs per request, and the measured choice of password hash.
//!
//! `cargo bench -p tollgate --bench auth`
//!
//! - `jwt/sign`, `jwt/verify`: an HS256 access token, as issued at login and checked on
//!   every session request.
//! - `api_key/check`: the CPU part of an API-key request before and after its one database
//!   round trip: the SHA-256 digest of the presented `tg_` secret (the lookup key), parsing
//!   the stored scopes, and the scope check of the forwarded request.
//! - `password/*`: argon2id as configured (`Password::hash`, `password::verify`) against
//!   bcrypt at cost 10 and 12, the alternative the choice was measured against.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use tollgate::{
    auth::{
        api_keys,
        forwarded::ForwardedPath,
        jwt::{self, Claims},
        password::{self, Password},
        rbac::{Scope, Scopes},
    },
    config::Config,
    tokens::{random_token, sha256_hex},
};

const PASSWORD: &str = "correct horse battery staple";

fn config() -> Config {
    Config::from_lookup(|name| match name {
        "TOLLGATE_JWT_SECRET" => Some("bench-secret-bench-secret-bench-secret-01".into()),
        _ => None,
    })
    .expect("the bench configuration is valid")
}

fn claims(issued_at: i64) -> Claims {
    Claims::new(
        "0192f0c4-7c1e-7a3b-9d2e-5f6a7b8c9d0e",
        "0192f0c4-7c1e-7a3b-9d2e-000000000001",
        "member",
        "0192f0c4-7c1e-7a3b-9d2e-000000000002",
        "*".into(),
        issued_at,
        900,
    )
}

fn jwt_benches(c: &mut Criterion) {
    let config = config();
    let issued_at = 1_700_000_000;
    let claims = claims(issued_at);
    let token = jwt::sign(&config, &claims);
    assert!(jwt::verify(&config, &token, issued_at + 1).is_ok());

    let mut group = c.benchmark_group("jwt");
    group.bench_function("sign", |b| {
        b.iter(|| jwt::sign(black_box(&config), black_box(&claims)))
    });
    group.bench_function("verify", |b| {
        b.iter(|| jwt::verify(black_box(&config), black_box(&token), issued_at + 1))
    });
    group.finish();
}

fn api_key_benches(c: &mut Criterion) {
    let secret = format!("tg_{}", random_token(32));
    let stored_scopes = "comfy:read jobs:write llm:*";
    let path = ForwardedPath::parse(b"/comfy/history/abc?limit=10").expect("a path");
    let needed = Scope::for_request("GET", &path).expect("a scope");
    assert!(Scopes::parse_stored(stored_scopes).covers(&needed));

    let mut group = c.benchmark_group("api_key");
    group.bench_function("check", |b| {
        b.iter(|| {
            let secret = black_box(secret.as_str());
            assert!(api_keys::looks_like_key(secret));
            let key_hash = sha256_hex(secret);
            let scopes = Scopes::parse_stored(black_box(stored_scopes));
            (key_hash, scopes.covers(black_box(&needed)))
        })
    });
    group.finish();
}

fn password_benches(c: &mut Criterion) {
    let password = Password::parse("password", PASSWORD.into()).expect("a valid password");
    let argon2_hash = password.hash();
    assert!(password::verify(PASSWORD, &argon2_hash));
    let bcrypt_10 = bcrypt::hash(PASSWORD, 10).expect("bcrypt hashes");
    let bcrypt_12 = bcrypt::hash(PASSWORD, 12).expect("bcrypt hashes");

    let mut group = c.benchmark_group("password");
    // Each run takes tens to hundreds of milliseconds: few flat samples are plenty.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("argon2id_hash", |b| b.iter(|| black_box(&password).hash()));
    group.bench_function("argon2id_verify", |b| {
        b.iter(|| password::verify(black_box(PASSWORD), black_box(&argon2_hash)))
    });
    group.bench_function("bcrypt10_hash", |b| {
        b.iter(|| bcrypt::hash(black_box(PASSWORD), 10).unwrap())
    });
    group.bench_function("bcrypt10_verify", |b| {
        b.iter(|| bcrypt::verify(black_box(PASSWORD), black_box(&bcrypt_10)).unwrap())
    });
    group.bench_function("bcrypt12_hash", |b| {
        b.iter(|| bcrypt::hash(black_box(PASSWORD), 12).unwrap())
    });
    group.bench_function("bcrypt12_verify", |b| {
        b.iter(|| bcrypt::verify(black_box(PASSWORD), black_box(&bcrypt_12)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = fast;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = jwt_benches, api_key_benches
}
criterion_group!(slow, password_benches);
criterion_main!(fast, slow);
