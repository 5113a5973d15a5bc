//! The event bus port: publish events, consume the other context's events
//! through a shared durable consumer, and keep what cannot be handled as dead
//! letters that an operator can list and replay.
//!
//! Delivery is at least once; handlers make it exactly once in effect by
//! being idempotent in the state they change. JetStream in the distributed
//! mode, an in-process bus in the same SQLite file in the embedded mode.

use std::future::Future;
use std::time::Duration;

use shop_streams::{Encoded, Envelope, Reader};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The broker could not be reached or did not confirm in time. For a
    /// publish the outcome is unknown: publish again (the event id makes the
    /// second one harmless).
    #[error("event bus unavailable: {0}")]
    Unavailable(#[source] super::Cause),
    /// The broker refused the request (for example an unknown dead letter).
    #[error("event bus refused the request: {0}")]
    Refused(String),
}

/// A message kept because it could not be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its number among the dead letters, for [`EventBus::replay_dead_letter`].
    pub id: u64,
    /// The consumer that gave up on it.
    pub consumer: String,
    /// Where it was published, and where a replay sends it.
    pub subject: String,
    pub reason: String,
    pub deliveries: u64,
    /// The message as it arrived, byte for byte.
    pub body: Vec<u8>,
}

pub trait EventBus: Send + Sync + 'static {
    type Subscription: Subscription;

    /// MUST return `Ok` only once the broker has stored every event, each
    /// under its context's subject with its event id as deduplication id, so
    /// that publishing an event again within the duplicate window stores
    /// nothing new. The message body MUST be each event's text as given;
    /// the twins of an event also written in a later schema version
    /// ([`Encoded::twins`]), where a broker sends them, are made from it.
    fn publish(&self, events: &[Encoded]) -> impl Future<Output = Result<(), BusError>> + Send;

    /// The durable consumer through which `reader` reads the events it
    /// [reads](Reader::reads), and no others. Every subscription of the same
    /// reader MUST share one consumer, so each message goes to one of them,
    /// and MUST survive restarts.
    fn subscribe(&self, reader: Reader) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send;

    /// MUST return up to `limit` dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> impl Future<Output = Result<Vec<DeadLetter>, BusError>> + Send;

    /// MUST publish the dead letter's body again to its subject (under a new
    /// deduplication id) and remove it from the dead letters;
    /// [`BusError::Refused`] when there is no such dead letter.
    fn replay_dead_letter(&self, id: u64) -> impl Future<Output = Result<(), BusError>> + Send;
}

pub trait Subscription: Send + 'static {
    type Delivery: Delivery;

    /// MUST wait at most about `wait` and return up to `max` messages. A
    /// message that is not a readable envelope, or that was delivered more
    /// times than the consumer allows, MUST become a dead letter with the
    /// reason instead of being returned, and MUST NOT hold up the rest.
    fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Delivery>, BusError>> + Send;

    /// MUST return how many messages wait for this context's consumer, not
    /// yet delivered to any subscription.
    fn lag(&mut self) -> impl Future<Output = Result<u64, BusError>> + Send;

    /// MUST return how many messages `next_batch` turned into dead letters
    /// itself since the last call.
    fn take_dead_lettered(&mut self) -> u64;
}

/// One delivered message, to be settled exactly one way.
pub trait Delivery: Send + 'static {
    fn envelope(&self) -> &Envelope;

    /// 1 for the first delivery, 2 for the first redelivery, ...
    fn attempt(&self) -> u64;

    /// Handled: MUST NOT be delivered again, unless the acknowledgement is
    /// lost on its way (then it comes back after the ack wait, as any
    /// unsettled message).
    fn ack(self) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Not handled now: MUST be delivered again after about `delay`.
    fn retry(self, delay: Duration) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Never handleable: MUST become a dead letter with `reason` and not be
    /// delivered again.
    fn dead_letter(self, reason: &str) -> impl Future<Output = Result<(), BusError>> + Send;
}
