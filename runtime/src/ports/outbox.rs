//! The outbox relay's view of a context's outbox: a log of committed events
//! read by a cursor.
//!
//! Rows are written by the stores, in the transaction of the change that
//! produced them, and never updated: each event is numbered in commit order
//! (an adapter serialises the numbering of concurrent commits), so a relay
//! that has published everything up to number `n` needs to remember only
//! `n`. One relay per context publishes at a time: the cursor carries a lease,
//! and a relay that dies only delays publishing until its lease runs out.
//! Publishing twice (a crash between publish and advance, or a lease that
//! changed hands mid-batch) is harmless: the event id is the broker's dedup
//! id and every handler is idempotent by the state it changes.
//!
//! Published events stay for a retention period (an operator may rewind the
//! cursor within it to publish them again), then are pruned in bulk.

use std::future::Future;
use std::time::Duration;

use shop_streams::Encoded;

use super::store::StoreError;

/// Committed events after a cursor position, for the relay holding the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Where the cursor stood when they were read: what [`Outbox::advance`]
    /// names as `from`.
    pub cursor: u64,
    /// The number of the last of `events` (`cursor` when there are none):
    /// where the cursor moves once they are published.
    pub last: u64,
    /// Events numbered after `cursor`, in commit order, as they were stored.
    pub events: Vec<Encoded>,
}

pub trait Outbox: Send + Sync + 'static {
    /// MUST take the context's relay lease for `relay` (when it is free, ran
    /// out, or is `relay`'s already) for `lease`, and then return up to
    /// `limit` events numbered after the cursor, in commit order. MUST return
    /// `None` while another relay holds a live lease. Every event committed
    /// after the cursor MUST eventually be returned, never one numbered at or
    /// before it: an event that becomes visible later MUST have a higher
    /// number than every event visible before it.
    fn pending(
        &self,
        relay: &str,
        limit: u32,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Pending>, StoreError>> + Send;

    /// MUST move the cursor from `from` to `to` and renew `relay`'s lease,
    /// only while `relay` holds the lease and the cursor is still at `from`;
    /// answers whether it moved (`false`: the lease changed hands or an
    /// operator rewound the cursor, and the relay reads again).
    fn advance(
        &self,
        relay: &str,
        from: u64,
        to: u64,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// MUST return how many events are after the cursor.
    fn backlog(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// MUST return when the first event after the cursor was committed
    /// (milliseconds since the epoch), `None` when no event waits: how late
    /// the relay is, where [`Self::backlog`] says how much.
    fn oldest_unpublished_at(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// MUST move the cursor back to before the first event still kept that
    /// was committed at or after `since_ms` (milliseconds since the epoch),
    /// for an operator's republish, and return how many published events
    /// will so go out again. A cursor already before that point stays.
    fn rewind_to(&self, since_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// MUST resolve soon after a writer of this process commits events to
    /// this outbox, and after writers of other processes do where the
    /// database can tell (PostgreSQL's NOTIFY); MAY resolve when none did.
    /// The relay waits on it between rounds and still polls now and then,
    /// so a missed signal costs latency, never an event.
    fn committed(&self) -> impl Future<Output = ()> + Send;

    /// MUST delete up to `limit` events at or before the cursor that were
    /// committed before `before_ms`, oldest first, and return how many; never
    /// one after the cursor.
    fn prune(&self, before_ms: i64, limit: u32) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
