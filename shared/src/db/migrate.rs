//! Applies the numbered files of `migrations/` in order, once each.

use crate::db::{Db, DbError, Statement};
use crate::sql;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, in version order (embedded by `build.rs`).
pub const MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[derive(Debug, PartialEq)]
pub enum MigrationError {
    /// The database records a version this build does not know: it was migrated by newer
    /// code, and running older code against it could corrupt it.
    DatabaseNewerThanCode {
        database: i64,
        code: i64,
    },
    Db(DbError),
}

impl std::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationError::DatabaseNewerThanCode { database, code } => write!(
                f,
                "the database is at schema version {database}, newer than this build's {code}: refusing to run"
            ),
            MigrationError::Db(error) => write!(f, "migration failed: {error}"),
        }
    }
}

impl std::error::Error for MigrationError {}

impl From<DbError> for MigrationError {
    fn from(error: DbError) -> Self {
        MigrationError::Db(error)
    }
}

/// Brings the schema up to date; returns the versions it applied (none when already current).
///
/// Each migration runs in one batch together with its `schema_migrations` row, so a failed
/// migration leaves nothing behind, and two processes migrating at once cannot both apply it:
/// the loser's batch fails on the primary key, and it reads the versions again.
pub async fn migrate(db: &dyn Db, now: i64) -> Result<Vec<i64>, MigrationError> {
    db.execute(Statement::new(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    ))
    .await?;
    let code_version = MIGRATIONS.last().map_or(0, |migration| migration.version);
    let mut applied = Vec::new();
    loop {
        let rows = db
            .execute(Statement::new(
                "SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations",
            ))
            .await?;
        let current: i64 = rows.first().map_or(Ok(0), |row| row.get("version"))?;
        if current > code_version {
            return Err(MigrationError::DatabaseNewerThanCode {
                database: current,
                code: code_version,
            });
        }
        let Some(next) = MIGRATIONS
            .iter()
            .find(|migration| migration.version > current)
        else {
            return Ok(applied);
        };
        let mut batch: Vec<Statement> = split_statements(next.sql)
            .into_iter()
            .map(Statement::new)
            .collect();
        batch.push(sql!(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            next.version,
            next.name,
            now
        ));
        match db.batch(batch).await {
            Ok(_) => applied.push(next.version),
            Err(error) if error.is_unique_violation("schema_migrations.version") => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Splits a SQL script into statements at top-level semicolons, leaving semicolons inside
/// quotes, comments and `CREATE TRIGGER ... END` bodies alone.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                current.push(c);
                for inner in chars.by_ref() {
                    current.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
                current.push(' ');
            }
            ';' if !inside_trigger_body(&current) => {
                let statement = current.trim();
                if !statement.is_empty() {
                    statements.push(statement.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        statements.push(rest.to_owned());
    }
    statements
}

/// A trigger's body holds its own semicolons; the statement ends at the `END` that follows.
fn inside_trigger_body(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|word| !word.is_empty())
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    let is_trigger = words.first().is_some_and(|word| word == "CREATE")
        && words[1..].iter().any(|word| word == "TRIGGER");
    is_trigger && !statement.trim_end().to_ascii_uppercase().ends_with("END")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_top_level_semicolons() {
        let script = "CREATE TABLE a (x TEXT DEFAULT ';'); -- a comment; with a semicolon\nINSERT INTO a VALUES ('b;c');";
        assert_eq!(
            split_statements(script),
            vec![
                "CREATE TABLE a (x TEXT DEFAULT ';')",
                "INSERT INTO a VALUES ('b;c')"
            ]
        );
    }

    #[test]
    fn a_trigger_body_stays_whole() {
        let script = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET n = n + 1; DELETE FROM c; END;\nSELECT 1;";
        let statements = split_statements(script);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].ends_with("END"));
        assert_eq!(statements[1], "SELECT 1");
    }

    #[test]
    fn block_comments_and_trailing_text_are_handled() {
        let script = "/* header; */ SELECT 1; SELECT 2";
        assert_eq!(split_statements(script), vec!["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1, "{}", migration.name);
        }
    }
}
