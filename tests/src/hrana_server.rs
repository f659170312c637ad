//! A libSQL HTTP endpoint for tests: the Hrana pipeline protocol (`/v2/pipeline`,
//! `/v3/pipeline`, JSON) served over an embedded libSQL file, with `libsql-hrana`'s types.
//!
//! No libSQL server (sqld) ships in any package registry this project can install from, so
//! the edge builds are tested against this instead. It follows sqld where Tollgate can tell:
//! bearer auth, streams kept open by baton until a `close`, batch steps with conditions
//! (`ok`, `error`, `not`, `and`, `or`, `is_autocommit`), stored SQL, errors named by
//! SQLite's primary result code (or, on request, by the extended one other servers use),
//! and sqld's admission: at most [`HranaSettings::max_concurrent_connections`] connections
//! open, a request waiting up to [`HranaSettings::connection_wait`] for one (with at most
//! 128 waiting) and turned away with 429 otherwise, and 503 while it shuts down. Tests
//! switch it to refuse Tollgate the ways a database can ([`Access`]). The native server's
//! remote mode runs the conformance suite through it too, which checks it against the
//! embedded adapter's behaviour.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use libsql::{AuthAction, AuthContext, Authorization};
use libsql_hrana::proto::{
    Batch, BatchCond, BatchResult, BatchStreamResp, CloseSqlStreamResp, CloseStreamResp, Col,
    Error as HranaError, ExecuteStreamResp, GetAutocommitStreamResp, PipelineReqBody,
    PipelineRespBody, Row, SequenceStreamResp, Stmt, StmtResult, StoreSqlStreamResp, StreamRequest,
    StreamResponse, StreamResult, Value as HranaValue,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many requests sqld lets wait for a connection; the next is turned away at once.
const MAX_WAITERS: usize = 128;

/// How the server admits requests and names errors.
#[derive(Clone, Debug)]
pub struct HranaSettings {
    /// Connections open at once (sqld's `--max-concurrent-connections`, 128 by default). A
    /// pipeline holds one while it runs; a stream kept open by baton, until it closes.
    pub max_concurrent_connections: usize,
    /// How long a request waits for a connection before it is turned away (sqld: 1 s).
    pub connection_wait: Duration,
    pub error_codes: ErrorCodes,
    /// How long each new stream holds its connection before its first statement, as on a
    /// server busy with other clients' work (none by default): it lets a test crowd the
    /// server with a load it can make, however fast the statements themselves run.
    pub busy_for: Duration,
}

impl Default for HranaSettings {
    fn default() -> Self {
        Self {
            max_concurrent_connections: 128,
            connection_wait: Duration::from_secs(1),
            error_codes: ErrorCodes::Primary,
            busy_for: Duration::ZERO,
        }
    }
}

/// How a SQLite failure is named in a Hrana error's `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCodes {
    /// As sqld: by the primary result code (`SQLITE_CONSTRAINT`, and `SQLITE_UNKNOWN` for a
    /// plain `SQLITE_ERROR`), and `SQL_PARSE_ERROR` for SQL that does not parse.
    Primary,
    /// By the extended result code (`SQLITE_CONSTRAINT_UNIQUE`).
    Extended,
}

/// What the server lets Tollgate do, switched while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Everything (the default).
    Full,
    /// Every pipeline is answered with this status: 401 for a rotated or revoked token, 403.
    Refused(StatusCode),
    /// A read-only token: a pipeline with a write in it is answered 401, as sqld answers a
    /// program its token may not run.
    ReadOnlyToken,
    /// Writes are blocked, as Turso blocks a database over its quota: each write fails as a
    /// `BLOCKED` statement error carrying this reason, while reads still run.
    WritesBlocked(String),
}

/// How many requests the server has turned away, by sqld's reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnedAway {
    /// "Too many concurrent requests": 128 were waiting already.
    pub too_many: usize,
    /// "Timed out while opening database connection": none came free within the wait.
    pub timed_out: usize,
    /// Shutting down.
    pub shutting_down: usize,
}

/// A running endpoint; dropping it stops it.
pub struct HranaServer {
    /// `http://127.0.0.1:port`, what a client's database URL is set to.
    pub url: String,
    pub token: String,
    pub local_addr: SocketAddr,
    db_path: PathBuf,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl HranaServer {
    /// Serves the libSQL database file at `db_path` (created if missing) on a free loopback
    /// port, to clients presenting `token`, admitting requests as a default sqld does.
    pub async fn start(db_path: &Path, token: &str) -> Self {
        Self::start_with(db_path, token, HranaSettings::default()).await
    }

    pub async fn start_with(db_path: &Path, token: &str, settings: HranaSettings) -> Self {
        Self::start_on(db_path, token, "127.0.0.1:0".parse().unwrap(), settings).await
    }

    pub async fn start_on(
        db_path: &Path,
        token: &str,
        address: SocketAddr,
        settings: HranaSettings,
    ) -> Self {
        let database = libsql::Builder::new_local(db_path)
            .build()
            .await
            .expect("the database file opens");
        let first = database.connect().expect("a connection");
        first
            .query("PRAGMA journal_mode = WAL", ())
            .await
            .expect("WAL mode");
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("a loopback port");
        let local_addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            database,
            token: token.to_owned(),
            streams: Mutex::default(),
            next_baton: AtomicU64::new(1),
            connections: Arc::new(Semaphore::new(settings.max_concurrent_connections)),
            idle: Mutex::default(),
            waiters: AtomicUsize::new(0),
            settings,
            access: Arc::new(Mutex::new(Access::Full)),
            shutting_down: AtomicBool::new(false),
            turned_away: Mutex::default(),
        });
        let (stop, mut stopped) = watch::channel(false);
        let serving = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = serving.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |request| {
                                let state = state.clone();
                                async move { Ok::<_, Infallible>(serve(&state, request).await) }
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = stopped.changed() => return,
                }
            }
        });
        Self {
            url: format!("http://{local_addr}"),
            token: token.to_owned(),
            local_addr,
            db_path: db_path.to_owned(),
            state,
            stop,
        }
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// From now on, serve Tollgate as `access` says.
    pub fn set_access(&self, access: Access) {
        *self.state.access.lock().unwrap() = access;
    }

    /// While on, every pipeline is answered 503, as by a sqld shutting down.
    pub fn set_shutting_down(&self, shutting_down: bool) {
        self.state
            .shutting_down
            .store(shutting_down, Ordering::SeqCst);
    }

    /// The requests turned away so far.
    pub fn turned_away(&self) -> TurnedAway {
        *self.state.turned_away.lock().unwrap()
    }
}

impl Drop for HranaServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

struct State {
    database: libsql::Database,
    token: String,
    /// Open streams by baton: their connection (inside a transaction, maybe) and stored SQL.
    streams: Mutex<HashMap<String, Stream>>,
    next_baton: AtomicU64,
    /// One permit per connection the server may have open.
    connections: Arc<Semaphore>,
    /// Connections of closed streams, with their authorizer's flag, for the next stream: a
    /// fresh connection reads the whole schema before its first statement, which cost more
    /// than everything else a request does (58 % of the server's time under load). A
    /// connection comes back only outside any transaction, so no stream can tell.
    idle: Mutex<Vec<(libsql::Connection, Arc<AtomicBool>)>>,
    /// Requests waiting for a connection, or about to.
    waiters: AtomicUsize,
    settings: HranaSettings,
    /// Read by every connection's authorizer as it prepares a statement.
    access: Arc<Mutex<Access>>,
    shutting_down: AtomicBool,
    turned_away: Mutex<TurnedAway>,
}

struct Stream {
    connection: libsql::Connection,
    stored_sql: HashMap<i32, String>,
    codes: ErrorCodes,
    /// Set once the authorizer has refused a write on this connection.
    denied_write: Arc<AtomicBool>,
    /// The stream's place among the server's connections, given back when it closes.
    _connection_slot: OwnedSemaphorePermit,
}

async fn serve(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|presented| presented == state.token);
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let access = state.access.lock().unwrap().clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/health") => respond(StatusCode::OK, Bytes::new()),
        ("GET", "/v2" | "/v3") => respond(StatusCode::OK, Bytes::new()),
        _ if !authorized => error_response(StatusCode::UNAUTHORIZED, "Unauthorized"),
        ("POST", "/v2/pipeline" | "/v3/pipeline") => {
            if let Access::Refused(status) = access {
                let reason = match status {
                    StatusCode::UNAUTHORIZED => "Unauthorized: `The JWT is invalid`",
                    _ => "Authorization forbidden",
                };
                return error_response(status, reason);
            }
            if state.shutting_down.load(Ordering::SeqCst) {
                state.turned_away.lock().unwrap().shutting_down += 1;
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Namespace store has shutdown",
                );
            }
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
            };
            match serde_json::from_slice::<PipelineReqBody>(&body) {
                Ok(pipeline) => match run_pipeline(state, pipeline).await {
                    Ok(reply) => {
                        respond(StatusCode::OK, serde_json::to_vec(&reply).unwrap().into())
                    }
                    Err(response) => response,
                },
                Err(error) => error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid pipeline request: {error}"),
                ),
            }
        }
        _ => error_response(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// A connection for a new stream, as sqld's throttle hands them out: a request waits for
/// one unless too many wait already, and no longer than the configured wait. (sqld 0.24
/// answers both refusals 429.)
async fn admit(state: &State) -> Result<OwnedSemaphorePermit, Response<Full<Bytes>>> {
    struct Waiting<'a>(&'a AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let waiting = Waiting(&state.waiters);
    if waiting.0.fetch_add(1, Ordering::SeqCst) + 1 >= MAX_WAITERS {
        state.turned_away.lock().unwrap().too_many += 1;
        return Err(error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many concurrent requests",
        ));
    }
    let slot = tokio::time::timeout(
        state.settings.connection_wait,
        state.connections.clone().acquire_owned(),
    )
    .await;
    match slot {
        Ok(slot) => Ok(slot.expect("the semaphore is never closed")),
        Err(_) => {
            state.turned_away.lock().unwrap().timed_out += 1;
            Err(error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "Timed out while opening database connection",
            ))
        }
    }
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap()
}

fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message });
    respond(status, serde_json::to_vec(&body).unwrap().into())
}

async fn run_pipeline(
    state: &State,
    pipeline: PipelineReqBody,
) -> Result<PipelineRespBody, Response<Full<Bytes>>> {
    let mut stream = match &pipeline.baton {
        Some(baton) => {
            let open = state.streams.lock().unwrap().remove(baton);
            open.ok_or_else(|| {
                error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown or expired baton {baton}"),
                )
            })?
        }
        None => {
            let slot = admit(state).await?;
            if !state.settings.busy_for.is_zero() {
                tokio::time::sleep(state.settings.busy_for).await;
            }
            let idle = state.idle.lock().unwrap().pop();
            let (connection, denied_write) = match idle {
                Some(idle) => idle,
                None => {
                    let denied_write = Arc::new(AtomicBool::new(false));
                    let connection =
                        connect(state, denied_write.clone())
                            .await
                            .map_err(|error| {
                                error_response(StatusCode::INTERNAL_SERVER_ERROR, &error)
                            })?;
                    (connection, denied_write)
                }
            };
            Stream {
                connection,
                stored_sql: HashMap::new(),
                codes: state.settings.error_codes,
                denied_write,
                _connection_slot: slot,
            }
        }
    };
    let mut results = Vec::with_capacity(pipeline.requests.len());
    let mut closed = false;
    for request in pipeline.requests {
        if closed {
            results.push(StreamResult::Error {
                error: hrana_error("STREAM_CLOSED", "the stream was closed"),
            });
            continue;
        }
        if matches!(request, StreamRequest::Close(_)) {
            closed = true;
        }
        results.push(match handle(&mut stream, request).await {
            Ok(response) => StreamResult::Ok { response },
            Err(error) => StreamResult::Error { error },
        });
    }
    if stream.denied_write.load(Ordering::SeqCst) {
        let access = state.access.lock().unwrap().clone();
        match access {
            // sqld checks a program against the token before it runs any of it; undoing what
            // ran before the write comes to the same.
            Access::ReadOnlyToken => {
                if !stream.connection.is_autocommit() {
                    let _ = stream.connection.execute("ROLLBACK", ()).await;
                }
                return Err(error_response(
                    StatusCode::UNAUTHORIZED,
                    "Not authorized to execute query: Current session is not authorized to run a write",
                ));
            }
            Access::WritesBlocked(reason) => blocked_errors(&mut results, &reason),
            Access::Full | Access::Refused(_) => {}
        }
    }
    let baton = if closed {
        // A stream closed inside a transaction rolls it back, as a dropped sqld stream does.
        if !stream.connection.is_autocommit() {
            let _ = stream.connection.execute("ROLLBACK", ()).await;
        }
        if stream.connection.is_autocommit() {
            stream.denied_write.store(false, Ordering::SeqCst);
            state
                .idle
                .lock()
                .unwrap()
                .push((stream.connection, stream.denied_write));
        }
        None
    } else {
        let baton = format!("baton-{}", state.next_baton.fetch_add(1, Ordering::Relaxed));
        state.streams.lock().unwrap().insert(baton.clone(), stream);
        Some(baton)
    };
    Ok(PipelineRespBody {
        baton,
        base_url: None,
        results,
    })
}

/// The authorizer's refusals (`SQLITE_AUTH`), as sqld reports a blocked write.
fn blocked_errors(results: &mut [StreamResult], reason: &str) {
    let blocked = || hrana_error("BLOCKED", &format!("Operation was blocked: {reason}"));
    for result in results {
        match result {
            StreamResult::Error { error } if error.code.starts_with("SQLITE_AUTH") => {
                *error = blocked();
            }
            StreamResult::Ok {
                response: StreamResponse::Batch(batch),
            } => {
                for error in batch.result.step_errors.iter_mut().flatten() {
                    if error.code.starts_with("SQLITE_AUTH") {
                        *error = blocked();
                    }
                }
            }
            _ => {}
        }
    }
}

async fn connect(
    state: &State,
    denied_write: Arc<AtomicBool>,
) -> Result<libsql::Connection, String> {
    let connection = state
        .database
        .connect()
        .map_err(|error| error.to_string())?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|error| error.to_string())?;
    connection
        .execute_batch("PRAGMA foreign_keys = ON;")
        .await
        .map_err(|error| error.to_string())?;
    let access = state.access.clone();
    connection
        .authorizer(Some(Arc::new(move |context: &AuthContext| {
            let writes_allowed =
                matches!(*access.lock().unwrap(), Access::Full | Access::Refused(_));
            if writes_allowed || !is_write(&context.action) {
                Authorization::Allow
            } else {
                denied_write.store(true, Ordering::SeqCst);
                Authorization::Deny
            }
        })))
        .map_err(|error| error.to_string())?;
    Ok(connection)
}

/// What sqld counts as a write: a change to the rows or the schema of the database file
/// (temporary objects live and die with their connection, and are not).
fn is_write(action: &AuthAction) -> bool {
    matches!(
        action,
        AuthAction::Insert { .. }
            | AuthAction::Update { .. }
            | AuthAction::Delete { .. }
            | AuthAction::CreateIndex { .. }
            | AuthAction::CreateTable { .. }
            | AuthAction::CreateTrigger { .. }
            | AuthAction::CreateView { .. }
            | AuthAction::CreateVtable { .. }
            | AuthAction::DropIndex { .. }
            | AuthAction::DropTable { .. }
            | AuthAction::DropTrigger { .. }
            | AuthAction::DropView { .. }
            | AuthAction::DropVtable { .. }
            | AuthAction::AlterTable { .. }
            | AuthAction::Reindex { .. }
    )
}

async fn handle(stream: &mut Stream, request: StreamRequest) -> Result<StreamResponse, HranaError> {
    Ok(match request {
        StreamRequest::Close(_) => StreamResponse::Close(CloseStreamResp {}),
        StreamRequest::Execute(request) => StreamResponse::Execute(ExecuteStreamResp {
            result: execute(stream, &request.stmt).await?,
        }),
        StreamRequest::Batch(request) => StreamResponse::Batch(BatchStreamResp {
            result: batch(stream, &request.batch).await,
        }),
        StreamRequest::Sequence(request) => {
            let sql = sql_text(stream, request.sql.as_deref(), request.sql_id)?;
            stream
                .connection
                .execute_batch(&sql)
                .await
                .map_err(|error| sqlite_error(error, stream.codes))?;
            StreamResponse::Sequence(SequenceStreamResp {})
        }
        StreamRequest::StoreSql(request) => {
            stream.stored_sql.insert(request.sql_id, request.sql);
            StreamResponse::StoreSql(StoreSqlStreamResp {})
        }
        StreamRequest::CloseSql(request) => {
            stream.stored_sql.remove(&request.sql_id);
            StreamResponse::CloseSql(CloseSqlStreamResp {})
        }
        StreamRequest::GetAutocommit(_) => StreamResponse::GetAutocommit(GetAutocommitStreamResp {
            is_autocommit: stream.connection.is_autocommit(),
        }),
        StreamRequest::Describe(_) | StreamRequest::None => {
            return Err(hrana_error(
                "NOT_SUPPORTED",
                "this test server does not implement that request",
            ));
        }
    })
}

fn sql_text(stream: &Stream, sql: Option<&str>, sql_id: Option<i32>) -> Result<String, HranaError> {
    match (sql, sql_id) {
        (Some(sql), None) => Ok(sql.to_owned()),
        (None, Some(id)) => stream
            .stored_sql
            .get(&id)
            .cloned()
            .ok_or_else(|| hrana_error("SQL_NOT_FOUND", &format!("no stored SQL {id}"))),
        _ => Err(hrana_error(
            "SQL_NO_STATEMENT",
            "exactly one of sql and sql_id is required",
        )),
    }
}

async fn execute(stream: &Stream, stmt: &Stmt) -> Result<StmtResult, HranaError> {
    let sql = sql_text(stream, stmt.sql.as_deref(), stmt.sql_id)?;
    let connection = &stream.connection;
    let before = connection.total_changes();
    let mut rows = if stmt.named_args.is_empty() {
        let args = stmt
            .args
            .iter()
            .map(to_libsql)
            .collect::<Result<Vec<_>, _>>()?;
        connection.query(&sql, args).await
    } else {
        let args = stmt
            .named_args
            .iter()
            .map(|arg| Ok((arg.name.clone(), to_libsql(&arg.value)?)))
            .collect::<Result<Vec<_>, HranaError>>()?;
        connection.query(&sql, args).await
    }
    .map_err(|error| sqlite_error(error, stream.codes))?;
    let cols: Vec<Col> = (0..rows.column_count())
        .map(|index| Col {
            name: rows.column_name(index).map(str::to_owned),
            decltype: None,
        })
        .collect();
    let mut result_rows = Vec::new();
    while let Some(row) = rows
        .next()
        .await
        .map_err(|error| sqlite_error(error, stream.codes))?
    {
        let values = (0..cols.len() as i32)
            .map(|index| {
                row.get_value(index)
                    .map(from_libsql)
                    .map_err(|error| sqlite_error(error, stream.codes))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if stmt.want_rows != Some(false) {
            result_rows.push(Row { values });
        }
    }
    // As sqld reports it: the statement's own changes (`sqlite3_changes`), which leave out
    // what triggers changed, and 0 for a statement that changed nothing (`changes` keeps
    // the last INSERT, UPDATE or DELETE's count through a query).
    let affected_row_count = if connection.total_changes() == before {
        0
    } else {
        connection.changes()
    };
    Ok(StmtResult {
        cols,
        rows: result_rows,
        affected_row_count,
        last_insert_rowid: (affected_row_count > 0).then(|| connection.last_insert_rowid()),
        replication_index: None,
        rows_read: 0,
        rows_written: 0,
        query_duration_ms: 0.0,
    })
}

async fn batch(stream: &Stream, batch: &Batch) -> BatchResult {
    let mut result = BatchResult::default();
    for step in &batch.steps {
        let run = match &step.condition {
            None => true,
            Some(condition) => holds(condition, &result, &stream.connection),
        };
        let (step_result, step_error) = if run {
            match execute(stream, &step.stmt).await {
                Ok(rows) => (Some(rows), None),
                Err(error) => (None, Some(error)),
            }
        } else {
            (None, None)
        };
        result.step_results.push(step_result);
        result.step_errors.push(step_error);
    }
    result
}

fn holds(condition: &BatchCond, result: &BatchResult, connection: &libsql::Connection) -> bool {
    let step = |index: &u32| *index as usize;
    match condition {
        BatchCond::Ok { step: index } => result
            .step_results
            .get(step(index))
            .is_some_and(Option::is_some),
        BatchCond::Error { step: index } => result
            .step_errors
            .get(step(index))
            .is_some_and(Option::is_some),
        BatchCond::Not { cond } => !holds(cond, result, connection),
        BatchCond::And(list) => list
            .conds
            .iter()
            .all(|cond| holds(cond, result, connection)),
        BatchCond::Or(list) => list
            .conds
            .iter()
            .any(|cond| holds(cond, result, connection)),
        BatchCond::IsAutocommit {} => connection.is_autocommit(),
        BatchCond::None => false,
    }
}

fn to_libsql(value: &HranaValue) -> Result<libsql::Value, HranaError> {
    Ok(match value {
        HranaValue::Null => libsql::Value::Null,
        HranaValue::Integer { value } => libsql::Value::Integer(*value),
        HranaValue::Float { value } => libsql::Value::Real(*value),
        HranaValue::Text { value } => libsql::Value::Text(value.to_string()),
        HranaValue::Blob { value } => libsql::Value::Blob(value.to_vec()),
        HranaValue::None => return Err(hrana_error("INVALID_VALUE", "a value with no type")),
    })
}

fn from_libsql(value: libsql::Value) -> HranaValue {
    match value {
        libsql::Value::Null => HranaValue::Null,
        libsql::Value::Integer(value) => HranaValue::Integer { value },
        libsql::Value::Real(value) => HranaValue::Float { value },
        libsql::Value::Text(value) => HranaValue::Text {
            value: value.into(),
        },
        libsql::Value::Blob(value) => HranaValue::Blob {
            value: value.into(),
        },
    }
}

fn hrana_error(code: &str, message: &str) -> HranaError {
    HranaError {
        message: message.to_owned(),
        code: code.to_owned(),
    }
}

/// A SQLite failure as the server reports it: `SQLite error: …` with SQLite's own text, by
/// the code `codes` names it with.
fn sqlite_error(error: libsql::Error, codes: ErrorCodes) -> HranaError {
    let libsql::Error::SqliteFailure(code, message) = &error else {
        return hrana_error("SQLITE_UNKNOWN", &error.to_string());
    };
    let name = match codes {
        ErrorCodes::Extended => extended_name(*code),
        // sqld parses every statement itself before SQLite sees it.
        ErrorCodes::Primary if message.contains("syntax error") => {
            return hrana_error(
                "SQL_PARSE_ERROR",
                &format!("SQL string could not be parsed: {message}"),
            );
        }
        ErrorCodes::Primary => primary_name(*code),
    };
    hrana_error(name, &format!("SQLite error: {message}"))
}

/// sqld's names, from rusqlite's error codes: a plain `SQLITE_ERROR` (1) has none of its own
/// there, and is `SQLITE_UNKNOWN`.
fn primary_name(code: i32) -> &'static str {
    match code & 0xff {
        2 => "SQLITE_INTERNAL",
        3 => "SQLITE_PERM",
        4 => "SQLITE_ABORT",
        5 => "SQLITE_BUSY",
        6 => "SQLITE_LOCKED",
        7 => "SQLITE_NOMEM",
        8 => "SQLITE_READONLY",
        9 => "SQLITE_INTERRUPT",
        10 => "SQLITE_IOERR",
        11 => "SQLITE_CORRUPT",
        12 => "SQLITE_NOTFOUND",
        13 => "SQLITE_FULL",
        14 => "SQLITE_CANTOPEN",
        15 => "SQLITE_PROTOCOL",
        17 => "SQLITE_SCHEMA",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        21 => "SQLITE_MISUSE",
        22 => "SQLITE_NOLFS",
        23 => "SQLITE_AUTH",
        25 => "SQLITE_RANGE",
        26 => "SQLITE_NOTADB",
        _ => "SQLITE_UNKNOWN",
    }
}

fn extended_name(code: i32) -> &'static str {
    match code {
        2067 => "SQLITE_CONSTRAINT_UNIQUE",
        1555 => "SQLITE_CONSTRAINT_PRIMARYKEY",
        275 => "SQLITE_CONSTRAINT_CHECK",
        1299 => "SQLITE_CONSTRAINT_NOTNULL",
        787 => "SQLITE_CONSTRAINT_FOREIGNKEY",
        1811 => "SQLITE_CONSTRAINT_TRIGGER",
        code if code & 0xff == 19 => "SQLITE_CONSTRAINT",
        code if code & 0xff == 5 => "SQLITE_BUSY",
        code if code & 0xff == 23 => "SQLITE_AUTH",
        _ => "SQLITE_ERROR",
    }
}
