//! The HTTP server: one single-threaded runtime per worker thread, all accepting on one
//! socket. The shared API is `!Send` by design (it runs in wasm isolates), so each request
//! stays on the thread that accepted it.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{StreamExt, stream::LocalBoxStream};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
};
use tollgate::{
    ApiError, Env,
    api::{ClientAddr, Reply, Streamed, payload_too_large},
    clock::{Clock, ManualClock, SystemClock},
    config::Config,
    db::{MigrationError, migrate},
    error::ErrorCause,
    router::refusal,
};

use crate::{
    database::Database, db::LibsqlDb, metrics::Metrics, notifier::NativeNotifier,
    outbound::NativeOutbound, rate_limiter::InProcessRateLimiter,
};

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections the kernel completes and holds for the server while every worker is busy or
/// at the connection cap (the standard library's default is 128).
const LISTEN_BACKLOG: i32 = 1024;
/// The first pause of the accept loop once it runs out of a resource (file descriptors,
/// memory), doubled while it recurs, up to the most.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MOST: Duration = Duration::from_millis(500);
/// A worker that keeps failing to accept says so at most this often.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct ServerSettings {
    pub address: SocketAddr,
    pub threads: usize,
    pub cron_interval: Duration,
    pub config: Config,
    /// The wall clock, or a manual one that tests move.
    pub clock: ServerClock,
    pub connections: ConnectionLimits,
}

/// How long a client may take to send a request, and how many are served at once: a client
/// that trickles its request would otherwise hold a connection, and a file descriptor,
/// forever.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A client that has not sent a request's headers by then is dropped; this is also how
    /// long an idle kept-alive connection stays open.
    pub header_read_timeout: Duration,
    /// A request whose body has not arrived whole by then is answered 408 and its connection
    /// closed.
    pub body_read_timeout: Duration,
    /// Connections served at once, across the worker threads; further clients wait in the
    /// listen backlog until one ends. Keep it below the process's file descriptor limit.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1000,
        }
    }
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
    let database = database
        .into()
        .with_max_inflight(settings.config.database_max_inflight);
    let listener = listen(settings.address).map_err(StartError::Bind)?;
    let local_addr = listener.local_addr().map_err(StartError::Bind)?;
    let (shutdown, stop) = watch::channel(false);
    let limits = settings.connections;
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let notifier = NativeNotifier::new();
    let rate_limiter = InProcessRateLimiter::default();
    let metrics = Metrics::default();
    let workers = (0..settings.threads.max(1))
        .map(|index| {
            let listener = listener.try_clone().map_err(StartError::Bind)?;
            let (database, config, clock, notifier, rate_limiter, slots, metrics) = (
                database.clone(),
                settings.config.clone(),
                settings.clock.clone(),
                notifier.clone(),
                rate_limiter.clone(),
                slots.clone(),
                metrics.clone(),
            );
            // One worker runs the cron loop: its tasks are idempotent, one runner is enough.
            let cron_interval = (index == 0).then_some(settings.cron_interval);
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("tollgate-worker-{index}"))
                .spawn(move || {
                    let outbound = NativeOutbound::new(config.webhooks_allow_private);
                    let in_database = config.rate_limits_in_database;
                    let db = metrics.timed(database.port());
                    let mut env = Env::new(db, clock.port(), Box::new(outbound), config)
                        .with_notifier(Box::new(notifier));
                    if !in_database {
                        env = env.with_rate_limiter(Box::new(rate_limiter));
                    }
                    let worker = Worker {
                        env,
                        limits,
                        metrics,
                        slots,
                        stop,
                    };
                    worker.run(listener, cron_interval)
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

/// A listening socket with a backlog deep enough to hold the clients waiting for a slot.
fn listen(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // Every worker's runtime needs it non-blocking.
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One worker thread's share of the server.
struct Worker {
    env: Env,
    limits: ConnectionLimits,
    metrics: Metrics,
    /// The connection cap, shared by every worker.
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Worker {
    fn run(self, listener: std::net::TcpListener, cron_interval: Option<Duration>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a single-threaded runtime starts");
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, self.serve(listener, cron_interval));
    }

    async fn serve(self, listener: std::net::TcpListener, cron_interval: Option<Duration>) {
        let Worker {
            env,
            limits,
            metrics,
            slots,
            mut stop,
        } = self;
        let env = Rc::new(env);
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the listener is non-blocking");
        let mut connections = JoinSet::new();
        if let Some(interval) = cron_interval {
            connections.spawn_local(cron_loop(env.clone(), interval, stop.clone()));
        }
        let mut failures = AcceptFailures::default();
        loop {
            while connections.try_join_next().is_some() {}
            // A slot first: past the cap, clients wait in the listen backlog, not on a file
            // descriptor of ours.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                _ = stop.changed() => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    failures.succeeded();
                    let connection = serve_connection(
                        stream,
                        peer,
                        Serving {
                            env: env.clone(),
                            limits,
                            metrics: metrics.clone(),
                        },
                        stop.clone(),
                        slot,
                    );
                    connections.spawn_local(connection);
                }
                Err(error) => {
                    drop(slot);
                    let pause = failures.failed(&error, Instant::now());
                    if pause.is_zero() {
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => break,
                    }
                }
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
    }
}

/// How a worker meets failures to accept. One that concerns a single client (it reset or
/// gave up before it was accepted) is passed over. Running out of something (file
/// descriptors, memory) is not over by the next `accept`: the worker pauses, longer while
/// it recurs, instead of spinning on it, and says so at most once per
/// [`ACCEPT_LOG_INTERVAL`], with how often it happened since.
#[derive(Default)]
struct AcceptFailures {
    consecutive: u32,
    unreported: u64,
    reported_at: Option<Instant>,
}

impl AcceptFailures {
    fn succeeded(&mut self) {
        self.consecutive = 0;
    }

    /// How long to pause after `error`, met at `now`.
    fn failed(&mut self, error: &io::Error, now: Instant) -> Duration {
        if is_one_clients_failure(error) {
            tracing::debug!(%error, "a client went away before it was accepted");
            return Duration::ZERO;
        }
        let pause = ACCEPT_PAUSE_FIRST
            .saturating_mul(1 << self.consecutive.min(16))
            .min(ACCEPT_PAUSE_MOST);
        self.consecutive += 1;
        self.unreported += 1;
        let due = self
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_INTERVAL);
        if due {
            tracing::error!(
                %error,
                failures = std::mem::take(&mut self.unreported),
                pause_ms = pause.as_millis() as u64,
                "cannot accept connections"
            );
            self.reported_at = Some(now);
        }
        pause
    }
}

fn is_one_clients_failure(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
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

/// Serves one connection, holding its `_slot` of the connection cap until it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    serving: Serving,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let limits = serving.limits;
    let service = service_fn(move |request| {
        let serving = serving.clone();
        async move { Ok::<_, Infallible>(respond(request, peer, serving).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
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

/// What a connection's requests are served with.
#[derive(Clone)]
struct Serving {
    env: Rc<Env>,
    limits: ConnectionLimits,
    metrics: Metrics,
}

/// Serves one request and counts it in the metrics.
async fn respond(
    request: Request<Incoming>,
    peer: SocketAddr,
    serving: Serving,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let metrics = serving.metrics.clone();
    let response = if method == http::Method::GET && path == "/metrics" {
        let env = &serving.env;
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        metrics
            .answer(env, env.config.metrics_token.as_deref(), authorization)
            .await
            .map(|body| Either::Left(Full::new(body)))
    } else {
        answer(request, peer, serving).await
    };
    metrics.observe_request(
        method.as_str(),
        &path,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Reads the body up to the configured limit and within the body timeout, hands the request
/// to the shared API, and logs what went wrong inside when the answer is a 5xx.
async fn answer(
    request: Request<Incoming>,
    peer: SocketAddr,
    Serving { env, limits, .. }: Serving,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let limit = env.config.max_body_bytes;
    let body = tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limit).collect(),
    );
    let response = match body.await {
        Ok(Ok(collected)) => {
            parts.extensions.insert(ClientAddr(peer.ip()));
            let request = Request::from_parts(parts, collected.to_bytes());
            // A task of its own, so that a client that hangs up mid-request does not cut the
            // request short: an LLM call the provider has answered is still settled and
            // recorded, not left holding its credits until cron gives them back.
            let served = tokio::task::spawn_local(tollgate::router::serve(request, env.clone()));
            let reply = match served.await {
                Ok(reply) => reply,
                Err(error) => Reply::Whole(
                    ApiError::internal()
                        .caused_by(format!("the request's task failed: {error}"))
                        .into_response(),
                ),
            };
            match reply {
                Reply::Whole(response) => response,
                Reply::Streamed(Streamed { response, driver }) => {
                    tracing::debug!(%method, path = uri.path(), elapsed = ?started.elapsed(), "stream");
                    tokio::task::spawn_local(driver);
                    return response.map(|chunks| {
                        Either::Right(StreamBody::new(
                            chunks.map(|chunk| Ok(Frame::data(chunk))).boxed_local(),
                        ))
                    });
                }
            }
        }
        Ok(Err(error))
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            refusal(uri.path(), payload_too_large(limit))
        }
        Ok(Err(error)) => refusal(
            uri.path(),
            ApiError::bad_request(
                "unreadable_body",
                format!("the request body could not be read: {error}"),
            ),
        ),
        Err(_) => {
            let mut response = refusal(
                uri.path(),
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body did not arrive within {:?}",
                        limits.body_read_timeout
                    ),
                ),
            );
            // The rest of the body may still come; the connection is not worth keeping.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
    };
    let status = response.status();
    let cause = response
        .extensions()
        .get::<ErrorCause>()
        .map(|cause| cause.0.as_str());
    // A 503 without a cause is a known condition (an overloaded database, or a refusal whose
    // reason was logged when it began): a line per request would only bury the rest.
    if status.is_server_error() && (cause.is_some() || status != StatusCode::SERVICE_UNAVAILABLE) {
        tracing::error!(%method, path = uri.path(), %status, cause, "request failed");
    } else {
        tracing::debug!(%method, path = uri.path(), %status, elapsed = ?started.elapsed(), "request");
    }
    response.map(|body| Either::Left(Full::new(body)))
}

/// A whole answer, or the events of a streamed one as they are written.
type ResponseBody =
    Either<Full<Bytes>, StreamBody<LocalBoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn out_of_descriptors() -> io::Error {
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn running_out_of_descriptors_pauses_longer_each_time_and_is_reported_seldom() {
        let mut failures = AcceptFailures::default();
        let mut now = Instant::now();
        let started = now;
        let mut pauses = Vec::new();
        let mut reports = 0;
        while now.duration_since(started) < Duration::from_secs(60) {
            let before = failures.reported_at;
            let pause = failures.failed(&out_of_descriptors(), now);
            reports += usize::from(failures.reported_at != before);
            pauses.push(pause);
            now += pause;
        }
        assert_eq!(pauses[0], ACCEPT_PAUSE_FIRST);
        assert!(pauses.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(*pauses.last().unwrap(), ACCEPT_PAUSE_MOST);
        // A spinning loop would try millions of times a minute, and log each.
        assert!(pauses.len() < 200, "{} attempts", pauses.len());
        assert_eq!(reports, 6, "once at the start, then once per interval");

        failures.succeeded();
        assert_eq!(
            failures.failed(&out_of_descriptors(), now),
            ACCEPT_PAUSE_FIRST
        );
    }

    #[test]
    fn a_client_that_went_away_is_passed_over_at_once() {
        let mut failures = AcceptFailures::default();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(failures.failed(&aborted, Instant::now()), Duration::ZERO);
        assert_eq!(failures.consecutive, 0);
        assert!(failures.reported_at.is_none());
    }
}
