//! The store and outbox contracts as async test suites. An adapter's tests
//! call each `run` against a fresh, empty store (their own database or
//! schema) and drive the futures with whatever executor they use.

pub mod api_keys;
pub mod audit_log;
pub mod bus;
pub mod customer_keys;
pub mod inventory_store;
pub mod lock;
pub mod order_store;
pub mod outbox;
pub mod payment;
pub mod rate_limit;
pub mod rule_store;

use shop_rules::order::{Order, OrderCreated, OrderEvent, OrderLine, OrderStatus};
use shop_streams::{DomainEvent, Encoded, Envelope, RuleRef, Trace};
use uuid::Uuid;

/// A PENDING order of alice's for two of `SKU-1`, for the contracts and
/// the adapters' own tests.
pub fn order(id: &str) -> Order {
    Order {
        id: id.to_owned(),
        customer_id: "alice".into(),
        lines: vec![OrderLine {
            product_id: "SKU-1".into(),
            quantity: 2,
            unit_price: 1200,
        }],
        currency: "KRW".into(),
        status: OrderStatus::Pending,
        cancel_reason: None,
        created_at: 1_000,
        confirmed_at: None,
    }
}

/// The `OrderCreated` event of `order`, at version 1.
pub fn created(order: &Order) -> Envelope {
    let event = OrderEvent::Created(OrderCreated {
        order_id: order.id.clone(),
        customer_id: order.customer_id.clone(),
        lines: order.lines.clone(),
        currency: order.currency.clone(),
        total: order.total(),
        at: order.created_at,
    });
    let mut envelope = order_envelope(event, 1, Trace::root(Uuid::now_v7()));
    envelope.occurred_at = order.created_at;
    envelope
}

/// `event` as the order rules would have written it: aggregate version
/// `version`, in the chain `trace`, stamped by a rule of hash zero. For
/// the contracts and the adapters' own tests.
pub fn order_envelope(event: OrderEvent, version: u64, trace: Trace) -> Envelope {
    let rule = RuleRef {
        version: 0,
        name: "order".into(),
        hash: "0".repeat(64),
    };
    Envelope::new(&DomainEvent::Order(event), version, 1, rule, trace)
}

/// `events` as the relay hands them to a bus, for the contracts and the
/// adapters' own tests.
pub fn encoded(events: &[Envelope]) -> Vec<Encoded> {
    events.iter().map(Encoded::of).collect()
}
