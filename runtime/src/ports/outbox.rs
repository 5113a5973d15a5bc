//! The outbox relay's view of a context's outbox: claim unsent events,
//! publish them, mark them sent.
//!
//! Rows are written by the stores, in the transaction of the change that
//! produced them. Several relays may run: a claim is a lease, so two relays
//! never hold the same row at once, and a relay that dies mid-batch only
//! delays its rows until the lease runs out. Publishing twice (a crash between
//! publish and mark) is harmless: the event id is the broker's dedup id and
//! consumers keep an inbox.

use std::future::Future;
use std::time::Duration;

use shop_streams::Envelope;
use uuid::Uuid;

use super::store::StoreError;

pub trait Outbox: Send + Sync + 'static {
    /// MUST return up to `limit` unsent events, oldest first, that no other
    /// relay holds a live lease on, and lease them to `relay` for `lease`.
    /// Two concurrent claims of different relays MUST NOT return the same
    /// event. Events `relay` itself holds MUST be returned to it again: a
    /// relay that published a batch but could not mark it sent (the
    /// database went away) publishes it again at once, not after the lease.
    fn claim(
        &self,
        relay: &str,
        limit: u32,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Envelope>, StoreError>> + Send;

    /// MUST mark the events sent (so no claim returns them again); unknown
    /// or already-sent ids are ignored.
    fn mark_sent(&self, event_ids: &[Uuid]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST return how many events are not yet sent.
    fn backlog(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// MUST make every event sent at or after `since_ms` (milliseconds since
    /// the epoch) unsent again, for an operator's republish, and return how many.
    fn requeue_since(&self, since_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
