//! The GPU runner binary. `--check` probes every configured ComfyUI and exits; the job loop
//! (claiming from Tollgate's queue) arrives with the queue transport.

use std::process::ExitCode;

use clap::Parser;
use gpu_runner::comfyui::ComfyClient;
use gpu_runner::config::Config;

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

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpu-runner: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.check {
        return if runtime.block_on(check(&config)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    for problem in config.queue_problems() {
        eprintln!("gpu-runner: {problem}");
    }
    eprintln!(
        "gpu-runner {}: the queue transport ({:?}) is not part of this build yet; \
         use --check to verify this host's ComfyUI instances",
        env!("CARGO_PKG_VERSION"),
        config.queue
    );
    ExitCode::from(2)
}
