//! The [`OrderStore`] contract.

use shop_rules::order::{CataloguePrice, Order, OrderStatus};

use shop_rules::order::{OrderEvent, OrderTransition};
use shop_streams::{RuleRef, Trace};

use super::{created, order, order_envelope};
use crate::audit::Actor;
use crate::ports::{
    AuditQuery, CatalogueEntry, OrderCursor, OrderQuery, OrderStore, OrderWrite, Outbox, Provenance, SealedDelivery,
    StoreError, StoredRecord, Versioned,
};

/// Every check, against a store and the outbox its writes feed.
pub async fn run(store: &impl OrderStore, outbox: &impl Outbox) {
    pending_orders_are_counted(store).await;
    create_then_update_by_version(store, outbox).await;
    the_catalogue_keeps_the_newest_price(store).await;
    confirmed_orders_are_found_by_confirmation_time(store).await;
    a_customers_orders_are_paged_newest_first(store).await;
    new_orders_arriving_together_are_each_written_once(store, outbox).await;
    many_updates_commit_together_or_not_at_all(store, outbox).await;
    audited_changes_are_sealed_with_them(store).await;
    the_rules_that_placed_an_order_are_kept(store).await;
    an_order_is_read_with_what_is_kept_beside_it(store).await;
}

/// MUST count the PENDING orders, and only those.
async fn pending_orders_are_counted(store: &impl OrderStore) {
    let before = store.pending_count().await.expect("counted");
    for id in ["pc-1", "pc-2"] {
        let o = order(id);
        let write = new_order(&o);
        store.write(write).await.expect("written");
    }
    assert_eq!(store.pending_count().await, Ok(before + 2));
    let mut confirmed = order("pc-1");
    confirmed.status = OrderStatus::Confirmed;
    // Far in the future: not among the expiry candidates checked below.
    confirmed.confirmed_at = Some(i64::MAX / 2);
    let write = OrderWrite {
        order: &confirmed,
        expected_version: Some(1),
        events: &[],
        delivery: None,
        audit: None,
    };
    store.write(write).await.expect("confirmed");
    assert_eq!(
        store.pending_count().await,
        Ok(before + 1),
        "a confirmed order is no longer pending"
    );
}

/// MUST write each of many new orders arriving at once exactly once with
/// its events, and refuse a second write of the same id (a retried intake
/// racing the first) with `Conflict`, writing nothing for it.
async fn new_orders_arriving_together_are_each_written_once(store: &impl OrderStore, outbox: &impl Outbox) {
    let before = outbox.backlog().await.expect("backlog");
    let orders: Vec<_> = (0..150).map(|n| order(&format!("burst-{n:03}"))).collect();
    let first: Vec<_> = orders.iter().map(created).collect();
    let retried: Vec<_> = orders.iter().map(created).collect();
    let sealed = |copy: &str| -> Vec<SealedDelivery> {
        orders
            .iter()
            .map(|o| SealedDelivery {
                order_id: o.id.clone(),
                key_id: "burst-key".into(),
                sealed: format!("{copy}:{}", o.id),
            })
            .collect()
    };
    let (first_deliveries, retried_deliveries) = (sealed("first"), sealed("retried"));
    let writes = orders
        .iter()
        .zip(first.iter().zip(&first_deliveries))
        .chain(orders.iter().zip(retried.iter().zip(&retried_deliveries)))
        .map(|(order, (event, delivery))| {
            store.write(OrderWrite {
                order,
                expected_version: None,
                events: std::slice::from_ref(event),
                delivery: Some(delivery),
                audit: None,
            })
        });
    let outcomes = futures::future::join_all(writes).await;
    let written = outcomes.iter().filter(|o| **o == Ok(1)).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::Conflict(_))))
        .count();
    assert_eq!((written, refused), (150, 150), "{outcomes:?}");
    for order in &orders {
        let stored = store.get(&order.id).await.expect("readable").expect("written");
        assert_eq!(stored.version, 1);
    }
    assert_eq!(
        outbox.backlog().await,
        Ok(before + 150),
        "one OrderCreated per order written, none for the refused copies"
    );
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
    let mut stored = store.deliveries(&ids).await.expect("readable");
    stored.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(stored.len(), 150, "one delivery per order written");
    for (delivery, order) in stored.iter().zip(&orders) {
        assert_eq!(delivery.order_id, order.id);
        assert!(
            [first_deliveries.as_slice(), retried_deliveries.as_slice()]
                .iter()
                .any(|copy| copy.contains(delivery)),
            "the delivery of the copy that was written: {delivery:?}"
        );
    }
    assert_eq!(store.deliveries(&["absent".to_owned()]).await, Ok(vec![]));
}

async fn a_customers_orders_are_paged_newest_first(store: &impl OrderStore) {
    // Bob's own orders; created at 10, 20, 20 and 30, the last one confirmed.
    for (id, created_at, status) in [
        ("b-1", 10, OrderStatus::Pending),
        ("b-2a", 20, OrderStatus::Pending),
        ("b-2b", 20, OrderStatus::Pending),
        ("b-3", 30, OrderStatus::Confirmed),
    ] {
        let mut o = order(id);
        o.customer_id = "bob".into();
        o.created_at = created_at;
        o.status = status;
        let write = new_order(&o);
        store.write(write).await.expect("written");
    }
    let ids = |orders: Vec<shop_rules::order::Order>| orders.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let query = OrderQuery {
        customer_id: "bob",
        status: None,
        after: None,
        limit: 2,
    };
    let first = store.customer_orders(query).await.expect("listed");
    let cursor = OrderCursor::after(first.last().expect("a full page"));
    assert_eq!(ids(first), ["b-3", "b-2b"], "newest first, ties by id");
    let second = store
        .customer_orders(OrderQuery {
            after: Some(&cursor),
            ..query
        })
        .await
        .expect("listed");
    assert_eq!(ids(second), ["b-2a", "b-1"], "the rest, none twice");
    let pending = OrderQuery {
        status: Some(OrderStatus::Pending),
        limit: 10,
        ..query
    };
    assert_eq!(
        ids(store.customer_orders(pending).await.expect("listed")),
        ["b-2b", "b-2a", "b-1"]
    );
    let nobody = OrderQuery {
        customer_id: "nobody",
        ..query
    };
    assert!(store.customer_orders(nobody).await.expect("listed").is_empty());
}

async fn confirmed_orders_are_found_by_confirmation_time(store: &impl OrderStore) {
    // o-1 was confirmed at 2_000 above; o-2 is still pending.
    for (id, confirmed_at) in [("c-late", 9_000), ("c-early", 5_000)] {
        let mut o = order(id);
        o.status = OrderStatus::Confirmed;
        o.confirmed_at = Some(confirmed_at);
        let write = new_order(&o);
        store.write(write).await.expect("written");
    }
    let due = |cutoff, limit| store.confirmed_before(cutoff, limit);
    assert_eq!(
        due(9_001, 10).await,
        Ok(vec!["o-1".into(), "c-early".into(), "c-late".into()])
    );
    assert_eq!(
        due(9_000, 10).await,
        Ok(vec!["o-1".into(), "c-early".into()]),
        "strictly before"
    );
    assert_eq!(
        due(9_001, 1).await,
        Ok(vec!["o-1".into()]),
        "oldest first, at most `limit`"
    );
    assert_eq!(due(1_000, 10).await, Ok(vec![]));
}

async fn create_then_update_by_version(store: &impl OrderStore, outbox: &impl Outbox) {
    assert_eq!(store.get("o-1").await, Ok(None));
    let mut o = order("o-1");
    let event = created(&o);
    let write = OrderWrite {
        order: &o,
        expected_version: None,
        events: std::slice::from_ref(&event),
        delivery: None,
        audit: None,
    };
    assert_eq!(store.write(write).await, Ok(1));
    let stored = store.get("o-1").await.expect("readable").expect("stored");
    assert_eq!((stored.value, stored.version), (o.clone(), 1));
    let backlog = outbox.backlog().await.expect("backlog");
    assert_eq!(backlog, 1, "the event went to the outbox with the order");

    // Creating it again conflicts and writes nothing, not even the event.
    let again = created(&o);
    let write = OrderWrite {
        events: std::slice::from_ref(&again),
        ..write
    };
    assert!(matches!(store.write(write).await, Err(StoreError::Conflict(_))));
    assert_eq!(outbox.backlog().await, Ok(1));

    o.status = OrderStatus::Confirmed;
    o.confirmed_at = Some(2_000);
    let update = OrderWrite {
        order: &o,
        expected_version: Some(1),
        events: &[],
        delivery: None,
        audit: None,
    };
    assert_eq!(store.write(update).await, Ok(2));
    // A writer that read version 1 lost the race: conflict, nothing written.
    let mut stale = o.clone();
    stale.status = OrderStatus::Cancelled;
    let stale_write = OrderWrite {
        order: &stale,
        ..update
    };
    assert!(matches!(store.write(stale_write).await, Err(StoreError::Conflict(_))));
    let stored = store.get("o-1").await.expect("readable").expect("stored");
    assert_eq!((stored.value.status, stored.version), (OrderStatus::Confirmed, 2));
}

async fn the_catalogue_keeps_the_newest_price(store: &impl OrderStore) {
    let entry = |price, source_version| CatalogueEntry {
        price: CataloguePrice {
            product_id: "SKU-9".into(),
            unit_price: price,
            currency: "KRW".into(),
        },
        source_version,
    };
    let ids = ["SKU-9".to_owned(), "ABSENT".to_owned()];
    assert_eq!(store.catalogue(&ids).await, Ok(vec![]));
    store.update_catalogue(&entry(100, 1)).await.expect("stored");
    store.update_catalogue(&entry(300, 3)).await.expect("stored");
    // A late, older update does not undo a newer one.
    store.update_catalogue(&entry(200, 2)).await.expect("ignored");
    assert_eq!(store.catalogue(&ids).await, Ok(vec![entry(300, 3)]));

    // A repeated update (a redelivered message) changes nothing, even with
    // other content: the source version says it was seen.
    store.update_catalogue(&entry(999, 3)).await.expect("ignored");
    assert_eq!(store.catalogue(&ids).await, Ok(vec![entry(300, 3)]));
}

/// MUST apply many updates in one go, and on a stale version or an order
/// named twice write none of them.
async fn many_updates_commit_together_or_not_at_all(store: &impl OrderStore, outbox: &impl Outbox) {
    let ids: Vec<String> = (0..3).map(|n| format!("m-{n}")).collect();
    for id in &ids {
        let o = order(id);
        let write = new_order(&o);
        assert_eq!(store.write(write).await, Ok(1));
    }
    let mut asked = ids.clone();
    asked.push("m-ghost".into());
    let mut found = store.get_many(&asked).await.expect("readable");
    found.sort_by(|a, b| a.value.id.cmp(&b.value.id));
    let found: Vec<_> = found.iter().map(|s| (s.value.clone(), s.version)).collect();
    assert_eq!(found, ids.iter().map(|id| (order(id), 1)).collect::<Vec<_>>());

    let confirmed: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut o = order(id);
            o.status = OrderStatus::Confirmed;
            o.confirmed_at = Some(2_000);
            o
        })
        .collect();
    let events: Vec<_> = confirmed.iter().map(created).collect();
    let update = |at: usize, expected: u64| OrderWrite {
        order: &confirmed[at],
        expected_version: Some(expected),
        events: std::slice::from_ref(&events[at]),
        delivery: None,
        audit: None,
    };
    let backlog = outbox.backlog().await.expect("backlog");

    // Refused whole: a stale version, an order twice.
    let refused = [
        store.update_many(&[update(0, 1), update(1, 7)]).await,
        store.update_many(&[update(0, 1), update(0, 1)]).await,
    ];
    for outcome in refused {
        assert!(matches!(outcome, Err(StoreError::Conflict(_))), "{outcome:?}");
    }
    for id in &ids {
        let stored = store.get(id).await.expect("readable").expect("stored");
        assert_eq!(
            (stored.value.status, stored.version),
            (OrderStatus::Pending, 1),
            "nothing written"
        );
    }
    assert_eq!(outbox.backlog().await, Ok(backlog), "no event written");

    store
        .update_many(&[update(0, 1), update(1, 1), update(2, 1)])
        .await
        .expect("all written");
    for (id, expected) in ids.iter().zip(&confirmed) {
        let stored = store.get(id).await.expect("readable").expect("stored");
        assert_eq!((&stored.value, stored.version), (expected, 2));
    }
    assert_eq!(outbox.backlog().await, Ok(backlog + 3), "each update's event");
}

/// MUST seal a write's audit record onto the chain in the write's
/// transaction: there when the change is, absent when it is refused.
async fn audited_changes_are_sealed_with_them(store: &impl OrderStore) {
    let admin = Actor::new("ops", "admin", "req-1");
    let entries_on = |target: &'static str| async move {
        let query = AuditQuery {
            target: Some(target),
            limit: 10,
            ..AuditQuery::default()
        };
        store.entries(query).await.expect("readable")
    };
    let ids = ["aud-1", "aud-2", "aud-3"];
    for id in ids {
        let o = order(id);
        let write = new_order(&o);
        assert_eq!(store.write(write).await, Ok(1));
    }
    let cancelled = |id: &str| {
        let mut o = order(id);
        o.status = OrderStatus::Cancelled;
        o
    };
    let record = |id: &str| admin.did("order", "order.cancel", format!("order:{id}"), 5_000, &"admin");
    let (one, one_record) = (cancelled("aud-1"), record("aud-1"));
    let update = OrderWrite {
        order: &one,
        expected_version: Some(1),
        events: &[],
        delivery: None,
        audit: Some(&one_record),
    };
    assert_eq!(store.write(update).await, Ok(2));
    // The same change again, from a stale read: refused, and not audited.
    assert!(matches!(store.write(update).await, Err(StoreError::Conflict(_))));
    let sealed = entries_on("order:aud-1").await;
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    assert_eq!(sealed[0].record, one_record);

    // Together: all sealed, or (one stale) none.
    let (two, three) = (cancelled("aud-2"), cancelled("aud-3"));
    let (two_record, three_record) = (record("aud-2"), record("aud-3"));
    let together = |expected_three: u64| {
        [
            OrderWrite {
                order: &two,
                expected_version: Some(1),
                events: &[],
                delivery: None,
                audit: Some(&two_record),
            },
            OrderWrite {
                order: &three,
                expected_version: Some(expected_three),
                events: &[],
                delivery: None,
                audit: Some(&three_record),
            },
        ]
    };
    assert!(matches!(
        store.update_many(&together(9)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(entries_on("order:aud-2").await, vec![]);
    store.update_many(&together(1)).await.expect("written");
    for (target, record) in [("order:aud-2", &two_record), ("order:aud-3", &three_record)] {
        let sealed = entries_on(target).await;
        assert_eq!(sealed.iter().map(|e| &e.record).collect::<Vec<_>>(), vec![record]);
    }
}

/// MUST keep with a new order the rules its first event names, whichever
/// way it is written (with others, or alone with an audit record), and
/// MUST NOT change them when the order is updated.
async fn the_rules_that_placed_an_order_are_kept(store: &impl OrderStore) {
    let limit = RuleRef {
        name: "purchase-limit".into(),
        version: 3,
        hash: "ab".repeat(32),
    };
    let (batched, audited, bare) = (order("prov-1"), order("prov-2"), order("prov-3"));
    let stamped = |o: &Order| created(o).with_policies(std::slice::from_ref(&limit));
    let (batched_event, audited_event) = (stamped(&batched), stamped(&audited));
    let decided_by = batched_event.policy.clone();
    assert_eq!(decided_by.len(), 2, "the order rules, then the policy");
    let batched_write = OrderWrite {
        events: std::slice::from_ref(&batched_event),
        ..new_order(&batched)
    };
    let placing =
        Actor::new("ops", "admin", "req-prov").did("order", "order.place", "order:prov-2".into(), 1_000, &"admin");
    let audited_write = OrderWrite {
        events: std::slice::from_ref(&audited_event),
        audit: Some(&placing),
        ..new_order(&audited)
    };
    let bare_write = OrderWrite {
        events: &[],
        ..new_order(&bare)
    };
    for write in [batched_write, audited_write, bare_write] {
        assert_eq!(store.write(write).await, Ok(1));
    }
    // Confirmed by another rule: what placed the order stays.
    let mut confirmed = batched.clone();
    confirmed.status = OrderStatus::Confirmed;
    let mut confirming = order_envelope(
        OrderEvent::Confirmed(OrderTransition {
            order_id: confirmed.id.clone(),
            at: 2_000,
        }),
        2,
        Trace::follows(&batched_event),
    );
    confirming.policy = vec![RuleRef {
        name: "order".into(),
        version: 9,
        hash: "cd".repeat(32),
    }];
    let update = OrderWrite {
        order: &confirmed,
        expected_version: Some(1),
        events: std::slice::from_ref(&confirming),
        delivery: None,
        audit: None,
    };
    assert_eq!(store.write(update).await, Ok(2));
    let ids = ["prov-1", "prov-2", "prov-3", "absent"].map(String::from);
    let mut found = store.provenance(&ids).await.expect("readable");
    found.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let kept = |id: &str| Provenance {
        order_id: id.into(),
        rules: decided_by.clone(),
    };
    assert_eq!(
        found,
        vec![kept("prov-1"), kept("prov-2")],
        "none for an order created without events"
    );
}

/// MUST read an order with its version, its delivery details and the rules
/// that placed it at once, as the reads of each return them, and `None`
/// for an order that does not exist.
async fn an_order_is_read_with_what_is_kept_beside_it(store: &impl OrderStore) {
    let limit = RuleRef {
        name: "purchase-limit".into(),
        version: 1,
        hash: "ef".repeat(32),
    };
    let (full, bare) = (order("rec-1"), order("rec-2"));
    let placing = created(&full).with_policies(std::slice::from_ref(&limit));
    let delivery = SealedDelivery {
        order_id: full.id.clone(),
        key_id: "rec-key".into(),
        sealed: "nonce:ciphertext".into(),
    };
    let placed = OrderWrite {
        events: std::slice::from_ref(&placing),
        delivery: Some(&delivery),
        ..new_order(&full)
    };
    assert_eq!(store.write(placed).await, Ok(1));
    assert_eq!(store.write(new_order(&bare)).await, Ok(1));
    let mut confirmed = full.clone();
    confirmed.status = OrderStatus::Confirmed;
    confirmed.confirmed_at = Some(2_000);
    let confirming = OrderWrite {
        expected_version: Some(1),
        ..new_order(&confirmed)
    };
    assert_eq!(store.write(confirming).await, Ok(2));

    assert_eq!(
        store.record(&full.id).await,
        Ok(Some(StoredRecord {
            order: Versioned {
                value: confirmed,
                version: 2,
            },
            delivery: Some(delivery),
            provenance: placing.policy.clone(),
        }))
    );
    assert_eq!(
        store.record(&bare.id).await,
        Ok(Some(StoredRecord {
            order: Versioned {
                value: bare,
                version: 1
            },
            delivery: None,
            provenance: Vec::new(),
        })),
        "an order with neither delivery details nor kept rules"
    );
    assert_eq!(store.record("absent").await, Ok(None));
}

/// The write that creates `order` and nothing else.
fn new_order(order: &Order) -> OrderWrite<'_> {
    OrderWrite {
        order,
        expected_version: None,
        events: &[],
        delivery: None,
        audit: None,
    }
}
