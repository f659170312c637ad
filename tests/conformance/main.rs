//! One black-box suite, three runtimes: the native server, the Cloudflare worker under
//! workerd (`wrangler dev`) and the Spin component under `wasmtime serve`, each reaching its
//! database over Hrana HTTP (the test server in `tollgate_tests::hrana_server`).

mod suite;

use std::time::Duration;

use suite::{Cron, Target};
use tollgate::{clock::Clock, clock::SystemClock, config::Config};
use tollgate_server::server::{self, ConnectionLimits, ServerClock, ServerSettings};
use tollgate_tests::{
    edge::{self, EdgeSettings},
    hrana_server::HranaServer,
};

const JWT_SECRET: &str = "conformance-secret-conformance-secret-01";
const CRON_SECRET: &str = "conformance-cron-secret";
/// The master key provider keys are sealed with (32 bytes, base64).
const SECRETS_KEYS: &str = "k1:CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=";

/// What every runtime is configured with besides its database: the LLM gateway's master
/// key, and outbound requests to loopback allowed (the provider double listens there).
fn gateway_settings() -> Vec<(&'static str, String)> {
    vec![
        ("TOLLGATE_SECRETS_KEYS", SECRETS_KEYS.into()),
        ("TOLLGATE_WEBHOOKS_ALLOW_PRIVATE", "true".into()),
    ]
}

/// A fresh database file behind a Hrana endpoint, migrated the operator's way: the native
/// binary's remote mode (`tollgate-server --database http://… migrate`).
async fn database() -> (tempfile::TempDir, HranaServer) {
    let dir = tempfile::tempdir().unwrap();
    let hrana = HranaServer::start(&dir.path().join("tollgate.db"), "conformance-token").await;
    server::open_database_url(&hrana.url, Some(hrana.token.clone()), SystemClock.now())
        .await
        .expect("the schema migrates over Hrana");
    (dir, hrana)
}

fn settings(hrana: &HranaServer) -> EdgeSettings {
    EdgeSettings {
        database_url: hrana.url.clone(),
        database_token: hrana.token.clone(),
        jwt_secret: JWT_SECRET.into(),
        cron_secret: CRON_SECRET.into(),
        more: gateway_settings(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_server_over_hrana_conforms() {
    let (_dir, hrana) = database().await;
    let config = Config::from_lookup(|name| match name {
        "TOLLGATE_JWT_SECRET" => Some(JWT_SECRET.into()),
        "TOLLGATE_CRON_SECRET" => Some(CRON_SECRET.into()),
        _ => gateway_settings()
            .into_iter()
            .find(|(setting, _)| *setting == name)
            .map(|(_, value)| value),
    })
    .unwrap();
    let database = tollgate_server::database::Database::open(&hrana.url, Some(hrana.token.clone()))
        .await
        .unwrap();
    let running = server::start(
        ServerSettings {
            address: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            cron_interval: Duration::from_secs(3600),
            config,
            clock: ServerClock::System,
            connections: ConnectionLimits::default(),
        },
        database,
    )
    .unwrap();
    let target = Target::new(
        "native",
        format!("http://{}", running.local_addr),
        hrana.db_path().to_owned(),
        Cron::Endpoint {
            secret: CRON_SECRET.into(),
        },
    );
    suite::run(&target).await;
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudflare_worker_under_workerd_conforms() {
    let (_dir, hrana) = database().await;
    let runtime = edge::workerd::start(&settings(&hrana)).await;
    let target = Target::new(
        "workerd",
        runtime.base_url.clone(),
        hrana.db_path().to_owned(),
        Cron::WorkerScheduled,
    );
    suite::run(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_component_under_wasmtime_conforms() {
    let (_dir, hrana) = database().await;
    let runtime = edge::wasmtime::start(&settings(&hrana)).await;
    let target = Target::new(
        "wasmtime",
        runtime.base_url.clone(),
        hrana.db_path().to_owned(),
        Cron::Endpoint {
            secret: CRON_SECRET.into(),
        },
    );
    suite::run(&target).await;
}
