//! The saga end to end on the real services: PostgreSQL, NATS JetStream and
//! Redis on 127.0.0.1, each test with its own database, namespace and keys.

use std::sync::Arc;
use std::time::Duration;

use shop_e2e::{Options, Shop, eventually, eventually_within, start, start_with};
use shop_rules::inventory::ReservationStatus;
use shop_rules::order::{CancelReason, OrderStatus};
use shop_runtime::ports::{InventoryStore, OrderStore};
use shop_runtime::saga::orders::Expiry;
use shop_streams::{Context, Encoded, Trace};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_confirmed_then_completed_and_its_stock_deducted() {
    let shop = start().await;
    shop.register("SKU-1", 5).await;
    let order = shop.place(&[("SKU-1", 2)]).await;
    assert_eq!(order.status, OrderStatus::Pending, "accepted, not yet confirmed");
    assert_eq!(order.lines[0].unit_price, 1200, "priced from the catalogue copy");
    shop.settles_at(&order.id, OrderStatus::Confirmed).await;
    assert_eq!(shop.stock("SKU-1").await, (3, 2, 0));

    shop.orders
        .complete(&order.id, Trace::root(Uuid::now_v7()), None)
        .await
        .expect("completed");
    eventually("the deduction", || async { shop.stock("SKU-1").await == (3, 0, 2) }).await;
    let reservation = shop.inventory.store().reservation(&order.id).await.expect("readable");
    assert_eq!(reservation.map(|r| r.status), Some(ReservationStatus::Deducted));
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_stock_cancels_and_reserves_nothing_even_for_the_lines_in_stock() {
    let shop = start().await;
    shop.register("SKU-A", 10).await;
    shop.register("SKU-B", 1).await;
    let order = shop.place(&[("SKU-A", 3), ("SKU-B", 2)]).await;
    let settled = shop.settles_at(&order.id, OrderStatus::Cancelled).await;
    assert_eq!(settled.cancel_reason, Some(CancelReason::InsufficientStock));
    assert_eq!(shop.stock("SKU-A").await, (10, 0, 0));
    assert_eq!(shop.stock("SKU-B").await, (1, 0, 0));
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cancel_racing_the_reservation_leaves_nothing_reserved() {
    let shop = start().await;
    shop.register("SKU-R", 4).await;
    let order = shop.place(&[("SKU-R", 3)]).await;
    // Whichever wins, the customer cancel (before confirmation) or the
    // reservation, the end is the same: cancelled, all stock available.
    let cancelled = shop
        .orders
        .cancel(&order.id, CancelReason::Customer, Trace::root(Uuid::now_v7()), None)
        .await;
    if cancelled.is_err() {
        // The reservation won and confirmed first: a customer may not cancel
        // now, and the stock stays reserved for the order.
        shop.settles_at(&order.id, OrderStatus::Confirmed).await;
        assert_eq!(shop.stock("SKU-R").await, (1, 3, 0));
    } else {
        shop.settles_at(&order.id, OrderStatus::Cancelled).await;
        eventually("stock back", || async { shop.stock("SKU-R").await == (4, 0, 0) }).await;
    }
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_for_a_hundred_units_confirm_exactly_a_hundred() {
    flash_sale(
        start_with(Options {
            inventory_instances: 2,
            ..Options::default()
        })
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lock_the_versions_still_keep_the_stock_exact() {
    flash_sale(
        start_with(Options {
            inventory_instances: 2,
            lock_off: true,
            ..Options::default()
        })
        .await,
    )
    .await;
}

/// 1,000 orders of one unit for a product with 100.
async fn flash_sale(shop: Shop) {
    shop.register("SKU-HOT", 100).await;
    let shop = Arc::new(shop);
    let intake: Vec<_> = (0..1000)
        .map(|_| {
            let shop = shop.clone();
            tokio::spawn(async move { shop.place(&[("SKU-HOT", 1)]).await.id })
        })
        .collect();
    let mut ids = Vec::with_capacity(intake.len());
    for task in intake {
        ids.push(task.await.expect("intake task"));
    }
    let count = |status: &'static str| {
        let pool = shop.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders.orders WHERE status = $1")
                .bind(status)
                .fetch_one(&pool)
                .await
                .unwrap_or(-1)
        }
    };
    eventually_within(Duration::from_secs(120), "every order settled", || async {
        count("PENDING").await == 0
    })
    .await;
    assert_eq!(count("CONFIRMED").await, 100);
    assert_eq!(count("CANCELLED").await, 900);
    assert_eq!(
        shop.stock("SKU-HOT").await,
        (0, 100, 0),
        "exactly the stock, never more"
    );
    let reserves: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.entries WHERE target = 'product:SKU-HOT' AND action = 'stock.reserve'",
    )
    .fetch_one(shop.store.pool())
    .await
    .expect("movements");
    assert_eq!(reserves, 100, "one reserve movement per confirmed order");
    match Arc::try_unwrap(shop) {
        Ok(shop) => shop.shutdown().await,
        Err(_) => panic!("intake tasks still hold the shop"),
    }
}

/// The `event_type` event of `aggregate` as it was committed to the outbox
/// of `context` (as the relay published it).
async fn published(pool: &sqlx::PgPool, context: Context, aggregate: &str, event_type: &str) -> shop_streams::Envelope {
    let query = match context {
        Context::Order => {
            "SELECT envelope FROM orders.outbox WHERE envelope->>'aggregate_id' = $1 AND envelope->>'event_type' = $2"
        }
        Context::Inventory => {
            "SELECT envelope FROM inventory.outbox WHERE envelope->>'aggregate_id' = $1 AND envelope->>'event_type' = $2"
        }
    };
    let envelope: sqlx::types::Json<shop_streams::Envelope> = sqlx::query_scalar(query)
        .bind(aggregate)
        .bind(event_type)
        .fetch_one(pool)
        .await
        .expect("the published event");
    envelope.0
}

fn order_event(event: shop_rules::order::OrderEvent) -> shop_streams::Envelope {
    let rule = shop_streams::RuleRef {
        version: 0,
        name: "order".into(),
        hash: "0".repeat(64),
    };
    shop_streams::Envelope::new(
        &shop_streams::DomainEvent::Order(event),
        1,
        0,
        rule,
        Trace::root(Uuid::now_v7()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_redelivered_and_reordered_events_change_nothing() {
    use shop_rules::order::{OrderCancelled, OrderEvent};

    let shop = start().await;
    shop.register("SKU-D", 5).await;
    let order = shop.place(&[("SKU-D", 2)]).await;
    shop.settles_at(&order.id, OrderStatus::Confirmed).await;
    assert_eq!(shop.stock("SKU-D").await, (3, 2, 0));

    // The OrderCreated as it was published, delivered again long after the
    // broker's duplicate window: the reservation it made says it was seen.
    let created = published(shop.store.pool(), Context::Order, &order.id, "OrderCreated").await;
    shop.inventory.handle(&created).await.expect("redelivery handled");
    // The same event under a new id (an operator's republish): the rules
    // see the reservation exists and change nothing.
    let mut copy = created.clone();
    copy.event_id = Uuid::now_v7();
    shop.inventory.handle(&copy).await.expect("copy handled");
    assert_eq!(shop.stock("SKU-D").await, (3, 2, 0), "reserved once");

    // Reordered: the cancel of an order overtakes its creation.
    let cancelled = order_event(OrderEvent::Cancelled(OrderCancelled {
        order_id: "o-late".into(),
        reason: CancelReason::Customer,
        at: 1,
    }));
    let created_late = order_created("o-late", &[("SKU-D", 1)]);
    shop.inventory.handle(&cancelled).await.expect("cancel first");
    shop.inventory.handle(&created_late).await.expect("then the creation");
    assert_eq!(
        shop.stock("SKU-D").await,
        (3, 2, 0),
        "a voided reservation reserves nothing"
    );
    let voided = shop.inventory.store().reservation("o-late").await.expect("readable");
    assert_eq!(voided.map(|r| r.status), Some(ReservationStatus::Released));

    // The order side: the confirmation again changes nothing either.
    let before = shop.orders.get(&order.id).await.expect("readable");
    let reserved = published(shop.store.pool(), Context::Inventory, &order.id, "StockReserved").await;
    shop.orders.handle(&reserved).await.expect("redelivery handled");
    assert_eq!(shop.orders.get(&order.id).await.expect("readable"), before);
    shop.shutdown().await;
}

fn order_created(order_id: &str, lines: &[(&str, u32)]) -> shop_streams::Envelope {
    use shop_rules::order::{OrderCreated, OrderEvent, OrderLine};

    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(product_id, quantity)| OrderLine {
            product_id: (*product_id).to_owned(),
            quantity: *quantity,
            unit_price: 1200,
        })
        .collect();
    order_event(OrderEvent::Created(OrderCreated {
        order_id: order_id.to_owned(),
        customer_id: "carol".into(),
        total: lines.iter().map(|l| l.unit_price * i64::from(l.quantity)).sum(),
        lines,
        currency: "KRW".into(),
        at: 0,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_taken_together_decide_as_one_by_one_would_and_redeliveries_change_nothing() {
    let shop = start().await;
    shop.register("SKU-G", 3).await;
    shop.register("SKU-H", 5).await;
    let batch = [
        order_created("o-g1", &[("SKU-G", 1)]),
        order_created("o-g2", &[("SKU-G", 1), ("SKU-H", 2)]),
        // Only one unit of G is left by now.
        order_created("o-g3", &[("SKU-G", 2)]),
        order_created("o-g4", &[("SKU-H", 1)]),
    ];
    let envelopes: Vec<_> = batch.iter().collect();
    let outcomes = shop.inventory.handle_many(&envelopes, 8).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(shop.stock("SKU-G").await, (1, 2, 0));
    assert_eq!(shop.stock("SKU-H").await, (2, 3, 0));
    let status = |order: &'static str| {
        let inventory = &shop.inventory;
        async move {
            let reservation = inventory.store().reservation(order).await.expect("readable");
            reservation.map(|r| r.status)
        }
    };
    assert_eq!(status("o-g2").await, Some(ReservationStatus::Reserved));
    assert_eq!(status("o-g3").await, Some(ReservationStatus::Rejected));
    // One transaction: every event of the batch carries its commit's time.
    let published: Vec<(String, String)> = sqlx::query_as(
        "SELECT envelope->>'aggregate_id', envelope->>'event_type' FROM inventory.outbox
         WHERE envelope->>'aggregate_id' LIKE 'o-g%' ORDER BY seq",
    )
    .fetch_all(shop.store.pool())
    .await
    .expect("outbox");
    let published: Vec<(&str, &str)> = published.iter().map(|(a, t)| (a.as_str(), t.as_str())).collect();
    assert_eq!(
        published,
        [
            ("o-g1", "StockReserved"),
            ("o-g2", "StockReserved"),
            ("o-g3", "InsufficientStock"),
            ("o-g4", "StockReserved")
        ]
    );
    let commits: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT at) FROM inventory.outbox WHERE envelope->>'aggregate_id' LIKE 'o-g%'",
    )
    .fetch_one(shop.store.pool())
    .await
    .expect("outbox");
    assert_eq!(commits, 1, "the four reservations were committed together");

    // A redelivery beside a new order, and an operator's republish (the
    // same event under a new id) beside another: read with their
    // reservations, they are refused by the rules and the new ones still
    // committed together.
    let mut republished = batch[1].clone();
    republished.event_id = Uuid::now_v7();
    let again = [
        batch[0].clone(),
        order_created("o-g5", &[("SKU-H", 1)]),
        republished,
        order_created("o-g6", &[("SKU-G", 1)]),
    ];
    let envelopes: Vec<_> = again.iter().collect();
    let outcomes = shop.inventory.handle_many(&envelopes, 8).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(shop.stock("SKU-G").await, (0, 3, 0), "only o-g6 reserved more of G");
    assert_eq!(shop.stock("SKU-H").await, (1, 4, 0), "only o-g5 reserved more of H");
    // Rows written by one transaction carry its id.
    let again: Vec<(String, String)> = sqlx::query_as(
        "SELECT envelope->>'aggregate_id', xmin::text FROM inventory.outbox
         WHERE envelope->>'aggregate_id' IN ('o-g1', 'o-g2', 'o-g5', 'o-g6') ORDER BY seq",
    )
    .fetch_all(shop.store.pool())
    .await
    .expect("outbox");
    let (old, new) = again.split_at(2);
    assert_eq!(
        old.iter()
            .chain(new)
            .map(|(order, _)| order.as_str())
            .collect::<Vec<_>>(),
        ["o-g1", "o-g2", "o-g5", "o-g6"],
        "nothing published again for the orders reserved before"
    );
    assert_eq!(new[0].1, new[1].1, "the two new reservations committed together");
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_handled_together_change_settled_orders_no_further() {
    let shop = start().await;
    shop.register("SKU-C", 10).await;
    let mut reserved = Vec::new();
    for _ in 0..3 {
        let order = shop.place(&[("SKU-C", 1)]).await;
        let settled = shop.settles_at(&order.id, OrderStatus::Confirmed).await;
        let event = published(shop.store.pool(), Context::Inventory, &order.id, "StockReserved").await;
        reserved.push((settled, event));
    }
    let versions = |shop: &Shop| {
        let ids: Vec<String> = reserved.iter().map(|(o, _)| o.id.clone()).collect();
        let store = shop.store.clone();
        async move {
            let mut stored: Vec<_> = store.get_many(&ids).await.expect("readable");
            stored.sort_by(|a, b| a.value.id.cmp(&b.value.id));
            stored.into_iter().map(|s| (s.value, s.version)).collect::<Vec<_>>()
        }
    };
    let outbox_rows = |shop: &Shop| {
        let pool = shop.store.pool().clone();
        async move {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders.outbox")
                .fetch_one(&pool)
                .await
                .expect("counted");
            rows
        }
    };
    let (before, rows) = (versions(&shop).await, outbox_rows(&shop).await);
    // Redelivered, and republished under new ids (past the broker's dedup
    // window): the rules find each order confirmed already, so nothing is
    // decided and nothing written, together or one by one.
    let republished: Vec<_> = reserved
        .iter()
        .map(|(_, e)| {
            let mut copy = e.clone();
            copy.event_id = Uuid::now_v7();
            copy
        })
        .collect();
    for envelopes in [
        reserved.iter().map(|(_, e)| e).collect::<Vec<_>>(),
        republished.iter().collect(),
    ] {
        let outcomes = shop.orders.handle_many(&envelopes, 8).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    }
    for (settled, _) in &reserved {
        assert_eq!(
            shop.orders.get(&settled.id).await.expect("readable").as_ref(),
            Some(settled)
        );
    }
    assert_eq!(versions(&shop).await, before, "no order written again");
    assert_eq!(outbox_rows(&shop).await, rows, "no event decided again");
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_reservation_cancels_the_order_and_restores_its_stock() {
    let ttl = Duration::from_millis(300);
    let shop = start_with(Options {
        reservation_ttl: Some(ttl),
        ..Options::default()
    })
    .await;
    shop.register("SKU-E", 5).await;
    let kept = shop.place(&[("SKU-E", 1)]).await;
    let lapsing = shop.place(&[("SKU-E", 2)]).await;
    shop.settles_at(&kept.id, OrderStatus::Confirmed).await;
    shop.settles_at(&lapsing.id, OrderStatus::Confirmed).await;
    // Paid in time: a completion before the expiry wins, and stays.
    shop.orders
        .complete(&kept.id, Trace::root(Uuid::now_v7()), None)
        .await
        .expect("completed");

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let expired = shop
        .orders
        .expire_due(&Expiry::reservation(ttl), 100, Trace::root(Uuid::now_v7()))
        .await
        .expect("expiry ran");
    assert_eq!(expired, 1, "only the unpaid order");
    let cancelled = shop.settles_at(&lapsing.id, OrderStatus::Cancelled).await;
    assert_eq!(cancelled.cancel_reason, Some(CancelReason::ReservationExpired));
    shop.settles_at(&kept.id, OrderStatus::Completed).await;
    // Completing the expired order now is refused: the expiry won.
    assert!(
        shop.orders
            .complete(&lapsing.id, Trace::root(Uuid::now_v7()), None)
            .await
            .is_err()
    );
    eventually("stock restored and deducted", || async {
        shop.stock("SKU-E").await == (4, 0, 1)
    })
    .await;
    let movements = shop
        .inventory
        .store()
        .movements("SKU-E", 0, 100)
        .await
        .expect("movements");
    assert!(
        movements
            .iter()
            .any(|m| m.movement.kind == shop_rules::inventory::MovementKind::Expire),
        "the audit trail says the stock came back by expiry"
    );
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_with_their_reason_and_the_rest_flows() {
    use shop_runtime::ports::EventBus;

    let shop = start().await;
    shop.register("SKU-X", 5).await;
    let first = shop.place(&[("SKU-X", 1)]).await;
    shop.settles_at(&first.id, OrderStatus::Confirmed).await;

    // A body that is no envelope at all, on the stream inventory reads.
    let subject = format!("{}.order.OrderCreated", shop.bus.topology().namespace());
    shop.bus
        .jetstream()
        .publish(subject, b"{not json".to_vec().into())
        .await
        .expect("sent")
        .await
        .expect("stored");
    // A well-formed envelope of a type nobody knows, on the stream the
    // order side reads whole (inventory filters on the types it acts on,
    // so it never sees one).
    let mut unknown = published(shop.observer.pool(), Context::Inventory, &first.id, "StockReserved").await;
    unknown.event_id = Uuid::now_v7();
    unknown.event_type = "StockTeleported".into();
    shop.bus.publish(&[Encoded::of(&unknown)]).await.expect("published");

    // What follows them is handled as usual.
    let next = shop.place(&[("SKU-X", 2)]).await;
    shop.settles_at(&next.id, OrderStatus::Confirmed).await;
    assert_eq!(shop.stock("SKU-X").await, (2, 3, 0));

    eventually("both poison messages dead-lettered", || async {
        shop.bus.dead_letters(100).await.is_ok_and(|l| l.len() == 2)
    })
    .await;
    let letters = shop.bus.dead_letters(100).await.expect("listed");
    let unreadable = letters
        .iter()
        .find(|l| l.body == b"{not json")
        .expect("the unreadable body is kept byte for byte");
    assert!(
        unreadable.reason.contains("not an event envelope"),
        "{}",
        unreadable.reason
    );
    let teleported = letters
        .iter()
        .find(|l| l.subject.ends_with(".inventory.StockTeleported"))
        .expect("the unknown type is kept");
    assert!(teleported.reason.contains("StockTeleported"), "{}", teleported.reason);
    assert!(teleported.consumer.contains("order"), "{}", teleported.consumer);
    shop.shutdown_unchecked().await;
}

/// Version 2 twins travel the same streams the shop consumes: it must act
/// on version 1 alone. Inventory's consumers filter on the version 1
/// subjects, so a version 2 cancellation published with no version 1
/// beside it (no producer does that) never reaches inventory and leaves the
/// reservation where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_twin_alone_changes_nothing() {
    use shop_rules::order::{OrderCancelled, OrderEvent};
    use shop_runtime::ports::EventBus;
    use shop_streams::Reader;

    let shop = start().await;
    shop.register("SKU-TW", 5).await;
    let order = shop.place(&[("SKU-TW", 2)]).await;
    shop.settles_at(&order.id, OrderStatus::Confirmed).await;

    let first = order_event(OrderEvent::Cancelled(OrderCancelled {
        order_id: order.id.clone(),
        reason: CancelReason::Admin,
        at: 1,
    }));
    let twin = first.twins().pop().expect("OrderCancelled has a version 2");
    shop.bus.publish(&[Encoded::of(&twin)]).await.expect("published");

    let topology = shop.bus.topology();
    let stream = shop
        .bus
        .jetstream()
        .get_stream(topology.stream(Context::Order).name)
        .await
        .expect("the order stream");
    let stored = stream.clone().info().await.expect("stream info").state.last_sequence;
    assert_eq!(stored, 3, "created, confirmed, and the twin");
    for consumer in topology.consumers(Reader::Inventory) {
        let durable = consumer.durable;
        eventually("the inventory consumers to settle what they read", || async {
            let info = stream.consumer_info(&durable).await.expect("consumer info");
            info.num_pending == 0 && info.num_ack_pending == 0
        })
        .await;
        let info = stream.consumer_info(&durable).await.expect("consumer info");
        assert!(
            info.delivered.stream_sequence < stored,
            "{durable}: the twin is not for it"
        );
    }
    assert_eq!(shop.stock("SKU-TW").await, (3, 2, 0), "still reserved");
    shop.settles_at(&order.id, OrderStatus::Confirmed).await;
    shop.shutdown().await;
}
