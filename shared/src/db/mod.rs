//! The `Db` port: one statement, or an atomic batch, in; rows out.
//!
//! Shaped for every adapter: embedded libSQL natively, and libSQL over Hrana HTTP at the
//! edge, where a batch is one round trip. There are no interactive transactions: a rule that
//! must hold under concurrency is written as one statement or one batch.

pub mod hrana;
mod migrate;
mod value;

pub use migrate::{MIGRATIONS, Migration, MigrationError, migrate, split_statements};
pub use value::{FromValue, Value};

use async_trait::async_trait;

/// A SQL statement with positional (`?`) parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Turns a single-row `INSERT ... VALUES (...)` into one that inserts only when `query`
    /// returns a row at the time it runs: how a batch makes a later write depend on an
    /// earlier one without a round trip.
    pub fn only_if_exists(self, query: &Statement) -> Self {
        let (head, values) = self
            .sql
            .rsplit_once("VALUES")
            .expect("only_if_exists takes an INSERT ... VALUES statement");
        let values = values.trim().trim_start_matches('(').trim_end_matches(')');
        let mut params = self.params;
        params.extend(query.params.iter().cloned());
        Statement {
            sql: format!("{head}SELECT {values} WHERE EXISTS ({})", query.sql),
            params,
        }
    }
}

/// `Statement::new(sql)` with each parameter bound in order.
#[macro_export]
macro_rules! sql {
    ($sql:expr $(, $param:expr)* $(,)?) => {
        $crate::db::Statement::new($sql)$(.bind($param))*
    };
}

/// What one statement produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_affected: u64,
}

impl Rows {
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(move |values| Row {
            columns: &self.columns,
            values,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One row, read by column name.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Row<'_> {
    /// The column's value as `T`; a missing column or a mismatched type is a bug in the
    /// query, reported as [`DbError::Decode`].
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, DbError> {
        let index = self
            .columns
            .iter()
            .position(|name| name == column)
            .ok_or_else(|| DbError::Decode(format!("no column {column}")))?;
        T::from_value(&self.values[index]).ok_or_else(|| {
            DbError::Decode(format!("column {column} holds {:?}", self.values[index]))
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DbError {
    /// A UNIQUE, CHECK, NOT NULL or FOREIGN KEY constraint failed; the message names it.
    Constraint(String),
    /// The database stayed locked past the busy timeout, or its server is overloaded (it
    /// kept refusing new requests for a while): worth retrying shortly.
    Busy(String),
    /// The database refuses this client: its token is rejected (a rotated or revoked token),
    /// or writes are refused (a read-only token or database, a Turso database over its
    /// quota). Retrying will not help until an operator acts. `first_report` is true the first
    /// time this process meets this refusal since writes last worked, so its reason reaches
    /// the log once, not once per request.
    Unavailable { reason: String, first_report: bool },
    /// A row did not have the shape the query promised.
    Decode(String),
    /// Anything else: a broken connection, a syntax error.
    Other(String),
}

impl DbError {
    /// True when a UNIQUE constraint on `table.column` (or a unique index over it) failed.
    pub fn is_unique_violation(&self, table_column: &str) -> bool {
        matches!(self, DbError::Constraint(message)
            if message.contains("UNIQUE") && message.contains(table_column))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Constraint(message) => write!(f, "constraint failed: {message}"),
            DbError::Busy(message) => write!(f, "database busy: {message}"),
            DbError::Unavailable { reason, .. } => write!(f, "database unavailable: {reason}"),
            DbError::Decode(message) => write!(f, "unexpected row: {message}"),
            DbError::Other(message) => write!(f, "database error: {message}"),
        }
    }
}

impl std::error::Error for DbError {}

#[async_trait(?Send)]
pub trait Db {
    /// Runs one statement on its own.
    async fn execute(&self, statement: Statement) -> Result<Rows, DbError>;

    /// Runs the statements in order inside one transaction: all of them take effect, or
    /// (on the first error) none does.
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Rows>, DbError>;
}
