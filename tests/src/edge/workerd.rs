//! The Cloudflare worker under workerd, through `wrangler dev --local`.
//!
//! It runs the worker `scripts/tools/cloudflare.sh` built (worker-build's output, named by
//! `TOLLGATE_WORKER_DIR`) with wrangler from the same script (`TOLLGATE_WRANGLER`), through a
//! generated config in a scratch directory: no `[build]` there, so nothing is rebuilt, and
//! the settings go in a `.dev.vars` beside it. wrangler's state, logs and home directory all
//! live in that scratch directory too, and so does a copy of the worker: `wrangler dev`
//! reloads a worker whose files change, and answers the non-GET requests in flight then with
//! 503 "Your worker restarted mid-request", so a build running beside a test (another
//! checkout's tests, a developer's rebuild) must not touch the files it serves.
//!
//! wrangler (node) starts workerd as a child; both run in a process group of their own, and
//! a watchdog kills the whole group once the runtime is dropped (its scratch directory goes)
//! or the test process dies, so no workerd outlives its test.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use super::{EdgeRuntime, EdgeSettings, free_port, wait_until_healthy};

/// How long wrangler and workerd may take to serve (they start in a few seconds).
const START_BOUND: Duration = Duration::from_secs(60);

const BUILD_COMMAND: &str = "eval \"$(scripts/tools/cloudflare.sh)\"";

/// Starts the worker on a free loopback port and waits until `/api/v1/health` answers.
pub async fn start(settings: &EdgeSettings) -> EdgeRuntime {
    let worker_dir = worker_dir();
    let wrangler = wrangler();
    let scratch = tempfile::Builder::new()
        .prefix("tollgate-workerd-")
        .tempdir()
        .expect("a scratch directory");
    let root = scratch.path();
    for dir in ["home", "config", "state"] {
        fs::create_dir_all(root.join(dir)).expect("scratch directories");
    }
    let worker = root.join("worker");
    copy_dir(&worker_dir, &worker);
    let config = root.join("wrangler.toml");
    fs::write(&config, worker_config(&worker)).expect("the generated wrangler.toml");
    fs::write(root.join(".dev.vars"), dev_vars(settings)).expect("the .dev.vars file");
    let log_path = root.join("wrangler.log");
    let log = fs::File::create(&log_path).expect("the wrangler log");

    let port = free_port();
    let mut command = tokio::process::Command::new(&wrangler);
    command
        .arg("dev")
        .arg("--config")
        .arg(&config)
        .args(["--local", "--test-scheduled", "--ip", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--inspector-port", &free_port().to_string()])
        .arg("--persist-to")
        .arg(root.join("state"))
        .args(["--show-interactive-dev-session", "false"])
        .current_dir(root)
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("WRANGLER_LOG_PATH", root.join("wrangler-debug.log"))
        .env("NO_COLOR", "1")
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the wrangler log"))
        .stderr(log)
        // wrangler and the workerd it starts form a group of their own, killed as one.
        .process_group(0)
        .kill_on_drop(true);
    let spawned = Instant::now();
    let child = command.spawn().unwrap_or_else(|error| {
        panic!(
            "could not run {} ({error}); install it with: {BUILD_COMMAND}",
            wrangler.display()
        )
    });
    let group = child.id().expect("a running child has an id");
    guard_group(group, root);

    let base_url = format!("http://127.0.0.1:{port}");
    // wait_until_healthy panics on failure; run it as a task so wrangler's log can be shown.
    let waiting = {
        let base_url = base_url.clone();
        tokio::spawn(async move {
            let mut child = child;
            wait_until_healthy(&base_url, &mut child, START_BOUND).await;
            child
        })
    };
    let child = match waiting.await {
        Ok(child) => child,
        Err(failure) => {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "wrangler dev did not serve the worker: {failure}\n--- wrangler's output (last lines)\n{}",
                tail.join("\n")
            );
        }
    };
    eprintln!(
        "workerd: healthy at {base_url} {} ms after spawn",
        spawned.elapsed().as_millis()
    );
    EdgeRuntime {
        base_url,
        name: "workerd",
        child,
        _scratch: scratch,
    }
}

/// Fires the worker's `scheduled` handler (the cron triggers) once, through wrangler's
/// `--test-scheduled` route, and waits for it to finish.
pub async fn run_scheduled(runtime: &EdgeRuntime) {
    let response = reqwest::Client::new()
        .get(format!("{}/__scheduled?cron=*+*+*+*+*", runtime.base_url))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the scheduled route answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "the scheduled handler failed: {status} {body}"
    );
}

/// worker-build's output directory, as `scripts/tools/cloudflare.sh` exports it.
fn worker_dir() -> PathBuf {
    let Some(dir) = std::env::var_os("TOLLGATE_WORKER_DIR") else {
        panic!(
            "TOLLGATE_WORKER_DIR is not set: build the worker first, from the repository root: \
             {BUILD_COMMAND}"
        );
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("index.js").is_file(),
        "{} holds no built worker (index.js): rebuild it with {BUILD_COMMAND}",
        dir.display()
    );
    dir
}

/// `TOLLGATE_WRANGLER`, else the one the tools script installs, else `wrangler` on PATH.
fn wrangler() -> PathBuf {
    if let Some(path) = std::env::var_os("TOLLGATE_WRANGLER") {
        return path.into();
    }
    let cache = std::env::var_os("TOLLGATE_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/tollgate-tools"))
        });
    cache
        .map(|cache| cache.join("npm/node_modules/.bin/wrangler"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| "wrangler".into())
}

/// Copies the directory `from` (files and directories, recursively) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|error| panic!("{}: {error}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|error| panic!("{}: {error}", from.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("{}: {error}", entry.path().display()));
        }
    }
}

/// The deploy config's name and compatibility date, pointed at the built worker, with no
/// build step.
fn worker_config(worker_dir: &Path) -> String {
    let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wrangler.toml");
    let repo_config = fs::read_to_string(&repo_config)
        .unwrap_or_else(|error| panic!("{}: {error}", repo_config.display()));
    let compatibility_date = repo_config
        .lines()
        .find(|line| line.trim_start().starts_with("compatibility_date"))
        .expect("wrangler.toml sets compatibility_date");
    format!(
        "name = \"tollgate-test\"\nmain = {:?}\n{compatibility_date}\n",
        worker_dir.join("index.js").display().to_string()
    )
}

fn dev_vars(settings: &EdgeSettings) -> String {
    settings
        .variables()
        .iter()
        .map(|(name, value)| format!("{name}={value:?}\n"))
        .collect()
}

/// Kills process group `group` once `scratch` is gone (the runtime was dropped) or this
/// process has died: dropping the runtime kills wrangler, and this takes workerd with it.
fn guard_group(group: u32, scratch: &Path) {
    let script = r#"while kill -0 "$1" 2>/dev/null && [ -d "$2" ] && kill -0 "-$3" 2>/dev/null; do sleep 0.2; done; kill -KILL "-$3" 2>/dev/null; exit 0"#;
    let watchdog = tokio::process::Command::new("sh")
        .args(["-c", script, "tollgate-workerd-watchdog"])
        .arg(std::process::id().to_string())
        .arg(scratch)
        .arg(group.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    // Not awaited: tokio reaps it when it exits.
    drop(watchdog.expect("sh starts the watchdog"));
}
