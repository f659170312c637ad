//! Sealing: computing the hash chain of entries appended unsealed.
//!
//! A seal reads the tenant's head and the entries after it in one statement (one consistent
//! snapshot), computes their hashes in Rust, and writes each with `UPDATE ... WHERE id = ?
//! AND hash IS NULL` together with the new head, in one batch. The values depend only on
//! what was read, so two sealers running at once write the same thing, and the second
//! writes nothing: sealing is idempotent and needs no lock.

use crate::{
    Env,
    audit::chain::{self, COLUMNS, GENESIS, Link, Stored},
    db::DbError,
    sql,
};

/// Entries sealed per batch; a longer backlog takes several.
const CHUNK: usize = 500;

/// Seals every unsealed entry of `tenant_id`; returns how many it sealed.
pub async fn seal(env: &Env, tenant_id: &str) -> Result<u64, DbError> {
    let mut total = 0;
    loop {
        let (head, entries) = unsealed(env, tenant_id).await?;
        let seals = chain::seals(&head, &entries);
        let Some(last) = seals.last() else {
            return Ok(total);
        };
        let mut statements = Vec::with_capacity(seals.len() + 1);
        for seal in &seals {
            statements.push(sql!(
                "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ? AND hash IS NULL",
                &seal.prev_hash,
                &seal.hash,
                &seal.id
            ));
        }
        statements.push(sql!(
            "INSERT INTO audit_chains (tenant_id, sealed_seq, sealed_hash, pruned_seq, pruned_hash, updated_at)
             VALUES (?, ?, ?, 0, ?, ?)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 sealed_seq = excluded.sealed_seq, sealed_hash = excluded.sealed_hash,
                 updated_at = excluded.updated_at
             WHERE excluded.sealed_seq > audit_chains.sealed_seq",
            tenant_id,
            last.seq,
            &last.hash,
            GENESIS,
            env.now()
        ));
        let results = env.db.batch(statements).await?;
        total += results[..seals.len()]
            .iter()
            .map(|rows| rows.rows_affected)
            .sum::<u64>();
        // A chunk sealed whole may be followed by more; a partial one met its end (or an
        // entry that verification must explain).
        if entries.len() < CHUNK || seals.len() < entries.len() {
            return Ok(total);
        }
    }
}

/// Seals what it can, right after a request appended: an error here must not fail a change
/// that has already committed, and cron seals whatever is left.
pub async fn try_seal(env: &Env, tenant_id: &str) {
    let _ = seal(env, tenant_id).await;
}

/// Seals every tenant's unsealed entries (cron); returns how many it sealed.
pub async fn seal_all(env: &Env) -> Result<u64, DbError> {
    let tenants = env
        .db
        .execute(sql!(
            "SELECT DISTINCT tenant_id FROM audit_log WHERE hash IS NULL"
        ))
        .await?;
    let mut total = 0;
    for row in tenants.iter() {
        total += seal(env, &row.get::<String>("tenant_id")?).await?;
    }
    Ok(total)
}

/// The tenant's sealed head and the entries after it, in order, read in one statement.
async fn unsealed(env: &Env, tenant_id: &str) -> Result<(Link, Vec<Stored>), DbError> {
    let columns = COLUMNS
        .split(", ")
        .map(|column| format!("a.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT h.head_seq, h.head_hash, {columns}
                 FROM (SELECT COALESCE(MAX(sealed_seq), 0) AS head_seq,
                              COALESCE(MAX(sealed_hash), ?) AS head_hash
                       FROM audit_chains WHERE tenant_id = ?) h
                 LEFT JOIN audit_log a ON a.tenant_id = ? AND a.seq > h.head_seq
                 ORDER BY a.seq LIMIT ?"
            ),
            GENESIS,
            tenant_id,
            tenant_id,
            CHUNK as i64
        ))
        .await?;
    let mut head = Link::genesis();
    let mut entries = Vec::new();
    for row in rows.iter() {
        head = Link {
            seq: row.get("head_seq")?,
            hash: row.get("head_hash")?,
        };
        if row.get::<Option<String>>("id")?.is_some() {
            entries.push(Stored::from_row(&row)?);
        }
    }
    Ok((head, entries))
}
