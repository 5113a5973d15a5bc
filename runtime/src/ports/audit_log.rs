//! The audit log as its readers see it: a hash chain of entries, appended
//! to by the stores' own transactions (a stock change and its entry commit
//! together) or, for what changes no table, by [`AuditLog::append`].

use std::future::Future;

use super::store::StoreError;
use crate::audit::{AuditEntry, AuditRecord, ChainHead};

/// Which entries to list: those matching every filter given, after the
/// entry numbered `after`, oldest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditQuery<'a> {
    pub actor: Option<&'a str>,
    pub target: Option<&'a str>,
    pub action: Option<&'a str>,
    pub after: u64,
    pub limit: u32,
}

pub trait AuditLog: Send + Sync + 'static {
    /// MUST seal `records` onto the end of the chain, in order, in one
    /// transaction: numbered on from the head, each entry's `prev_hash`
    /// the hash of the entry before. Concurrent appends MUST leave one
    /// unbroken chain, whose numbers are visible in commit order (a reader
    /// paging by number never skips an entry committed later).
    fn append(&self, records: &[AuditRecord]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST return up to `query.limit` entries numbered above
    /// `query.after` that match each filter given (exactly), by number.
    fn entries(&self, query: AuditQuery<'_>) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// MUST return the number and hash of the last entry appended
    /// ([`ChainHead::default`] for an empty log), kept apart from the
    /// entries so that removing the newest of them shows.
    fn head(&self) -> impl Future<Output = Result<ChainHead, StoreError>> + Send;
}
