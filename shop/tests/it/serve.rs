//! `shop serve --role all` as a process: it runs the saga and tells
//! Prometheus what it did.

use crate::common;

use std::time::Duration;

use common::{Desk, InProcess, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_process_runs_the_saga_and_exposes_its_metrics() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('m').await;
    let desk = Desk::open(store, &namespace).await;
    let shop = InProcess::start(shop::ProcessRole::All, &url, namespace.as_str(), &[]).await;
    let live = shop.get("/health/live").await;
    assert_eq!(live.trim(), "ok");
    // Anyone learns the status; only an admin which dependency says what.
    let anonymous: serde_json::Value = serde_json::from_str(&shop.get("/health/ready").await).expect("JSON");
    assert_eq!(anonymous, serde_json::json!({"status": "ready"}));
    let ready = common::ready_as_admin(shop.addr).await.json();
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
    // The rule components it runs, each by its hash (64 hex digits).
    for rule in ["order", "inventory"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("shop_rule_info{{name=\"{rule}\",version=\"0\",hash=\"")))
            .unwrap_or_else(|| panic!("shop_rule_info of {rule} missing in\n{metrics}"));
        let hash = line
            .split("hash=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        assert!(hash.len() == 64 && line.ends_with("} 1"), "{line}");
    }
    assert_eq!(value("shop_orders_cancelled_total{reason=\"insufficient_stock\"}"), 2.0);
    assert_eq!(
        value("shop_handler_seconds_count{context=\"inventory\",event_type=\"OrderCreated\"}"),
        5.0,
        "each OrderCreated handled once"
    );
    // The order side handles inventory's answers to the orders.
    assert!(value("shop_handler_seconds_count{context=\"order\",event_type=\"StockReserved\"}") >= 3.0);
    // A confirmation asks nothing of inventory, and none reaches it: it
    // reads each order event it handles through a consumer of its own.
    let topology = bus.topology();
    let stream = bus
        .jetstream()
        .get_stream(topology.stream(shop_streams::Context::Order).name)
        .await
        .expect("the order stream");
    let consumers = topology.consumers(shop_streams::Reader::Inventory);
    let expected = [("OrderCreated", 5), ("OrderCancelled", 2), ("OrderCompleted", 0)];
    assert_eq!(consumers.len(), expected.len());
    for (consumer, (event_type, orders)) in consumers.iter().zip(expected) {
        assert_eq!(consumer.event_type, Some(event_type));
        shop_testkit::eventually("the inventory consumers to settle every event they read", || async {
            let info = stream
                .clone()
                .consumer_info(&consumer.durable)
                .await
                .expect("consumer info");
            info.num_pending == 0 && info.num_ack_pending == 0
        })
        .await;
        let info = stream
            .clone()
            .consumer_info(&consumer.durable)
            .await
            .expect("consumer info");
        let delivered = info.delivered.consumer_sequence - info.num_redelivered as u64;
        assert_eq!(delivered, orders, "{event_type}: one delivery per order, nothing else");
    }
    let metrics = shop.get("/metrics").await;
    let handled = |event_type: &str| {
        sample(
            &metrics,
            &format!("shop_handler_seconds_count{{context=\"inventory\",event_type=\"{event_type}\"}}"),
        )
    };
    assert_eq!(handled("OrderConfirmed"), None, "{metrics}");
    assert_eq!(handled("OrderCreated"), Some(5.0));
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
    // The seed's message delay (commit to handled), per consuming context.
    assert!(value("shop_message_delay_seconds_count{context=\"inventory\"}") >= 5.0);
    assert!(value("shop_message_delay_seconds_count{context=\"order\"}") >= 5.0);
    assert!(value("shop_message_delay_seconds_sum{context=\"inventory\"}") < 30.0 * 5.0);
    // Sampled gauges: present once the relay and the consumer have counted.
    for gauge in [
        "shop_outbox_backlog{context=\"order\"}",
        "shop_outbox_oldest_age_seconds{context=\"order\"}",
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
            let family = ["_bucket", "_count", "_sum", "_total"]
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
    shop.stop().await;
    let _ = bus.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_dependencies_while_liveness_does_not() {
    use shop_testkit::TcpProxy;

    let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('h').await;
    let redis = TcpProxy::start(([127, 0, 0, 1], 6379).into()).await.expect("proxy");
    let redis_url = format!("redis://{}", redis.addr());
    // The test's database, reached through a proxy the test can cut.
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit('@').next()?.split('/').next())
        .expect("a database URL with a host")
        .to_owned();
    let target = tokio::net::lookup_host(&authority)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .expect("the database's address");
    let database = TcpProxy::start(target).await.expect("proxy");
    let url = url.replace(&authority, &database.addr().to_string());
    let env = [
        ("SHOP_REDIS_URL", redis_url.as_str()),
        ("SHOP_RATE_LIMIT_USER", "2/3"),
        ("SHOP_RATE_LIMIT_IP", "off"),
    ];
    let shop = InProcess::start(shop::ProcessRole::All, &url, namespace.as_str(), &env).await;
    let ready = |addr| async move { common::ready_as_admin(addr).await };
    assert_eq!(ready(shop.addr).await.status, 200);

    // Without Redis the instance still keeps its promise (limits and locks
    // fall back to per instance): ready, and degraded for whoever asks.
    redis.cut();
    let down = ready(shop.addr).await;
    assert_eq!(down.status, 200, "{}", down.body);
    let report = down.json();
    assert_eq!(report["status"], "degraded");
    assert_ne!(report["checks"]["redis"], "ok", "{report}");
    assert_eq!(report["checks"]["database"], "ok", "{report}");
    assert_eq!(shop.get("/health/live").await.trim(), "ok", "alive all the same");

    // Redis gone, the rate limit still holds: counted by this instance.
    let alice = common::token("alice", "customer");
    let list = || common::call(shop.addr, "GET", "/api/orders", Some(&alice), &[], "");
    for n in 0..3 {
        assert_eq!(list().await.status, 200, "request {n} of the burst");
    }
    let limited = list().await;
    assert_eq!(limited.status, 429, "over the limit without Redis: {}", limited.body);
    let metrics = shop.get("/metrics").await;
    let fallbacks = sample(&metrics, "shop_rate_limit_fallbacks_total").unwrap_or(0.0);
    assert!(fallbacks >= 4.0, "counted locally: {fallbacks}");

    redis.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while ready(shop.addr).await.json()["status"] != "ready" {
        assert!(
            std::time::Instant::now() < deadline,
            "not whole again after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without its database an instance can keep no promise: not ready.
    database.cut();
    let down = ready(shop.addr).await;
    assert_eq!(down.status, 503, "{}", down.body);
    let report = down.json();
    assert_eq!(report["status"], "unavailable", "{report}");
    assert_ne!(report["checks"]["database"], "ok", "{report}");
    assert_eq!(shop.get("/health/live").await.trim(), "ok", "alive all the same");
    database.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while ready(shop.addr).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready again after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shop.stop().await;
    let _ = bus.delete_streams().await;
}

/// On real services a role without its secrets refuses to start: exit code
/// 2 and one line naming the variable. The same secrets from files work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_on_real_services_refuses_to_start_without_its_secrets() {
    use std::process::{Command, Stdio};

    use common::{TEST_DATA_KEY, TEST_SECRET};

    let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let refused = |env: &[(&str, &str)]| -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["serve", "--role", "order", "--listen", "127.0.0.1:0"])
            .env("SHOP_DATABASE_URL", &url)
            .env_remove("SHOP_JWT_SECRET")
            .env_remove("SHOP_DATA_KEY")
            .env_remove("SHOP_JWT_PUBLIC_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("the shop binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        lines[0].to_owned()
    };
    let line = refused(&[]);
    assert!(line.contains("SHOP_JWT_SECRET is not set"), "{line}");
    let line = refused(&[("SHOP_JWT_SECRET", "short")]);
    assert!(line.contains("SHOP_JWT_SECRET must be at least 32 bytes"), "{line}");
    let line = refused(&[("SHOP_JWT_SECRET", TEST_SECRET)]);
    assert!(line.contains("SHOP_DATA_KEY is not set"), "{line}");
    let line = refused(&[("SHOP_JWT_SECRET", TEST_SECRET), ("SHOP_DATA_KEY", "not-hex")]);
    assert!(line.contains("SHOP_DATA_KEY must be 32 bytes"), "{line}");
    let line = refused(&[
        ("SHOP_JWT_SECRET", TEST_SECRET),
        ("SHOP_DATA_KEY", TEST_DATA_KEY),
        ("SHOP_ANNOUNCE_KEY", "short"),
    ]);
    assert!(line.contains("SHOP_ANNOUNCE_KEY must be at least 32 bytes"), "{line}");
    let line = refused(&[
        ("SHOP_JWT_SECRET", TEST_SECRET),
        ("SHOP_DATA_KEY", TEST_DATA_KEY),
        ("SHOP_RULES_DIR", "/tmp/any-rules"),
    ]);
    assert!(
        line.contains("SHOP_RULES_DIR") && line.contains("SHOP_RULES_ALLOW"),
        "{line}"
    );
    let line = refused(&[
        ("SHOP_JWT_SECRET_FILE", "/nonexistent/jwt"),
        ("SHOP_DATA_KEY", TEST_DATA_KEY),
    ]);
    assert!(
        line.contains("SHOP_JWT_SECRET_FILE: cannot read /nonexistent/jwt"),
        "{line}"
    );

    // The same secrets mounted as files: it starts and serves.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (jwt, key) = (dir.path().join("jwt"), dir.path().join("key"));
    std::fs::write(&jwt, format!("{TEST_SECRET}\n")).expect("written");
    std::fs::write(&key, format!("{TEST_DATA_KEY}\n")).expect("written");
    let (namespace, _bus) = common::fresh_bus('f').await;
    let (jwt, key) = (jwt.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let env = [
        ("SHOP_JWT_SECRET", ""),
        ("SHOP_JWT_SECRET_FILE", jwt.as_str()),
        ("SHOP_DATA_KEY", ""),
        ("SHOP_DATA_KEY_FILE", key.as_str()),
    ];
    let shop = InProcess::start(shop::ProcessRole::Order, &url, namespace.as_str(), &env).await;
    let answer = common::call(
        shop.addr,
        "GET",
        "/api/orders",
        Some(&common::token("alice", "customer")),
        &[],
        "",
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "a token under the file's secret is accepted: {}",
        answer.body
    );
}

/// The rules directory is watched for as long as the shop serves, not only
/// while it starts: a plugin dropped in later decides the next orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_shop_swaps_in_a_plugin_dropped_into_its_rules_directory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).expect("the rules directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let rules_dir = rules.to_string_lossy().into_owned();
    let shop = InProcess::start(
        shop::ProcessRole::All,
        &url,
        "swap",
        &[
            ("SHOP_RULES_DIR", rules_dir.as_str()),
            ("SHOP_RULES_CONFIG_PURCHASE_LIMIT_MAX_UNITS_PER_DAY", "1"),
        ],
    )
    .await;
    let admin = common::token("root", "admin");
    let alice = common::token("alice", "customer");
    let mug = serde_json::json!({"id": "SKU-W", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 100});
    let created = common::call(shop.addr, "POST", "/api/products", Some(&admin), &[], &mug.to_string()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    // Accepted once the order side knows the product: no limit is loaded yet.
    common::place(shop.addr, &alice, "SKU-W", "w-0").await;

    std::fs::write(
        rules.join("purchase-limit.wasm"),
        shop_rules_bundle::PURCHASE_LIMIT.wasm,
    )
    .expect("the plugin written");
    let body = serde_json::json!({"items": [{"product_id": "SKU-W", "quantity": 2}]}).to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let answer = common::call(shop.addr, "POST", "/api/orders", Some(&alice), &[], &body).await;
        if answer.status != 202 {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "the plugin was never swapped in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("purchase-limit"), "{}", refused.body);

    // The swap is in the audit log, as this instance's doing.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let page = common::call(
            shop.addr,
            "GET",
            "/api/audit?action=rule.activate",
            Some(&admin),
            &[],
            "",
        )
        .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.json()["items"].clone();
        if items.as_array().is_some_and(|i| !i.is_empty()) || std::time::Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let swap = &entries[0];
    assert_eq!(swap["target"], "rule:purchase-limit", "{entries}");
    assert_eq!(swap["role"], "system");
    assert!(
        swap["actor"].as_str().is_some_and(|a| a.starts_with("instance:")),
        "{swap}"
    );
    assert_eq!(swap["detail"]["hash"].as_str().map(str::len), Some(64), "{swap}");
    shop.stop().await;
}
