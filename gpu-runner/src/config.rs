//! Runner configuration: flags, each with an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How the runner reaches Tollgate's job queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueTransport {
    /// Poll the queue table directly over libSQL (`--database`), as the runner of
    /// `--token`.
    Libsql,
    /// Tollgate's runner endpoints (`--server`) with the runner token (hosts without
    /// database credentials).
    Http,
}

/// What the binary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Command {
    /// Claim and run jobs until SIGTERM / Ctrl-C.
    Run,
    /// Probe every ComfyUI and exit (same as `--check`).
    Check,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gpu-runner",
    version,
    about = "Runs Tollgate jobs on local ComfyUI instances"
)]
pub struct Config {
    /// `run` (the job loop) or `check`.
    #[arg(value_enum)]
    pub command: Option<Command>,

    /// ComfyUI base URLs, one per GPU (comma-separated or repeated).
    #[arg(
        long = "comfyui",
        env = "GPU_RUNNER_COMFYUI_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8188"
    )]
    pub comfyui_urls: Vec<String>,

    /// Directory where job outputs are stored.
    #[arg(
        long,
        env = "GPU_RUNNER_OUTPUT_DIR",
        default_value = "/var/lib/gpu-runner/outputs"
    )]
    pub output_dir: PathBuf,

    /// Where outputs go instead of `--output-dir`: `s3://BUCKET/PREFIX?endpoint=URL&region=R`
    /// (an S3-compatible bucket; keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and
    /// AWS_SESSION_TOKEN), or a directory.
    #[arg(long, env = "GPU_RUNNER_STORE")]
    pub store: Option<String>,

    /// Probe every ComfyUI's /system_stats, print GPU, VRAM and version, and exit.
    #[arg(long)]
    pub check: bool,

    /// Queue transport; by default `libsql` when `--database` is given, else `http`.
    #[arg(long, env = "GPU_RUNNER_QUEUE", value_enum)]
    pub queue: Option<QueueTransport>,

    /// Tollgate API base URL (queue = http).
    #[arg(long, visible_alias = "server", env = "GPU_RUNNER_TOLLGATE_URL")]
    pub tollgate_url: Option<String>,

    /// Runner token created by the worker's owner (`tgr_…`): it names the worker, with
    /// either transport.
    #[arg(
        long,
        visible_alias = "token",
        env = "GPU_RUNNER_TOKEN",
        hide_env_values = true
    )]
    pub runner_token: Option<String>,

    /// Tollgate's database (queue = libsql): a file path or `file:` (embedded libSQL on
    /// this host), or `libsql://` / `http(s)://` (a libSQL server).
    #[arg(long, visible_alias = "database", env = "GPU_RUNNER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Auth token of a libSQL server (queue = libsql, remote).
    #[arg(long, env = "GPU_RUNNER_DATABASE_TOKEN", hide_env_values = true)]
    pub database_token: Option<String>,

    /// Name reported in heartbeats (defaults to the host name).
    #[arg(long, env = "GPU_RUNNER_NAME")]
    pub name: Option<String>,

    /// How often /history is polled while the WebSocket is up, in milliseconds
    /// (a safety net; the socket's end marker normally comes first).
    #[arg(long, env = "GPU_RUNNER_POLL_MS", default_value_t = 2000)]
    pub poll_ms: u64,

    /// How often /history is polled when there is no WebSocket, in milliseconds.
    #[arg(long, env = "GPU_RUNNER_POLL_NO_WS_MS", default_value_t = 250)]
    pub poll_no_ws_ms: u64,

    /// After an interrupt, how long to wait for ComfyUI to end the prompt before giving up,
    /// in seconds.
    #[arg(long, env = "GPU_RUNNER_INTERRUPT_GRACE_S", default_value_t = 120)]
    pub interrupt_grace_s: u64,

    /// Heartbeat interval, in seconds.
    #[arg(long, env = "GPU_RUNNER_HEARTBEAT_S", default_value_t = 30)]
    pub heartbeat_s: u64,

    /// Lease renewal interval while a job runs, in seconds (the lease lasts 60).
    #[arg(long, env = "GPU_RUNNER_RENEW_S", default_value_t = 15)]
    pub renew_s: u64,

    /// How long a claim waits on the server for a job (runner endpoints), in seconds; at
    /// most 20, 0 to poll.
    #[arg(long, env = "GPU_RUNNER_CLAIM_WAIT_S", default_value_t = 20)]
    pub claim_wait_s: u64,

    /// Shortest wait between claims that came back empty without waiting (the direct
    /// transport), or while ComfyUI cannot take a job, in milliseconds.
    #[arg(long, env = "GPU_RUNNER_IDLE_MIN_MS", default_value_t = 100)]
    pub idle_min_ms: u64,

    /// Longest such wait, in milliseconds.
    #[arg(long, env = "GPU_RUNNER_IDLE_MAX_MS", default_value_t = 1000)]
    pub idle_max_ms: u64,

    /// On SIGTERM, how long a running job may go on before it is handed back, in seconds.
    #[arg(long, env = "GPU_RUNNER_SHUTDOWN_GRACE_S", default_value_t = 300)]
    pub shutdown_grace_s: u64,
}

impl Config {
    /// The transport in use: `--queue`, else inferred from `--database`.
    pub fn transport(&self) -> QueueTransport {
        self.queue.unwrap_or(if self.database_url.is_some() {
            QueueTransport::Libsql
        } else {
            QueueTransport::Http
        })
    }

    /// Problems that make the configuration unusable for the job loop.
    pub fn queue_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.queue.is_none() && self.tollgate_url.is_some() && self.database_url.is_some() {
            out.push(
                "give --server (runner endpoints) or --database (direct), not both, or say --queue"
                    .into(),
            );
        }
        match self.transport() {
            QueueTransport::Http => {
                if self.tollgate_url.is_none() {
                    out.push(
                        "--server (GPU_RUNNER_TOLLGATE_URL) or --database (GPU_RUNNER_DATABASE_URL) is required"
                            .into(),
                    );
                }
            }
            QueueTransport::Libsql => match &self.database_url {
                None => out.push(
                    "--database (GPU_RUNNER_DATABASE_URL) is required with --queue libsql".into(),
                ),
                Some(url) => {
                    if let Err(e) = crate::direct::DatabaseUrl::parse(url) {
                        out.push(format!("--database: {e}"));
                    }
                }
            },
        }
        if self.runner_token.is_none() {
            out.push(
                "--token (GPU_RUNNER_TOKEN) is required: the runner token names the worker".into(),
            );
        }
        out
    }

    pub fn worker_options(&self) -> crate::worker::WorkerOptions {
        let idle_min = Duration::from_millis(self.idle_min_ms.max(10));
        crate::worker::WorkerOptions {
            heartbeat_interval: Duration::from_secs(self.heartbeat_s.max(1)),
            renew_interval: Duration::from_secs(self.renew_s.max(1)),
            claim_wait: Duration::from_secs(self.claim_wait_s).min(crate::queue::MAX_CLAIM_WAIT),
            idle_poll_min: idle_min,
            idle_poll_max: Duration::from_millis(self.idle_max_ms).max(idle_min),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s),
            execute: self.execute_options(),
            ..crate::worker::WorkerOptions::default()
        }
    }

    pub fn execute_options(&self) -> crate::execute::Options {
        crate::execute::Options {
            poll_interval: Duration::from_millis(self.poll_ms.max(10)),
            poll_interval_no_ws: Duration::from_millis(self.poll_no_ws_ms.max(10)),
            interrupt_grace: Duration::from_secs(self.interrupt_grace_s),
            ..crate::execute::Options::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_per_gpu_and_queue_checks() {
        let c = Config::try_parse_from([
            "gpu-runner",
            "--comfyui",
            "http://127.0.0.1:8188,http://127.0.0.1:8189",
            "--queue",
            "libsql",
        ])
        .unwrap();
        assert_eq!(c.comfyui_urls.len(), 2);
        assert_eq!(c.queue_problems().len(), 2, "{:?}", c.queue_problems());
        let c = Config::try_parse_from([
            "gpu-runner",
            "--tollgate-url",
            "https://api.example",
            "--runner-token",
            "tgr_x",
        ])
        .unwrap();
        assert!(c.queue_problems().is_empty());
        assert_eq!(c.transport(), QueueTransport::Http);
        assert_eq!(c.comfyui_urls, ["http://127.0.0.1:8188"]);
        let c = Config::try_parse_from([
            "gpu-runner",
            "run",
            "--server",
            "https://api.example",
            "--token",
            "tgr_x",
            "--idle-max-ms",
            "50",
        ])
        .unwrap();
        assert_eq!(c.command, Some(Command::Run));
        assert_eq!(c.runner_token.as_deref(), Some("tgr_x"));
        assert!(c.queue_problems().is_empty());
        let o = c.worker_options();
        assert_eq!(o.idle_poll_max, o.idle_poll_min);
        assert_eq!(o.claim_wait, Duration::from_secs(20));
        let c = Config::try_parse_from(["gpu-runner", "--claim-wait-s", "90"]).unwrap();
        assert_eq!(
            c.worker_options().claim_wait,
            Duration::from_secs(20),
            "capped"
        );
    }

    #[test]
    fn a_database_selects_the_direct_transport() {
        let c = Config::try_parse_from([
            "gpu-runner",
            "run",
            "--database",
            "/var/lib/tollgate/tollgate.db",
            "--token",
            "tgr_x",
        ])
        .unwrap();
        assert_eq!(c.transport(), QueueTransport::Libsql);
        assert!(c.queue_problems().is_empty(), "{:?}", c.queue_problems());
        // Without the token the runner would not know its worker.
        let c =
            Config::try_parse_from(["gpu-runner", "--database", "libsql://db.example"]).unwrap();
        assert_eq!(c.queue_problems().len(), 1, "{:?}", c.queue_problems());
        // Both places named: ambiguous unless the transport is said.
        let both = [
            "gpu-runner",
            "--database",
            "t.db",
            "--server",
            "https://api.example",
            "--token",
            "tgr_x",
        ];
        let c = Config::try_parse_from(both).unwrap();
        assert_eq!(c.queue_problems().len(), 1, "{:?}", c.queue_problems());
        let c = Config::try_parse_from(both.iter().copied().chain(["--queue", "http"])).unwrap();
        assert!(c.queue_problems().is_empty());
        let c =
            Config::try_parse_from(["gpu-runner", "--database", ":memory:", "--token", "tgr_x"])
                .unwrap();
        assert_eq!(c.queue_problems().len(), 1);
    }
}
