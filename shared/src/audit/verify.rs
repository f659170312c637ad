//! Verification: recomputes a tenant's chain from its pruning checkpoint and reports the
//! first entry that does not hold.
//!
//! The chain is read in pages, so appends, seals and prunes may happen meanwhile. None of
//! them can make an intact chain look broken: entries up to the head read first must all be
//! there, newer ones are checked as found, and a gap is first matched against the current
//! checkpoint, in case retention pruned it while the walk was reading.

use serde_json::{Value as Json, json};

use crate::{
    Env,
    audit::{
        chain::{Break, COLUMNS, GENESIS, Link, Step, Stored, Walk},
        seal::try_seal,
    },
    clock::rfc3339,
    db::DbError,
    sql,
};

const PAGE: usize = 1_000;

/// The pruning checkpoint and the sealed head of a tenant's chain.
async fn ends(env: &Env, tenant_id: &str) -> Result<(Link, Link), DbError> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT pruned_seq, pruned_hash, sealed_seq, sealed_hash FROM audit_chains WHERE tenant_id = ?",
            tenant_id
        ))
        .await?;
    match rows.first() {
        None => Ok((Link::genesis(), Link::genesis())),
        Some(row) => Ok((
            Link {
                seq: row.get("pruned_seq")?,
                hash: row.get("pruned_hash")?,
            },
            Link {
                seq: row.get("sealed_seq")?,
                hash: row.get("sealed_hash")?,
            },
        )),
    }
}

/// Seals what is pending, then checks the whole chain; answers the verification's JSON.
pub async fn verify(env: &Env, tenant_id: &str) -> Result<Json, DbError> {
    try_seal(env, tenant_id).await;
    let (checkpoint, head) = ends(env, tenant_id).await?;
    let mut walk = Walk::new(checkpoint.clone(), head.clone());
    let mut cursor = checkpoint.seq;
    'pages: loop {
        let rows = env
            .db
            .execute(sql!(
                format!(
                    "SELECT {COLUMNS} FROM audit_log WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?"
                ),
                tenant_id,
                cursor,
                PAGE as i64
            ))
            .await?;
        for row in rows.iter() {
            let entry = Stored::from_row(&row)?;
            cursor = entry.content.seq;
            loop {
                match walk.push(&entry) {
                    Step::Continue => break,
                    Step::Broken => break 'pages,
                    Step::Gap => {
                        let (newer, _) = ends(env, tenant_id).await?;
                        if !walk.resume_from(newer) {
                            walk.missing();
                            break 'pages;
                        }
                    }
                }
            }
        }
        if rows.rows.len() < PAGE {
            break;
        }
    }
    let outcome = walk.finish();
    Ok(json!({
        "valid": outcome.first_broken.is_none(),
        "entries_checked": outcome.entries_checked,
        "entries_unsealed": outcome.entries_unsealed,
        "first_broken": outcome.first_broken.as_ref().map(broken_json),
        "checkpoint": link_json(&checkpoint),
        "head": link_json(&head),
    }))
}

fn link_json(link: &Link) -> Json {
    json!({
        "sequence": link.seq,
        "hash": (link.hash != GENESIS).then_some(&link.hash),
    })
}

fn broken_json(broken: &Break) -> Json {
    let entry = broken.entry.as_ref();
    json!({
        "sequence": broken.seq,
        "reason": broken.fault.as_str(),
        "id": entry.map(|entry| &entry.content.id),
        "action": entry.map(|entry| &entry.content.action),
        "created_at": entry.map(|entry| rfc3339(entry.content.created_at)),
        "stored_hash": entry.and_then(|entry| entry.hash.as_ref()),
    })
}
