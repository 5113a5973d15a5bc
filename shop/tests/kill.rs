//! SIGKILL of the inventory role mid-run, then a restart: every accepted
//! order still settles, and no unit is lost or counted twice. Runs the real
//! `shop serve --role inventory` process against PostgreSQL, JetStream and
//! Redis on 127.0.0.1; the order side runs in the test.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_postgres::Schema;
use shop_adapter_redis::RedisLock;
use shop_rules::inventory::{InventoryCommand, RegisterProduct};
use shop_rules::order::LineRequest;
use shop_runtime::ports::{EventBus, InventoryStore, OrderStore, SystemClock};
use shop_runtime::rules::{Capabilities, RuleHost, RuleSettings};
use shop_runtime::saga::consumer::{ConsumerSettings, run_consumer};
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::{NewOrder, OrderService};
use shop_runtime::saga::relay::{RelaySettings, run_relay};
use shop_streams::{Context, Namespace, Topology, Trace};
use tokio::sync::watch;
use uuid::Uuid;

const ORDERS: usize = 300;

fn inventory_role(database_url: &str, namespace: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "--role", "inventory"])
        .env("SHOP_DATABASE_URL", database_url)
        .env("SHOP_NAMESPACE", namespace)
        .env("SHOP_RULES_CACHE", "off")
        .env("SHOP_INSTANCE_ID", format!("{namespace}-inventory"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the shop binary starts")
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_inventory_role_loses_nothing_after_restart() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let simple = Uuid::now_v7().simple().to_string();
    let namespace = Namespace::new(&format!("k{}", &simple[simple.len() - 12..])).expect("valid");
    let bus = JetStreamBus::connect("nats://127.0.0.1:4222", Topology::new(namespace.clone()))
        .await
        .expect("NATS is reachable");
    let clock = Arc::new(SystemClock);
    let capabilities = Capabilities {
        clock: clock.clone(),
        kv: Arc::new(shop_adapter_memory::MemoryKeyValue::new()),
        namespace: namespace.to_string(),
    };
    let settings = RuleSettings {
        builtin: shop_rules_bundle::default_sources(),
        ..RuleSettings::default()
    };
    let rules = Arc::new(RuleHost::start(settings, capabilities).expect("rules load"));

    // The order side, in this process.
    let orders = Arc::new(OrderService::new(store.clone(), rules.clone(), clock.clone()));
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(run_relay(
        store.outbox(Schema::Orders),
        bus.clone(),
        RelaySettings::named("test-orders"),
        stopped.clone(),
    ));
    let subscription = bus.subscribe(Context::Order).await.expect("subscribe");
    tokio::spawn(run_consumer(
        subscription,
        ConsumerSettings::default(),
        orders.clone(),
        stopped,
    ));

    // The product, registered through the inventory rules (its event reaches
    // the order side once the inventory role relays it).
    let lock = RedisLock::connect("redis://127.0.0.1:6379")
        .await
        .expect("Redis is reachable");
    let admin = InventoryService::new(store.clone(), lock, rules, clock, namespace.clone());
    let register = InventoryCommand::RegisterProduct(RegisterProduct {
        product_id: "SKU-K".into(),
        name: "Kettle".into(),
        unit_price: 3000,
        currency: "KRW".into(),
        initial_stock: 1000,
    });
    admin
        .admin(register, Trace::root(Uuid::now_v7()))
        .await
        .expect("registered");

    let mut role = inventory_role(&url, namespace.as_str());
    let ids = ["SKU-K".to_owned()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.catalogue(&ids).await.map(|c| c.is_empty()).unwrap_or(true) {
        assert!(
            Instant::now() < deadline,
            "the inventory role never published the product"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let place = |n: usize| {
        let orders = orders.clone();
        async move {
            let new = NewOrder {
                order_id: format!("k-{n}"),
                customer_id: "carol".into(),
                lines: vec![LineRequest {
                    product_id: "SKU-K".into(),
                    quantity: 1,
                }],
            };
            orders.place(new, Trace::root(Uuid::now_v7())).await.expect("accepted");
        }
    };
    for n in 0..ORDERS / 2 {
        place(n).await;
    }
    // Kill it while it works through them, then start it again.
    while count(
        store.pool(),
        "SELECT count(*) FROM orders.orders WHERE status = 'CONFIRMED'",
    )
    .await
        < 20
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    role.kill().expect("SIGKILL");
    role.wait().expect("reaped");
    for n in ORDERS / 2..ORDERS {
        place(n).await;
    }
    let mut role = inventory_role(&url, namespace.as_str());

    // Unacknowledged messages come back after the consumer's ack wait (30 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    while count(
        store.pool(),
        "SELECT count(*) FROM orders.orders WHERE status = 'PENDING'",
    )
    .await
        != 0
    {
        assert!(Instant::now() < deadline, "orders still pending after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    role.kill().expect("stopped");
    let _ = role.wait();
    let _ = stop.send(true);

    let confirmed = count(
        store.pool(),
        "SELECT count(*) FROM orders.orders WHERE status = 'CONFIRMED'",
    )
    .await;
    assert_eq!(confirmed, ORDERS as i64, "every order confirmed: stock was plenty");
    let product = store.product("SKU-K").await.expect("readable").expect("exists");
    assert!(product.is_conserved(), "{product:?}");
    assert_eq!(
        (product.available, product.reserved),
        (1000 - ORDERS as i64, ORDERS as i64),
        "no unit lost or counted twice"
    );
    let reserves = count(
        store.pool(),
        "SELECT count(*) FROM inventory.movements WHERE product_id = 'SKU-K' AND kind = 'reserve'",
    )
    .await;
    assert_eq!(reserves, ORDERS as i64, "one reserve per order in the audit trail");
    let _ = bus.delete_streams().await;
}
