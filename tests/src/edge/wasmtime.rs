//! The Spin component (`functions/spin`) under `wasmtime serve`, the plain WASI HTTP host:
//! what runs under Spin runs here, with its settings as process environment.
//!
//! Needs `TOLLGATE_WASMTIME` (the wasmtime binary) and `TOLLGATE_SPIN_WASM` (the release
//! component), both set by `scripts/tools/spin.sh`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{EdgeRuntime, EdgeSettings, free_port, wait_until_healthy};

/// What sets the variables this module needs.
const SETUP: &str = r#"eval "$(bash scripts/tools/spin.sh)""#;

/// How long the component may take to compile and answer its first health check.
const START_BOUND: Duration = Duration::from_secs(30);

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: run `{SETUP}` from the repository root first \
             (it installs wasmtime and builds the Spin component)"
        ),
    }
}

/// Serves the component on a free loopback port and waits until it is healthy (its
/// database reachable).
pub async fn start(settings: &EdgeSettings) -> EdgeRuntime {
    let wasmtime = required("TOLLGATE_WASMTIME");
    let wasm = required("TOLLGATE_SPIN_WASM");
    assert!(
        std::path::Path::new(&wasm).is_file(),
        "TOLLGATE_SPIN_WASM={wasm} is not a file: run `{SETUP}` again"
    );
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let mut command = tokio::process::Command::new(&wasmtime);
    command
        .arg("serve")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        // wasi:cli (environment, stdio, clocks, random) besides the proxy world, which Rust's
        // std on wasm32-wasip2 imports; wasi:http for the component's outgoing requests.
        .args(["-S", "cli=y", "-S", "http=y"])
        .current_dir(scratch.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    // Each setting is named on the command line and valued in wasmtime's own environment
    // (`--env NAME` inherits it), so secrets stay out of the process list, and nothing else
    // from this process's environment reaches the component.
    for (name, value) in settings.variables() {
        command.arg("--env").arg(name).env(name, value);
    }
    command.arg(&wasm);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("{wasmtime} does not start ({error}): run `{SETUP}`"));
    wait_until_healthy(&base_url, &mut child, START_BOUND).await;
    eprintln!(
        "wasmtime serve: healthy at {base_url} in {} ms",
        started.elapsed().as_millis()
    );
    EdgeRuntime {
        base_url,
        name: "wasmtime",
        child,
        _scratch: scratch,
    }
}

/// Runs cron once through `POST /api/v1/cron/run` (a plain WASI HTTP host has no scheduler)
/// and returns its report.
pub async fn run_cron(runtime: &EdgeRuntime, settings: &EdgeSettings) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/cron/run", runtime.base_url))
        .bearer_auth(&settings.cron_secret)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the cron endpoint answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{}: cron answered {status}: {body}",
        runtime.name
    );
    serde_json::from_str(&body)
        .unwrap_or_else(|error| panic!("the cron report is not JSON ({error}): {body}"))
}
