//! SIGKILL of the inventory role mid-run, then a restart: every accepted
//! order still settles, and no unit is lost or counted twice. Runs the real
//! `shop serve --role inventory` process against PostgreSQL, JetStream and
//! Redis on 127.0.0.1; the order side runs in the test.

use crate::common;

use std::time::Duration;

use common::{Desk, RoleProcess};
use shop_adapter_postgres::Schema;
use shop_runtime::ports::{InventoryStore, Outbox};
use shop_runtime::saga::roles::{RoleSettings, Roles, STOP_GRACE};
use shop_testkit::TcpProxy;

const ORDERS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_inventory_role_loses_nothing_after_restart() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('k').await;
    let desk = Desk::open(store.clone(), &namespace).await;

    // The order side, in this process.
    let mut roles = Roles::new();
    roles
        .start_order(
            desk.orders.clone(),
            store.outbox(Schema::Orders),
            &bus,
            &RoleSettings::named("test"),
        )
        .await
        .expect("order role starts");

    desk.register("SKU-K", 1000).await;
    let role = RoleProcess::start("inventory", &url, namespace.as_str(), &[]);
    desk.priced("SKU-K", Duration::from_secs(30)).await;

    for n in 0..ORDERS / 2 {
        desk.place(&format!("k-{n}"), "SKU-K", 1).await;
    }
    // Kill it while it works through them, then start it again.
    while desk.orders_in("CONFIRMED").await < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    role.kill();
    for n in ORDERS / 2..ORDERS {
        desk.place(&format!("k-{n}"), "SKU-K", 1).await;
    }
    let role = RoleProcess::start("inventory", &url, namespace.as_str(), &[]);

    // Unacknowledged messages come back after the consumer's ack wait (30 s).
    desk.settled(Duration::from_secs(90)).await;
    role.kill();
    roles.stop().await;

    assert_eq!(
        desk.orders_in("CONFIRMED").await,
        ORDERS as i64,
        "every order confirmed: stock was plenty"
    );
    let product = store.product("SKU-K").await.expect("readable").expect("exists");
    assert!(product.is_conserved(), "{product:?}");
    assert_eq!(
        (product.available, product.reserved),
        (1000 - ORDERS as i64, ORDERS as i64),
        "no unit lost or counted twice"
    );
    let reserves: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.entries WHERE target = 'product:SKU-K' AND action = 'stock.reserve'",
    )
    .fetch_one(store.pool())
    .await
    .expect("countable");
    assert_eq!(reserves, ORDERS as i64, "one reserve per order in the audit trail");
    let _ = bus.delete_streams().await;
}

/// Found by the chaos runner: a role asked to stop while its broker link
/// accepts connections but carries nothing kept retrying its publish (one
/// ack timeout per event) and never exited. It must exit within its grace,
/// leaving the unpublished events in the outbox for the next relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_stopped_while_its_broker_is_silent_exits_within_its_grace() {
    const WAITING: usize = 50;
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('g').await;
    let desk = Desk::open(store.clone(), &namespace).await;
    common::price_directly(&store, "SKU-G", 3000).await;
    let link = TcpProxy::start(([127, 0, 0, 1], 4222).into()).await.expect("proxy");
    let nats_url = format!("nats://{}", link.addr());
    let mut role = RoleProcess::start("order", &url, namespace.as_str(), &[("SHOP_NATS_URL", &nats_url)]);

    link.cut();
    for n in 0..WAITING {
        desk.place(&format!("g-{n}"), "SKU-G", 1).await;
    }
    // Let the relay take them up and get stuck on the silent link.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let asked = std::time::Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &role.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGTERM delivered");
    let limit = STOP_GRACE + Duration::from_secs(5);
    let still_runs = format!("the role still runs {limit:?} after SIGTERM");
    let status = common::exit_by(&mut role.child, asked + limit, &still_runs).await;
    assert!(status.success(), "a clean exit: {status}");

    let backlog = store.outbox(Schema::Orders).backlog().await.expect("countable");
    assert_eq!(backlog, WAITING as u64, "every unconfirmed event stays in the outbox");
    assert_eq!(desk.orders_in("PENDING").await, WAITING as i64);
    drop(role);
    let _ = bus.delete_streams().await;
}
