//! The `Db` port on libSQL over HTTP: the Hrana protocol's `/v3/pipeline` endpoint, as
//! served by Turso and by a self-hosted `sqld`.
//!
//! Every call is one stateless pipeline, so one round trip: `execute` sends the statement and
//! a `close`; `batch` sends one Hrana `batch` whose steps are wrapped in
//! `BEGIN IMMEDIATE … COMMIT`, each step conditioned on the one before and a `ROLLBACK` on
//! the commit's failure, so the server applies all of them or none.
//!
//! The protocol types are `libsql-hrana`'s. The HTTP request itself goes through a
//! [`Transport`], one per runtime (workers `Fetch`, Spin outbound HTTP, reqwest natively).
//! Neither `libsql-client` nor `libsql`'s `cloudflare` feature is used for this: the first
//! pins `worker` 0.0.18, which current rustc refuses to build, and the second pins `worker`
//! 0.6, which cannot share a binary with the `worker` 0.8 that worker-build 0.8 requires.

use async_trait::async_trait;
use bytes::Bytes;
use libsql_hrana::proto::{
    Batch, BatchCond, BatchResult, BatchStep, BatchStreamReq, CloseStreamReq, Error as HranaError,
    ExecuteStreamReq, PipelineReqBody, PipelineRespBody, Stmt, StmtResult, StreamRequest,
    StreamResponse, StreamResult, Value as HranaValue,
};

use super::{Db, DbError, Rows, Statement, Value};

/// The path Tollgate posts pipelines to, after the database URL.
pub const PIPELINE_PATH: &str = "/v3/pipeline";

/// One HTTP exchange with the database server.
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
}

/// A libSQL database reached over Hrana HTTP.
pub struct HranaDb {
    pipeline_url: String,
    token: Option<String>,
    transport: Box<dyn Transport>,
}

impl HranaDb {
    /// `url` is the database URL as Turso prints it (`libsql://…`, reached over https) or an
    /// `http(s)://` URL of a sqld; `token` is its auth token, if it wants one.
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
        }
    }

    /// True for the URLs [`HranaDb::new`] takes, as opposed to a local file path.
    pub fn is_remote_url(url: &str) -> bool {
        let url = url.trim();
        ["libsql://", "http://", "https://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
    }

    async fn pipeline(&self, request: StreamRequest) -> Result<StreamResponse, DbError> {
        let body = PipelineReqBody {
            baton: None,
            requests: vec![request, StreamRequest::Close(CloseStreamReq {})],
        };
        let body = serde_json::to_vec(&body)
            .map_err(|error| DbError::Other(format!("encoding a pipeline: {error}")))?;
        let (status, reply) = self
            .transport
            .post(&self.pipeline_url, self.token.as_deref(), body.into())
            .await
            .map_err(|error| DbError::Other(format!("libSQL over HTTP: {error}")))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&reply);
            return Err(DbError::Other(format!(
                "libSQL over HTTP answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let reply: PipelineRespBody = serde_json::from_slice(&reply)
            .map_err(|error| DbError::Other(format!("an unreadable pipeline reply: {error}")))?;
        match reply.results.into_iter().next() {
            Some(StreamResult::Ok { response }) => Ok(response),
            Some(StreamResult::Error { error }) => Err(map_error(error)),
            Some(StreamResult::None) | None => Err(DbError::Other(
                "the pipeline reply has no result for the request".into(),
            )),
        }
    }
}

#[async_trait(?Send)]
impl Db for HranaDb {
    async fn execute(&self, statement: Statement) -> Result<Rows, DbError> {
        let request = StreamRequest::Execute(ExecuteStreamReq {
            stmt: to_stmt(statement),
        });
        match self.pipeline(request).await? {
            StreamResponse::Execute(response) => from_result(response.result),
            other => Err(unexpected(&other)),
        }
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Rows>, DbError> {
        let count = statements.len();
        let request = StreamRequest::Batch(BatchStreamReq {
            batch: transaction(statements.into_iter().map(to_stmt)),
        });
        match self.pipeline(request).await? {
            StreamResponse::Batch(response) => from_batch(response.result, count),
            other => Err(unexpected(&other)),
        }
    }
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
fn from_batch(result: BatchResult, count: usize) -> Result<Vec<Rows>, DbError> {
    if let Some(error) = result.step_errors.iter().flatten().next() {
        return Err(map_error(error.clone()));
    }
    let commit = count + 1;
    if result.step_results.get(commit).is_none_or(Option::is_none) {
        return Err(DbError::Other("the batch did not commit".into()));
    }
    result
        .step_results
        .into_iter()
        .skip(1)
        .take(count)
        .map(|step| match step {
            Some(result) => from_result(result),
            None => Err(DbError::Other("a batch step did not run".into())),
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

/// sqld names errors by SQLite's extended result code (`SQLITE_CONSTRAINT_UNIQUE`…) and keeps
/// SQLite's message, which is what [`DbError::is_unique_violation`] reads.
fn map_error(error: HranaError) -> DbError {
    if error.code.starts_with("SQLITE_CONSTRAINT") {
        DbError::Constraint(error.message)
    } else if error.code.starts_with("SQLITE_BUSY") {
        DbError::Busy(error.message)
    } else {
        DbError::Other(format!("{} ({})", error.message, error.code))
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

    /// Records what was posted and answers with a canned body.
    struct Canned {
        posted: RefCell<Vec<(String, Option<String>, serde_json::Value)>>,
        reply: serde_json::Value,
    }

    #[async_trait(?Send)]
    impl Transport for &'static Canned {
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
            Ok((200, serde_json::to_vec(&self.reply).unwrap().into()))
        }
    }

    fn canned(reply: serde_json::Value) -> &'static Canned {
        Box::leak(Box::new(Canned {
            posted: RefCell::default(),
            reply,
        }))
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(future).expect("the canned transport never waits")
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
        let error = from_batch(result, 1).unwrap_err();
        assert!(error.is_unique_violation("users.email"), "{error:?}");
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
