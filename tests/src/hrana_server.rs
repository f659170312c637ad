//! A libSQL HTTP endpoint for tests: the Hrana pipeline protocol (`/v2/pipeline`,
//! `/v3/pipeline`, JSON) served over an embedded libSQL file, with `libsql-hrana`'s types.
//!
//! No libSQL server (sqld) ships in any package registry this project can install from, so
//! the edge builds are tested against this instead. It follows sqld where Tollgate can tell:
//! bearer auth, streams kept open by baton until a `close`, batch steps with conditions
//! (`ok`, `error`, `not`, `and`, `or`, `is_autocommit`), stored SQL, errors named by
//! SQLite's extended result code. The native server's remote mode runs the conformance
//! suite through it too, which checks it against the embedded adapter's behaviour.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use libsql_hrana::proto::{
    Batch, BatchCond, BatchResult, BatchStreamResp, CloseSqlStreamResp, CloseStreamResp, Col,
    Error as HranaError, ExecuteStreamResp, GetAutocommitStreamResp, PipelineReqBody,
    PipelineRespBody, Row, SequenceStreamResp, Stmt, StmtResult, StoreSqlStreamResp, StreamRequest,
    StreamResponse, StreamResult, Value as HranaValue,
};
use tokio::sync::watch;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running endpoint; dropping it stops it.
pub struct HranaServer {
    /// `http://127.0.0.1:port`, what a client's database URL is set to.
    pub url: String,
    pub token: String,
    pub local_addr: SocketAddr,
    db_path: PathBuf,
    stop: watch::Sender<bool>,
}

impl HranaServer {
    /// Serves the libSQL database file at `db_path` (created if missing) on a free loopback
    /// port, to clients presenting `token`.
    pub async fn start(db_path: &Path, token: &str) -> Self {
        Self::start_on(db_path, token, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(db_path: &Path, token: &str, address: SocketAddr) -> Self {
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
        });
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = state.clone();
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
            stop,
        }
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
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
}

struct Stream {
    connection: libsql::Connection,
    stored_sql: HashMap<i32, String>,
}

async fn serve(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|presented| presented == state.token);
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match (method.as_str(), path.as_str()) {
        ("GET", "/health") => respond(StatusCode::OK, Bytes::new()),
        ("GET", "/v2" | "/v3") => respond(StatusCode::OK, Bytes::new()),
        _ if !authorized => error_response(StatusCode::UNAUTHORIZED, "Unauthorized"),
        ("POST", "/v2/pipeline" | "/v3/pipeline") => {
            let body = match request.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
            };
            match serde_json::from_slice::<PipelineReqBody>(&body) {
                Ok(pipeline) => match run_pipeline(state, pipeline).await {
                    Ok(reply) => {
                        respond(StatusCode::OK, serde_json::to_vec(&reply).unwrap().into())
                    }
                    Err(message) => error_response(StatusCode::BAD_REQUEST, &message),
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
) -> Result<PipelineRespBody, String> {
    let mut stream = match &pipeline.baton {
        Some(baton) => state
            .streams
            .lock()
            .unwrap()
            .remove(baton)
            .ok_or_else(|| format!("unknown or expired baton {baton}"))?,
        None => Stream {
            connection: connect(&state.database).await?,
            stored_sql: HashMap::new(),
        },
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
    let baton = if closed {
        // A stream closed inside a transaction rolls it back, as a dropped sqld stream does.
        if !stream.connection.is_autocommit() {
            let _ = stream.connection.execute("ROLLBACK", ()).await;
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

async fn connect(database: &libsql::Database) -> Result<libsql::Connection, String> {
    let connection = database.connect().map_err(|error| error.to_string())?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(|error| error.to_string())?;
    connection
        .execute_batch("PRAGMA foreign_keys = ON;")
        .await
        .map_err(|error| error.to_string())?;
    Ok(connection)
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
                .map_err(sqlite_error)?;
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
    .map_err(sqlite_error)?;
    let cols: Vec<Col> = (0..rows.column_count())
        .map(|index| Col {
            name: rows.column_name(index).map(str::to_owned),
            decltype: None,
        })
        .collect();
    let mut result_rows = Vec::new();
    while let Some(row) = rows.next().await.map_err(sqlite_error)? {
        let values = (0..cols.len() as i32)
            .map(|index| row.get_value(index).map(from_libsql).map_err(sqlite_error))
            .collect::<Result<Vec<_>, _>>()?;
        if stmt.want_rows != Some(false) {
            result_rows.push(Row { values });
        }
    }
    let affected_row_count = connection.total_changes() - before;
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

/// sqld reports SQLite failures by the extended result code's name.
fn sqlite_error(error: libsql::Error) -> HranaError {
    match &error {
        libsql::Error::SqliteFailure(code, message) => {
            let name = match *code {
                2067 => "SQLITE_CONSTRAINT_UNIQUE",
                1555 => "SQLITE_CONSTRAINT_PRIMARYKEY",
                275 => "SQLITE_CONSTRAINT_CHECK",
                1299 => "SQLITE_CONSTRAINT_NOTNULL",
                787 => "SQLITE_CONSTRAINT_FOREIGNKEY",
                1811 => "SQLITE_CONSTRAINT_TRIGGER",
                code if code & 0xff == 19 => "SQLITE_CONSTRAINT",
                code if code & 0xff == 5 => "SQLITE_BUSY",
                _ => "SQLITE_ERROR",
            };
            hrana_error(name, &format!("SQLite error: {message}"))
        }
        _ => hrana_error("SQLITE_ERROR", &error.to_string()),
    }
}
