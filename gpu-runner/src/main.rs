//! The GPU runner binary. `check` (or `--check`) probes every configured ComfyUI and exits;
//! `run` claims jobs from Tollgate's queue (its runner endpoints, or its database directly)
//! and runs them until SIGTERM or Ctrl-C, then finishes (or, past the grace, hands back)
//! what it holds and exits 0.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gpu_runner::comfyui::ComfyClient;
use gpu_runner::config::{Command, Config, QueueTransport};
use gpu_runner::direct::{DatabaseUrl, DbQueue};
use gpu_runner::log::log;
use gpu_runner::queue::{HttpQueue, Queue};
use gpu_runner::store::{self, LocalDirStore};
use gpu_runner::worker::{Identity, Worker};
use tokio::sync::watch;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Probes `/system_stats` on every ComfyUI; prints one line per instance and device.
async fn check(config: &Config) -> bool {
    let mut all_ok = true;
    for url in &config.comfyui_urls {
        let client = ComfyClient::new(url);
        match client.system_stats().await {
            Ok(stats) => {
                println!(
                    "ok   {url}: ComfyUI {} (python {}, torch {}, {})",
                    stats.system.comfyui_version,
                    stats
                        .system
                        .python_version
                        .split_whitespace()
                        .next()
                        .unwrap_or(""),
                    stats.system.pytorch_version,
                    stats.system.os
                );
                if stats.devices.is_empty() {
                    println!("     no device reported");
                    all_ok = false;
                }
                for d in &stats.devices {
                    println!(
                        "     device {} ({}): VRAM {:.1} GiB total, {:.1} GiB free",
                        d.name,
                        d.kind,
                        d.vram_total as f64 / GIB,
                        d.vram_free as f64 / GIB
                    );
                }
            }
            Err(e) => {
                println!("FAIL {url}: {e}");
                all_ok = false;
            }
        }
    }
    all_ok
}

/// The host name for heartbeats when `--name` is not given.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gpu-runner".to_string())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                log(format!("cannot watch SIGTERM ({e}); Ctrl-C only"));
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The queue the configuration names, connected.
async fn connect_queue(config: &Config) -> Result<(Arc<dyn Queue>, String), String> {
    let token = config.runner_token.as_deref().unwrap_or_default();
    match config.transport() {
        QueueTransport::Http => {
            let server = config.tollgate_url.as_deref().unwrap_or_default();
            let queue = HttpQueue::new(server, token).map_err(|e| e.to_string())?;
            Ok((Arc::new(queue), server.to_string()))
        }
        QueueTransport::Libsql => {
            let url = DatabaseUrl::parse(config.database_url.as_deref().unwrap_or_default())?;
            let queue = DbQueue::connect(&url, config.database_token.clone(), token)
                .await
                .map_err(|e| e.to_string())?;
            let shown = match &url {
                DatabaseUrl::File(path) => format!("the database {path}"),
                DatabaseUrl::Remote(url) => format!("the database at {url}"),
            };
            Ok((Arc::new(queue), shown))
        }
    }
}

async fn run(config: &Config) -> ExitCode {
    let (queue, server) = match connect_queue(config).await {
        Ok(q) => q,
        Err(e) => {
            log(e);
            return ExitCode::FAILURE;
        }
    };
    let store = match &config.store {
        Some(spec) => match store::open(spec) {
            Ok(store) => store,
            Err(e) => {
                log(e);
                return ExitCode::from(2);
            }
        },
        None => Arc::new(LocalDirStore::new(&config.output_dir)),
    };
    let worker = Worker {
        queue,
        comfyui: config
            .comfyui_urls
            .iter()
            .map(|u| ComfyClient::new(u))
            .collect(),
        store,
        identity: Identity {
            host: config.name.clone().unwrap_or_else(host_name),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        options: config.worker_options(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        log("stopping: no new claims");
        stop_tx.send_replace(true);
        // Keep the sender: a closed channel would read as "nobody can stop".
        std::future::pending::<()>().await;
    });
    log(format!(
        "version {}: serving {} ComfyUI instance(s) for {server}",
        env!("CARGO_PKG_VERSION"),
        worker.comfyui.len()
    ));
    let summary = worker.run(stop_rx).await;
    log(format!("stopped ({summary})"));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if config.check || config.command == Some(Command::Check) {
        return if runtime.block_on(check(&config)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if config.command != Some(Command::Run) {
        log("say `run` to claim jobs or `check` to probe ComfyUI (see --help)");
        return ExitCode::from(2);
    }
    let problems = config.queue_problems();
    for problem in &problems {
        log(problem);
    }
    if !problems.is_empty() {
        return ExitCode::from(2);
    }
    runtime.block_on(run(&config))
}
