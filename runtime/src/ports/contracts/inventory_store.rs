//! The [`InventoryStore`] contract.

use shop_rules::inventory::{
    InventoryState, Movement, MovementKind, ProductStock, Reservation, ReservationStatus, StockLine,
};

use std::sync::LazyLock;

use crate::audit::{Actor, ChainHead};
use crate::ports::{AuditQuery, InventoryStore, InventoryWrite, StoreError, movement_record};

static OPS: LazyLock<Actor> = LazyLock::new(|| Actor::new("ops", "admin", "req-ops"));

fn product(id: &str, stock: i64) -> ProductStock {
    ProductStock {
        product_id: id.to_owned(),
        name: "Mug".into(),
        unit_price: 1200,
        currency: "KRW".into(),
        available: stock,
        reserved: 0,
        version: 1,
        initial: stock,
        restocked: 0,
        adjusted: 0,
        deducted: 0,
    }
}

fn movement(product_id: &str, kind: MovementKind, quantity: i64, order_id: Option<&str>) -> Movement {
    Movement {
        product_id: product_id.to_owned(),
        kind,
        quantity,
        order_id: order_id.map(str::to_owned),
        reason: None,
        at: 5,
    }
}

fn reserved(p: &ProductStock, quantity: i64) -> ProductStock {
    ProductStock {
        available: p.available - quantity,
        reserved: p.reserved + quantity,
        version: p.version + 1,
        ..p.clone()
    }
}

fn reservation(order_id: &str, status: ReservationStatus) -> Reservation {
    Reservation {
        order_id: order_id.to_owned(),
        status,
        lines: vec![StockLine {
            product_id: "A".into(),
            quantity: 2,
        }],
    }
}

/// Every check, against an empty store (and its audit log).
pub async fn run(store: &impl InventoryStore) {
    register_and_load(store).await;
    a_stale_version_conflicts_and_writes_nothing(store).await;
    the_store_refuses_negative_or_unbalanced_stock(store).await;
    reservations_are_fenced_by_their_status(store).await;
    an_order_is_reserved_once(store).await;
    movements_page_oldest_first(store).await;
    many_writes_commit_together_or_not_at_all(store).await;
    products_list_in_id_order_and_search_by_id_or_name(store).await;
}

async fn register(store: &impl InventoryStore, p: &ProductStock) -> Result<(), StoreError> {
    let empty = InventoryState::default();
    let after = InventoryState {
        products: vec![p.clone()],
        reservation: None,
    };
    let movements = [movement(&p.product_id, MovementKind::Initial, p.initial, None)];
    store
        .write(InventoryWrite {
            before: &empty,
            after: &after,
            movements: &movements,
            events: &[],
            actor: &OPS,
            audit: &[],
        })
        .await
}

async fn products_list_in_id_order_and_search_by_id_or_name(store: &impl InventoryStore) {
    for (id, name) in [
        ("Q3", "Red CUP"),
        ("Q1", "blue mug"),
        ("Q2", "50%_off tray"),
        ("Q4", "a\\b"),
    ] {
        let p = ProductStock {
            name: name.into(),
            ..product(id, 1)
        };
        register(store, &p).await.expect("registered");
    }
    let ids = |found: Vec<ProductStock>| found.into_iter().map(|p| p.product_id).collect::<Vec<_>>();
    let everything = ids(store.products(None, None, 1000).await.expect("listed"));
    let mut sorted = everything.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(everything, sorted, "in id order, each once");
    assert!(everything.len() >= 4, "{everything:?}");

    // Page by page, each after the last id of the one before: the same list.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ids(store.products(after.as_deref(), None, 2).await.expect("a page"));
        assert!(page.len() <= 2);
        let Some(last) = page.last().cloned() else { break };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, everything);

    let search =
        |text: &'static str| async move { ids(store.products(None, Some(text), 100).await.expect("searched")) };
    assert_eq!(search("BLUE").await, ["Q1"], "names, ignoring case");
    assert_eq!(search("cup").await, ["Q3"]);
    assert_eq!(search("q2").await, ["Q2"], "ids, ignoring case");
    assert_eq!(search("%").await, ["Q2"], "% is a plain character");
    assert_eq!(search("_").await, ["Q2"], "_ is a plain character");
    assert_eq!(search("\\").await, ["Q4"], "\\ is a plain character");
    assert_eq!(search("nothing like it").await, Vec::<String>::new());
    let after_q1 = ids(store.products(Some("Q1"), Some("q"), 100).await.expect("searched"));
    assert_eq!(after_q1, ["Q2", "Q3", "Q4"], "search and cursor together");
}

async fn register_and_load(store: &impl InventoryStore) {
    register(store, &product("A", 10)).await.expect("registered");
    register(store, &product("B", 5)).await.expect("registered");
    assert!(matches!(
        register(store, &product("A", 99)).await,
        Err(StoreError::Conflict(_))
    ));
    let ids = ["A".to_owned(), "B".to_owned(), "GHOST".to_owned()];
    let state = store.load(&ids, Some("no-such-order")).await.expect("loaded");
    assert_eq!(state.products, vec![product("A", 10), product("B", 5)]);
    assert_eq!(state.reservation, None);
    assert_eq!(store.product("A").await, Ok(Some(product("A", 10))));
    assert_eq!(store.product("GHOST").await, Ok(None));
}

async fn a_stale_version_conflicts_and_writes_nothing(store: &impl InventoryStore) {
    let ids = ["A".to_owned(), "B".to_owned()];
    let before = store.load(&ids, None).await.expect("loaded");
    let after = InventoryState {
        products: before.products.iter().map(|p| reserved(p, 1)).collect(),
        reservation: None,
    };
    let movements = [movement("A", MovementKind::Reserve, 1, Some("o-x"))];
    let write = InventoryWrite {
        before: &before,
        after: &after,
        movements: &movements,
        events: &[],
        actor: &OPS,
        audit: &[],
    };
    store.write(write).await.expect("first writer wins");
    let head = store.head().await.expect("head");
    // The second writer read the same versions: it must change nothing,
    // not even the product it would reach first.
    assert!(matches!(store.write(write).await, Err(StoreError::Conflict(_))));
    let now = store.load(&ids, None).await.expect("loaded");
    assert_eq!(now.products, after.products);
    let trail = store.movements("A", 0, 100).await.expect("movements");
    assert_eq!(trail.len(), 2, "initial and one reserve, not two");
    assert_eq!(store.head().await.expect("head"), head, "nor its audit record");
    assert_ne!(head, ChainHead::default());
}

async fn the_store_refuses_negative_or_unbalanced_stock(store: &impl InventoryStore) {
    let ids = ["B".to_owned()];
    let before = store.load(&ids, None).await.expect("loaded");
    let b = &before.products[0];
    for broken in [
        // More reserved than there was: available goes negative.
        reserved(b, b.available + 1),
        // Units out of nowhere: conservation broken.
        ProductStock {
            available: b.available + 7,
            version: b.version + 1,
            ..b.clone()
        },
        ProductStock {
            reserved: -1,
            available: b.available + 1,
            version: b.version + 1,
            ..b.clone()
        },
    ] {
        let after = InventoryState {
            products: vec![broken.clone()],
            reservation: None,
        };
        let write = InventoryWrite {
            before: &before,
            after: &after,
            movements: &[],
            events: &[],
            actor: &OPS,
            audit: &[],
        };
        assert!(
            matches!(store.write(write).await, Err(StoreError::Refused(_))),
            "{broken:?} must be refused"
        );
    }
    assert_eq!(store.load(&ids, None).await.expect("loaded"), before, "nothing written");
}

async fn reservations_are_fenced_by_their_status(store: &impl InventoryStore) {
    let none = InventoryState::default();
    let with = |r: Reservation| InventoryState {
        products: vec![],
        reservation: Some(r),
    };
    let write = |before, after| InventoryWrite {
        before,
        after,
        movements: &[],
        events: &[],
        actor: &OPS,
        audit: &[],
    };
    let held = with(reservation("o-r", ReservationStatus::Reserved));
    store.write(write(&none, &held)).await.expect("reserved");
    // A release that read "no reservation" (it overtook the reserve) loses.
    let voided = with(reservation("o-r", ReservationStatus::Released));
    assert!(matches!(
        store.write(write(&none, &voided)).await,
        Err(StoreError::Conflict(_))
    ));
    // Two writers that read the same reservation: only the first applies.
    let deducted = with(reservation("o-r", ReservationStatus::Deducted));
    store.write(write(&held, &deducted)).await.expect("deducted");
    assert!(matches!(
        store.write(write(&held, &voided)).await,
        Err(StoreError::Conflict(_))
    ));
    let state = store.load(&[], Some("o-r")).await.expect("loaded");
    assert_eq!(state.reservation, Some(reservation("o-r", ReservationStatus::Deducted)));
    assert_eq!(store.reservation("o-r").await, Ok(state.reservation));
}

/// An order has one reservation: writing another for it (a redelivered
/// reservation request) is a conflict and writes nothing.
async fn an_order_is_reserved_once(store: &impl InventoryStore) {
    let none = InventoryState::default();
    let after = InventoryState {
        products: vec![],
        reservation: Some(reservation("o-h", ReservationStatus::Rejected)),
    };
    let write = InventoryWrite {
        before: &none,
        after: &after,
        movements: &[],
        events: &[],
        actor: &OPS,
        audit: &[],
    };
    store.write(write).await.expect("recorded");
    let again = InventoryState {
        products: vec![],
        reservation: Some(reservation("o-h", ReservationStatus::Reserved)),
    };
    assert!(matches!(
        store.write(InventoryWrite { after: &again, ..write }).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.reservation("o-h").await, Ok(after.reservation.clone()));
}

async fn movements_page_oldest_first(store: &impl InventoryStore) {
    register(store, &product("P", 3)).await.expect("registered");
    let mut before = store.load(&["P".to_owned()], None).await.expect("loaded");
    for n in 0..3 {
        let after = InventoryState {
            products: vec![reserved(&before.products[0], 1)],
            reservation: None,
        };
        let order = format!("o-{n}");
        let reason = (n == 2).then(|| "a \"quoted\" reason".to_owned());
        let movements = [Movement {
            reason,
            ..movement("P", MovementKind::Reserve, 1, Some(&order))
        }];
        let actor = Actor::saga("reserve", format!("corr-{n}"));
        let write = InventoryWrite {
            before: &before,
            after: &after,
            movements: &movements,
            events: &[],
            actor: &actor,
            audit: &[],
        };
        store.write(write).await.expect("reserved");
        before = after;
    }
    let first = store.movements("P", 0, 2).await.expect("page");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].movement, movement("P", MovementKind::Initial, 3, None));
    assert_eq!(first[0].actor.as_deref(), Some("ops"));
    assert_eq!(first[1].movement.order_id.as_deref(), Some("o-0"));
    assert_eq!(
        first[1].actor.as_deref(),
        Some("saga:reserve"),
        "each movement names its actor"
    );
    assert_eq!(first[1].request_id.as_deref(), Some("corr-0"));
    let rest = store.movements("P", first[1].seq, 10).await.expect("page");
    let orders: Vec<_> = rest
        .iter()
        .map(|m| m.movement.order_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(orders, ["o-1", "o-2"]);
    assert_eq!(rest[1].movement.reason.as_deref(), Some("a \"quoted\" reason"));
    assert!(rest[0].seq > first[1].seq, "numbers grow");
    // The movements are the audit chain's entries, each as `movement_record` writes it.
    let query = AuditQuery {
        target: Some("product:P"),
        limit: 10,
        ..AuditQuery::default()
    };
    let audited = store.entries(query).await.expect("audit entries");
    let records: Vec<_> = audited.iter().map(|e| e.record.clone()).collect();
    let trail = store.movements("P", 0, 10).await.expect("page");
    let kept: Vec<_> = trail
        .iter()
        .zip(&records)
        .map(|(m, record)| {
            let (actor, request) = (m.actor.clone(), m.request_id.clone());
            let actor = Actor::new(actor.unwrap_or_default(), &record.role, request.unwrap_or_default());
            movement_record(&m.movement, &actor)
        })
        .collect();
    assert_eq!(records, kept, "one audit entry per movement, and nothing else");
    let numbers: Vec<_> = audited.iter().map(|e| e.seq).collect();
    assert_eq!(
        numbers,
        trail.iter().map(|m| m.seq).collect::<Vec<_>>(),
        "numbered as the chain is"
    );
    assert!(store.movements("GHOST", 0, 10).await.expect("page").is_empty());
}

/// A reservation of `quantity` units of `from`'s first product for `order`.
struct Step {
    before: InventoryState,
    after: InventoryState,
    movements: Vec<Movement>,
}

impl Step {
    fn reserve(from: &InventoryState, order: &str, quantity: i64) -> Self {
        let before = InventoryState {
            products: from.products.clone(),
            reservation: None,
        };
        let after = InventoryState {
            products: vec![reserved(&from.products[0], quantity)],
            reservation: Some(Reservation {
                order_id: order.to_owned(),
                status: ReservationStatus::Reserved,
                lines: vec![StockLine {
                    product_id: from.products[0].product_id.clone(),
                    quantity,
                }],
            }),
        };
        let movements = vec![movement(
            &from.products[0].product_id,
            MovementKind::Reserve,
            quantity,
            Some(order),
        )];
        Self {
            before,
            after,
            movements,
        }
    }

    fn write(&self) -> InventoryWrite<'_> {
        InventoryWrite {
            before: &self.before,
            after: &self.after,
            movements: &self.movements,
            events: &[],
            actor: &OPS,
            audit: &[],
        }
    }
}

async fn many_writes_commit_together_or_not_at_all(store: &impl InventoryStore) {
    register(store, &product("M", 10)).await.expect("registered");
    let ids = ["M".to_owned()];
    let start = store.load(&ids, None).await.expect("loaded");
    let first = Step::reserve(&start, "o-m1", 2);
    let second = Step::reserve(&first.after, "o-m2", 3);
    store
        .write_many(&[first.write(), second.write()])
        .await
        .expect("both written");
    let now = store.load(&ids, None).await.expect("loaded");
    assert_eq!(now.products, second.after.products, "the last write's product");
    assert_eq!((now.products[0].available, now.products[0].reserved), (5, 5));
    for (step, order) in [(&first, "o-m1"), (&second, "o-m2")] {
        assert_eq!(store.reservation(order).await, Ok(step.after.reservation.clone()));
    }
    let asked = ["o-m2", "absent", "o-m1"].map(String::from);
    let mut found = store.reservations(&asked).await.expect("read");
    found.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let made = [&first, &second].map(|step| step.after.reservation.clone());
    assert_eq!(
        found,
        made.into_iter().flatten().collect::<Vec<_>>(),
        "those that exist, at once"
    );
    let moved = store.movements("M", 0, 10).await.expect("page");
    let orders: Vec<_> = moved.iter().filter_map(|m| m.movement.order_id.clone()).collect();
    assert_eq!(orders, ["o-m1", "o-m2"], "movements in order");

    // Writes that do not follow one another, or a reservation that exists
    // already (a redelivered request): conflicts, and nothing written of any.
    let third = Step::reserve(&now, "o-m3", 1);
    let stale = Step::reserve(&now, "o-m5", 1);
    assert!(matches!(
        store.write_many(&[third.write(), stale.write()]).await,
        Err(StoreError::Conflict(_))
    ));
    let twice = Step::reserve(&third.after, "o-m1", 1);
    assert!(matches!(
        store.write_many(&[third.write(), twice.write()]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.load(&ids, None).await.expect("loaded"), now, "nothing written");
    for order in ["o-m3", "o-m5"] {
        assert_eq!(store.reservation(order).await, Ok(None));
    }
    assert_eq!(store.reservation("o-m1").await, Ok(first.after.reservation.clone()));
}

/// Two movements as an earlier release kept them in a table of their own,
/// as SQL `VALUES` rows of `(product_id, kind, quantity, order_id, reason,
/// at, actor, request_id)`: one from before the audit log (no actor), one
/// from after it (its audit entry [`trail_after_the_upgrade`] appends).
/// A store's upgrade test inserts them before running the migration that
/// keeps movements in the audit log.
pub const MOVEMENTS_BEFORE_THE_UPGRADE: &str = "('SKU-L', 'initial', 5, NULL, NULL, 1, NULL, NULL),
     ('SKU-L', 'reserve', 1, 'o-1', NULL, 2, 'saga:reserve', 'corr-1')";

/// Checks the trail of a store upgraded from one that held
/// [`MOVEMENTS_BEFORE_THE_UPGRADE`]: what only the old table held comes
/// first, each movement comes once, and the numbers keep growing.
pub async fn trail_after_the_upgrade(store: &impl InventoryStore) {
    let reserve = Movement {
        product_id: "SKU-L".into(),
        kind: MovementKind::Reserve,
        quantity: 1,
        order_id: Some("o-1".into()),
        reason: None,
        at: 2,
    };
    let audited = movement_record(&reserve, &Actor::saga("reserve", "corr-1"));
    store.append(&[audited]).await.expect("the second's audit entry");

    let trail = store.movements("SKU-L", 0, 10).await.expect("the trail");
    let seen: Vec<_> = trail
        .iter()
        .map(|m| (m.seq, m.movement.kind, m.actor.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, MovementKind::Initial, None),
            (2, MovementKind::Reserve, Some("saga:reserve"))
        ],
        "the old one first, then the audited one, once"
    );
    assert_eq!(trail[1].movement, reserve);
    assert_eq!(store.movements("SKU-L", 1, 10).await.expect("page").len(), 1);
    assert!(store.movements("SKU-L", 2, 10).await.expect("page").is_empty());
}
