//! `shop serve --role all` as a process: it runs the saga and tells
//! Prometheus what it did.

mod common;

use std::time::Duration;

use common::{Desk, RoleProcess, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_process_runs_the_saga_and_exposes_its_metrics() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('m').await;
    let desk = Desk::open(store, &namespace).await;
    let shop = RoleProcess::start("all", &url, namespace.as_str(), &[]);
    let live = shop.get("/health/live").await;
    assert_eq!(live.trim(), "ok");
    let ready: serde_json::Value = serde_json::from_str(&shop.get("/health/ready").await).expect("JSON");
    assert_eq!(ready["status"], "ready", "{ready}");
    for check in ["database", "event bus", "redis"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }

    desk.register("SKU-M", 3).await;
    desk.priced("SKU-M", Duration::from_secs(30)).await;
    for n in 0..5 {
        desk.place(&format!("m-{n}"), "SKU-M", 1).await;
    }
    desk.settled(Duration::from_secs(30)).await;
    assert_eq!(desk.orders_in("CONFIRMED").await, 3);
    assert_eq!(desk.orders_in("CANCELLED").await, 2);

    let metrics = shop.get("/metrics").await;
    let value = |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("{name} missing in\n{metrics}"));
    assert_eq!(value("shop_orders_confirmed_total"), 3.0);
    assert_eq!(value("shop_orders_cancelled_total{reason=\"insufficient_stock\"}"), 2.0);
    assert_eq!(
        value("shop_handler_seconds_count{context=\"inventory\",event_type=\"OrderCreated\"}"),
        5.0,
        "each OrderCreated handled once"
    );
    // The order side handles inventory's answers to the orders.
    assert!(value("shop_handler_seconds_count{context=\"order\",event_type=\"StockReserved\"}") >= 3.0);
    assert!(value("shop_rule_call_seconds_count{rule=\"inventory\"}") >= 5.0);
    assert!(value("shop_rule_call_seconds_count{rule=\"order\"}") >= 5.0);
    // Reservations arriving together share a lock and a commit.
    assert!(
        value("shop_lock_wait_seconds_count") >= 1.0,
        "the products locked to reserve"
    );
    assert!(
        value("shop_lock_wait_seconds_count") <= 5.0,
        "no more than a lock per reservation"
    );
    assert_eq!(value("shop_inventory_messages_one_by_one_total"), 0.0);
    // Sampled gauges: present once the relay and the consumer have counted.
    for gauge in [
        "shop_outbox_backlog{context=\"order\"}",
        "shop_consumer_lag{context=\"inventory\"}",
    ] {
        assert!(sample(&metrics, gauge).is_some(), "{gauge} missing in\n{metrics}");
    }
    assert_eq!(
        value("shop_dead_letters_total{context=\"inventory\"}"),
        0.0,
        "nothing dead-lettered"
    );
    // The shipped Grafana dashboard asks only for metrics that exist.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/shop.json"))
        .expect("the dashboard");
    let mut asked = 0;
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(name) = word.strip_prefix("shop_") {
            let family = ["_bucket", "_total"]
                .iter()
                .fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            asked += 1;
            assert!(
                metrics.contains(&format!("# TYPE shop_{family} ")),
                "the dashboard asks for shop_{name}, which is not exposed"
            );
        }
    }
    assert!(asked >= 8, "the dashboard queries the shop's metrics");
    shop.kill();
    let _ = bus.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_dependencies_while_liveness_does_not() {
    use shop_testkit::TcpProxy;

    let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('h').await;
    let redis = TcpProxy::start(([127, 0, 0, 1], 6379).into()).await.expect("proxy");
    let redis_url = format!("redis://{}", redis.addr());
    let shop = RoleProcess::start("all", &url, namespace.as_str(), &[("SHOP_REDIS_URL", &redis_url)]);
    let ready = |addr| async move { common::http(addr, "GET", "/health/ready", &[], b"").await };
    assert_eq!(ready(shop.addr).await.status, 200);

    redis.cut();
    let down = ready(shop.addr).await;
    assert_eq!(down.status, 503, "{}", down.body);
    let report = down.json();
    assert_eq!(report["status"], "unavailable");
    assert_ne!(report["checks"]["redis"], "ok", "{report}");
    assert_eq!(report["checks"]["database"], "ok", "{report}");
    assert_eq!(shop.get("/health/live").await.trim(), "ok", "alive all the same");

    redis.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while ready(shop.addr).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready again after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shop.kill();
    let _ = bus.delete_streams().await;
}
