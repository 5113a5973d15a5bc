//! Subjects, streams and consumers, as data.
//!
//! Every name starts with the deployment's [`Namespace`], so several
//! deployments (or test runs) share one NATS server without seeing each
//! other. Each context publishes to its own stream; the other context reads
//! it through durable pull consumers that all of its instances share.
//! nats-server 2.9 allows a consumer one filter subject, hence one subject
//! tree per context: `{ns}.{context}.{EventType}`, and one consumer per
//! event type where reading the whole stream would deliver an event for
//! nothing with every order ([`Reader::by_type`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Headers a dead letter carries beside the original message body.
pub mod dead_letter_header {
    /// Why the message was dead-lettered.
    pub const REASON: &str = "Shop-Dead-Reason";
    /// The subject it was first published to, where a replay sends it.
    pub const SUBJECT: &str = "Shop-Original-Subject";
    /// The consumer that gave up on it.
    pub const CONSUMER: &str = "Shop-Consumer";
    /// How many times it was delivered.
    pub const DELIVERIES: &str = "Shop-Deliveries";
}

/// A bounded context: who owns an event, and whose stream it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    Order,
    Inventory,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Inventory => "inventory",
        }
    }

    /// The context whose events this one consumes.
    pub fn counterpart(self) -> Self {
        match self {
            Self::Order => Self::Inventory,
            Self::Inventory => Self::Order,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who reads a stream through a durable consumer: each context reads the
/// other's events, and payment reads the confirmations that start a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reader {
    Order,
    Inventory,
    Payment,
}

impl Reader {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Inventory => "inventory",
            Self::Payment => "payment",
        }
    }

    /// The context whose stream it reads.
    pub fn source(self) -> Context {
        match self {
            Self::Order => Context::Inventory,
            Self::Inventory | Self::Payment => Context::Order,
        }
    }

    /// The event types of its source it acts on.
    pub fn handles(self) -> &'static [&'static str] {
        match self {
            // An order hears how its reservation went, and the catalogue's prices.
            Self::Order => &[
                "StockReserved",
                "InsufficientStock",
                "ProductRegistered",
                "PriceChanged",
            ],
            // Inventory reserves, releases and deducts.
            Self::Inventory => &["OrderCreated", "OrderCancelled", "OrderCompleted"],
            Self::Payment => &["OrderConfirmed"],
        }
    }

    /// The event types of its source it has no business with: its handler
    /// ignores them. A bus that can leave them out (the embedded one) does;
    /// what one that cannot delivers (a JetStream consumer filters on one
    /// subject) the consumer acknowledges unread. To a reader of the whole
    /// stream, a type in neither list is unknown to this build: it is
    /// delivered, and dead-lettered for a person to look at. A reader that
    /// filters (by one type, or [by type](Self::by_type)) never sees it.
    pub fn ignores(self) -> &'static [&'static str] {
        match self {
            // Inventory's own bookkeeping.
            Self::Order => &[
                "StockRestocked",
                "StockAdjusted",
                "StockDeducted",
                "StockRestored",
                "ReservationVoided",
            ],
            // A confirmation asks nothing of inventory.
            Self::Inventory => &["OrderConfirmed"],
            Self::Payment => &["OrderCreated", "OrderCancelled", "OrderCompleted"],
        }
    }

    /// Whether it reads through one consumer per event type it handles
    /// instead of one for the whole stream. Inventory does: the order
    /// stream carries an `OrderConfirmed` for every order, which a
    /// whole-stream consumer would deliver to it and have acknowledged
    /// unread (about 7% of the shop's CPU per order, docs/benchmarks.md).
    /// Its events then arrive in order within a type, not across types;
    /// its rules take either order (a cancel seen before its reserve voids
    /// the reservation). An event type it does not know is not delivered
    /// to it at all, as for payment.
    pub fn by_type(self) -> bool {
        self == Self::Inventory
    }

    /// The one event type it reads, when it reads only one: its consumer
    /// then filters on that event's subject, not on the whole stream.
    pub fn only(self) -> Option<&'static str> {
        match self.handles() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Whether an event of `context` and `event_type` is for this reader.
    pub fn reads(self, context: Context, event_type: &str) -> bool {
        self.source() == context
            && match (self.only(), self.by_type()) {
                (Some(only), _) => only == event_type,
                (None, true) => self.handles().contains(&event_type),
                (None, false) => !self.ignores().contains(&event_type),
            }
    }
}

impl From<Context> for Reader {
    /// The reader a context is: the one that consumes its counterpart.
    fn from(context: Context) -> Self {
        match context {
            Context::Order => Self::Order,
            Context::Inventory => Self::Inventory,
        }
    }
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment's prefix: lower-case letters, digits, `-` and `_`, at most 32
/// characters, so it is valid in subjects, stream names and Redis keys alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

#[derive(Debug, thiserror::Error)]
#[error("namespace {0:?} must be 1 to 32 characters of a-z, 0-9, '-' and '_'")]
pub struct NamespaceError(pub String);

impl Namespace {
    pub fn new(name: &str) -> Result<Self, NamespaceError> {
        let valid = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(NamespaceError(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    /// Publishes with a `Nats-Msg-Id` seen within this window are dropped as
    /// duplicates; beyond it, the handlers (idempotent by the state they
    /// change) make them harmless.
    pub duplicate_window: Duration,
    /// How long messages are kept. The database stays the source of truth:
    /// published outbox rows can be republished while the outbox keeps them.
    pub max_age: Duration,
    /// Past this many bytes the oldest messages go (`None`: no byte limit).
    pub max_bytes: Option<u64>,
    /// Copies a clustered broker keeps (1 on a single server).
    pub replicas: usize,
}

/// A durable pull consumer, shared by every instance of the consuming role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub filter_subject: String,
    /// The one event type it delivers, when it filters on one (version 1
    /// of it: the shop's readers act on version 1).
    pub event_type: Option<&'static str>,
    /// Unacknowledged this long, a message is delivered again. Sized with
    /// `batch`: a whole batch must be handled within it.
    pub ack_wait: Duration,
    /// Deliveries before the message is dead-lettered. With the consumers'
    /// backoff (0.1 s doubling to 30 s), 20 deliveries span about six
    /// minutes: a dependency outage shorter than that only delays messages;
    /// a longer one dead-letters them, to be replayed once it is over.
    pub max_deliver: i64,
    /// In-flight messages across all instances.
    pub max_ack_pending: i64,
    /// Messages fetched per pull.
    pub batch: usize,
    /// Where messages this consumer gives up on are kept.
    pub dead_letter_subject: String,
}

/// How much of its history each context's event stream keeps.
///
/// The saga's consumers read near the head: intake stops accepting orders
/// once the saga's backlog reaches its bound (the shop's
/// `SHOP_INTAKE_MAX_PENDING`), so what a consumer has yet to read is bounded
/// by that backlog, and a byte limit well above it drops only messages the
/// saga has read. The limits shape the stream as a history (replays, late
/// subscribers), not the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    /// `None`: no byte limit.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// A week, with no byte limit. JetStream reserves a stream's byte
    /// limit on the server when it creates the stream, so a limit is the
    /// deployment's choice (the shop's settings default to one), not the
    /// library's: tests and tools make many namespaces on one server.
    pub const DEFAULT: Retention = Retention {
        max_age: Duration::from_secs(7 * 24 * 3600),
        max_bytes: None,
    };
}

/// All names of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: Namespace,
    replicas: usize,
    retention: Retention,
    payment: bool,
}

impl Topology {
    pub fn new(namespace: Namespace) -> Self {
        Self {
            namespace,
            replicas: 1,
            retention: Retention::DEFAULT,
            payment: false,
        }
    }

    /// A deployment whose confirmed orders go to a payment provider: it has
    /// the payment reader too.
    pub fn with_payment(mut self) -> Self {
        self.payment = true;
        self
    }

    /// Every reader of this deployment's streams.
    pub fn readers(&self) -> Vec<Reader> {
        let mut readers = vec![Reader::Order, Reader::Inventory];
        if self.payment {
            readers.push(Reader::Payment);
        }
        readers
    }

    /// Event streams that keep `retention` of their history.
    pub fn retained(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Streams kept in `replicas` copies (a JetStream cluster's R3, say).
    pub fn replicated(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// `{ns}.{context}.{event_type}`, e.g. `shop.order.OrderCreated`.
    pub fn subject(&self, context: Context, event_type: &str) -> String {
        format!("{}.{context}.{event_type}", self.namespace)
    }

    /// The subject of `event_type` in schema `version`: [`Self::subject`]
    /// for version 1, `.v<n>` after it for a later one
    /// (`shop.order.OrderCancelled.v2`), so that `{ns}.{context}.*` reads
    /// version 1 alone.
    pub fn versioned_subject(&self, context: Context, event_type: &str, version: u32) -> String {
        match version {
            0 | 1 => self.subject(context, event_type),
            version => format!("{}.v{version}", self.subject(context, event_type)),
        }
    }

    /// The stream a context's events are published to.
    pub fn stream(&self, context: Context) -> StreamSpec {
        StreamSpec {
            name: format!("{}_{context}", self.namespace),
            subjects: vec![format!("{}.{context}.>", self.namespace)],
            duplicate_window: Duration::from_secs(2 * 60),
            max_age: self.retention.max_age,
            max_bytes: self.retention.max_bytes,
            replicas: self.replicas,
        }
    }

    /// Where every consumer's dead letters are kept, one subject per consumer.
    pub fn dead_letter_stream(&self) -> StreamSpec {
        StreamSpec {
            name: format!("{}_dead_letters", self.namespace),
            subjects: vec![format!("{}.dead.>", self.namespace)],
            duplicate_window: Duration::from_secs(2 * 60),
            max_age: Duration::from_secs(30 * 24 * 3600),
            // Dead letters wait for an operator: none is dropped for space.
            max_bytes: None,
            replicas: self.replicas,
        }
    }

    /// The consumer through which `reader` reads its source's events:
    /// inventory reads order events, the order side reads inventory events,
    /// payment reads order confirmations. The embedded bus keeps its cursor
    /// under this name. On JetStream, a reader that reads
    /// [by type](Reader::by_type) reads through [`Self::consumers`]
    /// instead, and this whole-stream consumer is the one earlier releases
    /// made: new ones start where it had acknowledged.
    pub fn consumer(&self, reader: impl Into<Reader>) -> ConsumerSpec {
        let reader = reader.into();
        let durable = format!("{}_{reader}_from_{}", self.namespace, reader.source());
        self.consumer_of(reader, reader.only(), durable)
    }

    /// The JetStream consumers through which `reader` reads: one per event
    /// type it handles when it reads [by type](Reader::by_type), named
    /// after the type; else [`Self::consumer`] alone.
    pub fn consumers(&self, reader: impl Into<Reader>) -> Vec<ConsumerSpec> {
        let reader = reader.into();
        if !reader.by_type() {
            return vec![self.consumer(reader)];
        }
        reader
            .handles()
            .iter()
            .map(|&event_type| {
                let durable = format!("{}_{reader}_from_{}_{event_type}", self.namespace, reader.source());
                self.consumer_of(reader, Some(event_type), durable)
            })
            .collect()
    }

    fn consumer_of(&self, reader: Reader, event_type: Option<&'static str>, durable: String) -> ConsumerSpec {
        let source = reader.source();
        let filter_subject = match event_type {
            Some(event_type) => self.subject(source, event_type),
            None => format!("{}.{source}.>", self.namespace),
        };
        ConsumerSpec {
            stream: self.stream(source).name,
            filter_subject,
            event_type,
            ack_wait: Duration::from_secs(30),
            // Payment retries an unreachable provider until the order's
            // payment would time out anyway (about 18 minutes at the
            // consumers' 30 s ceiling), not only for a few minutes.
            max_deliver: if reader == Reader::Payment { 40 } else { 20 },
            max_ack_pending: 10_000,
            batch: 100,
            dead_letter_subject: format!("{}.dead.{durable}", self.namespace),
            durable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(ns: &str) -> Topology {
        Topology::new(Namespace::new(ns).expect("valid"))
    }

    #[test]
    fn namespaces_are_safe_in_every_name() {
        for bad in ["", "Shop", "a.b", "a b", "a*", "a>", &"x".repeat(33)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
        for good in ["shop", "test-1a2b", "t_9"] {
            assert!(Namespace::new(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn each_context_reads_the_other_through_its_own_durable() {
        let t = topology("t1");
        assert_eq!(t.subject(Context::Order, "OrderCreated"), "t1.order.OrderCreated");
        let inventory = t.consumer(Context::Inventory);
        assert_eq!(inventory.stream, "t1_order");
        assert_eq!(inventory.filter_subject, "t1.order.>");
        assert_eq!(inventory.durable, "t1_inventory_from_order");
        assert_eq!(inventory.dead_letter_subject, "t1.dead.t1_inventory_from_order");
        let order = t.consumer(Context::Order);
        assert_eq!(order.stream, "t1_inventory");
        assert_eq!(order.filter_subject, "t1.inventory.>");
        assert_eq!(t.consumers(Context::Order), [order]);
        assert!(t.stream(Context::Order).subjects[0] == "t1.order.>");
        assert!(t.dead_letter_stream().subjects[0] == "t1.dead.>");
    }

    #[test]
    fn inventory_reads_each_order_event_it_handles_through_a_consumer_of_its_own() {
        let t = topology("t1");
        let consumers = t.consumers(Context::Inventory);
        let filters: Vec<_> = consumers.iter().map(|c| c.filter_subject.as_str()).collect();
        assert_eq!(
            filters,
            [
                "t1.order.OrderCreated",
                "t1.order.OrderCancelled",
                "t1.order.OrderCompleted"
            ],
            "never the confirmations"
        );
        let durables: Vec<_> = consumers.iter().map(|c| c.durable.as_str()).collect();
        assert_eq!(
            durables,
            [
                "t1_inventory_from_order_OrderCreated",
                "t1_inventory_from_order_OrderCancelled",
                "t1_inventory_from_order_OrderCompleted"
            ]
        );
        for consumer in &consumers {
            assert_eq!(consumer.stream, "t1_order");
            assert_eq!(consumer.dead_letter_subject, format!("t1.dead.{}", consumer.durable));
            assert!(Reader::Inventory.reads(Context::Order, consumer.event_type.expect("one type")));
        }
    }

    #[test]
    fn payment_reads_only_the_order_confirmations() {
        let t = topology("t1");
        assert_eq!(t.readers(), [Reader::Order, Reader::Inventory]);
        let t = t.with_payment();
        assert_eq!(t.readers(), [Reader::Order, Reader::Inventory, Reader::Payment]);
        let payment = t.consumer(Reader::Payment);
        assert_eq!(payment.stream, "t1_order");
        assert_eq!(payment.filter_subject, "t1.order.OrderConfirmed");
        assert_eq!(payment.durable, "t1_payment_from_order");
        assert!(Reader::Payment.reads(Context::Order, "OrderConfirmed"));
        assert!(!Reader::Payment.reads(Context::Order, "OrderCreated"));
        assert!(!Reader::Payment.reads(Context::Inventory, "OrderConfirmed"));
        assert!(Reader::Inventory.reads(Context::Order, "OrderCreated"));
    }

    #[test]
    fn each_reader_reads_only_events_of_its_source_that_it_handles() {
        assert!(
            !Reader::Inventory.reads(Context::Order, "OrderConfirmed"),
            "nothing to do there"
        );
        assert!(Reader::Order.reads(Context::Inventory, "StockReserved"));
        assert!(
            !Reader::Order.reads(Context::Inventory, "StockDeducted"),
            "inventory's bookkeeping"
        );
        assert!(
            Reader::Order.reads(Context::Inventory, "StockTeleported"),
            "unknown: to be dead-lettered"
        );
        assert!(
            !Reader::Inventory.reads(Context::Order, "OrderTeleported"),
            "inventory filters on the types it handles"
        );
        assert!(
            !Reader::Payment.reads(Context::Order, "OrderTeleported"),
            "payment filters on one subject"
        );
        assert_eq!(Reader::Order.only(), None, "several types: the whole stream's subject");
    }

    #[test]
    fn two_namespaces_share_no_name() {
        let (a, b) = (topology("a"), topology("b"));
        for context in [Context::Order, Context::Inventory] {
            assert_ne!(a.stream(context).name, b.stream(context).name);
            assert_ne!(a.stream(context).subjects, b.stream(context).subjects);
            assert_ne!(a.consumer(context).durable, b.consumer(context).durable);
        }
    }
}
