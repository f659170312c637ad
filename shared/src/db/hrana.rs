//! The `Db` port on libSQL over HTTP: the Hrana protocol's `/v3/pipeline` endpoint, as
//! served by Turso and by a self-hosted `sqld`.
//!
//! Every call is one stateless pipeline, so one round trip: `execute` sends the statement and
//! a `close`; `batch` sends one Hrana `batch` whose steps are wrapped in
//! `BEGIN IMMEDIATE … COMMIT`, each step conditioned on the one before and a `ROLLBACK` on
//! the commit's failure, so the server applies all of them or none.
//!
//! A sqld admits a bounded number of connections (128 by default) and turns the rest away
//! with 429 before running anything, and with 503 while it shuts down. So the ports of one
//! process share a cap on the requests they have in flight ([`HranaShared`]), kept below the
//! server's, and a pipeline the server turned away unheard is sent again after a short,
//! growing, randomised pause; when it still is, the call fails as [`DbError::Busy`], which
//! the API answers 503 with `Retry-After`. A server that refuses Tollgate itself (401 or
//! 403 for its token, writes blocked) fails as [`DbError::Unavailable`].
//!
//! The protocol types are `libsql-hrana`'s. The HTTP request itself goes through a
//! [`Transport`], one per runtime (workers `Fetch`, Spin outbound HTTP, reqwest natively).
//! Neither `libsql-client` nor `libsql`'s `cloudflare` feature is used for this: the first
//! pins `worker` 0.0.18, which current rustc refuses to build, and the second pins `worker`
//! 0.6, which cannot share a binary with the `worker` 0.8 that worker-build 0.8 requires.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use libsql_hrana::proto::{
    Batch, BatchCond, BatchResult, BatchStep, BatchStreamReq, CloseStreamReq, Error as HranaError,
    ExecuteStreamReq, PipelineReqBody, PipelineRespBody, Stmt, StmtResult, StreamRequest,
    StreamResponse, StreamResult, Value as HranaValue,
};
use tokio::sync::Semaphore;

use super::{Db, DbError, Rows, Statement, Value};

/// The path Tollgate posts pipelines to, after the database URL.
pub const PIPELINE_PATH: &str = "/v3/pipeline";

/// How many database requests one process has in flight unless configured otherwise: half
/// of the connections a sqld admits by default, so that a second server process and the
/// gpu-runners still find room.
pub const DEFAULT_MAX_INFLIGHT: usize = 64;

/// The pauses before each new attempt at a pipeline the server turned away unheard; each
/// loses a random part of up to half, so that the processes it turned away at once do not
/// all come back at once.
const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

/// One HTTP exchange with the database server, and the runtime's timer.
#[async_trait(?Send)]
pub trait Transport {
    /// POSTs `body` (JSON) to `url`, with `Authorization: Bearer {token}` when a token is
    /// given, and returns the response status and body, whatever the status.
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Bytes), String>;

    /// Waits `duration`: the pause before a pipeline is sent again.
    async fn pause(&self, duration: Duration);
}

/// What the Hrana ports of one process (one isolate, on Workers) share: the cap on requests
/// in flight, and which refusal of the server was last reported. Cheap to clone: clones
/// share both.
#[derive(Clone)]
pub struct HranaShared {
    inflight: Arc<Semaphore>,
    /// The kind of the refusal reported last (an HTTP status, an error code); cleared once a
    /// write works again, so that the next refusal is reported too.
    reported_refusal: Arc<Mutex<Option<String>>>,
}

impl HranaShared {
    /// At most `max_inflight` requests at once (at least one).
    pub fn new(max_inflight: usize) -> Self {
        Self {
            inflight: Arc::new(Semaphore::new(
                max_inflight.clamp(1, Semaphore::MAX_PERMITS),
            )),
            reported_refusal: Arc::default(),
        }
    }

    /// The memory of reported refusals alone, for a runtime where a request must never wait
    /// on another: Workers cancels a request whose only pending work is another request's
    /// (it cannot tell it from a hang), so a cap shared between requests would fail the
    /// ones it holds back.
    pub fn uncapped() -> Self {
        Self::new(Semaphore::MAX_PERMITS)
    }
}

/// A libSQL database reached over Hrana HTTP.
pub struct HranaDb {
    pipeline_url: String,
    token: Option<String>,
    transport: Box<dyn Transport>,
    shared: HranaShared,
}

/// Why a call failed, before the memory of reported refusals has had its say.
#[derive(Debug)]
enum Failure {
    Db(DbError),
    /// The server refuses this client: `kind` names the refusal (an HTTP status, an error
    /// code) the same way each time, `reason` says it in full.
    Refused {
        kind: String,
        reason: String,
    },
}

impl From<DbError> for Failure {
    fn from(error: DbError) -> Self {
        Failure::Db(error)
    }
}

impl HranaDb {
    /// `url` is the database URL as Turso prints it (`libsql://…`, reached over https) or an
    /// `http(s)://` URL of a sqld; `token` is its auth token, if it wants one. On its own it
    /// has [`DEFAULT_MAX_INFLIGHT`] requests in flight at most; see [`HranaDb::sharing`].
    pub fn new(url: &str, token: Option<String>, transport: Box<dyn Transport>) -> Self {
        let url = url.trim().trim_end_matches('/');
        let base = match url.strip_prefix("libsql://") {
            Some(host) => format!("https://{host}"),
            None => url.to_owned(),
        };
        Self {
            pipeline_url: format!("{base}{PIPELINE_PATH}"),
            token: token.filter(|token| !token.is_empty()),
            transport,
            shared: HranaShared::new(DEFAULT_MAX_INFLIGHT),
        }
    }

    /// This port counts against `shared`'s cap and memory, with every other port of the
    /// process that does.
    pub fn sharing(mut self, shared: &HranaShared) -> Self {
        self.shared = shared.clone();
        self
    }

    /// True for the URLs [`HranaDb::new`] takes, as opposed to a local file path.
    pub fn is_remote_url(url: &str) -> bool {
        let url = url.trim();
        ["libsql://", "http://", "https://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
    }

    async fn pipeline(&self, request: StreamRequest) -> Result<StreamResponse, Failure> {
        let body = PipelineReqBody {
            baton: None,
            requests: vec![request, StreamRequest::Close(CloseStreamReq {})],
        };
        let body = serde_json::to_vec(&body)
            .map_err(|error| DbError::Other(format!("encoding a pipeline: {error}")))?;
        let (status, reply) = self.post(body.into()).await?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(Failure::Refused {
                    kind: status.to_string(),
                    reason: format!(
                        "the database refused Tollgate's token ({status}): {}",
                        excerpt(&reply)
                    ),
                });
            }
            _ => {
                return Err(Failure::Db(DbError::Other(format!(
                    "libSQL over HTTP answered {status}: {}",
                    excerpt(&reply)
                ))));
            }
        }
        let reply: PipelineRespBody = serde_json::from_slice(&reply)
            .map_err(|error| DbError::Other(format!("an unreadable pipeline reply: {error}")))?;
        match reply.results.into_iter().next() {
            Some(StreamResult::Ok { response }) => Ok(response),
            Some(StreamResult::Error { error }) => Err(map_error(error)),
            Some(StreamResult::None) | None => Err(Failure::Db(DbError::Other(
                "the pipeline reply has no result for the request".into(),
            ))),
        }
    }

    /// Sends a pipeline within the cap on requests in flight, again while the server turns
    /// it away unheard, and returns the server's answer.
    async fn post(&self, body: Bytes) -> Result<(u16, Bytes), DbError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            let (status, reply) = {
                let _in_flight = self
                    .shared
                    .inflight
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.transport
                    .post(&self.pipeline_url, self.token.as_deref(), body.clone())
                    .await
                    .map_err(|error| DbError::Other(format!("libSQL over HTTP: {error}")))?
            };
            // sqld answers 429 when it has no connection for the request (too many requests
            // wait for one already, or none came free within its wait) and 503 while it shuts
            // down: both before it opens a connection for the pipeline, so none of its
            // statements ran, and a pipeline without a baton leaves no stream behind. Sending
            // it again cannot apply anything twice. A 502 or 504 is not retried: a gateway may
            // have passed the request on before it failed.
            if !matches!(status, 429 | 503) {
                return Ok((status, reply));
            }
            match delays.next() {
                Some(delay) => self.transport.pause(jittered(*delay)).await,
                None => {
                    return Err(DbError::Busy(format!(
                        "libSQL over HTTP still answered {status} after {} attempts: {}",
                        RETRY_DELAYS.len() + 1,
                        excerpt(&reply)
                    )));
                }
            }
        }
    }

    /// The call's outcome as the port reports it. A refusal is marked as its first report
    /// unless the same kind was reported last; a call that wrote something shows the
    /// database writable again, so the next refusal is reported anew.
    fn settle<T>(
        &self,
        outcome: Result<T, Failure>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Result<T, DbError> {
        let mut reported = self
            .shared
            .reported_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(value) => {
                if wrote(&value) {
                    *reported = None;
                }
                Ok(value)
            }
            Err(Failure::Db(error)) => Err(error),
            Err(Failure::Refused { kind, reason }) => {
                let first_report = reported.as_deref() != Some(kind.as_str());
                *reported = Some(kind);
                Err(DbError::Unavailable {
                    reason,
                    first_report,
                })
            }
        }
    }
}

#[async_trait(?Send)]
impl Db for HranaDb {
    async fn execute(&self, statement: Statement) -> Result<Rows, DbError> {
        let request = StreamRequest::Execute(ExecuteStreamReq {
            stmt: to_stmt(statement),
        });
        let outcome = match self.pipeline(request).await {
            Ok(StreamResponse::Execute(response)) => {
                from_result(response.result).map_err(Into::into)
            }
            Ok(other) => Err(unexpected(&other).into()),
            Err(failure) => Err(failure),
        };
        self.settle(outcome, |rows| rows.rows_affected > 0)
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Rows>, DbError> {
        let count = statements.len();
        let request = StreamRequest::Batch(BatchStreamReq {
            batch: transaction(statements.into_iter().map(to_stmt)),
        });
        let outcome = match self.pipeline(request).await {
            Ok(StreamResponse::Batch(response)) => from_batch(response.result, count),
            Ok(other) => Err(unexpected(&other).into()),
            Err(failure) => Err(failure),
        };
        self.settle(outcome, |results| {
            results.iter().any(|rows| rows.rows_affected > 0)
        })
    }
}

/// `delay` less a random part of up to half of it.
fn jittered(delay: Duration) -> Duration {
    let mut random = [0u8; 1];
    getrandom::fill(&mut random).expect("the platform provides randomness");
    delay - delay * u32::from(random[0]) / 512
}

/// The start of a reply's body, for an error message.
fn excerpt(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).chars().take(300).collect()
}

/// `BEGIN IMMEDIATE`, the statements each run only if the one before succeeded, `COMMIT`
/// if the last did, and `ROLLBACK` unless the commit succeeded. IMMEDIATE takes the write
/// lock up front, as the embedded adapter does, so concurrent batches queue instead of
/// failing to upgrade a read lock.
fn transaction(statements: impl Iterator<Item = Stmt>) -> Batch {
    let mut steps = vec![BatchStep {
        condition: None,
        stmt: Stmt::new("BEGIN IMMEDIATE", false),
    }];
    for stmt in statements {
        let previous = steps.len() as u32 - 1;
        steps.push(BatchStep {
            condition: Some(BatchCond::Ok { step: previous }),
            stmt,
        });
    }
    let last = steps.len() as u32 - 1;
    steps.push(BatchStep {
        condition: Some(BatchCond::Ok { step: last }),
        stmt: Stmt::new("COMMIT", false),
    });
    steps.push(BatchStep {
        condition: Some(BatchCond::Not {
            cond: Box::new(BatchCond::Ok { step: last + 1 }),
        }),
        stmt: Stmt::new("ROLLBACK", false),
    });
    Batch {
        steps,
        replication_index: None,
    }
}

/// The statements' results, or the first error among the steps that ran.
fn from_batch(result: BatchResult, count: usize) -> Result<Vec<Rows>, Failure> {
    if let Some(error) = result.step_errors.iter().flatten().next() {
        return Err(map_error(error.clone()));
    }
    let commit = count + 1;
    if result.step_results.get(commit).is_none_or(Option::is_none) {
        return Err(DbError::Other("the batch did not commit".into()).into());
    }
    result
        .step_results
        .into_iter()
        .skip(1)
        .take(count)
        .map(|step| match step {
            Some(result) => from_result(result).map_err(Failure::from),
            None => Err(DbError::Other("a batch step did not run".into()).into()),
        })
        .collect()
}

fn to_stmt(statement: Statement) -> Stmt {
    let mut stmt = Stmt::new(statement.sql, true);
    for value in statement.params {
        stmt.bind(to_hrana(value));
    }
    stmt
}

fn from_result(result: StmtResult) -> Result<Rows, DbError> {
    let rows = result
        .rows
        .into_iter()
        .map(|row| row.values.into_iter().map(from_hrana).collect())
        .collect::<Result<Vec<Vec<Value>>, DbError>>()?;
    Ok(Rows {
        columns: result
            .cols
            .into_iter()
            .map(|col| col.name.unwrap_or_default())
            .collect(),
        rows,
        rows_affected: result.affected_row_count,
    })
}

pub fn to_hrana(value: Value) -> HranaValue {
    match value {
        Value::Null => HranaValue::Null,
        Value::Integer(value) => HranaValue::Integer { value },
        Value::Real(value) => HranaValue::Float { value },
        Value::Text(value) => HranaValue::Text {
            value: value.into(),
        },
        Value::Blob(value) => HranaValue::Blob {
            value: value.into(),
        },
    }
}

pub fn from_hrana(value: HranaValue) -> Result<Value, DbError> {
    Ok(match value {
        HranaValue::Null => Value::Null,
        HranaValue::Integer { value } => Value::Integer(value),
        HranaValue::Float { value } => Value::Real(value),
        HranaValue::Text { value } => Value::Text(value.to_string()),
        HranaValue::Blob { value } => Value::Blob(value.to_vec()),
        HranaValue::None => return Err(DbError::Decode("a value with no type".into())),
    })
}

/// A statement's error by its code. sqld names a SQLite failure by its primary result code
/// (`SQLITE_CONSTRAINT`, `SQLITE_BUSY`, `SQLITE_UNKNOWN` for a plain `SQLITE_ERROR`), SQL it
/// cannot parse `SQL_PARSE_ERROR`, and its own conditions by name: `TRANSACTION_BUSY` (no
/// room for another transaction), `TRANSACTION_TIMEOUT` (a transaction held the write lock
/// past sqld's limit and was rolled back), `BLOCKED` (writes refused, as Turso does to a
/// database over its quota). Other servers of the protocol name extended codes
/// (`SQLITE_CONSTRAINT_UNIQUE`); both are read alike. The message keeps SQLite's text,
/// which is what [`DbError::is_unique_violation`] reads.
fn map_error(error: HranaError) -> Failure {
    let code = error.code.as_str();
    // `SQLITE_CONSTRAINT_UNIQUE` → `CONSTRAINT`, `SQLITE_CONSTRAINT` → `CONSTRAINT`.
    let sqlite_primary = code
        .strip_prefix("SQLITE_")
        .and_then(|rest| rest.split('_').next());
    match (code, sqlite_primary) {
        (_, Some("CONSTRAINT")) => Failure::Db(DbError::Constraint(error.message)),
        (_, Some("BUSY")) | ("TRANSACTION_BUSY" | "TRANSACTION_TIMEOUT", _) => {
            Failure::Db(DbError::Busy(error.message))
        }
        ("BLOCKED", _) | (_, Some("READONLY")) => Failure::Refused {
            kind: code.to_owned(),
            reason: format!("the database refuses writes: {} ({code})", error.message),
        },
        _ => Failure::Db(DbError::Other(format!("{} ({code})", error.message))),
    }
}

fn unexpected(response: &StreamResponse) -> DbError {
    DbError::Other(format!(
        "the pipeline answered with the wrong response kind: {}",
        serde_json::to_value(response)
            .ok()
            .and_then(|value| value.get("type").cloned())
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records what was posted and the pauses asked for, and answers with the scripted
    /// replies in turn, the last one from then on.
    struct Scripted {
        posted: RefCell<Vec<(String, Option<String>, serde_json::Value)>>,
        replies: RefCell<Vec<(u16, serde_json::Value)>>,
        pauses: RefCell<Vec<Duration>>,
    }

    #[async_trait(?Send)]
    impl Transport for &'static Scripted {
        async fn post(
            &self,
            url: &str,
            token: Option<&str>,
            body: Bytes,
        ) -> Result<(u16, Bytes), String> {
            self.posted.borrow_mut().push((
                url.to_owned(),
                token.map(str::to_owned),
                serde_json::from_slice(&body).unwrap(),
            ));
            let mut replies = self.replies.borrow_mut();
            let (status, reply) = match replies.len() {
                1 => replies[0].clone(),
                _ => replies.remove(0),
            };
            Ok((status, serde_json::to_vec(&reply).unwrap().into()))
        }

        async fn pause(&self, duration: Duration) {
            self.pauses.borrow_mut().push(duration);
        }
    }

    fn scripted(replies: Vec<(u16, serde_json::Value)>) -> &'static Scripted {
        Box::leak(Box::new(Scripted {
            posted: RefCell::default(),
            replies: RefCell::new(replies),
            pauses: RefCell::default(),
        }))
    }

    fn canned(reply: serde_json::Value) -> &'static Scripted {
        scripted(vec![(200, reply)])
    }

    /// An `execute` answer that affected `affected` rows.
    fn executed(affected: u64) -> serde_json::Value {
        serde_json::json!({
            "baton": null, "base_url": null,
            "results": [
                {"type": "ok", "response": {"type": "execute", "result": {
                    "cols": [], "rows": [],
                    "affected_row_count": affected, "last_insert_rowid": null}}},
                {"type": "ok", "response": {"type": "close"}}
            ]
        })
    }

    /// sqld's answer when it has no connection for a request.
    fn too_many() -> (u16, serde_json::Value) {
        (
            429,
            serde_json::json!({"error": "Too many concurrent requests"}),
        )
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(future).expect("the canned transport never waits")
    }

    fn write() -> Statement {
        crate::sql!("UPDATE t SET n = n + 1")
    }

    #[test]
    fn a_turso_url_is_reached_over_https_with_its_token() {
        let transport = canned(serde_json::json!({
            "baton": null, "base_url": null,
            "results": [
                {"type": "ok", "response": {"type": "execute", "result": {
                    "cols": [{"name": "n", "decltype": null}],
                    "rows": [[{"type": "integer", "value": "42"}]],
                    "affected_row_count": 0, "last_insert_rowid": null}}},
                {"type": "ok", "response": {"type": "close"}}
            ]
        }));
        let db = HranaDb::new(
            "libsql://db.turso.io/",
            Some("t0k".into()),
            Box::new(transport),
        );
        let rows = block_on(db.execute(crate::sql!("SELECT ? AS n", 42))).unwrap();
        assert_eq!(rows.first().unwrap().get::<i64>("n").unwrap(), 42);
        let posted = transport.posted.borrow();
        let (url, token, body) = &posted[0];
        assert_eq!(url, "https://db.turso.io/v3/pipeline");
        assert_eq!(token.as_deref(), Some("t0k"));
        assert_eq!(body["requests"][0]["type"], "execute");
        assert_eq!(
            body["requests"][0]["stmt"]["args"][0],
            serde_json::json!({"type": "integer", "value": "42"})
        );
        assert_eq!(body["requests"][1]["type"], "close");
    }

    #[test]
    fn a_batch_is_one_transaction_that_rolls_back_unless_it_commits() {
        let batch =
            transaction([Stmt::new("INSERT a", true), Stmt::new("INSERT b", true)].into_iter());
        let json = serde_json::to_value(&batch).unwrap();
        let steps = json["steps"].as_array().unwrap();
        let sql: Vec<_> = steps
            .iter()
            .map(|step| step["stmt"]["sql"].clone())
            .collect();
        assert_eq!(
            sql,
            [
                "BEGIN IMMEDIATE",
                "INSERT a",
                "INSERT b",
                "COMMIT",
                "ROLLBACK"
            ]
        );
        assert_eq!(
            steps[2]["condition"],
            serde_json::json!({"type": "ok", "step": 1})
        );
        assert_eq!(
            steps[3]["condition"],
            serde_json::json!({"type": "ok", "step": 2})
        );
        assert_eq!(
            steps[4]["condition"],
            serde_json::json!({"type": "not", "cond": {"type": "ok", "step": 3}})
        );
    }

    #[test]
    fn a_failed_step_is_the_batch_error_and_constraint_codes_keep_their_kind() {
        let result: BatchResult = serde_json::from_value(serde_json::json!({
            "step_results": [{"cols": [], "rows": [], "affected_row_count": 0,
                              "last_insert_rowid": null}, null, null, null],
            "step_errors": [null, {"message": "UNIQUE constraint failed: users.email",
                                   "code": "SQLITE_CONSTRAINT_UNIQUE"}, null, null]
        }))
        .unwrap();
        let Err(Failure::Db(error)) = from_batch(result, 1) else {
            panic!("the failed step was not the batch's error");
        };
        assert!(error.is_unique_violation("users.email"), "{error:?}");
    }

    #[test]
    fn a_pipeline_turned_away_unheard_is_sent_again_after_growing_pauses() {
        let shutting_down = (
            503,
            serde_json::json!({"error": "Namespace store has shutdown"}),
        );
        let transport = scripted(vec![shutting_down, too_many(), (200, executed(1))]);
        let db = HranaDb::new("http://127.0.0.1:8080", None, Box::new(transport));
        let rows = block_on(db.execute(write())).unwrap();
        assert_eq!(rows.rows_affected, 1);
        let posted = transport.posted.borrow();
        assert_eq!(posted.len(), 3);
        assert!(posted.iter().all(|sent| sent.2 == posted[0].2));
        let pauses = transport.pauses.borrow();
        assert_eq!(pauses.len(), 2);
        assert!((25..=50).contains(&pauses[0].as_millis()), "{pauses:?}");
        assert!((50..=100).contains(&pauses[1].as_millis()), "{pauses:?}");
    }

    #[test]
    fn a_server_that_keeps_turning_requests_away_makes_the_database_busy() {
        let transport = scripted(vec![too_many()]);
        let db = HranaDb::new("http://127.0.0.1:8080", None, Box::new(transport));
        let error = block_on(db.execute(write())).unwrap_err();
        assert!(matches!(error, DbError::Busy(_)), "{error:?}");
        assert_eq!(transport.posted.borrow().len(), RETRY_DELAYS.len() + 1);
        let api = crate::ApiError::from(error);
        assert_eq!(api.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            api.headers
                .iter()
                .any(|(name, _)| name == http::header::RETRY_AFTER)
        );
    }

    #[test]
    fn the_cap_holds_requests_across_the_ports_that_share_it() {
        /// Never answers: a request sent stays in flight.
        struct Stalled(RefCell<usize>);
        #[async_trait(?Send)]
        impl Transport for &'static Stalled {
            async fn post(
                &self,
                _: &str,
                _: Option<&str>,
                _: Bytes,
            ) -> Result<(u16, Bytes), String> {
                *self.0.borrow_mut() += 1;
                std::future::pending().await
            }
            async fn pause(&self, _: Duration) {}
        }
        let transport: &'static Stalled = Box::leak(Box::new(Stalled(RefCell::new(0))));
        let shared = HranaShared::new(1);
        let first = HranaDb::new("http://db", None, Box::new(transport)).sharing(&shared);
        let second = HranaDb::new("http://db", None, Box::new(transport)).sharing(&shared);
        let poll = |future: std::pin::Pin<&mut _>| futures_util::FutureExt::now_or_never(future);
        let mut one = Box::pin(first.execute(write()));
        let mut two = Box::pin(second.execute(write()));
        assert!(poll(one.as_mut()).is_none());
        assert!(poll(two.as_mut()).is_none());
        assert_eq!(
            *transport.0.borrow(),
            1,
            "the second waits for the first's place"
        );
        drop(one);
        assert!(poll(two.as_mut()).is_none());
        assert_eq!(*transport.0.borrow(), 2);
    }

    #[test]
    fn a_refusal_is_reported_once_until_the_database_takes_a_write_again() {
        let refused = (
            401,
            serde_json::json!({"error": "Unauthorized: `The JWT is invalid`"}),
        );
        let transport = scripted(vec![
            refused.clone(),
            refused.clone(),
            (200, executed(1)),
            refused,
        ]);
        let db = HranaDb::new("http://db", Some("old".into()), Box::new(transport));
        let mut reports = Vec::new();
        for _ in 0..4 {
            match block_on(db.execute(write())) {
                Err(DbError::Unavailable {
                    reason,
                    first_report,
                }) => {
                    assert!(reason.contains("401"), "{reason}");
                    reports.push(first_report);
                }
                Ok(_) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(reports, [true, false, true]);
        assert!(
            transport.pauses.borrow().is_empty(),
            "a refusal is not retried"
        );
        let api = crate::ApiError::from(DbError::Unavailable {
            reason: "r".into(),
            first_report: false,
        });
        assert_eq!(api.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.code, "database_unavailable");
        assert!(api.cause.is_none());
    }

    #[test]
    fn sqld_primary_codes_and_its_own_conditions_keep_their_kind() {
        let error = |code: &str, message: &str| {
            let failure = map_error(HranaError {
                message: message.into(),
                code: code.into(),
            });
            let outcome: Result<(), _> = Err(failure);
            let db = HranaDb::new("http://db", None, Box::new(canned(executed(0))));
            db.settle(outcome, |_| false).unwrap_err()
        };
        for code in ["SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_UNIQUE"] {
            let unique = error(code, "SQLite error: UNIQUE constraint failed: users.email");
            assert!(unique.is_unique_violation("users.email"), "{unique:?}");
        }
        let range = error(
            "SQLITE_CONSTRAINT",
            "SQLite error: out_of_range: a balance is at most 10^15",
        );
        assert_eq!(crate::ApiError::from(range).code, "amount_out_of_range");
        for code in [
            "SQLITE_BUSY",
            "SQLITE_BUSY_SNAPSHOT",
            "TRANSACTION_BUSY",
            "TRANSACTION_TIMEOUT",
        ] {
            let busy = error(code, "Transaction timed out");
            assert!(matches!(busy, DbError::Busy(_)), "{code}: {busy:?}");
        }
        for code in ["BLOCKED", "SQLITE_READONLY"] {
            let refused = error(code, "Operation was blocked: over quota");
            assert!(
                matches!(&refused, DbError::Unavailable { reason, .. } if reason.contains(code)),
                "{refused:?}"
            );
        }
        for code in ["SQL_PARSE_ERROR", "SQLITE_UNKNOWN", "SQLITE_ERROR"] {
            let other = error(code, "no such table: nowhere");
            assert!(matches!(other, DbError::Other(_)), "{code}: {other:?}");
        }
    }

    #[test]
    fn values_round_trip_through_the_protocol_types() {
        for value in [
            Value::Null,
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("é".into()),
            Value::Blob(vec![0, 255]),
        ] {
            assert_eq!(from_hrana(to_hrana(value.clone())).unwrap(), value);
        }
    }
}
