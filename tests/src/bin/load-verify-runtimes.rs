//! The same load on every runtime: `GET /api/v1/auth/verify` with an API key, driven by wrk,
//! on the native server, the worker under workerd and the component under wasmtime, each
//! against its own fresh database behind the Hrana test server.
//!
//! ```sh
//! eval "$(bash scripts/tools/cloudflare.sh)"; eval "$(bash scripts/tools/spin.sh)"
//! cargo run --release -p tollgate-tests --bin load-verify-runtimes [-- native workerd wasmtime]
//! ```
//! Settings: `THREADS` (2), `CONNECTIONS` (32), `DURATION` (10s). Needs wrk
//! (Debian: `apt-get install -y wrk`). Prints req/s, p50 and p99 per runtime.

use std::{process::Command, time::Duration};

use serde_json::{Value, json};
use tollgate::{
    clock::{Clock, SystemClock},
    config::Config,
};
use tollgate_server::{
    database::Database,
    server::{self, ConnectionLimits, RunningServer, ServerClock, ServerSettings},
};
use tollgate_tests::{
    PASSWORD, create_platform_admin,
    edge::{self, EdgeRuntime, EdgeSettings},
    file_env,
    hrana_server::HranaServer,
    post_json,
};

const JWT_SECRET: &str = "load-secret-load-secret-load-secret-0123";

enum Running {
    Native(RunningServer),
    Edge(EdgeRuntime),
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requested: Vec<String> = std::env::args().skip(1).collect();
    let runtimes = if requested.is_empty() {
        vec!["native".to_owned(), "workerd".into(), "wasmtime".into()]
    } else {
        requested
    };
    let threads = std::env::var("THREADS").unwrap_or_else(|_| "2".into());
    let connections = std::env::var("CONNECTIONS").unwrap_or_else(|_| "32".into());
    let duration = std::env::var("DURATION").unwrap_or_else(|_| "10s".into());
    let mut summary = Vec::new();
    for name in &runtimes {
        let dir = tempfile::tempdir().unwrap();
        let hrana = HranaServer::start(&dir.path().join("tollgate.db"), "load-token").await;
        server::open_database_url(&hrana.url, Some(hrana.token.clone()), SystemClock.now())
            .await
            .expect("the schema migrates over Hrana");
        let settings = EdgeSettings {
            database_url: hrana.url.clone(),
            database_token: hrana.token.clone(),
            jwt_secret: JWT_SECRET.into(),
            cron_secret: "load-cron".into(),
            more: Vec::new(),
        };
        let started = std::time::Instant::now();
        let (running, base_url): (Running, String) = match name.as_str() {
            "native" => {
                let running = native(&hrana).await;
                let url = format!("http://{}", running.local_addr);
                (Running::Native(running), url)
            }
            "workerd" => {
                let runtime = edge::workerd::start(&settings).await;
                let url = runtime.base_url.clone();
                (Running::Edge(runtime), url)
            }
            "wasmtime" => {
                let runtime = edge::wasmtime::start(&settings).await;
                let url = runtime.base_url.clone();
                (Running::Edge(runtime), url)
            }
            other => panic!("unknown runtime {other}: native, workerd or wasmtime"),
        };
        let start_time = started.elapsed();
        let key = arrange(&base_url, &hrana).await;
        let url = format!("{base_url}/api/v1/auth/verify");
        eprintln!("== {name}: wrk -t{threads} -c{connections} -d{duration} --latency {url}");
        let output = Command::new("wrk")
            .args([
                format!("-t{threads}"),
                format!("-c{connections}"),
                format!("-d{duration}"),
                "--latency".into(),
                "-H".into(),
                format!("X-API-Key: {key}"),
                "-H".into(),
                "X-Forwarded-Method: GET".into(),
                "-H".into(),
                "X-Forwarded-Uri: /comfy/history".into(),
                url,
            ])
            .output()
            .expect("wrk runs (Debian: apt-get install -y wrk)");
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!("{report}");
        let field = |prefix: &str| {
            report
                .lines()
                .map(str::trim)
                .find_map(|line| line.strip_prefix(prefix))
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let non_2xx = field("Non-2xx or 3xx responses:");
        summary.push(format!(
            "{name:<9} start {:>7.0} ms   {:>10} req/s   p50 {:<9} p99 {:<9} {}",
            start_time.as_secs_f64() * 1000.0,
            field("Requests/sec:"),
            field("50%"),
            field("99%"),
            if non_2xx == "?" {
                String::new()
            } else {
                format!("non-2xx: {non_2xx}")
            }
        ));
        match running {
            Running::Native(server) => server.shutdown(),
            Running::Edge(runtime) => drop(runtime),
        }
    }
    println!(
        "\n== GET /api/v1/auth/verify with an API key, -t{threads} -c{connections} -d{duration}, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for line in summary {
        println!("{line}");
    }
}

async fn native(hrana: &HranaServer) -> RunningServer {
    let config =
        Config::from_lookup(|name| (name == "TOLLGATE_JWT_SECRET").then(|| JWT_SECRET.to_owned()))
            .unwrap();
    let database = Database::open(&hrana.url, Some(hrana.token.clone()))
        .await
        .unwrap();
    server::start(
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
    .unwrap()
}

/// A tenant whose request limit is lifted, and an API key of its owner.
async fn arrange(base_url: &str, hrana: &HranaServer) -> String {
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{base_url}/api/v1/{path}");
    let post = |path: &'static str, token: Option<String>, body: Value| {
        post_json(&client, api(path), token, body)
    };
    let registered = post(
        "auth/register",
        None,
        json!({ "tenant_name": "Load Inc.", "tenant_slug": "load", "email": "owner@load.test",
                "password": PASSWORD, "name": "Owner" }),
    )
    .await;
    let owner = registered["access_token"].as_str().unwrap().to_owned();
    let tenant = registered["tenant"]["id"].as_str().unwrap().to_owned();

    create_platform_admin(&file_env(hrana.db_path()).await, "ops@load.test").await;
    let admin_token = post(
        "admin/login",
        None,
        json!({ "email": "ops@load.test", "password": PASSWORD }),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = client
        .put(api(&format!("admin/tenants/{tenant}/plan")))
        .bearer_auth(&admin_token)
        .json(&json!({ "plan": "ENTERPRISE", "overrides": { "requests_per_minute": 100_000_000 } }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "plan: {}",
        response.status()
    );
    post(
        "api-keys",
        Some(owner),
        json!({ "name": "load", "scopes": ["*"] }),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}
