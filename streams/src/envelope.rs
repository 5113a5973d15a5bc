//! The envelope every domain event travels in, and its JSON encoding.
//!
//! The payload is the domain event itself (`shop-rules` types with their
//! serde derives); the envelope adds what delivery, deduplication, tracing
//! and audit need. Consumers decode by `event_type` and `schema_version`, so
//! a type they do not know is a clear [`DecodeError`] (and a dead letter),
//! never a guess.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use shop_rules::inventory::{
    Adjust, InsufficientStock, InventoryEvent, OrderLines, PriceChanged, RegisterProduct, Restock, StockRestored,
};
use shop_rules::order::{OrderCancelled, OrderCreated, OrderEvent, OrderTransition};
use uuid::Uuid;

use crate::later::{OrderCancelledV2, StockRestoredV2};
use crate::topology::Context;
use crate::trace_parent::TraceParent;

/// The schema version every event is written in, and the one the shop's
/// own consumers act on. Some types are also written in a later version,
/// beside it ([`Envelope::twins`]); readers accept exactly the versions
/// they know.
pub const SCHEMA_VERSION: u32 = 1;

/// The event types written in a later version too, with that version.
pub const LATER_VERSIONS: [(&str, u32); 2] = [("OrderCancelled", 2), ("StockRestored", 2)];

/// A domain event of either context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    Order(OrderEvent),
    Inventory(InventoryEvent),
}

/// Which rule component decided an event: its name, published version and
/// content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleRef {
    pub name: String,
    /// The version published in the deployment's rule store; 0 for a
    /// component that was not published (built in, or read from a rules
    /// directory). Absent from events written before versions existed.
    #[serde(default)]
    pub version: u32,
    pub hash: String,
}

/// Where an event sits in a chain of causes: the correlation id is shared by
/// everything one request set off; the causation id is the message that
/// directly led to this one (none for the first). The trace parent is the
/// span that decides the event, in a distributed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub traceparent: Option<TraceParent>,
}

impl Trace {
    /// The start of a chain, for example an HTTP request with its request id.
    pub fn root(correlation_id: Uuid) -> Self {
        Self {
            correlation_id,
            causation_id: None,
            traceparent: None,
        }
    }

    /// The next link: an event decided while handling `cause`, in the span
    /// that handled it (the consumer puts that span in the envelope it hands
    /// on).
    pub fn follows(cause: &Envelope) -> Self {
        Self {
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.event_id),
            traceparent: cause.traceparent,
        }
    }

    /// The same chain, in the distributed trace span `traceparent`.
    pub fn within(self, traceparent: Option<TraceParent>) -> Self {
        Self { traceparent, ..self }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Envelope {
    /// UUIDv7: unique, time-ordered, and the broker's `Nats-Msg-Id`.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The context that owns the event (and the stream it is published to).
    pub context: Context,
    /// The order id for order events and reservations, the product id for
    /// product events.
    pub aggregate_id: String,
    /// The aggregate's version after this event.
    pub aggregate_version: u64,
    /// Milliseconds since the Unix epoch, from the deciding rule's clock.
    pub occurred_at: i64,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// The span that caused the event, when the request or message that
    /// caused it carried one; published in the `traceparent` header too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<TraceParent>,
    pub rule: RuleRef,
    /// Every rule that decided the event: the deciding component first,
    /// then (for a new order) each policy plugin that allowed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<RuleRef>,
    #[schemars(with = "Value")]
    pub payload: Payload,
}

/// An event's body as the JSON text it was written in. Envelopes are read
/// and written far more often than their bodies are looked into: the relay
/// moves them from the outbox to the broker, and a consumer decodes the body
/// once, straight into its domain type. Kept as text, neither builds a tree
/// of it first, and the body goes out exactly as it came in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// `value` written as JSON.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        // Serialising plain data with string keys cannot fail; `null` stands
        // in should a type ever make it.
        Self(serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The body as a JSON tree, for the tests to look around in.
    #[cfg(test)]
    fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

/// Two payloads are equal when their text is: what was written is what is
/// compared, as the broker and the golden samples see it.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Malformed(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{event_type} schema version {version} is not supported by this build")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("{event_type} payload does not match its schema: {reason}")]
    BadPayload { event_type: String, reason: String },
}

/// The payload of `ReservationVoided`, an object rather than a bare string so
/// it can grow fields.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Voided {
    order_id: String,
}

impl Envelope {
    /// Wraps an event decided by `rule`, with a fresh UUIDv7 id.
    pub fn new(event: &DomainEvent, aggregate_version: u64, occurred_at: i64, rule: RuleRef, trace: Trace) -> Self {
        let (context, aggregate_id, payload) = encode(event);
        Self {
            event_id: Uuid::now_v7(),
            event_type: event.name().to_owned(),
            schema_version: SCHEMA_VERSION,
            context,
            aggregate_id,
            aggregate_version,
            occurred_at,
            correlation_id: trace.correlation_id,
            causation_id: trace.causation_id,
            traceparent: trace.traceparent,
            policy: vec![rule.clone()],
            rule,
            payload,
        }
    }

    /// The same event, with `policies` added to the rules that decided it.
    pub fn with_policies(mut self, policies: &[RuleRef]) -> Self {
        self.policy.extend_from_slice(policies);
        self
    }

    /// The domain event inside, if this build knows its type and version.
    pub fn event(&self) -> Result<DomainEvent, DecodeError> {
        decode(&self.event_type, self.schema_version, &self.payload)
    }

    /// The name subscribers know this message by: its event type, with
    /// `V<n>` after it past version 1 (`OrderCancelledV2`).
    pub fn message_name(&self) -> String {
        message_name(&self.event_type, self.schema_version)
    }

    /// The broker's de-duplication id: the event id, with `.v<n>` after it
    /// past version 1, since an event's twins share its id.
    pub fn message_id(&self) -> String {
        message_id(self.event_id, self.schema_version)
    }

    /// The same event in each later version it is also written in: the
    /// same ids and trace, another payload. Empty for most types, and for
    /// an envelope that is not version 1 or does not decode.
    pub fn twins(&self) -> Vec<Envelope> {
        let Some(version) = twin_version(&self.event_type, self.schema_version) else {
            return Vec::new();
        };
        let payload = match self.event() {
            Ok(DomainEvent::Order(OrderEvent::Cancelled(e))) => Payload::of(&OrderCancelledV2::from(&e)),
            Ok(DomainEvent::Inventory(InventoryEvent::StockRestored(e))) => Payload::of(&StockRestoredV2::from(&e)),
            _ => return Vec::new(),
        };
        vec![Envelope {
            schema_version: version,
            payload,
            ..self.clone()
        }]
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

impl DomainEvent {
    /// The event type on the wire, e.g. `OrderCreated`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Order(e) => e.name(),
            Self::Inventory(e) => e.name(),
        }
    }
}

/// See [`Envelope::message_name`].
/// The broker's de-duplication id of event `event_id` in schema `version`
/// ([`Envelope::message_id`]).
pub(crate) fn message_id(event_id: Uuid, version: u32) -> String {
    match version {
        SCHEMA_VERSION => event_id.to_string(),
        version => format!("{event_id}.v{version}"),
    }
}

/// The later schema version an event of `event_type` written in `version`
/// also goes out in, if any: only version 1 of the types in [`LATER_VERSIONS`].
pub(crate) fn twin_version(event_type: &str, version: u32) -> Option<u32> {
    let (_, later) = LATER_VERSIONS.iter().find(|(name, _)| *name == event_type)?;
    (version == SCHEMA_VERSION).then_some(*later)
}

pub fn message_name(event_type: &str, version: u32) -> String {
    match version {
        SCHEMA_VERSION => event_type.to_owned(),
        version => format!("{event_type}V{version}"),
    }
}

fn encode(event: &DomainEvent) -> (Context, String, Payload) {
    match event {
        DomainEvent::Order(e) => {
            let payload = match e {
                OrderEvent::Created(x) => Payload::of(x),
                OrderEvent::Confirmed(x) | OrderEvent::Completed(x) => Payload::of(x),
                OrderEvent::Cancelled(x) => Payload::of(x),
            };
            (Context::Order, e.order_id().to_owned(), payload)
        }
        DomainEvent::Inventory(e) => {
            let (aggregate, payload) = match e {
                InventoryEvent::ProductRegistered(x) => (&x.product_id, Payload::of(x)),
                InventoryEvent::Restocked(x) => (&x.product_id, Payload::of(x)),
                InventoryEvent::Adjusted(x) => (&x.product_id, Payload::of(x)),
                InventoryEvent::PriceChanged(x) => (&x.product_id, Payload::of(x)),
                InventoryEvent::StockReserved(x) | InventoryEvent::StockDeducted(x) => (&x.order_id, Payload::of(x)),
                InventoryEvent::InsufficientStock(x) => (&x.order_id, Payload::of(x)),
                InventoryEvent::StockRestored(x) => (&x.order_id, Payload::of(x)),
                InventoryEvent::ReservationVoided(order_id) => (
                    order_id,
                    Payload::of(&Voided {
                        order_id: order_id.clone(),
                    }),
                ),
            };
            (Context::Inventory, aggregate.clone(), payload)
        }
    }
}

fn decode(event_type: &str, version: u32, payload: &Payload) -> Result<DomainEvent, DecodeError> {
    use DomainEvent::{Inventory as I, Order as O};
    type Parse = fn(&RawValue) -> Result<DomainEvent, serde_json::Error>;
    // The type first, then the version, then the body: each error names the
    // first thing that is wrong.
    let parse: Parse = match event_type {
        "OrderCreated" => |p| Ok(O(OrderEvent::Created(OrderCreated::deserialize(p)?))),
        "OrderConfirmed" => |p| Ok(O(OrderEvent::Confirmed(OrderTransition::deserialize(p)?))),
        "OrderCompleted" => |p| Ok(O(OrderEvent::Completed(OrderTransition::deserialize(p)?))),
        "OrderCancelled" => |p| Ok(O(OrderEvent::Cancelled(OrderCancelled::deserialize(p)?))),
        "ProductRegistered" => |p| Ok(I(InventoryEvent::ProductRegistered(RegisterProduct::deserialize(p)?))),
        "StockRestocked" => |p| Ok(I(InventoryEvent::Restocked(Restock::deserialize(p)?))),
        "StockAdjusted" => |p| Ok(I(InventoryEvent::Adjusted(Adjust::deserialize(p)?))),
        "PriceChanged" => |p| Ok(I(InventoryEvent::PriceChanged(PriceChanged::deserialize(p)?))),
        "StockReserved" => |p| Ok(I(InventoryEvent::StockReserved(OrderLines::deserialize(p)?))),
        "InsufficientStock" => |p| Ok(I(InventoryEvent::InsufficientStock(InsufficientStock::deserialize(p)?))),
        "StockDeducted" => |p| Ok(I(InventoryEvent::StockDeducted(OrderLines::deserialize(p)?))),
        "StockRestored" => |p| Ok(I(InventoryEvent::StockRestored(StockRestored::deserialize(p)?))),
        "ReservationVoided" => |p| Ok(I(InventoryEvent::ReservationVoided(Voided::deserialize(p)?.order_id))),
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    };
    let parse: Parse = match (event_type, version) {
        (_, SCHEMA_VERSION) => parse,
        ("OrderCancelled", 2) => |p| Ok(O(OrderEvent::Cancelled(OrderCancelledV2::deserialize(p)?.into()))),
        ("StockRestored", 2) => |p| {
            Ok(I(InventoryEvent::StockRestored(
                StockRestoredV2::deserialize(p)?.into(),
            )))
        },
        _ => {
            return Err(DecodeError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                version,
            });
        }
    };
    parse(&payload.0).map_err(|e| DecodeError::BadPayload {
        event_type: event_type.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shop_rules::inventory::{ReleaseReason, Shortage, StockLine};
    use shop_rules::order::{CancelReason, OrderLine};

    fn rule() -> RuleRef {
        RuleRef {
            version: 0,
            name: "order".into(),
            hash: "ab12".into(),
        }
    }

    fn every_event() -> Vec<DomainEvent> {
        let lines = vec![StockLine {
            product_id: "SKU-1".into(),
            quantity: 2,
        }];
        let reserved = OrderLines {
            order_id: "o-1".into(),
            lines: lines.clone(),
        };
        vec![
            DomainEvent::Order(OrderEvent::Created(OrderCreated {
                order_id: "o-1".into(),
                customer_id: "alice".into(),
                lines: vec![OrderLine {
                    product_id: "SKU-1".into(),
                    quantity: 2,
                    unit_price: 1200,
                }],
                currency: "KRW".into(),
                total: 2400,
                at: 7,
            })),
            DomainEvent::Order(OrderEvent::Confirmed(OrderTransition {
                order_id: "o-1".into(),
                at: 8,
            })),
            DomainEvent::Order(OrderEvent::Completed(OrderTransition {
                order_id: "o-1".into(),
                at: 9,
            })),
            DomainEvent::Order(OrderEvent::Cancelled(OrderCancelled {
                order_id: "o-1".into(),
                reason: CancelReason::Other("fraud".into()),
                at: 9,
            })),
            DomainEvent::Inventory(InventoryEvent::ProductRegistered(RegisterProduct {
                product_id: "SKU-1".into(),
                name: "Mug".into(),
                unit_price: 1200,
                currency: "KRW".into(),
                initial_stock: 10,
            })),
            DomainEvent::Inventory(InventoryEvent::Restocked(Restock {
                product_id: "SKU-1".into(),
                quantity: 5,
            })),
            DomainEvent::Inventory(InventoryEvent::Adjusted(Adjust {
                product_id: "SKU-1".into(),
                delta: -1,
                reason: "broken".into(),
            })),
            DomainEvent::Inventory(InventoryEvent::PriceChanged(PriceChanged {
                product_id: "SKU-1".into(),
                old_price: 1200,
                new_price: 1300,
                currency: "KRW".into(),
            })),
            DomainEvent::Inventory(InventoryEvent::StockReserved(reserved.clone())),
            DomainEvent::Inventory(InventoryEvent::InsufficientStock(InsufficientStock {
                order_id: "o-2".into(),
                shortages: vec![Shortage {
                    product_id: "SKU-1".into(),
                    requested: 5,
                    available: 1,
                }],
            })),
            DomainEvent::Inventory(InventoryEvent::StockDeducted(reserved)),
            DomainEvent::Inventory(InventoryEvent::StockRestored(StockRestored {
                order_id: "o-1".into(),
                lines,
                reason: ReleaseReason::Expired,
            })),
            DomainEvent::Inventory(InventoryEvent::ReservationVoided("o-3".into())),
        ]
    }

    #[test]
    fn every_event_survives_the_wire() {
        let trace = Trace::root(Uuid::now_v7());
        for event in every_event() {
            let envelope = Envelope::new(&event, 3, 42, rule(), trace);
            let back = Envelope::from_bytes(&envelope.to_bytes()).expect("decodes");
            assert_eq!(back, envelope);
            assert_eq!(back.event().expect("known type"), event, "{}", envelope.event_type);
        }
    }

    /// Where the golden samples of schema `version` live: one file per
    /// event type, the envelope as a producer of that version wrote it.
    fn golden_dir(version: u32) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("golden")
            .join(format!("v{version}"))
    }

    /// An envelope with fixed ids, so that its bytes are the same every run.
    fn fixed(event: &DomainEvent) -> Envelope {
        let trace = Trace {
            correlation_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            causation_id: Some(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002)),
            traceparent: None,
        };
        let mut envelope = Envelope::new(event, 3, 1_767_225_600_000, rule(), trace);
        envelope.event_id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003);
        envelope
    }

    /// The wire form of every event is pinned by a golden sample: a change
    /// to a payload's encoding fails here, and each stored sample must still
    /// decode into the event it was written from, so events already in a
    /// stream stay readable. `SHOP_UPDATE_GOLDEN=1` writes missing or
    /// changed samples (for a deliberate, versioned change only).
    #[test]
    fn events_written_before_versions_and_provenance_still_decode() {
        let old = serde_json::json!({
            "event_id": "01900000-0000-7000-8000-000000000003",
            "event_type": "OrderConfirmed",
            "schema_version": 1,
            "context": "order",
            "aggregate_id": "o-1",
            "aggregate_version": 2,
            "occurred_at": 1,
            "correlation_id": "01900000-0000-7000-8000-000000000001",
            "causation_id": null,
            "rule": { "name": "order", "hash": "ab12" },
            "payload": { "order_id": "o-1", "at": 1 }
        });
        let envelope: Envelope = serde_json::from_value(old).expect("an older envelope decodes");
        assert_eq!(envelope.rule.version, 0);
        assert!(envelope.policy.is_empty());
    }

    #[test]
    fn golden_samples_pin_the_wire_form_of_every_event() {
        let update = std::env::var_os("SHOP_UPDATE_GOLDEN").is_some_and(|v| v == "1");
        let events = every_event();
        let mut names: Vec<&str> = events.iter().map(DomainEvent::name).collect();
        names.sort_unstable();
        names.dedup();
        // Order{Confirmed,Completed} share a payload type, so do
        // Stock{Reserved,Deducted}: the first event of each type is its
        // sample, and its twins are the samples of the later versions.
        let mut samples = Vec::new();
        for name in names {
            let event = events.iter().find(|e| e.name() == name).expect("listed");
            let first = fixed(event);
            samples.extend(first.twins().into_iter().map(|twin| (twin, event)));
            samples.push((first, event));
        }
        for (envelope, event) in samples {
            let (name, dir) = (&envelope.event_type, golden_dir(envelope.schema_version));
            let path = dir.join(format!("{name}.json"));
            let written = serde_json::to_value(&envelope).expect("serialises");
            if update {
                std::fs::create_dir_all(&dir).expect("golden dir");
                let text = serde_json::to_string_pretty(&written).expect("pretty") + "\n";
                std::fs::write(&path, text).expect("write golden sample");
            }
            let stored = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (SHOP_UPDATE_GOLDEN=1 writes it)", path.display()));
            let stored_value: Value = serde_json::from_slice(&stored).expect("golden sample is JSON");
            assert_eq!(
                written,
                stored_value,
                "{name}: the wire form changed against {}",
                path.display()
            );
            let decoded = Envelope::from_bytes(&stored).expect("golden envelope decodes");
            assert_eq!(decoded.event().expect("golden payload decodes"), *event, "{name}");
        }
        for (version, types) in [(1, 13), (2, LATER_VERSIONS.len())] {
            let dir = golden_dir(version);
            let samples = std::fs::read_dir(&dir).expect("golden dir").count();
            assert_eq!(samples, types, "one sample per event type in {}", dir.display());
        }
    }

    /// Version 2 writes every cancel reason as a code, free text apart, and
    /// a lapsed reservation with the order's spelling; each twin decodes
    /// into the event its version 1 envelope holds.
    #[test]
    fn later_versions_give_a_reason_one_wire_form() {
        let trace = Trace::root(Uuid::now_v7());
        let cancelled = |reason| {
            DomainEvent::Order(OrderEvent::Cancelled(OrderCancelled {
                order_id: "o-9".into(),
                reason,
                at: 5,
            }))
        };
        let cases = [
            (
                cancelled(CancelReason::PaymentFailed),
                json!({"order_id": "o-9", "reason": "payment_failed", "at": 5}),
            ),
            (
                cancelled(CancelReason::Other("fraud".into())),
                json!({"order_id": "o-9", "reason": "other", "note": "fraud", "at": 5}),
            ),
            (
                DomainEvent::Inventory(InventoryEvent::StockRestored(StockRestored {
                    order_id: "o-9".into(),
                    lines: Vec::new(),
                    reason: ReleaseReason::Expired,
                })),
                json!({"order_id": "o-9", "lines": [], "reason": "reservation_expired"}),
            ),
        ];
        for (event, payload) in cases {
            let first = Envelope::new(&event, 2, 7, rule(), trace);
            let twins = first.twins();
            let [twin] = twins.as_slice() else {
                panic!("one twin: {twins:?}");
            };
            assert_eq!((twin.schema_version, twin.payload.to_value()), (2, payload));
            assert_eq!((twin.event_id, twin.aggregate_version), (first.event_id, 2));
            assert_eq!(twin.message_name(), format!("{}V2", first.event_type));
            assert_eq!(twin.message_id(), format!("{}.v2", first.event_id));
            assert_eq!(first.message_id(), first.event_id.to_string());
            assert_eq!(twin.event().expect("decodes"), event);
            assert!(twin.twins().is_empty(), "a twin has none of its own");
        }
        let created = Envelope::new(&every_event()[0], 1, 0, rule(), trace);
        assert!(created.twins().is_empty(), "OrderCreated has one version");
    }

    #[test]
    fn aggregates_and_contexts_are_named() {
        let events = every_event();
        let trace = Trace::root(Uuid::now_v7());
        let created = Envelope::new(&events[0], 1, 0, rule(), trace);
        assert_eq!(
            (created.context, created.aggregate_id.as_str()),
            (Context::Order, "o-1")
        );
        assert_eq!(created.payload.to_value()["lines"][0]["unit_price"], 1200);
        let restock = Envelope::new(&events[5], 2, 0, rule(), trace);
        assert_eq!(
            (restock.context, restock.aggregate_id.as_str()),
            (Context::Inventory, "SKU-1")
        );
        let voided = Envelope::new(&events[12], 1, 0, rule(), trace);
        assert_eq!(voided.payload.to_value(), serde_json::json!({ "order_id": "o-3" }));
    }

    #[test]
    fn the_trace_parent_travels_with_the_event_its_twins_and_its_follow_ups() {
        let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("a valid traceparent");
        let trace = Trace::root(Uuid::now_v7()).within(Some(parent));
        let cancelled = Envelope::new(&every_event()[3], 1, 0, rule(), trace);
        let bytes = cancelled.to_bytes();
        let wire: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(wire["traceparent"], parent.to_string());
        assert_eq!(Envelope::from_bytes(&bytes).expect("decodes"), cancelled);
        assert!(cancelled.twins().iter().all(|twin| twin.traceparent == Some(parent)));
        assert_eq!(Trace::follows(&cancelled).traceparent, Some(parent));
        let untraced = Envelope::new(&every_event()[3], 1, 0, rule(), Trace::root(Uuid::now_v7()));
        let wire: Value = serde_json::from_slice(&untraced.to_bytes()).expect("JSON");
        assert!(wire.get("traceparent").is_none(), "absent, not null: {wire}");
    }

    #[test]
    fn a_follow_up_shares_the_correlation_and_names_its_cause() {
        let root = Envelope::new(&every_event()[0], 1, 0, rule(), Trace::root(Uuid::now_v7()));
        let next = Envelope::new(&every_event()[8], 1, 1, rule(), Trace::follows(&root));
        assert_eq!(next.correlation_id, root.correlation_id);
        assert_eq!(next.causation_id, Some(root.event_id));
        assert!(next.event_id > root.event_id, "UUIDv7 ids are time-ordered");
    }

    #[test]
    fn unknown_types_versions_and_bodies_are_refused_clearly() {
        let mut envelope = Envelope::new(&every_event()[0], 1, 0, rule(), Trace::root(Uuid::now_v7()));
        envelope.schema_version = 2;
        assert!(matches!(
            envelope.event(),
            Err(DecodeError::UnsupportedVersion { version: 2, .. })
        ));
        let mut cancelled = Envelope::new(&every_event()[3], 1, 0, rule(), Trace::root(Uuid::now_v7()));
        cancelled.schema_version = 3;
        assert!(matches!(
            cancelled.event(),
            Err(DecodeError::UnsupportedVersion { version: 3, .. })
        ));
        envelope.schema_version = 1;
        envelope.payload = Payload::of(&serde_json::json!({ "order_id": 5 }));
        let error = envelope.event().expect_err("bad body");
        assert!(
            error.to_string().starts_with("OrderCreated payload does not match"),
            "{error}"
        );
        envelope.event_type = "OrderTeleported".into();
        assert!(matches!(envelope.event(), Err(DecodeError::UnknownType(t)) if t == "OrderTeleported"));
        assert!(matches!(
            Envelope::from_bytes(b"{\"event_id\":"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
