//! The audit log's entries and the hash chain that makes them
//! tamper-evident.
//!
//! Each entry's hash covers its own fields and the hash of the entry before
//! it, so changing, removing or reordering any entry breaks every link
//! after it, and removing the newest ones leaves the chain's head (kept
//! beside the entries) pointing past the end. The chain is sealed here, in
//! one place, so the stores that append and `shop audit verify` that walks
//! agree on every byte.

use serde::Serialize;
use sha2::{Digest, Sha256};
use shop_streams::hex;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something, and through which request: from the caller's token
/// and `X-Request-Id`, or the saga step and the correlation id of the
/// event that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub role: String,
    pub request_id: String,
}

impl Actor {
    pub fn new(id: impl Into<String>, role: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role: role.into(),
            request_id: request_id.into(),
        }
    }

    /// A saga step (`reserve`, `release`, `deduct`) done for an order, as
    /// part of the chain of events with `correlation_id`.
    pub fn saga(step: &str, correlation_id: impl std::fmt::Display) -> Self {
        Self::new(format!("saga:{step}"), "saga", correlation_id.to_string())
    }

    /// What one process does by itself (loading rules, say).
    pub fn system(instance: &str) -> Self {
        Self::new(format!("instance:{instance}"), "system", "")
    }

    /// This action by this actor, on `target`, at `at` (ms since the epoch).
    pub fn did(&self, context: &str, action: &str, target: String, at: i64, detail: &impl Serialize) -> AuditRecord {
        AuditRecord {
            context: context.to_owned(),
            at,
            actor: self.id.clone(),
            role: self.role.clone(),
            action: action.to_owned(),
            target,
            request_id: self.request_id.clone(),
            // A detail is a small map of plain values; one that cannot be
            // written as JSON is recorded as `null`, never dropped.
            detail: serde_json::to_string(detail).unwrap_or_else(|_| "null".to_owned()),
        }
    }
}

/// What happened, before the chain numbers and seals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The context that wrote it: `inventory`, `order`, `rules` or `access` (API keys).
    pub context: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub actor: String,
    pub role: String,
    /// `stock.reserve`, `price.change`, `customer.erase`, ...
    pub action: String,
    /// `product:SKU-1`, `customer:alice`, `rule:order`, ...
    pub target: String,
    pub request_id: String,
    /// A JSON object, as the text that was hashed.
    pub detail: String,
}

/// An entry of the chain: a record, its place and its seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// The end of the chain: the last entry's number and hash (`0` and
/// [`GENESIS`] while it is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl ChainHead {
    /// `records` numbered and sealed onto this head, in order; the head
    /// moves to the last of them.
    pub fn seal<'r>(&mut self, records: impl IntoIterator<Item = &'r AuditRecord>) -> Vec<AuditEntry> {
        records
            .into_iter()
            .map(|record| {
                let seq = self.seq + 1;
                let hash = hash(seq, record, &self.hash);
                let entry = AuditEntry {
                    seq,
                    record: record.clone(),
                    prev_hash: std::mem::replace(&mut self.hash, hash.clone()),
                    hash,
                };
                self.seq = seq;
                entry
            })
            .collect()
    }
}

/// The seal of the entry numbered `seq` holding `record` after the entry
/// whose hash is `prev_hash`: SHA-256 of the previous hash and the fields
/// as one JSON array (JSON's quoting keeps the fields apart, so no two
/// different entries write the same bytes).
pub fn hash(seq: u64, record: &AuditRecord, prev_hash: &str) -> String {
    let fields = serde_json::json!([
        seq,
        record.context,
        record.at,
        record.actor,
        record.role,
        record.action,
        record.target,
        record.request_id,
        record.detail,
    ]);
    let mut digest = Sha256::new();
    digest.update(prev_hash.as_bytes());
    digest.update(fields.to_string().as_bytes());
    hex::encode(&digest.finalize())
}

/// Where a chain does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {why}")]
pub struct BrokenLink {
    pub seq: u64,
    pub why: String,
}

/// Walks a chain from its start, entry by entry, as pages of it arrive.
#[derive(Debug, Default)]
pub struct ChainWalk {
    at: ChainHead,
}

impl ChainWalk {
    /// How far the walk got: the last entry checked.
    pub fn checked(&self) -> &ChainHead {
        &self.at
    }

    /// MUST accept `entry` only when it is the next one and sealed onto the
    /// one before.
    pub fn next(&mut self, entry: &AuditEntry) -> Result<(), BrokenLink> {
        let broken = |why: String| BrokenLink { seq: entry.seq, why };
        if entry.seq != self.at.seq + 1 {
            let missing = self.at.seq + 1;
            return Err(BrokenLink {
                seq: missing,
                why: format!("missing: the chain goes from {} to {}", self.at.seq, entry.seq),
            });
        }
        if entry.prev_hash != self.at.hash {
            return Err(broken(format!(
                "its prev_hash is not the hash of entry {}: an entry before it was changed or removed",
                self.at.seq
            )));
        }
        if hash(entry.seq, &entry.record, &entry.prev_hash) != entry.hash {
            return Err(broken("its fields do not match its hash: it was changed".into()));
        }
        self.at = ChainHead {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        Ok(())
    }

    /// MUST accept the end of the walk only when it reached `head`, the
    /// head the store keeps: entries removed from the end show here.
    pub fn end(&self, head: &ChainHead) -> Result<(), BrokenLink> {
        if self.at == *head {
            return Ok(());
        }
        Err(BrokenLink {
            seq: self.at.seq + 1,
            why: format!(
                "the chain ends at entry {}, but its head records entry {} ({}): entries were removed or changed",
                self.at.seq,
                head.seq,
                &head.hash[..12.min(head.hash.len())]
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Actor, ChainHead, ChainWalk};

    fn chain(n: usize) -> (Vec<super::AuditEntry>, ChainHead) {
        let admin = Actor::new("ops", "admin", "req-1");
        let records: Vec<_> = (0..n)
            .map(|i| {
                admin.did(
                    "inventory",
                    "stock.restock",
                    format!("product:SKU-{i}"),
                    1_000 + i as i64,
                    &serde_json::json!({ "quantity": i }),
                )
            })
            .collect();
        let mut head = ChainHead::default();
        let mut entries = head.seal(&records[..n / 2]);
        entries.extend(head.seal(&records[n / 2..]));
        (entries, head)
    }

    fn walk(entries: &[super::AuditEntry], head: &ChainHead) -> Result<(), super::BrokenLink> {
        let mut walk = ChainWalk::default();
        for entry in entries {
            walk.next(entry)?;
        }
        walk.end(head)
    }

    #[test]
    fn a_chain_sealed_in_pieces_holds() {
        let (entries, head) = chain(6);
        assert_eq!(head.seq, 6);
        assert_eq!(entries[3].prev_hash, entries[2].hash);
        assert_eq!(walk(&entries, &head), Ok(()));
        assert_eq!(walk(&[], &ChainHead::default()), Ok(()));
    }

    #[test]
    fn every_kind_of_tampering_names_the_entry() {
        let (entries, head) = chain(6);
        let mut changed = entries.clone();
        changed[2].record.actor = "mallory".into();
        assert_eq!(walk(&changed, &head).map_err(|b| b.seq), Err(3));

        let mut resealed = entries.clone();
        resealed[2].record.detail = r#"{"quantity":999}"#.into();
        resealed[2].hash = super::hash(3, &resealed[2].record, &resealed[2].prev_hash);
        assert_eq!(
            walk(&resealed, &head).map_err(|b| b.seq),
            Err(4),
            "the next link breaks"
        );

        let mut removed = entries.clone();
        removed.remove(1);
        assert_eq!(walk(&removed, &head).map_err(|b| b.seq), Err(2));

        let truncated = &entries[..4];
        let broken = walk(truncated, &head).expect_err("the head records six");
        assert_eq!(broken.seq, 5);
        assert!(broken.why.contains("head records entry 6"), "{}", broken.why);

        let mut swapped = entries;
        swapped.swap(3, 4);
        assert_eq!(walk(&swapped, &head).map_err(|b| b.seq), Err(4));
    }
}
