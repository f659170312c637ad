//! The hash chain, as pure functions: what an entry's hash covers, how unsealed entries are
//! sealed onto a chain's head, and how a stored chain is checked. Sealing and verification
//! share [`entry_hash`], so what one writes the other recomputes byte for byte.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::db::{DbError, Row};

/// The previous hash of a tenant's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Names the canonical form, so that a future change of it cannot be mistaken for tampering
/// with entries hashed the old way.
const FORMAT: &str = "tollgate.audit.v1";

/// The columns of `audit_log` that [`Stored::from_row`] reads.
pub const COLUMNS: &str = "id, tenant_id, seq, action, actor_type, actor_id, actor_user_id, target_type, target_id, ip, user_agent, metadata, created_at, prev_hash, hash";

/// What an entry's hash covers: every column but the seal itself, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub id: String,
    pub tenant_id: String,
    pub seq: i64,
    pub action: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The JSON text exactly as stored; re-serialising could reorder or re-escape it.
    pub metadata: String,
    pub created_at: i64,
}

/// An entry as stored: its content and, once sealed, its seal.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub content: Content,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl Stored {
    pub fn from_row(row: &Row<'_>) -> Result<Self, DbError> {
        Ok(Stored {
            content: Content {
                id: row.get("id")?,
                tenant_id: row.get("tenant_id")?,
                seq: row.get("seq")?,
                action: row.get("action")?,
                actor_type: row.get("actor_type")?,
                actor_id: row.get("actor_id")?,
                actor_user_id: row.get("actor_user_id")?,
                target_type: row.get("target_type")?,
                target_id: row.get("target_id")?,
                ip: row.get("ip")?,
                user_agent: row.get("user_agent")?,
                metadata: row.get("metadata")?,
                created_at: row.get("created_at")?,
            },
            prev_hash: row.get("prev_hash")?,
            hash: row.get("hash")?,
        })
    }
}

/// SHA-256 (hex) over the previous hash, the sequence number and the content, written as one
/// JSON array: strings are quoted and escaped and `null` differs from `""`, so no two
/// different entries share an encoding.
pub fn entry_hash(prev_hash: &str, content: &Content) -> String {
    let canonical = json!([
        FORMAT,
        prev_hash,
        content.seq,
        content.tenant_id,
        content.id,
        content.action,
        content.actor_type,
        content.actor_id,
        content.actor_user_id,
        content.target_type,
        content.target_id,
        content.ip,
        content.user_agent,
        content.metadata,
        content.created_at,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// A point on a tenant's chain: an entry's sequence number and hash (0 and [`GENESIS`]
/// before the first entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl Link {
    pub fn genesis() -> Self {
        Link {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// The seal to write on one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Seal {
    pub id: String,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// Seals `entries` (those after `head`, in sequence order) onto `head`. Stops before the
/// first entry that does not follow on: a gap, or a seal that disagrees with the chain.
/// Verification reports those; sealing past them would only bury the evidence.
pub fn seals(head: &Link, entries: &[Stored]) -> Vec<Seal> {
    let mut previous = head.clone();
    let mut out = Vec::new();
    for entry in entries {
        if entry.content.seq != previous.seq + 1 {
            break;
        }
        let hash = entry_hash(&previous.hash, &entry.content);
        let agrees = match (&entry.prev_hash, &entry.hash) {
            (None, None) => true,
            (Some(prev_hash), Some(stored)) => *prev_hash == previous.hash && *stored == hash,
            _ => false,
        };
        if !agrees {
            break;
        }
        out.push(Seal {
            id: entry.content.id.clone(),
            seq: entry.content.seq,
            prev_hash: previous.hash.clone(),
            hash: hash.clone(),
        });
        previous = Link {
            seq: entry.content.seq,
            hash,
        };
    }
    out
}

/// Why a chain does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An entry is gone: the sequence jumps, or the chain ends before its sealed head.
    Missing,
    /// A sealed entry's hash was removed.
    HashMissing,
    /// The entry does not point at the entry before it.
    PreviousHashMismatch,
    /// The entry's content is not what was sealed.
    HashMismatch,
    /// The entry at the sealed head is not the one the head records.
    HeadMismatch,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Missing => "missing",
            Fault::HashMissing => "hash_missing",
            Fault::PreviousHashMismatch => "previous_hash_mismatch",
            Fault::HashMismatch => "hash_mismatch",
            Fault::HeadMismatch => "head_mismatch",
        }
    }
}

/// Where a chain first breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    pub seq: i64,
    /// `None` when the entry is missing.
    pub entry: Option<Stored>,
    pub fault: Fault,
}

/// What one step of [`Walk::push`] found.
#[derive(Debug, PartialEq)]
pub enum Step {
    Continue,
    /// The entry's sequence number skips ahead of the expected one. The caller either
    /// explains the gap by a newer pruning checkpoint ([`Walk::resume_from`]) or reports
    /// it ([`Walk::missing`]).
    Gap,
    Broken,
}

/// Checks a chain entry by entry, in sequence order, from a pruning checkpoint up to and
/// past the sealed head. Entries beyond the head may still be unsealed: their hashes are
/// computed as sealing would, so entries sealed after them still check.
#[derive(Debug)]
pub struct Walk {
    previous: Link,
    head: Link,
    checked: u64,
    unsealed: u64,
    broken: Option<Break>,
}

/// A finished walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub entries_checked: u64,
    pub entries_unsealed: u64,
    pub first_broken: Option<Break>,
}

impl Walk {
    pub fn new(checkpoint: Link, head: Link) -> Self {
        Walk {
            previous: checkpoint,
            head,
            checked: 0,
            unsealed: 0,
            broken: None,
        }
    }

    /// The sequence number the next entry must carry.
    pub fn expected_seq(&self) -> i64 {
        self.previous.seq + 1
    }

    pub fn push(&mut self, entry: &Stored) -> Step {
        if self.broken.is_some() {
            return Step::Broken;
        }
        let seq = entry.content.seq;
        if seq > self.expected_seq() {
            return Step::Gap;
        }
        if seq < self.expected_seq() {
            // Below the checkpoint: retention removes these, the walk does not need them.
            return Step::Continue;
        }
        let hash = entry_hash(&self.previous.hash, &entry.content);
        let fault = match (&entry.prev_hash, &entry.hash) {
            (None, None) if seq <= self.head.seq => Some(Fault::HashMissing),
            (None, None) => None,
            (Some(prev_hash), _) if *prev_hash != self.previous.hash => {
                Some(Fault::PreviousHashMismatch)
            }
            (_, Some(stored)) if *stored != hash => Some(Fault::HashMismatch),
            (_, None) => Some(Fault::HashMissing),
            (None, Some(_)) => Some(Fault::PreviousHashMismatch),
            _ if seq == self.head.seq && hash != self.head.hash => Some(Fault::HeadMismatch),
            _ => None,
        };
        if let Some(fault) = fault {
            self.broken = Some(Break {
                seq,
                entry: Some(entry.clone()),
                fault,
            });
            return Step::Broken;
        }
        if entry.hash.is_some() {
            self.checked += 1;
        } else {
            self.unsealed += 1;
        }
        self.previous = Link { seq, hash };
        Step::Continue
    }

    /// Continues from `checkpoint` when it covers the gap just met: retention pruned the
    /// missing entries while the walk was reading. False when it does not.
    pub fn resume_from(&mut self, checkpoint: Link) -> bool {
        if checkpoint.seq < self.expected_seq() {
            return false;
        }
        self.previous = checkpoint;
        true
    }

    /// Records that the expected entry is missing.
    pub fn missing(&mut self) {
        if self.broken.is_none() {
            self.broken = Some(Break {
                seq: self.expected_seq(),
                entry: None,
                fault: Fault::Missing,
            });
        }
    }

    /// Ends the walk: every entry up to the sealed head must have been seen.
    pub fn finish(mut self) -> Outcome {
        if self.broken.is_none() && self.previous.seq < self.head.seq {
            self.missing();
        }
        Outcome {
            entries_checked: self.checked,
            entries_unsealed: self.unsealed,
            first_broken: self.broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(seq: i64) -> Content {
        Content {
            id: format!("entry-{seq}"),
            tenant_id: "tenant-1".into(),
            seq,
            action: "apikey.created".into(),
            actor_type: "user".into(),
            actor_id: Some("user-1".into()),
            actor_user_id: Some("user-1".into()),
            target_type: Some("api_key".into()),
            target_id: Some("key-1".into()),
            ip: Some("203.0.113.7".into()),
            user_agent: Some("curl/8".into()),
            metadata: r#"{"name":"ci"}"#.into(),
            created_at: 1_700_000_000 + seq,
        }
    }

    fn unsealed(seq: i64) -> Stored {
        Stored {
            content: content(seq),
            prev_hash: None,
            hash: None,
        }
    }

    /// Entries 1..=n sealed from genesis.
    fn sealed_chain(n: i64) -> Vec<Stored> {
        let entries: Vec<Stored> = (1..=n).map(unsealed).collect();
        let seals = seals(&Link::genesis(), &entries);
        entries
            .into_iter()
            .zip(seals)
            .map(|(mut entry, seal)| {
                entry.prev_hash = Some(seal.prev_hash);
                entry.hash = Some(seal.hash);
                entry
            })
            .collect()
    }

    fn head_of(chain: &[Stored]) -> Link {
        let last = chain.last().unwrap();
        Link {
            seq: last.content.seq,
            hash: last.hash.clone().unwrap(),
        }
    }

    fn walk(checkpoint: Link, head: Link, chain: &[Stored]) -> Outcome {
        let mut walk = Walk::new(checkpoint, head);
        for entry in chain {
            match walk.push(entry) {
                Step::Continue => {}
                Step::Gap => {
                    walk.missing();
                    break;
                }
                Step::Broken => break,
            }
        }
        walk.finish()
    }

    #[test]
    fn the_hash_is_sha256_over_a_pinned_canonical_form() {
        let expected = hex::encode(Sha256::digest(
            format!(
                r#"["tollgate.audit.v1","{GENESIS}",1,"tenant-1","entry-1","apikey.created","user","user-1","user-1","api_key","key-1","203.0.113.7","curl/8","{{\"name\":\"ci\"}}",1700000001]"#
            )
            .as_bytes(),
        ));
        assert_eq!(entry_hash(GENESIS, &content(1)), expected);
    }

    #[test]
    fn the_hash_is_deterministic_and_hex() {
        let first = entry_hash(GENESIS, &content(1));
        assert_eq!(first, entry_hash(GENESIS, &content(1)));
        assert_eq!(first.len(), 64);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = content(1);
        let original = entry_hash(GENESIS, &base);
        let variants: Vec<Content> = vec![
            Content {
                id: "other".into(),
                ..base.clone()
            },
            Content {
                tenant_id: "tenant-2".into(),
                ..base.clone()
            },
            Content {
                seq: 2,
                ..base.clone()
            },
            Content {
                action: "apikey.revoked".into(),
                ..base.clone()
            },
            Content {
                actor_type: "api_key".into(),
                ..base.clone()
            },
            Content {
                actor_id: None,
                ..base.clone()
            },
            Content {
                actor_user_id: Some("user-2".into()),
                ..base.clone()
            },
            Content {
                target_type: None,
                ..base.clone()
            },
            Content {
                target_id: Some("key-2".into()),
                ..base.clone()
            },
            Content {
                ip: Some("203.0.113.8".into()),
                ..base.clone()
            },
            Content {
                user_agent: None,
                ..base.clone()
            },
            Content {
                metadata: r#"{"name":"cd"}"#.into(),
                ..base.clone()
            },
            Content {
                created_at: base.created_at + 1,
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert_ne!(entry_hash(GENESIS, variant), original, "{variant:?}");
        }
        assert_ne!(entry_hash(&"1".repeat(64), &base), original);
    }

    #[test]
    fn null_and_empty_text_and_shifted_boundaries_hash_differently() {
        let base = content(1);
        let empty = Content {
            ip: Some(String::new()),
            ..base.clone()
        };
        let null = Content {
            ip: None,
            ..base.clone()
        };
        assert_ne!(entry_hash(GENESIS, &empty), entry_hash(GENESIS, &null));
        let left = Content {
            target_type: Some("api_keyk".into()),
            target_id: Some("ey-1".into()),
            ..base.clone()
        };
        assert_ne!(entry_hash(GENESIS, &left), entry_hash(GENESIS, &base));
    }

    #[test]
    fn each_seal_links_to_the_one_before() {
        let chain = sealed_chain(3);
        assert_eq!(chain[0].prev_hash.as_deref(), Some(GENESIS));
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(chain[2].prev_hash, chain[1].hash);
    }

    #[test]
    fn sealing_again_yields_the_same_seals() {
        let chain = sealed_chain(3);
        let entries: Vec<Stored> = (1..=3).map(unsealed).collect();
        let again = seals(&Link::genesis(), &entries);
        let sealed_again = seals(&Link::genesis(), &chain);
        assert_eq!(again, sealed_again, "already sealed entries agree");
        assert_eq!(again.last().unwrap().hash, chain[2].hash.clone().unwrap());
    }

    #[test]
    fn sealing_continues_from_the_head_and_stops_at_a_gap() {
        let chain = sealed_chain(2);
        let rest = vec![unsealed(3), unsealed(5)];
        let seals = seals(&head_of(&chain), &rest);
        assert_eq!(seals.len(), 1);
        assert_eq!(seals[0].seq, 3);
        assert_eq!(seals[0].prev_hash, chain[1].hash.clone().unwrap());
    }

    #[test]
    fn sealing_stops_at_a_seal_that_disagrees() {
        let mut chain = sealed_chain(2);
        chain[1].hash = Some("f".repeat(64));
        assert_eq!(seals(&Link::genesis(), &chain).len(), 1);
    }

    #[test]
    fn an_intact_chain_verifies() {
        let chain = sealed_chain(5);
        let outcome = walk(Link::genesis(), head_of(&chain), &chain);
        assert_eq!(outcome.first_broken, None);
        assert_eq!(outcome.entries_checked, 5);
    }

    #[test]
    fn edited_content_breaks_at_that_entry() {
        let mut chain = sealed_chain(5);
        chain[2].content.metadata = r#"{"name":"evil"}"#.into();
        let outcome = walk(Link::genesis(), head_of(&chain), &chain);
        let broken = outcome.first_broken.unwrap();
        assert_eq!((broken.seq, broken.fault), (3, Fault::HashMismatch));
        assert_eq!(outcome.entries_checked, 2);
    }

    #[test]
    fn a_recomputed_hash_breaks_the_next_link() {
        let mut chain = sealed_chain(4);
        chain[1].content.ip = Some("198.51.100.1".into());
        chain[1].hash = Some(entry_hash(
            chain[1].prev_hash.as_ref().unwrap(),
            &chain[1].content,
        ));
        let broken = walk(Link::genesis(), head_of(&sealed_chain(4)), &chain)
            .first_broken
            .unwrap();
        assert_eq!((broken.seq, broken.fault), (3, Fault::PreviousHashMismatch));
    }

    #[test]
    fn a_deleted_entry_is_missing() {
        let mut chain = sealed_chain(4);
        chain.remove(1);
        let broken = walk(Link::genesis(), head_of(&chain), &chain)
            .first_broken
            .unwrap();
        assert_eq!(
            (broken.seq, broken.fault, broken.entry),
            (2, Fault::Missing, None)
        );
    }

    #[test]
    fn a_truncated_tail_is_missing_against_the_head() {
        let chain = sealed_chain(4);
        let head = head_of(&chain);
        let broken = walk(Link::genesis(), head, &chain[..2])
            .first_broken
            .unwrap();
        assert_eq!((broken.seq, broken.fault), (3, Fault::Missing));
    }

    #[test]
    fn a_removed_hash_below_the_head_is_reported() {
        let mut chain = sealed_chain(3);
        let head = head_of(&chain);
        chain[0].hash = None;
        chain[0].prev_hash = None;
        let broken = walk(Link::genesis(), head, &chain).first_broken.unwrap();
        assert_eq!((broken.seq, broken.fault), (1, Fault::HashMissing));
    }

    #[test]
    fn unsealed_entries_past_the_head_are_counted_and_carry_the_chain() {
        let chain = sealed_chain(4);
        let head = Link {
            seq: 2,
            hash: chain[1].hash.clone().unwrap(),
        };
        let mut mixed = chain.clone();
        mixed[2].hash = None;
        mixed[2].prev_hash = None;
        let outcome = walk(Link::genesis(), head, &mixed);
        assert_eq!(outcome.first_broken, None);
        assert_eq!((outcome.entries_checked, outcome.entries_unsealed), (3, 1));
    }

    #[test]
    fn a_chain_verifies_from_its_pruning_checkpoint() {
        let chain = sealed_chain(6);
        let checkpoint = Link {
            seq: 3,
            hash: chain[2].hash.clone().unwrap(),
        };
        let outcome = walk(checkpoint, head_of(&chain), &chain[3..]);
        assert_eq!(outcome.first_broken, None);
        assert_eq!(outcome.entries_checked, 3);
    }

    #[test]
    fn a_wrong_checkpoint_breaks_the_first_entry_after_it() {
        let chain = sealed_chain(6);
        let checkpoint = Link {
            seq: 3,
            hash: "a".repeat(64),
        };
        let broken = walk(checkpoint, head_of(&chain), &chain[3..])
            .first_broken
            .unwrap();
        assert_eq!((broken.seq, broken.fault), (4, Fault::PreviousHashMismatch));
    }

    #[test]
    fn a_gap_covered_by_a_newer_checkpoint_resumes() {
        let chain = sealed_chain(6);
        let mut walk = Walk::new(Link::genesis(), head_of(&chain));
        assert_eq!(walk.push(&chain[0]), Step::Continue);
        assert_eq!(walk.push(&chain[4]), Step::Gap);
        let newer = Link {
            seq: 4,
            hash: chain[3].hash.clone().unwrap(),
        };
        assert!(walk.resume_from(newer));
        assert_eq!(walk.push(&chain[4]), Step::Continue);
        assert_eq!(walk.push(&chain[5]), Step::Continue);
        assert_eq!(walk.finish().first_broken, None);
    }

    #[test]
    fn a_gap_not_covered_by_the_checkpoint_is_not_resumed() {
        let chain = sealed_chain(3);
        let mut walk = Walk::new(Link::genesis(), head_of(&chain));
        assert_eq!(walk.push(&chain[2]), Step::Gap);
        assert!(!walk.resume_from(Link::genesis()));
    }

    #[test]
    fn a_head_that_disagrees_with_its_entry_is_reported() {
        let chain = sealed_chain(3);
        let head = Link {
            seq: 3,
            hash: "b".repeat(64),
        };
        let broken = walk(Link::genesis(), head, &chain).first_broken.unwrap();
        assert_eq!((broken.seq, broken.fault), (3, Fault::HeadMismatch));
    }
}
