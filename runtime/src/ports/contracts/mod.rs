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

use shop_rules::order::{Order, OrderCreated, OrderEvent, OrderLine, OrderStatus};
use shop_streams::{DomainEvent, Envelope, RuleRef, Trace};
use uuid::Uuid;

pub(crate) fn order(id: &str) -> Order {
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

pub(crate) fn created(order: &Order) -> Envelope {
    let event = DomainEvent::Order(OrderEvent::Created(OrderCreated {
        order_id: order.id.clone(),
        customer_id: order.customer_id.clone(),
        lines: order.lines.clone(),
        currency: order.currency.clone(),
        total: order.total(),
        at: order.created_at,
    }));
    let rule = RuleRef {
        name: "order".into(),
        hash: "0".repeat(64),
    };
    Envelope::new(&event, 1, order.created_at, rule, Trace::root(Uuid::now_v7()))
}
