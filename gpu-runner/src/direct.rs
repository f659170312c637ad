//! The direct transport: the runner reaches the queue table itself over libSQL, as the
//! product is designed, and runs the very functions behind Tollgate's runner endpoints
//! (`tollgate::jobs::queue::{claim, renew, finish, fail}`, the claim statement among them,
//! and `tollgate::jobs::runners`). It still presents its runner token: every call resolves
//! the token to its runner (unknown or revoked: refused), so a runner claims only from its
//! token's worker and a revocation stops it at once, exactly as over HTTP.
//!
//! Tollgate's shared code is `!Send` by design (it runs in wasm isolates), so the database
//! lives on a thread of its own with a single-threaded runtime, and [`DbQueue`] hands it
//! each call through a channel; calls run concurrently there.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tollgate::clock::{Clock, SystemClock};
use tollgate::config::Config;
use tollgate::db::Db;
use tollgate::db::hrana::HranaDb;
use tollgate::jobs::{queue, runners};
use tollgate::outbound::NoOutbound;
use tollgate::{ApiError, Env};

use crate::queue::{ClaimedJob, Finish, Lease, LeaseStatus, Queue, QueueError, RunnerInfo};

/// Where the database is, from `--database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded libSQL file (a path, or `file:path`) on this host.
    File(String),
    /// A libSQL server over Hrana HTTP: `libsql://` (Turso, over https) or `http(s)://` (sqld).
    Remote(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("the database URL is empty".into());
        }
        if HranaDb::is_remote_url(url) {
            return Ok(DatabaseUrl::Remote(url.to_string()));
        }
        let path = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"));
        let path = path.unwrap_or(url);
        if path.contains("://") {
            return Err(format!(
                "unsupported database URL {url:?}: use a file path, file:, libsql://, http:// or https://"
            ));
        }
        if path.is_empty() || path == ":memory:" {
            return Err(format!(
                "{url:?} is not a database Tollgate writes to: name its file"
            ));
        }
        Ok(DatabaseUrl::File(path.to_string()))
    }
}

/// What the database thread holds.
struct Ctx {
    env: Env,
    token: String,
}

impl Ctx {
    async fn runner(&self) -> Result<runners::Runner, QueueError> {
        runners::runner_for_token(&self.env, &self.token)
            .await
            .map_err(queue_error)
    }
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;
type Call = Box<dyn FnOnce(Rc<Ctx>) -> LocalFuture<()> + Send>;
/// Opens the database on its thread.
pub type Opener = Box<dyn FnOnce() -> LocalFuture<Result<Box<dyn Db>, String>> + Send>;

/// The queue over a libSQL database this runner reaches itself.
pub struct DbQueue {
    calls: mpsc::UnboundedSender<Call>,
}

/// An API error as the runner's queue error: the same mapping as over HTTP.
fn queue_error(error: ApiError) -> QueueError {
    let status = error.status.as_u16();
    if error.code == "lease_lost" {
        return QueueError::LeaseLost;
    }
    let mut message = format!("{} ({})", error.message, error.code);
    if let Some(cause) = &error.cause {
        message.push_str(": ");
        message.push_str(cause);
    }
    if error.status.is_server_error() || status == 429 || status == 408 {
        QueueError::Unavailable(message)
    } else {
        QueueError::Refused { status, message }
    }
}

/// Opens the embedded file or the remote database; the runner never migrates it (the
/// server owns the schema), and refuses to create an empty file where none is.
pub fn opener(url: &DatabaseUrl, auth_token: Option<String>) -> Result<Opener, QueueError> {
    match url.clone() {
        DatabaseUrl::File(path) => {
            if !Path::new(&path).is_file() {
                return Err(QueueError::Refused {
                    status: 404,
                    message: format!(
                        "no database file at {path} (point --database at Tollgate's database)"
                    ),
                });
            }
            Ok(Box::new(move || {
                Box::pin(async move {
                    tollgate_server::db::LibsqlDb::open(&path)
                        .await
                        .map(|db| Box::new(db) as Box<dyn Db>)
                        .map_err(|e| format!("{path}: {e}"))
                })
            }))
        }
        DatabaseUrl::Remote(url) => Ok(Box::new(move || {
            Box::pin(async move {
                Ok(Box::new(HranaDb::new(
                    &url,
                    auth_token,
                    Box::new(tollgate_server::hrana::ReqwestTransport::new()),
                )) as Box<dyn Db>)
            })
        })),
    }
}

impl DbQueue {
    /// Connects to `url` as the runner of `runner_token`, on the wall clock.
    pub async fn connect(
        url: &DatabaseUrl,
        auth_token: Option<String>,
        runner_token: &str,
    ) -> Result<DbQueue, QueueError> {
        DbQueue::start(opener(url, auth_token)?, SystemClock, runner_token).await
    }

    /// Starts the database thread with `open` and `clock` (tests pass the server's manual
    /// clock) and checks the token once, so that a wrong token or database fails at start.
    pub async fn start(
        open: Opener,
        clock: impl Clock + Send + 'static,
        runner_token: &str,
    ) -> Result<DbQueue, QueueError> {
        let (calls, mut incoming) = mpsc::unbounded_channel::<Call>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), QueueError>>();
        let token = runner_token.to_string();
        std::thread::Builder::new()
            .name("gpu-runner-db".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(QueueError::Unavailable(format!(
                            "database thread runtime: {e}"
                        ))));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let db = match open().await {
                        Ok(db) => db,
                        Err(e) => {
                            let _ = ready_tx.send(Err(QueueError::Unavailable(e)));
                            return;
                        }
                    };
                    let config =
                        Config::from_lookup(|_| None).expect("the default configuration is valid");
                    let env = Env::new(db, Box::new(clock), Box::new(NoOutbound), config);
                    let ctx = Rc::new(Ctx { env, token });
                    if let Err(e) = ctx.runner().await {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    // Until the queue is dropped; calls in flight finish before the thread ends.
                    let mut running = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            call = incoming.recv() => match call {
                                Some(call) => {
                                    running.spawn_local(call(ctx.clone()));
                                }
                                None => break,
                            },
                            Some(_) = running.join_next(), if !running.is_empty() => {}
                        }
                    }
                    while running.join_next().await.is_some() {}
                });
            })
            .map_err(|e| QueueError::Unavailable(format!("database thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| QueueError::Unavailable("the database thread ended".into()))??;
        Ok(DbQueue { calls })
    }

    /// Runs `f` on the database thread and waits for its answer.
    async fn call<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Ctx>) -> LocalFuture<Result<T, QueueError>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |ctx| {
            Box::pin(async move {
                let _ = tx.send(f(ctx).await);
            })
        });
        self.calls
            .send(call)
            .map_err(|_| QueueError::Unavailable("the database thread has stopped".into()))?;
        rx.await
            .map_err(|_| QueueError::Unavailable("the database thread dropped the call".into()))?
    }

    async fn lease_call(
        &self,
        lease: &Lease,
        progress: Option<(i64, Option<String>)>,
    ) -> Result<LeaseStatus, QueueError> {
        let lease = lease.clone();
        self.call(move |ctx| {
            Box::pin(async move {
                let runner = ctx.runner().await?;
                let answer =
                    queue::renew(&ctx.env, &runner, &lease.job_id, &lease.lease_id, progress)
                        .await
                        .map_err(queue_error)?;
                let cancel_requested = answer["cancel_requested"].as_bool().ok_or_else(|| {
                    QueueError::Protocol(format!("renew: no cancel_requested in {answer}"))
                })?;
                Ok(LeaseStatus { cancel_requested })
            })
        })
        .await
    }
}

#[async_trait]
impl Queue for DbQueue {
    async fn heartbeat(&self, info: &RunnerInfo) -> Result<(), QueueError> {
        let body = runners::Heartbeat {
            host: info.host.clone(),
            gpu: info.gpu.clone(),
            vram_mb: info.vram_mb,
            version: info.version.clone(),
        };
        self.call(move |ctx| {
            Box::pin(async move {
                let runner = ctx.runner().await?;
                runners::record_heartbeat(&ctx.env, &runner, &body)
                    .await
                    .map(|_| ())
                    .map_err(queue_error)
            })
        })
        .await
    }

    /// Answers at once: the database cannot tell this runner when a job comes, so the
    /// runner's loop polls at a short interval that backs off.
    async fn claim(
        &self,
        free_vram_mb: i64,
        _wait: Duration,
    ) -> Result<Option<ClaimedJob>, QueueError> {
        let free = free_vram_mb.max(0);
        self.call(move |ctx| {
            Box::pin(async move {
                let runner = ctx.runner().await?;
                match queue::claim(&ctx.env, &runner, free)
                    .await
                    .map_err(queue_error)?
                {
                    None => Ok(None),
                    Some(job) => serde_json::from_value(job)
                        .map(Some)
                        .map_err(|e| QueueError::Protocol(format!("claim: {e}"))),
                }
            })
        })
        .await
    }

    async fn renew(&self, lease: &Lease) -> Result<LeaseStatus, QueueError> {
        self.lease_call(lease, None).await
    }

    async fn progress(
        &self,
        lease: &Lease,
        percent: i64,
        node: Option<&str>,
    ) -> Result<LeaseStatus, QueueError> {
        self.lease_call(lease, Some((percent.clamp(0, 100), node.map(String::from))))
            .await
    }

    async fn finish(&self, lease: &Lease, finish: &Finish) -> Result<(), QueueError> {
        let job_id = lease.job_id.clone();
        let body = queue::Finish {
            lease_id: lease.lease_id.clone(),
            status: finish.status.as_str().to_string(),
            outputs: finish.outputs.clone(),
            gpu_seconds: finish.gpu_seconds.max(0),
            peak_vram_mb: finish.peak_vram_mb,
            error: finish.error.clone(),
        };
        self.call(move |ctx| {
            Box::pin(async move {
                let runner = ctx.runner().await?;
                queue::finish(&ctx.env, &runner, &job_id, &body)
                    .await
                    .map(|_: Value| ())
                    .map_err(queue_error)
            })
        })
        .await
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<(), QueueError> {
        let lease = lease.clone();
        let error = error.to_string();
        self.call(move |ctx| {
            Box::pin(async move {
                let runner = ctx.runner().await?;
                queue::fail(&ctx.env, &runner, &lease.job_id, &lease.lease_id, &error)
                    .await
                    .map(|_| ())
                    .map_err(queue_error)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_the_adapter() {
        assert_eq!(
            DatabaseUrl::parse("/var/lib/tollgate/tollgate.db"),
            Ok(DatabaseUrl::File("/var/lib/tollgate/tollgate.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("file:tollgate.db"),
            Ok(DatabaseUrl::File("tollgate.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("file:///srv/t.db"),
            Ok(DatabaseUrl::File("/srv/t.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("libsql://db-org.turso.io"),
            Ok(DatabaseUrl::Remote("libsql://db-org.turso.io".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("http://127.0.0.1:8080"),
            Ok(DatabaseUrl::Remote("http://127.0.0.1:8080".into()))
        );
        for bad in ["", ":memory:", "file:", "postgres://x/y"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_errors_map_as_over_http() {
        use reqwest::StatusCode;
        let lost = ApiError::conflict("lease_lost", "gone");
        assert_eq!(queue_error(lost), QueueError::LeaseLost);
        let busy = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "retry");
        assert!(queue_error(busy).is_transient());
        let internal = ApiError::internal().caused_by("disk I/O error");
        match queue_error(internal) {
            QueueError::Unavailable(m) => assert!(m.contains("disk I/O error"), "{m}"),
            other => panic!("{other:?}"),
        }
        let revoked = ApiError::unauthorized("the runner token is unknown or revoked");
        assert!(matches!(
            queue_error(revoked),
            QueueError::Refused { status: 401, .. }
        ));
    }
}
