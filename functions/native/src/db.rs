//! The `Db` port on embedded libSQL: a local file (WAL, busy timeout) or `:memory:`.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tollgate::db::{Db, DbError, Rows, Statement, Value};

/// How long a writer waits for another to finish before the request answers 503.
const BUSY_TIMEOUT_MS: u32 = 5_000;
const SQLITE_BUSY: i32 = 5;
const SQLITE_CONSTRAINT: i32 = 19;
/// How often the write-ahead log is folded back into the database file, off the request
/// path (see [`checkpoint_in_background`]).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
/// How long (in pages) the log may grow before a checkpoint waits for its readers, so that
/// the next write starts it afresh: 16 MiB at 4 KiB a page.
const RESTART_FRAMES: i64 = 4_096;
/// How long that checkpoint waits for readers (writers wait with it).
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// The size a log that grew past it is cut back to when it starts afresh. Below it the
/// file is kept and overwritten: writing into blocks the file already has costs the kernel
/// less than growing it again.
const WAL_KEPT_BYTES: u64 = 64 * 1024 * 1024;
/// The most statements a connection keeps prepared; past it the cache starts afresh, so SQL
/// built with a varying shape cannot grow it without bound.
const MAX_PREPARED_PER_CONNECTION: usize = 256;

/// Cheap to clone: clones share the database and its connections.
#[derive(Clone)]
pub struct LibsqlDb {
    inner: Arc<Inner>,
}

struct Inner {
    database: libsql::Database,
    connections: Connections,
    /// SQLite admits one writer at a time, and its busy handler makes the others sleep and
    /// poll, which under load turns into long, unfair waits. Writes of this process take
    /// turns instead ([`Writes`]); the busy timeout remains for other processes (the CLI)
    /// writing the same file. Every write of a file runs on the one connection kept here: a
    /// connection drops its page cache whenever another has written, so the writer's stays
    /// warm only if it is the only one writing. The mutex keeps the turn's holder and the
    /// checkpoint apart.
    writer: tokio::sync::Mutex<Option<Connection>>,
    writes: Mutex<Writes>,
}

/// Write batches waiting for their commit, and whether a caller holds the turn to commit
/// them. The caller whose batch finds the turn free takes it: it commits every batch queued
/// as one group ([`LibsqlDb::commit_group`]), then hands the turn to the caller of the
/// oldest batch still queued. So under load the turn goes in order of arrival, and no
/// thread keeps it while its other requests wait. A lone batch left waiting is not handed
/// the turn: the turn is freed and its caller woken to take it, and the next batch to come,
/// mostly the one the turn's holder sends next, takes it first and commits both together
/// instead of waiting for that wake-up.
///
/// Measured with the claims and credits benches (medians of three to seven runs), against
/// what came before: waiting in a mutex's queue (a waiter got the writer once its batch had
/// been committed by another, and it sat unused until that thread woke only to let it go),
/// two claimers made 12 % fewer claims/s than one; taking the writer as it came free, the
/// threads that got it kept it, and 32 callers of reserve + settle saw a p99 of 24 ms
/// instead of 10; handing a lone batch the turn, two claimers made 10 % fewer claims/s;
/// two or four groups a turn cost those 32 callers 5-10 % of their pairs/s.
#[derive(Default)]
struct Writes {
    queued: VecDeque<Queued>,
    /// A caller is committing the queue, or has been handed the turn to.
    turn_taken: bool,
}

/// A write batch waiting for the writer, and where its results go.
struct Queued {
    statements: Vec<Statement>,
    reply: tokio::sync::oneshot::Sender<Reply>,
}

/// What a waiting batch's caller hears.
enum Reply {
    /// Its batch was committed, or failed.
    Done(Result<Vec<Rows>, DbError>),
    /// The turn is its own, with its batch back to commit first.
    Turn(Vec<Statement>),
    /// The turn is free, with its batch still queued: take the turn unless another caller
    /// has; the batch's answer comes on the channel sent.
    Free(tokio::sync::oneshot::Receiver<Reply>),
}

enum Connections {
    /// Idle connections to a file, reused by later requests.
    File(Mutex<Vec<Connection>>),
    /// An in-memory database lives and dies with its one connection, so every caller
    /// takes turns on it.
    Memory(tokio::sync::Mutex<Connection>),
}

/// A connection with the statements it has prepared, by SQL text. Parsing and planning a
/// statement cost more than running it: a third of forward-auth's time in a profile went
/// to `sqlite3_prepare` before statements were kept.
struct Connection {
    raw: libsql::Connection,
    prepared: RefCell<HashMap<String, libsql::Statement>>,
}

impl Connection {
    fn new(raw: libsql::Connection) -> Self {
        Connection {
            raw,
            prepared: RefCell::new(HashMap::new()),
        }
    }

    /// The statement for `sql`, out of the cache while it runs.
    async fn take_prepared(&self, sql: &str) -> Result<(String, libsql::Statement), DbError> {
        let cached = self.prepared.borrow_mut().remove_entry(sql);
        match cached {
            Some(cached) => Ok(cached),
            None => Ok((
                sql.to_owned(),
                self.raw.prepare(sql).await.map_err(map_error)?,
            )),
        }
    }

    /// Puts a statement that ran to its end back, reset for its next use.
    fn give_back(&self, sql: String, statement: libsql::Statement) {
        statement.reset();
        let mut prepared = self.prepared.borrow_mut();
        if prepared.len() >= MAX_PREPARED_PER_CONNECTION {
            prepared.clear();
        }
        prepared.insert(sql, statement);
    }
}

impl LibsqlDb {
    /// Opens `path`, or a private in-memory database for `:memory:`.
    pub async fn open(path: &str) -> Result<Self, DbError> {
        let database = libsql::Builder::new_local(path)
            .build()
            .await
            .map_err(map_error)?;
        let first = connect(&database).await?;
        let connections = if path == ":memory:" {
            Connections::Memory(tokio::sync::Mutex::new(first))
        } else {
            let mut rows = first
                .raw
                .query("PRAGMA journal_mode = WAL", ())
                .await
                .map_err(map_error)?;
            while rows.next().await.map_err(map_error)?.is_some() {}
            Connections::File(Mutex::new(vec![first]))
        };
        let file = matches!(connections, Connections::File(_));
        let db = Self {
            inner: Arc::new(Inner {
                database,
                connections,
                writer: tokio::sync::Mutex::new(None),
                writes: Mutex::new(Writes::default()),
            }),
        };
        if file {
            db.checkpoint_in_background()?;
        }
        Ok(db)
    }

    /// SQLite folds the write-ahead log back into the file (a checkpoint, with its fsync)
    /// inside whichever commit passes the log's threshold: that request then takes
    /// milliseconds instead of microseconds, and every writer queued behind it waits too.
    /// The connections here never checkpoint (`wal_autocheckpoint = 0`); a thread of its
    /// own does, until the database is dropped: every [`CHECKPOINT_EVERY`] without waiting
    /// on anyone (`PASSIVE`). Once the log is [`RESTART_FRAMES`] long, it then takes its
    /// turn as this process's writer and waits up to [`RESTART_WAIT`] for the log's readers
    /// to move on (`RESTART`), so that the next write starts the log from its beginning.
    /// Without that the log would never start again under steady reads (a reader is always
    /// in it), and grows by gigabytes, every read searching more of it (the soak bench found
    /// 3.6 GB in a minute). Queueing with the writers matters: SQLite's busy handler polls
    /// with growing sleeps, and under steady writes it missed every gap between commits.
    fn checkpoint_in_background(&self) -> Result<(), DbError> {
        let connection = self.inner.database.connect().map_err(map_error)?;
        connection.busy_timeout(RESTART_WAIT).map_err(map_error)?;
        let alive = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("tollgate-checkpoint".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a single-threaded runtime starts");
                let checkpoint = async |mode: &str| {
                    let mut rows = connection
                        .query(&format!("PRAGMA wal_checkpoint({mode})"), ())
                        .await?;
                    let mut log_frames = 0;
                    while let Some(row) = rows.next().await? {
                        log_frames = row.get::<i64>(1)?;
                    }
                    Ok::<_, libsql::Error>(log_frames)
                };
                while alive.strong_count() > 0 {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    let outcome = runtime.block_on(async {
                        let log_frames = checkpoint("PASSIVE").await?;
                        if log_frames >= RESTART_FRAMES
                            && let Some(inner) = alive.upgrade()
                        {
                            let _writer = inner.writer.lock().await;
                            checkpoint("RESTART").await?;
                        }
                        Ok::<_, libsql::Error>(())
                    });
                    if let Err(error) = outcome {
                        tracing::warn!(%error, "a checkpoint of the write-ahead log failed");
                    }
                }
            })
            .map_err(|error| DbError::Other(format!("the checkpoint thread: {error}")))?;
        Ok(())
    }

    async fn with_connection<T>(
        &self,
        work: impl AsyncFnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        match &self.inner.connections {
            Connections::Memory(connection) => work(&*connection.lock().await).await,
            Connections::File(idle) => {
                let pooled = idle.lock().expect("pool lock").pop();
                let connection = match pooled {
                    Some(connection) => connection,
                    None => connect(&self.inner.database).await?,
                };
                let result = work(&connection).await;
                // A connection left inside a transaction by an error is not reused.
                if connection.raw.is_autocommit() {
                    idle.lock().expect("pool lock").push(connection);
                }
                result
            }
        }
    }

    /// Runs `work` as this process's writer (the caller holds [`Inner::writer`]): on the
    /// connection kept for writes, opened on first use and replaced if an error leaves it
    /// inside a transaction, or on an in-memory database's only connection.
    async fn as_writer<T>(
        &self,
        kept: &mut Option<Connection>,
        work: impl AsyncFnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        match &self.inner.connections {
            Connections::Memory(connection) => work(&*connection.lock().await).await,
            Connections::File(_) => {
                let connection = match kept.take() {
                    Some(connection) => connection,
                    None => connect(&self.inner.database).await?,
                };
                let result = work(&connection).await;
                if connection.raw.is_autocommit() {
                    *kept = Some(connection);
                }
                result
            }
        }
    }
}

async fn connect(database: &libsql::Database) -> Result<Connection, DbError> {
    let connection = database.connect().map_err(map_error)?;
    connection
        .execute_batch(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;
             PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_KEPT_BYTES};"
        ))
        .await
        .map_err(map_error)?;
    Ok(Connection::new(connection))
}

/// Runs `statement` on its connection's prepared copy, which goes back to the cache only
/// when it ran to its end: one that failed is dropped (finalised).
async fn run(connection: &Connection, statement: Statement) -> Result<Rows, DbError> {
    let (sql, prepared) = connection.take_prepared(&statement.sql).await?;
    let rows = read(&connection.raw, &prepared, statement.params).await?;
    connection.give_back(sql, prepared);
    Ok(rows)
}

async fn read(
    connection: &libsql::Connection,
    prepared: &libsql::Statement,
    params: Vec<Value>,
) -> Result<Rows, DbError> {
    let before = connection.total_changes();
    let params: Vec<libsql::Value> = params.into_iter().map(to_libsql).collect();
    let mut rows = prepared.query(params).await.map_err(map_error)?;
    let columns: Vec<String> = (0..rows.column_count())
        .map(|index| rows.column_name(index).unwrap_or_default().to_owned())
        .collect();
    let mut values = Vec::new();
    while let Some(row) = rows.next().await.map_err(map_error)? {
        let row_values = (0..columns.len() as i32)
            .map(|index| row.get_value(index).map(from_libsql).map_err(map_error))
            .collect::<Result<Vec<_>, _>>()?;
        values.push(row_values);
    }
    // The statement's own changes, as Hrana reports them: `changes()` leaves out what
    // triggers changed (the running-job counters move with every claim), but keeps the
    // count of the last INSERT, UPDATE or DELETE through a query, so it is read only when
    // this statement changed something.
    let rows_affected = if connection.total_changes() == before {
        0
    } else {
        connection.changes()
    };
    Ok(Rows {
        columns,
        rows: values,
        rows_affected,
    })
}

#[async_trait(?Send)]
impl Db for LibsqlDb {
    async fn execute(&self, statement: Statement) -> Result<Rows, DbError> {
        if is_read(&statement.sql) {
            return self
                .with_connection(async |connection| run(connection, statement).await)
                .await;
        }
        // A write alone joins the group commit like any batch: runners claiming at once
        // then share commits instead of taking turns.
        let mut results = self.batch(vec![statement]).await?;
        Ok(results.pop().unwrap_or_default())
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Rows>, DbError> {
        // A batch of reads needs one snapshot, not the writer: it runs beside the writes
        // (WAL readers never wait for the writer).
        if statements.iter().all(|statement| is_read(&statement.sql)) {
            return self
                .with_connection(async |connection| {
                    // A plain BEGIN takes the snapshot at the first read.
                    control(connection, "BEGIN").await?;
                    let results = run_all(connection, statements).await;
                    let end = if results.is_ok() {
                        "COMMIT"
                    } else {
                        "ROLLBACK"
                    };
                    control(connection, end).await?;
                    results
                })
                .await;
        }
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let turn_was_free = {
            let mut writes = self.inner.writes.lock().expect("writes lock");
            writes.queued.push_back(Queued { statements, reply });
            !std::mem::replace(&mut writes.turn_taken, true)
        };
        let mut turn_is_ours = turn_was_free;
        while !turn_is_ours {
            match answer.await {
                Ok(Reply::Done(result)) => return result,
                Ok(Reply::Turn(statements)) => {
                    let (reply, fresh) = tokio::sync::oneshot::channel();
                    let mut writes = self.inner.writes.lock().expect("writes lock");
                    writes.queued.push_front(Queued { statements, reply });
                    answer = fresh;
                    turn_is_ours = true;
                }
                Ok(Reply::Free(fresh)) => {
                    answer = fresh;
                    let mut writes = self.inner.writes.lock().expect("writes lock");
                    turn_is_ours = !std::mem::replace(&mut writes.turn_taken, true);
                }
                Err(_) => return Err(dropped()),
            }
        }
        // The turn is ours, and this batch is in its first group (unless a turn taken after
        // this batch was left waiting committed it already).
        self.take_turn(Turn {
            inner: &self.inner,
            passed: false,
        })
        .await;
        match answer.await {
            Ok(Reply::Done(result)) => result,
            _ => Err(dropped()),
        }
    }
}

impl LibsqlDb {
    /// Commits the queued batches as one group, then passes the turn on (see [`Writes`]).
    async fn take_turn(&self, mut turn: Turn<'_>) {
        let mut writer = self.inner.writer.lock().await;
        let group: Vec<Queued> = {
            let mut writes = self.inner.writes.lock().expect("writes lock");
            writes.queued.drain(..).collect()
        };
        if !group.is_empty() {
            self.commit_group(&mut writer, group).await;
        }
        drop(writer);
        turn.pass(&mut self.inner.writes.lock().expect("writes lock"));
    }
}

/// The turn to commit, held. Its holder passes it on ([`Turn::pass`]); one whose request is
/// dropped midway hands it to the caller of the oldest batch still queued.
struct Turn<'a> {
    inner: &'a Inner,
    passed: bool,
}

impl Turn<'_> {
    /// Frees the turn, waking the caller of a lone batch left waiting to take it, or hands it
    /// to the caller of the oldest of several (see [`Writes`]).
    fn pass(&mut self, writes: &mut Writes) {
        self.passed = true;
        if let [lone] = writes.queued.make_contiguous() {
            let (reply, fresh) = tokio::sync::oneshot::channel();
            if std::mem::replace(&mut lone.reply, reply)
                .send(Reply::Free(fresh))
                .is_ok()
            {
                writes.turn_taken = false;
                return;
            }
            // Its caller is gone: its batch goes uncommitted (see [`hand_over`]).
            writes.queued.clear();
        }
        hand_over(writes);
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.passed {
            hand_over(&mut self.inner.writes.lock().expect("writes lock"));
        }
    }
}

/// Hands the turn to the caller of the oldest batch queued, or frees it when none waits.
/// A caller that is gone cannot take it: its batch goes uncommitted, as it would had its
/// request ended before queueing it.
fn hand_over(writes: &mut Writes) {
    while let Some(next) = writes.queued.pop_front() {
        if next.reply.send(Reply::Turn(next.statements)).is_ok() {
            return;
        }
    }
    writes.turn_taken = false;
}

fn dropped() -> DbError {
    DbError::Other("the batch was dropped before it was committed".into())
}

impl LibsqlDb {
    /// Group commit: the write batches queued while the writer was busy run in one
    /// transaction, each inside a savepoint of its own, so one batch's failure rolls back
    /// only itself, and each learns its results once the whole has committed. Under load
    /// one commit (and one turn of the writer) serves many requests.
    async fn commit_group(&self, writer: &mut Option<Connection>, group: Vec<Queued>) {
        let (batches, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|queued| (queued.statements, queued.reply))
            .unzip();
        let outcome = self
            .as_writer(writer, async |connection| {
                // IMMEDIATE takes the write lock up front, so that another process's writer
                // cannot deadlock with this one upgrading a read lock; the busy timeout
                // queues them instead.
                control(connection, "BEGIN IMMEDIATE").await?;
                // A batch alone needs no savepoint: the transaction is its own.
                if let [_] = batches.as_slice() {
                    let statements = batches.into_iter().next().unwrap_or_default();
                    let result = run_all(connection, statements).await;
                    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    control(connection, end).await?;
                    return Ok(vec![result]);
                }
                let mut results = Vec::with_capacity(batches.len());
                for statements in batches {
                    match in_savepoint(connection, statements).await {
                        Ok(result) => results.push(result),
                        Err(error) => {
                            let _ = control(connection, "ROLLBACK").await;
                            return Err(error);
                        }
                    }
                }
                if let Err(error) = control(connection, "COMMIT").await {
                    let _ = control(connection, "ROLLBACK").await;
                    return Err(error);
                }
                Ok(results)
            })
            .await;
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Reply::Done(result));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Reply::Done(Err(error.clone())));
                }
            }
        }
    }
}

/// Runs `statements` in order, stopping at the first that fails.
async fn run_all(
    connection: &Connection,
    statements: Vec<Statement>,
) -> Result<Vec<Rows>, DbError> {
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        results.push(run(connection, statement).await?);
    }
    Ok(results)
}

/// Runs one batch of a group: its own failure (the inner error) undoes only its own
/// statements; an outer error means the transaction failed, and the whole group with it.
///
/// A batch of several statements runs inside a savepoint. One statement needs none: SQLite
/// undoes a failed statement's own changes, its triggers' included, and keeps the
/// transaction, under every conflict resolution but ROLLBACK, which ends the transaction
/// (seen here, as a failure that leaves no transaction is), and FAIL, which keeps what the
/// statement changed before it failed: no statement or trigger of Tollgate asks for either
/// (`no_sql_asks_to_fail_or_roll_back_on_a_conflict` checks). Claims and most writes are
/// one statement: two fewer statements each made grouping pay (two claimers 8 % more
/// claims/s than one, against 1 % with the savepoint; medians of seven runs).
async fn in_savepoint(
    connection: &Connection,
    statements: Vec<Statement>,
) -> Result<Result<Vec<Rows>, DbError>, DbError> {
    if let [_] = statements.as_slice() {
        return match run_all(connection, statements).await {
            Err(error) if connection.raw.is_autocommit() => Err(error),
            result => Ok(result),
        };
    }
    control(connection, "SAVEPOINT batch").await?;
    let results = run_all(connection, statements).await;
    if results.is_err() {
        control(connection, "ROLLBACK TO batch").await?;
    }
    control(connection, "RELEASE batch").await?;
    Ok(results)
}

/// A transaction's BEGIN, COMMIT, SAVEPOINT...: prepared once per connection and kept, as
/// every statement is; each was parsed again on every transaction before.
async fn control(connection: &Connection, sql: &'static str) -> Result<(), DbError> {
    run(connection, Statement::new(sql)).await.map(drop)
}

/// A plain query: it takes no write lock.
pub(crate) fn is_read(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|keyword| keyword.eq_ignore_ascii_case("select"))
}

fn to_libsql(value: Value) -> libsql::Value {
    match value {
        Value::Null => libsql::Value::Null,
        Value::Integer(number) => libsql::Value::Integer(number),
        Value::Real(number) => libsql::Value::Real(number),
        Value::Text(text) => libsql::Value::Text(text),
        Value::Blob(bytes) => libsql::Value::Blob(bytes),
    }
}

fn from_libsql(value: libsql::Value) -> Value {
    match value {
        libsql::Value::Null => Value::Null,
        libsql::Value::Integer(number) => Value::Integer(number),
        libsql::Value::Real(number) => Value::Real(number),
        libsql::Value::Text(text) => Value::Text(text),
        libsql::Value::Blob(bytes) => Value::Blob(bytes),
    }
}

fn map_error(error: libsql::Error) -> DbError {
    match &error {
        libsql::Error::SqliteFailure(code, message) => match code & 0xff {
            SQLITE_CONSTRAINT => DbError::Constraint(message.clone()),
            SQLITE_BUSY => DbError::Busy(message.clone()),
            _ => DbError::Other(error.to_string()),
        },
        _ => DbError::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate::sql;

    async fn memory() -> LibsqlDb {
        let db = LibsqlDb::open(":memory:").await.unwrap();
        db.execute(sql!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"
        ))
        .await
        .unwrap();
        db
    }

    #[tokio::test]
    async fn batches_committed_together_fail_alone() {
        let db = memory().await;
        // Held, so that both batches queue and the first to get the writer commits both.
        let holding = db.inner.writer.lock().await;
        let good = db.batch(vec![
            sql!("INSERT INTO t (name) VALUES (?)", "a"),
            sql!("INSERT INTO t (name) VALUES (?)", "b"),
        ]);
        let bad = db.batch(vec![
            sql!("INSERT INTO t (name) VALUES (?)", "c"),
            sql!("INSERT INTO t (name) VALUES (?)", "a"),
        ]);
        let release = async {
            tokio::task::yield_now().await;
            drop(holding);
        };
        let (good, bad, ()) = tokio::join!(good, bad, release);
        assert_eq!(good.unwrap().len(), 2);
        assert!(bad.unwrap_err().is_unique_violation("t.name"));
        let rows = db
            .execute(sql!("SELECT name FROM t ORDER BY name"))
            .await
            .unwrap();
        let names: Vec<String> = rows.iter().map(|row| row.get("name").unwrap()).collect();
        assert_eq!(
            names,
            ["a", "b"],
            "the failed batch left nothing, the other all"
        );
    }

    #[tokio::test]
    async fn a_single_write_joins_the_group_and_fails_alone_too() {
        let db = memory().await;
        let holding = db.inner.writer.lock().await;
        let batch = db.batch(vec![sql!("INSERT INTO t (name) VALUES (?)", "a")]);
        let alone = db.execute(sql!("INSERT INTO t (name) VALUES (?)", "b"));
        // Its first row goes in before its second fails: the statement undoes both.
        let duplicate = db.execute(sql!("INSERT INTO t (name) VALUES ('c'), ('a')"));
        let release = async {
            tokio::task::yield_now().await;
            assert_eq!(
                db.inner.writes.lock().unwrap().queued.len(),
                3,
                "all three queued"
            );
            drop(holding);
        };
        let (batch, alone, duplicate, ()) = tokio::join!(batch, alone, duplicate, release);
        assert_eq!(batch.unwrap()[0].rows_affected, 1);
        assert_eq!(alone.unwrap().rows_affected, 1);
        assert!(duplicate.unwrap_err().is_unique_violation("t.name"));
        let rows = db
            .execute(sql!("SELECT COUNT(*) AS n FROM t"))
            .await
            .unwrap();
        assert_eq!(rows.first().unwrap().get::<i64>("n").unwrap(), 2);
    }

    #[tokio::test]
    async fn a_statement_that_ends_the_transaction_fails_its_whole_group() {
        let db = memory().await;
        let holding = db.inner.writer.lock().await;
        let before = db.execute(sql!("INSERT INTO t (name) VALUES (?)", "a"));
        // A conflict resolved by ROLLBACK undoes the whole transaction, the batch before
        // this one's included: both must hear of it.
        let ending = db.execute(sql!("INSERT OR ROLLBACK INTO t (name) VALUES (?)", "a"));
        let release = async {
            tokio::task::yield_now().await;
            drop(holding);
        };
        let (before, ending, ()) = tokio::join!(before, ending, release);
        assert!(before.is_err(), "the first batch was undone with the group");
        assert!(ending.is_err());
        let rows = db
            .execute(sql!("SELECT COUNT(*) AS n FROM t"))
            .await
            .unwrap();
        assert_eq!(rows.first().unwrap().get::<i64>("n").unwrap(), 0);
        let after = db
            .execute(sql!("INSERT INTO t (name) VALUES (?)", "b"))
            .await;
        assert_eq!(after.unwrap().rows_affected, 1, "the writer works on");
    }

    /// What [`in_savepoint`] relies on to run a single statement without a savepoint.
    #[test]
    fn no_sql_asks_to_fail_or_roll_back_on_a_conflict() {
        fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, found);
                } else if path
                    .extension()
                    .is_some_and(|extension| extension == "rs" || extension == "sql")
                {
                    found.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["migrations", "shared/src", "functions"] {
            sources(&root.join(dir), &mut files);
        }
        let this_file = std::path::Path::new(file!()).file_name().unwrap();
        let mut offending = Vec::new();
        for path in files {
            if path.file_name() == Some(this_file) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // SQL is written in capitals in Rust sources; English prose around it is not.
            let text = if path.extension().is_some_and(|e| e == "sql") {
                text.to_uppercase()
            } else {
                text
            };
            let words: Vec<&str> = text
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|word| !word.is_empty())
                .collect();
            for pair in words.windows(2) {
                if matches!(pair[0], "OR" | "CONFLICT" | "RAISE")
                    && matches!(pair[1], "FAIL" | "ROLLBACK")
                {
                    offending.push(format!("{}: {} {}", path.display(), pair[0], pair[1]));
                }
            }
        }
        assert_eq!(offending, Vec::<String>::new());
    }

    /// Sixteen callers on two threads, each writing in turn: every turn is taken, passed on
    /// or freed, and every batch answered once, whatever order they come in.
    #[test]
    fn every_batch_of_many_racing_callers_is_committed_once() {
        const CALLERS_PER_THREAD: usize = 8;
        const WRITES_PER_CALLER: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let db = runtime().block_on(async {
            let db = LibsqlDb::open(path.to_str().unwrap()).await.unwrap();
            db.execute(sql!(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"
            ))
            .await
            .unwrap();
            db
        });
        std::thread::scope(|scope| {
            for thread in 0..2 {
                let db = db.clone();
                scope.spawn(move || {
                    runtime().block_on(async {
                        let callers = (0..CALLERS_PER_THREAD).map(|caller| {
                            let db = db.clone();
                            async move {
                                for write in 0..WRITES_PER_CALLER {
                                    let name = format!("{thread}-{caller}-{write}");
                                    let written = db
                                        .execute(sql!("INSERT INTO t (name) VALUES (?)", name))
                                        .await
                                        .unwrap();
                                    assert_eq!(written.rows_affected, 1);
                                }
                            }
                        });
                        futures_util::future::join_all(callers).await;
                    })
                });
            }
        });
        let count = runtime().block_on(async {
            let rows = db
                .execute(sql!("SELECT COUNT(*) AS n FROM t"))
                .await
                .unwrap();
            rows.first().unwrap().get::<i64>("n").unwrap()
        });
        assert_eq!(count, (2 * CALLERS_PER_THREAD * WRITES_PER_CALLER) as i64);
        let writes = db.inner.writes.lock().unwrap();
        assert!(
            writes.queued.is_empty() && !writes.turn_taken,
            "the turn is free at the end"
        );
    }

    #[tokio::test]
    async fn a_failing_batch_leaves_nothing_behind() {
        let db = memory().await;
        let error = db
            .batch(vec![
                sql!("INSERT INTO t (name) VALUES (?)", "a"),
                sql!("INSERT INTO t (name) VALUES (?)", "a"),
            ])
            .await
            .unwrap_err();
        assert!(error.is_unique_violation("t.name"), "{error:?}");
        let rows = db
            .execute(sql!("SELECT COUNT(*) AS n FROM t"))
            .await
            .unwrap();
        assert_eq!(rows.first().unwrap().get::<i64>("n").unwrap(), 0);
    }

    #[tokio::test]
    async fn rows_affected_counts_this_statement_only() {
        let db = memory().await;
        let inserted = db
            .execute(sql!("INSERT INTO t (name) VALUES ('a'), ('b')"))
            .await
            .unwrap();
        assert_eq!(inserted.rows_affected, 2);
        let read = db
            .execute(sql!("SELECT name FROM t ORDER BY name"))
            .await
            .unwrap();
        assert_eq!(read.rows_affected, 0);
        assert_eq!(
            read.iter()
                .map(|row| row.get::<String>("name").unwrap())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[tokio::test]
    async fn rows_affected_leaves_out_what_triggers_changed() {
        let db = memory().await;
        db.batch(vec![
            sql!("CREATE TABLE tally (n INTEGER NOT NULL)"),
            sql!("INSERT INTO tally (n) VALUES (0)"),
            sql!("CREATE TRIGGER counted AFTER INSERT ON t BEGIN UPDATE tally SET n = n + 1; END"),
        ])
        .await
        .unwrap();
        let inserted = db
            .execute(sql!("INSERT INTO t (name) VALUES ('a')"))
            .await
            .unwrap();
        assert_eq!(
            inserted.rows_affected, 1,
            "the trigger's UPDATE is not counted"
        );
        let tally = db.execute(sql!("SELECT n FROM tally")).await.unwrap();
        assert_eq!(tally.first().unwrap().get::<i64>("n").unwrap(), 1);
        assert_eq!(
            tally.rows_affected, 0,
            "a read after a write changed nothing"
        );
    }

    #[tokio::test]
    async fn only_if_exists_makes_an_insert_depend_on_an_earlier_statement() {
        let db = memory().await;
        let guard = sql!("SELECT 1 FROM t WHERE name = ?", "gate");
        let results = db
            .batch(vec![
                sql!("INSERT INTO t (name) VALUES (?)", "x").only_if_exists(&guard),
                sql!("INSERT INTO t (name) VALUES (?)", "gate"),
                sql!("INSERT INTO t (name) VALUES (?)", "y").only_if_exists(&guard),
            ])
            .await
            .unwrap();
        let affected: Vec<u64> = results.iter().map(|rows| rows.rows_affected).collect();
        assert_eq!(affected, [0, 1, 1]);
    }

    #[tokio::test]
    async fn a_kept_statement_runs_again_with_new_parameters_and_sees_new_rows() {
        let db = memory().await;
        let find = |name: &str| sql!("SELECT COUNT(*) AS n FROM t WHERE name = ?", name);
        db.execute(sql!("INSERT INTO t (name) VALUES ('a')"))
            .await
            .unwrap();
        let count = |rows: Rows| rows.first().unwrap().get::<i64>("n").unwrap();
        assert_eq!(count(db.execute(find("a")).await.unwrap()), 1);
        assert_eq!(count(db.execute(find("b")).await.unwrap()), 0);
        db.execute(sql!("INSERT INTO t (name) VALUES ('b')"))
            .await
            .unwrap();

        assert_eq!(count(db.execute(find("b")).await.unwrap()), 1);
    }

    #[tokio::test]
    async fn the_kept_statements_start_afresh_past_their_bound() {
        let db = memory().await;
        // With the table's CREATE and its transaction's BEGIN IMMEDIATE and COMMIT, one
        // statement past the bound.
        for n in 0..MAX_PREPARED_PER_CONNECTION - 2 {
            db.execute(sql!(format!("SELECT {n} AS n"))).await.unwrap();
        }
        let Connections::Memory(connection) = &db.inner.connections else {
            unreachable!("a :memory: database has one connection")
        };
        assert_eq!(connection.lock().await.prepared.borrow().len(), 1);
    }
}
