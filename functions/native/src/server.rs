//! The HTTP server: one single-threaded runtime per worker thread, all accepting on one
//! socket. The shared API is `!Send` by design (it runs in wasm isolates), so each request
//! stays on the thread that accepted it.

use std::{
    convert::Infallible,
    net::SocketAddr,
    rc::Rc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpStream, sync::watch, task::JoinSet};
use tollgate::{
    Env,
    api::{ClientAddr, payload_too_large},
    clock::{Clock, ManualClock, SystemClock},
    config::Config,
    db::{MigrationError, migrate},
    error::ErrorCause,
};

use crate::{database::Database, db::LibsqlDb, notifier::NativeNotifier, outbound::NativeOutbound};

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that has not sent its headers by then is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerSettings {
    pub address: SocketAddr,
    pub threads: usize,
    pub cron_interval: Duration,
    pub config: Config,
    /// The wall clock, or a manual one that tests move.
    pub clock: ServerClock,
}

#[derive(Clone)]
pub enum ServerClock {
    System,
    Manual(ManualClock),
}

impl ServerClock {
    fn port(&self) -> Box<dyn Clock> {
        match self {
            ServerClock::System => Box::new(SystemClock),
            ServerClock::Manual(clock) => Box::new(clock.clone()),
        }
    }
}

/// A server accepting connections; dropping it does not stop it: call `shutdown`.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    /// Wakes waiting claims across the worker threads.
    notifier: NativeNotifier,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish (up to a bound), and returns once
    /// every worker has ended.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Claims waiting for a job answer now rather than hold up the drain.
        self.notifier.close();
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

#[derive(Debug)]
pub enum StartError {
    Database(tollgate::db::DbError),
    Migration(MigrationError),
    Bind(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database(error) => write!(f, "cannot open the database: {error}"),
            StartError::Migration(error) => write!(f, "{error}"),
            StartError::Bind(error) => write!(f, "cannot listen: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Opens the embedded database at `path` and brings its schema up to date.
pub async fn open_database(path: &str, now: i64) -> Result<LibsqlDb, StartError> {
    let db = LibsqlDb::open(path).await.map_err(StartError::Database)?;
    migrate_database(&db, now).await?;
    Ok(db)
}

/// Opens the database at `url` (a path or a remote libSQL URL) and brings its schema up to
/// date.
pub async fn open_database_url(
    url: &str,
    token: Option<String>,
    now: i64,
) -> Result<Database, StartError> {
    let database = Database::open(url, token)
        .await
        .map_err(StartError::Database)?;
    migrate_database(&*database.port(), now).await?;
    Ok(database)
}

async fn migrate_database(db: &dyn tollgate::db::Db, now: i64) -> Result<(), StartError> {
    let applied = migrate(db, now).await.map_err(StartError::Migration)?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied migrations");
    }
    Ok(())
}

/// Binds the address and starts the workers on an opened, migrated database.
pub fn start(
    settings: ServerSettings,
    database: impl Into<Database>,
) -> Result<RunningServer, StartError> {
    let database = database.into();
    let listener = std::net::TcpListener::bind(settings.address).map_err(StartError::Bind)?;
    listener.set_nonblocking(true).map_err(StartError::Bind)?;
    let local_addr = listener.local_addr().map_err(StartError::Bind)?;
    let (shutdown, stop) = watch::channel(false);
    let notifier = NativeNotifier::new();
    let workers = (0..settings.threads.max(1))
        .map(|index| {
            let listener = listener.try_clone().map_err(StartError::Bind)?;
            let (database, config, clock, notifier) = (
                database.clone(),
                settings.config.clone(),
                settings.clock.clone(),
                notifier.clone(),
            );
            // One worker runs the cron loop: its tasks are idempotent, one runner is enough.
            let cron_interval = (index == 0).then_some(settings.cron_interval);
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("tollgate-worker-{index}"))
                .spawn(move || {
                    let outbound = NativeOutbound::new(config.webhooks_allow_private);
                    let env = Env::new(database.port(), clock.port(), Box::new(outbound), config)
                        .with_notifier(Box::new(notifier));
                    run_worker(listener, env, cron_interval, stop)
                })
                .map_err(StartError::Bind)
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(address = %local_addr, "Tollgate is listening");
    Ok(RunningServer {
        local_addr,
        shutdown,
        workers,
        notifier,
    })
}

fn run_worker(
    listener: std::net::TcpListener,
    env: Env,
    cron_interval: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime starts");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let env = Rc::new(env);
        let listener = tokio::net::TcpListener::from_std(listener).expect("the listener is non-blocking");
        let mut connections = JoinSet::new();
        if let Some(interval) = cron_interval {
            connections.spawn_local(cron_loop(env.clone(), interval, stop.clone()));
        }
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn_local(serve_connection(stream, peer, env.clone(), stop.clone()));
                    }
                    Err(error) => tracing::warn!(%error, "accept failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("requests still running after the drain timeout were cut off");
        }
    });
}

/// Runs cron every `interval`, the first time one interval after start: nothing a just
/// started server holds is more urgent than that, and a test harness that drives cron
/// itself (with a long interval) is then never raced by a run of the server's own.
async fn cron_loop(env: Rc<Env>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => match tollgate::cron::run(&env).await {
                Ok(report) => tracing::debug!(?report, "cron ran"),
                Err(error) => tracing::error!(%error, "cron failed"),
            },
            _ = stop.changed() => return,
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    env: Rc<Env>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let env = env.clone();
        async move { Ok::<_, Infallible>(respond(request, peer, &env).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Reads the body up to the configured limit, hands the request to the shared API, and
/// logs what went wrong inside when the answer is a 5xx.
async fn respond(request: Request<Incoming>, peer: SocketAddr, env: &Env) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let limit = env.config.max_body_bytes;
    let response = match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            parts.extensions.insert(ClientAddr(peer.ip()));
            tollgate::handle(Request::from_parts(parts, collected.to_bytes()), env).await
        }
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            payload_too_large(limit).into_response()
        }
        Err(error) => tollgate::ApiError::bad_request(
            "unreadable_body",
            format!("the request body could not be read: {error}"),
        )
        .into_response(),
    };
    let status = response.status();
    if status.is_server_error() {
        let cause = response
            .extensions()
            .get::<ErrorCause>()
            .map(|cause| cause.0.as_str());
        tracing::error!(%method, path = uri.path(), %status, cause, "request failed");
    } else {
        tracing::debug!(%method, path = uri.path(), %status, elapsed = ?started.elapsed(), "request");
    }
    response.map(Full::new)
}
