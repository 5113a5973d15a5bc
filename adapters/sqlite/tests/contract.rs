//! The store, outbox and event bus contracts against the embedded SQLite
//! adapters, each test on a database file of its own.

use shop_adapter_sqlite::{SqliteBus, SqliteStore};
use shop_rules::order::{OrderEvent, OrderTransition};
use shop_runtime::ports::contracts;
use shop_runtime::ports::{BusError, Delivery, EventBus, Subscription};
use shop_streams::{Context, Namespace, Reader, Topology};

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open_in(dir.path()).await.expect("opened and migrated");
    (store, dir)
}

fn topology() -> Topology {
    Topology::new(Namespace::new("embedded").expect("valid"))
}

#[tokio::test]
async fn order_store_contract() {
    let (store, _dir) = fresh().await;
    contracts::order_store::run(&store, &store.outbox(Context::Order)).await;
}

#[tokio::test]
async fn customer_keys_contract() {
    let (store, _dir) = fresh().await;
    contracts::customer_keys::run(&store).await;
}

#[tokio::test]
async fn inventory_store_contract() {
    let (store, _dir) = fresh().await;
    contracts::inventory_store::run(&store).await;
}

#[tokio::test]
async fn audit_log_contract() {
    let (store, _dir) = fresh().await;
    contracts::audit_log::run(&store).await;
}

#[tokio::test]
async fn the_audit_log_refuses_every_change_but_an_append() {
    let (store, _dir) = fresh().await;
    let record = shop_runtime::audit::Actor::new("ops", "admin", "r-1").did(
        "inventory",
        "stock.restock",
        "product:A".into(),
        1,
        &1,
    );
    shop_runtime::ports::AuditLog::append(&store, &[record])
        .await
        .expect("appended");
    for sql in [
        "UPDATE audit_entries SET actor = 'mallory'",
        "DELETE FROM audit_entries",
        "UPDATE audit_heads SET seq = 0",
        "DELETE FROM audit_heads",
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await;
        let error = refused.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
}

/// The bundled SQLite is built as `.cargo/config.toml` asks: without its
/// memory-use statistics, whose one mutex every allocation in every
/// connection took.
#[tokio::test]
async fn sqlite_keeps_no_memory_statistics() {
    let (store, _dir) = fresh().await;
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(store.pool())
        .await
        .expect("compile options");
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
}

#[tokio::test]
async fn api_key_store_contract() {
    let (store, _dir) = fresh().await;
    contracts::api_keys::run(&store.api_keys(), &store).await;
}

#[tokio::test]
async fn rule_store_contract() {
    let (store, _dir) = fresh().await;
    contracts::rule_store::run(&store.rules()).await;
}

#[tokio::test]
async fn order_outbox_contract() {
    let (store, _dir) = fresh().await;
    contracts::outbox::run(&store, &store.outbox(Context::Order)).await;
}

#[tokio::test]
async fn event_bus_contract() {
    let (store, _dir) = fresh().await;
    let bus = SqliteBus::new(&store, topology().with_payment());
    let max_deliver = bus.topology().consumer(Context::Inventory).max_deliver;
    contracts::bus::run(&bus, u64::try_from(max_deliver).expect("positive")).await;
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_without_blocking_the_next() {
    let (store, _dir) = fresh().await;
    let bus = SqliteBus::new(&store, topology());
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    bus.publish_raw("embedded.order.OrderCreated", b"not json at all")
        .await
        .expect("published");
    let batch = inventory
        .next_batch(10, std::time::Duration::from_millis(200))
        .await
        .expect("pull");
    assert!(batch.is_empty());
    assert_eq!(inventory.take_dead_lettered(), 1);
    let letters = bus.dead_letters(10).await.expect("listed");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("not an event envelope"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].body, b"not json at all");
}

#[tokio::test]
async fn the_database_itself_refuses_negative_stock() {
    let (store, _dir) = fresh().await;
    let refused = sqlx::query(
        "INSERT INTO inventory_products
         (product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted, deducted, version)
         VALUES ('X', 'x', 1, 'KRW', -1, 1, 0, 0, 0, 0, 1)",
    )
    .execute(store.pool())
    .await;
    let error = refused.expect_err("CHECK constraint");
    assert!(error.to_string().contains("CHECK constraint failed"), "{error}");
}

#[tokio::test]
async fn a_reopened_database_keeps_everything() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open_in(dir.path()).await.expect("opened");
    let bus = SqliteBus::new(&store, topology());
    bus.publish_raw("embedded.order.OrderCreated", b"{}")
        .await
        .expect("published");
    store.pool().close().await;
    let reopened = SqliteStore::open_in(dir.path())
        .await
        .expect("reopened, migrations not rerun");
    let mut inventory = SqliteBus::new(&reopened, topology())
        .subscribe(Reader::Inventory)
        .await
        .expect("subscribe");
    assert_eq!(
        inventory.lag().await.expect("lag"),
        1,
        "the message outlived the process"
    );
}

/// The one number `sql` answers, read on the store's writer.
async fn number(store: &SqliteStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.pool()).await.expect(sql)
}

async fn page_size(store: &SqliteStore) -> i64 {
    number(store, "PRAGMA page_size").await
}

#[tokio::test]
async fn a_database_made_with_smaller_pages_keeps_them_and_works() {
    let (store, _dir) = fresh().await;
    assert_eq!(page_size(&store).await, 16 * 1024, "a new database's pages");
    // A file made before pages grew, as an earlier release left it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("shop.db");
    let earlier = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .page_size(4096)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let mut connection = sqlx::ConnectOptions::connect(&earlier).await.expect("created");
    sqlx::query("CREATE TABLE earlier (id INTEGER PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .expect("written");
    sqlx::Connection::close(connection).await.expect("closed");
    let store = SqliteStore::open_in(dir.path()).await.expect("opened and migrated");
    assert_eq!(page_size(&store).await, 4096, "an existing file keeps its pages");
    contracts::order_store::run(&store, &store.outbox(Context::Order)).await;
}

#[tokio::test]
async fn the_next_process_delivers_again_what_a_stopped_one_left_unsettled() {
    let (store, _dir) = fresh().await;
    let bus = SqliteBus::new(&store, topology());
    let events: Vec<_> = (0..3).map(|i| completed(&format!("o-{i}"))).collect();
    bus.publish(&contracts::encoded(&events)).await.expect("published");
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let mut taken = inventory
        .next_batch(2, std::time::Duration::from_millis(50))
        .await
        .expect("pulled");
    assert_eq!(taken.len(), 2);
    // The second is handled; the first is held when the process "dies".
    let second = taken.pop().expect("second");
    second.ack().await.expect("acked");
    drop(taken);
    let rest = inventory
        .next_batch(10, std::time::Duration::from_millis(50))
        .await
        .expect("pulled");
    let ids: Vec<_> = rest.iter().map(|d| d.envelope().event_id).collect();
    assert_eq!(ids, [events[2].event_id], "the held one is leased for the ack wait");
    drop(rest);

    // The next process on the file: at once, what the first held unsettled
    // as a redelivery, then what it read after its last acknowledgement was
    // stored; never what it acknowledged.
    let next = SqliteBus::new(&store, topology());
    assert!(
        matches!(next.subscribe(Reader::Inventory).await, Err(BusError::Refused(_))),
        "while the first consumes, no other may"
    );
    drop((bus, inventory));
    assert_eq!(
        handed_to_inventory(&next).await,
        [(events[0].event_id, 2), (events[2].event_id, 1)]
    );
}

/// A database file as the release before `version` left it, open on one
/// connection.
async fn made_before(dir: &std::path::Path, version: i64) -> sqlx::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("shop.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let mut connection = sqlx::ConnectOptions::connect(&options).await.expect("created");
    let mut earlier = sqlx::migrate!("./migrations");
    earlier.migrations = earlier
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    earlier.run(&mut connection).await.expect("the earlier schema");
    connection
}

async fn run_on(connection: &mut sqlx::SqliteConnection, statements: &[&'static str]) {
    for &statement in statements {
        sqlx::query(statement).execute(&mut *connection).await.expect(statement);
    }
}

/// What inventory is given at once, with each delivery's attempt.
async fn handed_to_inventory(bus: &SqliteBus) -> Vec<(uuid::Uuid, u64)> {
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let taken = inventory
        .next_batch(10, std::time::Duration::from_millis(50))
        .await
        .expect("pulled");
    taken.iter().map(|d| (d.envelope().event_id, d.attempt())).collect()
}

#[tokio::test]
async fn what_an_earlier_release_queued_is_delivered_after_the_upgrade() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut connection = made_before(dir.path(), 10).await;
    // Four messages for inventory, queued by that release's trigger: the
    // first and the fourth then acknowledged, the second leased once, the
    // third waiting (out a retry's delay, say).
    let topology = topology();
    let durable = topology.consumer(Reader::Inventory).durable;
    let events: Vec<_> = (0..4).map(|i| completed(&format!("o-{i}"))).collect();
    for event in &events {
        sqlx::query(
            "INSERT INTO bus_messages (msg_id, subject, body, consumers, published_at) VALUES (?1, ?2, ?3, ?4, 0)",
        )
        .bind(event.event_id.to_string())
        .bind(topology.subject(Context::Order, &event.event_type))
        .bind(serde_json::to_vec(event).expect("encoded"))
        .bind(serde_json::json!([durable]).to_string())
        .execute(&mut connection)
        .await
        .expect("stored and queued");
    }
    run_on(
        &mut connection,
        &[
            "DELETE FROM bus_pending WHERE seq IN (1, 4)",
            "UPDATE bus_pending SET deliveries = 1, visible_at = 9e15 WHERE seq = 2",
            "UPDATE bus_pending SET visible_at = 9e15 WHERE seq = 3",
        ],
    )
    .await;
    sqlx::Connection::close(connection).await.expect("closed");

    let store = SqliteStore::open_in(dir.path()).await.expect("opened and migrated");
    let bus = SqliteBus::new(&store, topology);
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    assert_eq!(inventory.lag().await.expect("lag"), 1, "the one never delivered waits");
    drop(inventory);
    assert_eq!(
        handed_to_inventory(&bus).await,
        [(events[1].event_id, 2), (events[2].event_id, 1)],
        "the leased one again, the waiting one for the first time; the acknowledged ones never"
    );
    // Pruning keeps them: they are held.
    assert_eq!(bus.prune(i64::MAX, 100).await.expect("pruned"), 1, "the first only");
}

#[tokio::test]
async fn what_was_queued_before_messages_named_their_consumers_is_delivered_too() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut connection = made_before(dir.path(), 9).await;
    let topology = topology();
    let durable = topology.consumer(Reader::Inventory).durable;
    let event = completed("o-1");
    sqlx::query("INSERT INTO bus_messages (msg_id, subject, body, published_at) VALUES (?1, ?2, ?3, 0)")
        .bind(event.event_id.to_string())
        .bind(topology.subject(Context::Order, &event.event_type))
        .bind(serde_json::to_vec(&event).expect("encoded"))
        .execute(&mut connection)
        .await
        .expect("stored");
    sqlx::query("INSERT INTO bus_pending (consumer, seq) VALUES (?1, 1)")
        .bind(&durable)
        .execute(&mut connection)
        .await
        .expect("queued");
    sqlx::Connection::close(connection).await.expect("closed");

    let store = SqliteStore::open_in(dir.path()).await.expect("opened and migrated");
    let bus = SqliteBus::new(&store, topology);
    assert_eq!(
        bus.prune(i64::MAX, 100).await.expect("pruned"),
        0,
        "still for inventory"
    );
    assert_eq!(handed_to_inventory(&bus).await, [(event.event_id, 1)]);
}

#[tokio::test]
async fn delivery_counts_and_dead_letters_outlive_the_process() {
    let (store, _dir) = fresh().await;
    let (doomed, poison) = (completed("o-doomed"), completed("o-poison"));
    let bus = SqliteBus::new(&store, topology());
    bus.publish(&contracts::encoded(&[doomed.clone(), poison.clone()]))
        .await
        .expect("published");
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    for attempt in 1..=2 {
        for delivery in inventory
            .next_batch(10, std::time::Duration::from_millis(50))
            .await
            .expect("pulled")
        {
            assert_eq!(delivery.attempt(), attempt);
            if attempt == 2 && delivery.envelope() == &poison {
                // The last thing the process does.
                delivery.dead_letter("no handler for this test").await.expect("kept");
            } else {
                delivery.retry(std::time::Duration::ZERO).await.expect("handed back");
            }
        }
    }
    drop((bus, inventory));
    let next = SqliteBus::new(&store, topology());
    assert_eq!(
        handed_to_inventory(&next).await,
        [(doomed.event_id, 3)],
        "the count goes on; the dead letter stays one"
    );
    assert_eq!(next.dead_letters(10).await.expect("listed").len(), 1);
}

fn transition(event: fn(OrderTransition) -> OrderEvent, order_id: &str) -> shop_streams::Envelope {
    let event = event(OrderTransition {
        order_id: order_id.into(),
        at: 1,
    });
    contracts::order_envelope(event, 2, shop_streams::Trace::root(uuid::Uuid::now_v7()))
}

/// An order event the inventory reader handles.
fn completed(order_id: &str) -> shop_streams::Envelope {
    transition(OrderEvent::Completed, order_id)
}

#[tokio::test]
async fn a_reader_is_given_only_the_events_it_handles() {
    let (store, _dir) = fresh().await;
    let bus = SqliteBus::new(&store, topology());
    let confirmed = transition(OrderEvent::Confirmed, "o-1");
    let completed = completed("o-1");
    bus.publish(&contracts::encoded(&[confirmed.clone(), completed.clone()]))
        .await
        .expect("published");
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    assert_eq!(
        inventory.lag().await.expect("lag"),
        1,
        "a confirmation asks nothing of inventory"
    );
    let taken = inventory
        .next_batch(10, std::time::Duration::from_millis(50))
        .await
        .expect("pulled");
    let types: Vec<&str> = taken.iter().map(|d| d.envelope().event_type.as_str()).collect();
    assert_eq!(types, ["OrderCompleted"]);
    for delivery in taken {
        delivery.ack().await.expect("acked");
    }
    // Not stored at all: no consumer could ever be given it.
    assert_eq!(stored_messages(&store).await, 1);
    bus.publish(&contracts::encoded(std::slice::from_ref(&confirmed)))
        .await
        .expect("published again");
    bus.publish(&contracts::encoded(std::slice::from_ref(&completed)))
        .await
        .expect("published again");
    assert_eq!(stored_messages(&store).await, 1, "a duplicate stores nothing");
    assert_eq!(inventory.lag().await.expect("lag"), 0, "nor is it delivered again");
}

async fn stored_messages(store: &SqliteStore) -> i64 {
    number(store, "SELECT count(*) FROM bus_messages").await
}

#[tokio::test]
async fn pruning_removes_only_what_every_consumer_is_done_with() {
    let (store, _dir) = fresh().await;
    let bus = SqliteBus::new(&store, topology());
    let events: Vec<_> = (0..5).map(|i| completed(&format!("o-{i}"))).collect();
    bus.publish(&contracts::encoded(&events)).await.expect("published");
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let mut taken = inventory
        .next_batch(10, std::time::Duration::from_millis(50))
        .await
        .expect("pulled");
    assert_eq!(taken.len(), 5);
    // The first three are handled; the fourth is still being handled.
    let rest = taken.split_off(3);
    for delivery in taken {
        delivery.ack().await.expect("acked");
    }
    let later = i64::MAX;
    assert_eq!(bus.prune(later, 100).await.expect("pruned"), 3, "the acknowledged ones");
    assert_eq!(stored_messages(&store).await, 2);
    assert_eq!(
        bus.prune(later, 100).await.expect("pruned"),
        0,
        "nothing after a message still pending"
    );
    let mut rest = rest.into_iter();
    let fourth = rest.next().expect("fourth");
    fourth.retry(std::time::Duration::ZERO).await.expect("handed back");
    let again = inventory
        .next_batch(10, std::time::Duration::from_millis(50))
        .await
        .expect("pulled");
    assert_eq!(again.len(), 1, "a pending message survives pruning");
    assert_eq!(again[0].envelope().event_id, events[3].event_id);
    // Within the duplicate window nothing goes, however done with.
    for delivery in again.into_iter().chain(rest) {
        delivery.ack().await.expect("acked");
    }
    assert_eq!(bus.prune(0, 100).await.expect("pruned"), 0, "too young");
    assert_eq!(bus.prune(later, 100).await.expect("pruned"), 2);
    assert_eq!(stored_messages(&store).await, 0);
    // For the order side, which has settled nothing: kept, however old.
    bus.publish_raw("embedded.inventory.StockReserved", b"{}")
        .await
        .expect("published");
    assert_eq!(bus.prune(later, 100).await.expect("pruned"), 0);
    assert_eq!(stored_messages(&store).await, 1);
}

#[tokio::test]
async fn writers_queue_for_the_writer_while_reads_go_on() {
    use shop_rules::order::CataloguePrice;
    use shop_runtime::ports::{AuditLog, CatalogueEntry, OrderStore};
    use std::time::Duration;

    let (store, _dir) = fresh().await;
    // The writer's one connection, in the middle of a write.
    let mut open = store.pool().begin_with("BEGIN IMMEDIATE").await.expect("the writer");
    // Reads do not wait for it: they have connections of their own.
    let read = tokio::time::timeout(Duration::from_secs(2), store.get("o-1")).await;
    assert!(matches!(read, Ok(Ok(None))), "{read:?}");
    let head = tokio::time::timeout(Duration::from_secs(2), AuditLog::head(&store)).await;
    assert!(
        matches!(head, Ok(Ok(_))),
        "the audit log reads beside the writer too: {head:?}"
    );
    // Another write queues for the writer, and goes through once it is free.
    let entry = CatalogueEntry {
        price: CataloguePrice {
            product_id: "SKU-1".into(),
            unit_price: 500,
            currency: "EUR".into(),
        },
        source_version: 1,
    };
    let queued = tokio::spawn({
        let store = store.clone();
        async move { store.update_catalogue(&entry).await }
    });
    sqlx::query("SELECT 1").execute(&mut *open).await.expect("still ours");
    open.commit().await.expect("committed");
    queued
        .await
        .expect("the write ran")
        .expect("and was stored once the writer was free");
    let stored = store.catalogue(&["SKU-1".to_owned()]).await.expect("read");
    assert_eq!(stored.len(), 1);
}

/// The upgrade that keeps movements in the audit log
/// (0011_movements_in_audit.sql), from a database of the release before.
#[tokio::test]
async fn movements_from_before_the_audit_log_stay_first_in_the_trail() {
    use shop_runtime::ports::contracts::inventory_store::{MOVEMENTS_BEFORE_THE_UPGRADE, trail_after_the_upgrade};
    use sqlx::sqlite::SqliteConnectOptions;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("shop.db"))
        .create_if_missing(true);
    let earlier = sqlx::SqlitePool::connect_with(options).await.expect("a database file");
    sqlx::migrate!("./migrations")
        .run_to(10, &earlier)
        .await
        .expect("the migrations before it");
    let insert = format!(
        "INSERT INTO inventory_movements (product_id, kind, quantity, order_id, reason, at, actor, request_id)
         VALUES {MOVEMENTS_BEFORE_THE_UPGRADE}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
        .execute(&earlier)
        .await
        .expect("movements of an earlier release");
    earlier.close().await;
    let store = SqliteStore::open_in(dir.path()).await.expect("the upgrade");
    trail_after_the_upgrade(&store).await;
}
