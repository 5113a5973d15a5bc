//! A store that publishes into the bus of its own file: each change's
//! events are on the bus, for the consumers that read them, in the
//! change's commit, and nothing is left in the outbox.

use std::time::Duration;

use shop_adapter_sqlite::{SqliteBus, SqliteStore};
use shop_rules::inventory::{InventoryEvent, InventoryState, ProductStock, RegisterProduct, Restock};
use shop_rules::order::{Order, OrderEvent, OrderStatus, OrderTransition};
use shop_runtime::audit::Actor;
use shop_runtime::ports::contracts::{created, order};
use shop_runtime::ports::{
    Delivery, EventBus, InventoryStore, InventoryWrite, OrderStore, OrderWrite, Outbox, StoreError, Subscription,
    contracts,
};
use shop_streams::{Context, DomainEvent, Envelope, Namespace, Reader, RuleRef, Topology, Trace};
use uuid::Uuid;

async fn publishing() -> (SqliteStore, SqliteBus, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open_in(dir.path()).await.expect("opened and migrated");
    let bus = SqliteBus::new(&store, Topology::new(Namespace::new("embedded").expect("valid")));
    (store.publishing_into(&bus), bus, dir)
}

fn new_order<'a>(order: &'a Order, events: &'a [Envelope]) -> OrderWrite<'a> {
    OrderWrite {
        order,
        expected_version: None,
        events,
        delivery: None,
        audit: None,
    }
}

/// Everything `reader` is given now, acknowledged.
async fn take_all(bus: &SqliteBus, reader: Reader) -> Vec<Envelope> {
    let mut subscription = bus.subscribe(reader).await.expect("subscribed");
    let mut taken = Vec::new();
    loop {
        let batch = subscription
            .next_batch(500, Duration::from_millis(50))
            .await
            .expect("pulled");
        if batch.is_empty() {
            return taken;
        }
        for delivery in batch {
            taken.push(delivery.envelope().clone());
            delivery.ack().await.expect("acknowledged");
        }
    }
}

#[tokio::test]
async fn new_orders_arriving_together_are_each_published_once_in_their_commit() {
    let (store, bus, _dir) = publishing().await;
    let orders: Vec<Order> = (0..120).map(|n| order(&format!("p-{n:03}"))).collect();
    let first: Vec<Vec<Envelope>> = orders.iter().map(|o| vec![created(o)]).collect();
    let retried: Vec<Vec<Envelope>> = orders.iter().map(|o| vec![created(o)]).collect();
    // Each order twice at once, as a client's retry racing its first try:
    // the intake commits them in shared batches.
    let writes = orders
        .iter()
        .zip(&first)
        .chain(orders.iter().zip(&retried))
        .map(|(order, events)| OrderStore::write(&store, new_order(order, events)));
    let outcomes = futures::future::join_all(writes).await;
    let (tries, retries) = outcomes.split_at(orders.len());

    let published = take_all(&bus, Reader::Inventory).await;
    assert_eq!(published.len(), orders.len(), "one event per order written");
    for (n, order) in orders.iter().enumerate() {
        // The event published is the one of the write that won, and only it.
        let won = match (&tries[n], &retries[n]) {
            (Ok(_), Err(StoreError::Conflict(_))) => &first[n][0],
            (Err(StoreError::Conflict(_)), Ok(_)) => &retried[n][0],
            other => panic!("{}: one write wins, the other conflicts: {other:?}", order.id),
        };
        let event = published
            .iter()
            .find(|e| e.aggregate_id == order.id)
            .expect("published");
        assert_eq!(event, won);
    }
    assert_eq!(
        store.outbox(Context::Order).backlog().await.expect("counted"),
        0,
        "nothing left for a relay"
    );
}

#[tokio::test]
async fn only_events_some_consumer_reads_are_stored_and_a_failed_change_publishes_none() {
    let (store, bus, _dir) = publishing().await;
    let placed = order("u-1");
    OrderStore::write(&store, new_order(&placed, &[created(&placed)]))
        .await
        .expect("written");
    let transition = |event: fn(OrderTransition) -> OrderEvent| {
        let event = event(OrderTransition {
            order_id: placed.id.clone(),
            at: 2_000,
        });
        contracts::order_envelope(event, 2, Trace::root(Uuid::now_v7()))
    };
    let mut confirmed = placed.clone();
    confirmed.status = OrderStatus::Confirmed;
    confirmed.confirmed_at = Some(2_000);
    // A confirmation (which no consumer reads while payment is off) and a
    // completion (which inventory reads), written together.
    let events = [transition(OrderEvent::Confirmed), transition(OrderEvent::Completed)];
    let stale = OrderWrite {
        order: &confirmed,
        expected_version: Some(7),
        events: &events,
        delivery: None,
        audit: None,
    };
    assert!(matches!(
        store.update_many(&[stale]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(stored(&store).await.len(), 1, "the refused change published nothing");

    let update = OrderWrite {
        order: &confirmed,
        expected_version: Some(1),
        events: &events,
        delivery: None,
        audit: None,
    };
    store.update_many(&[update]).await.expect("updated");
    let types: Vec<String> = take_all(&bus, Reader::Inventory)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["OrderCreated", "OrderCompleted"]);
    assert_eq!(stored(&store).await.len(), 2, "the confirmation was not stored");
}

fn inventory_event(event: InventoryEvent, version: u64) -> Envelope {
    let rule = RuleRef {
        version: 0,
        name: "inventory".into(),
        hash: "0".repeat(64),
    };
    Envelope::new(
        &DomainEvent::Inventory(event),
        version,
        1,
        rule,
        Trace::root(Uuid::now_v7()),
    )
}

#[tokio::test]
async fn inventory_changes_reach_the_order_side_through_the_bus() {
    let (store, bus, _dir) = publishing().await;
    let product = ProductStock {
        product_id: "SKU-1".into(),
        name: "Mug".into(),
        unit_price: 1200,
        currency: "KRW".into(),
        available: 10,
        reserved: 0,
        version: 1,
        initial: 10,
        restocked: 0,
        adjusted: 0,
        deducted: 0,
    };
    let before = InventoryState::default();
    let after = InventoryState {
        products: vec![product],
        reservation: None,
    };
    // The registration feeds the orders' catalogue; a restock is
    // inventory's own bookkeeping, which no consumer reads.
    let events = [
        inventory_event(
            InventoryEvent::ProductRegistered(RegisterProduct {
                product_id: "SKU-1".into(),
                name: "Mug".into(),
                unit_price: 1200,
                currency: "KRW".into(),
                initial_stock: 10,
            }),
            1,
        ),
        inventory_event(
            InventoryEvent::Restocked(Restock {
                product_id: "SKU-1".into(),
                quantity: 1,
            }),
            1,
        ),
    ];
    let actor = Actor::new("ops", "admin", "req-1");
    let write = InventoryWrite {
        before: &before,
        after: &after,
        movements: &[],
        events: &events,
        actor: &actor,
        audit: &[],
    };
    store.write_many(&[write]).await.expect("written");
    let given = take_all(&bus, Reader::Order).await;
    let ids: Vec<Uuid> = given.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [events[0].event_id]);
    assert_eq!(given[0], events[0], "the event as written");
    assert_eq!(store.outbox(Context::Inventory).backlog().await.expect("counted"), 0);
}

#[tokio::test]
async fn a_change_that_fails_after_its_events_were_written_publishes_none() {
    let (store, bus, _dir) = publishing().await;
    // The event is written last in the new orders' command: refused there,
    // the orders written before it in the same transaction must go too.
    sqlx::query(
        "CREATE TRIGGER refuse_messages AFTER INSERT ON bus_messages
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(store.pool())
    .await
    .expect("trigger created");
    let placed = order("r-1");
    let refused = OrderStore::write(&store, new_order(&placed, &[created(&placed)])).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        OrderStore::get(&store, "r-1").await,
        Ok(None),
        "the order went with its event"
    );
    sqlx::query("DROP TRIGGER refuse_messages")
        .execute(store.pool())
        .await
        .expect("trigger dropped");
    assert!(take_all(&bus, Reader::Inventory).await.is_empty());
    assert_eq!(stored(&store).await.len(), 0);
}

/// What `bus_messages` holds for each message: id, subject, body, consumers.
async fn stored(store: &SqliteStore) -> Vec<(String, String, Vec<u8>, String)> {
    sqlx::query_as("SELECT msg_id, subject, body, consumers FROM bus_messages ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .expect("read")
}

#[tokio::test]
async fn an_event_is_stored_as_the_relay_would_have_published_it() {
    let (store, _bus, _dir) = publishing().await;
    let placed = order("same-1");
    let events = [created(&placed)];
    OrderStore::write(&store, new_order(&placed, &events))
        .await
        .expect("written");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let relayed = SqliteStore::open_in(dir.path()).await.expect("opened");
    let bus = SqliteBus::new(&relayed, Topology::new(Namespace::new("embedded").expect("valid")));
    bus.publish(&contracts::encoded(&events)).await.expect("published");

    let written = stored(&store).await;
    assert_eq!(written.len(), 1);
    assert_eq!(written, stored(&relayed).await);
    assert_eq!(
        written[0].0,
        events[0].event_id.to_string(),
        "the event id is the message id"
    );
}
