//! `shop serve --role gateway` in front of separate order and inventory
//! processes, on PostgreSQL, JetStream and Redis: balancing, retries on
//! another instance, a circuit breaker that opens against a real failing
//! upstream (cut off by a TCP proxy) and closes again once it is back, the
//! gateway's own problem answer when no instance can serve, and instances
//! found and forgotten through their NATS announcements.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Answer, RoleProcess, TEST_SECRET, token};
use serde_json::{Value, json};
use shop_testkit::TcpProxy;

/// A caller of the gateway.
struct Front {
    addr: SocketAddr,
}

impl Front {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        common::call(self.addr, method, path, Some(token), &[], &body).await
    }

    async fn metrics(&self) -> String {
        common::http(self.addr, "GET", "/metrics", &[], b"").await.body
    }

    /// The sum of the samples of `name` whose labels contain every one of `labels`.
    async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let exposition = self.metrics().await;
        exposition
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Places an order once the order side knows the product.
    async fn place(&self, token: &str, product: &str, key: &str) -> Value {
        common::place(self.addr, token, product, key).await
    }

    async fn confirmed(&self, token: &str, id: &str) {
        common::confirmed(self.addr, token, id).await
    }
}

/// Waits for `check` to hold, asking at most for `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

const ENV: [(&str, &str); 2] = [("SHOP_JWT_SECRET", TEST_SECRET), ("SHOP_TRUSTED_PROXIES", "127.0.0.1")];

fn instance(role: &str, id: &str, url: &str, namespace: &str, extra: &[(&str, &str)]) -> RoleProcess {
    let mut env = ENV.to_vec();
    env.push(("SHOP_INSTANCE_ID", id));
    env.extend_from_slice(extra);
    RoleProcess::start(role, url, namespace, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_spreads_retries_and_breaks_the_circuit_of_a_failing_instance() {
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('g').await;
    let ns = namespace.as_str();
    let inventory = instance("inventory", "inventory-1", &db, ns, &[]);
    let order_1 = instance("order", "order-1", &db, ns, &[]);
    let order_2 = instance("order", "order-2", &db, ns, &[]);
    // The instances that will fail are reached through proxies the test cuts.
    let to_order_2 = TcpProxy::start(order_2.addr).await.expect("proxy");
    let to_inventory = TcpProxy::start(inventory.addr).await.expect("proxy");
    let (order_1_url, order_2_url) = (url(order_1.addr), url(to_order_2.addr()));
    let orders = format!("{order_1_url},{order_2_url}");
    let products = url(to_inventory.addr());
    let gateway = instance(
        "gateway",
        "gateway-1",
        &db,
        ns,
        &[
            ("SHOP_DISCOVERY", "off"),
            ("SHOP_ORDER_UPSTREAMS", &orders),
            ("SHOP_INVENTORY_UPSTREAMS", &products),
            ("SHOP_BREAKER_WINDOW", "10"),
            ("SHOP_BREAKER_OPEN_MS", "3000"),
            // Only the breaker takes failing instances out in this test.
            ("SHOP_HEALTH_EVERY_MS", "600000"),
        ],
    );
    let front = Front { addr: gateway.addr };
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");

    // The whole flow through the gateway.
    let mug = json!({"id": "SKU-G", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 100});
    let created = front.call("POST", "/api/products", &admin, Some(&mug)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/api/products/SKU-G"));
    let order = front.place(&alice, "SKU-G", "g-1").await;
    let id = order["order_id"].as_str().expect("an order id").to_owned();
    front.confirmed(&alice, &id).await;
    let anonymous = common::call(front.addr, "GET", &format!("/api/orders/{id}"), None, &[], "").await;
    assert_eq!(anonymous.status, 401, "the gateway turns strangers away itself");
    let unknown = front.call("GET", "/api/nothing", &alice, None).await;
    assert_eq!(unknown.status, 404);
    let listed = front.call("GET", "/api/products?q=mug", &alice, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["items"][0]["id"], "SKU-G");
    // Conditions pass through to the instances, and their answers back.
    let product = front.call("GET", "/api/products/SKU-G", &alice, None).await;
    let tag = product.header("etag").expect("an ETag").to_owned();
    let held = [("if-none-match", tag.as_str())];
    let unchanged = common::call(front.addr, "GET", "/api/products/SKU-G", Some(&alice), &held, "").await;
    assert_eq!(unchanged.status, 304, "{}", unchanged.body);
    let stale = [("if-match", "\"999\"")];
    let refused = common::call(
        front.addr,
        "PUT",
        "/api/products/SKU-G/price",
        Some(&admin),
        &stale,
        r#"{"unit_price": 1}"#,
    )
    .await;
    assert_eq!(refused.status, 412, "{}", refused.body);

    // A request's id is the correlation id of every event it causes, on
    // both sides of the saga.
    let request_id = uuid::Uuid::now_v7().to_string();
    let traced = json!({"items": [{"product_id": "SKU-G", "quantity": 1}]}).to_string();
    let headers = [("x-request-id", request_id.as_str())];
    let placed = common::call(front.addr, "POST", "/api/orders", Some(&alice), &headers, &traced).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    assert_eq!(placed.header("x-request-id"), Some(request_id.as_str()));
    let traced_id = placed.json()["order_id"].as_str().expect("an order id").to_owned();
    front.confirmed(&alice, &traced_id).await;
    let caused = events_of(&bus, &traced_id).await;
    let kinds: Vec<&str> = caused.iter().map(|e| e.event_type.as_str()).collect();
    for kind in ["OrderCreated", "StockReserved", "OrderConfirmed"] {
        assert!(kinds.contains(&kind), "{kind} among {kinds:?}");
    }
    for event in &caused {
        assert_eq!(event.correlation_id.to_string(), request_id, "{}", event.event_type);
    }

    // The gateway composes an expanded order from both contexts; its tag
    // is the composition's.
    let expanded_path = format!("/api/orders/{id}?expand=products");
    let expanded = front.call("GET", &expanded_path, &alice, None).await;
    assert_eq!(expanded.status, 200, "{}", expanded.body);
    let composed = expanded.json();
    assert_eq!(composed["products"], "included", "{composed}");
    assert_eq!(composed["items"][0]["product"]["name"], "Mug");
    assert_eq!(composed["items"][0]["product"]["available"], 98);
    let expanded_tag = expanded.header("etag").expect("an ETag").to_owned();
    let plain = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
    assert_ne!(plain.header("etag"), Some(expanded_tag.as_str()));
    let held = [("if-none-match", expanded_tag.as_str())];
    let unchanged = common::call(front.addr, "GET", &expanded_path, Some(&alice), &held, "").await;
    assert_eq!(unchanged.status, 304, "{}", unchanged.body);
    let bob = token("bob", "customer");
    let strangers = front.call("GET", &expanded_path, &bob, None).await;
    assert_eq!(
        strangers.status, 404,
        "someone else's order stays hidden: {}",
        strangers.body
    );

    // Balanced: both order instances serve.
    for _ in 0..10 {
        let read = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
        assert_eq!(read.status, 200, "{}", read.body);
    }
    let served = |upstream: &str| format!("upstream=\"{upstream}\"");
    let ok = "outcome=\"ok\"";
    for upstream in [&order_1_url, &order_2_url] {
        let count = front
            .metric("shop_gateway_upstream_requests_total", &[&served(upstream), ok])
            .await;
        assert!(count >= 3.0, "{upstream} served {count} requests");
    }

    // Order instance 2 fails: reads are retried on instance 1, and its
    // circuit opens.
    to_order_2.cut();
    let circuit = "shop_gateway_circuit_state";
    let mut reads = 0;
    while front.metric(circuit, &[&served(&order_2_url)]).await != 1.0 {
        let read = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
        assert_eq!(read.status, 200, "retried on the other instance: {}", read.body);
        reads += 1;
        assert!(reads < 100, "the circuit of the failing instance never opened");
    }
    assert!(
        front
            .metric(
                "shop_gateway_upstream_requests_total",
                &[&served(&order_2_url), "outcome=\"failed\""]
            )
            .await
            >= 5.0
    );
    assert!(front.metric("shop_gateway_retries_total", &["service=\"order\""]).await >= 5.0);
    // With the circuit open, even a request that may not be repeated goes
    // to the instance that works.
    let fresh_order = json!({"items": [{"product_id": "SKU-G", "quantity": 1}]});
    for _ in 0..2 {
        let placed = front.call("POST", "/api/orders", &alice, Some(&fresh_order)).await;
        assert_eq!(placed.status, 202, "{}", placed.body);
    }

    // The only inventory instance fails: attempts end in problems, then the
    // open circuit makes the gateway answer at once without trying.
    to_inventory.cut();
    let deadline = Instant::now() + Duration::from_secs(20);
    let fallback = loop {
        let answer = front.call("GET", "/api/products/SKU-G", &admin, None).await;
        assert!(matches!(answer.status, 502 | 503), "{}: {}", answer.status, answer.body);
        assert_eq!(answer.header("content-type"), Some("application/problem+json"));
        if answer.body.contains("upstream-unavailable") {
            break answer;
        }
        assert!(Instant::now() < deadline, "the inventory circuit never opened");
    };
    assert_eq!(fallback.status, 503);
    assert!(fallback.header("retry-after").is_some(), "{:?}", fallback.headers);
    assert!(
        fallback.body.contains("no inventory instance is available"),
        "{}",
        fallback.body
    );
    assert!(
        front
            .metric("shop_gateway_unavailable_total", &["service=\"inventory\""])
            .await
            >= 1.0
    );
    // Orders still read, expanded too: the product part marked unavailable.
    let expanded = front.call("GET", &expanded_path, &alice, None).await;
    assert_eq!(expanded.status, 200, "{}", expanded.body);
    let alone = expanded.json();
    assert_eq!(alone["products"], "unavailable", "{alone}");
    assert_eq!(alone["order_id"], id.as_str());
    assert!(alone["items"][0].get("product").is_none(), "{alone}");
    let ready = common::ready_as_admin(front.addr).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("\"inventory instances\":\"none available\""),
        "{}",
        ready.body
    );

    // Both come back: after the open period a probe closes each circuit.
    to_order_2.restore();
    to_inventory.restore();
    until(Duration::from_secs(20), "the inventory circuit closing", || async {
        let answer = front.call("GET", "/api/products/SKU-G", &admin, None).await;
        answer.status == 200 && front.metric(circuit, &[&served(&products)]).await == 0.0
    })
    .await;
    let before = front
        .metric("shop_gateway_upstream_requests_total", &[&served(&order_2_url), ok])
        .await;
    until(Duration::from_secs(20), "instance 2 serving again", || async {
        let read = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
        assert_eq!(read.status, 200, "{}", read.body);
        front
            .metric("shop_gateway_upstream_requests_total", &[&served(&order_2_url), ok])
            .await
            > before
    })
    .await;
    assert_eq!(front.metric(circuit, &[&served(&order_2_url)]).await, 0.0);
    let ready = common::ready_as_admin(front.addr).await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    drop((gateway, order_1, order_2, inventory));
    let _ = bus.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_announce_themselves_and_the_gateway_follows_them() {
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('d').await;
    let ns = namespace.as_str();
    let gateway = instance(
        "gateway",
        "gateway-1",
        &db,
        ns,
        // Silent instances are forgotten only after a minute here: a killed
        // one leaves the rotation by its failed health checks, a stopped one
        // by saying it leaves.
        &[("SHOP_HEALTH_EVERY_MS", "200"), ("SHOP_FORGET_AFTER_MS", "60000")],
    );
    let front = Front { addr: gateway.addr };
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");

    // Nobody there yet: the gateway says so itself.
    let early = front.call("GET", "/api/orders", &alice, None).await;
    assert_eq!(early.status, 503, "{}", early.body);
    assert!(early.body.contains("no order instance is available"), "{}", early.body);
    let ready = common::ready_as_admin(front.addr).await;
    assert_eq!(ready.status, 503);

    let fast = [("SHOP_ANNOUNCE_EVERY_MS", "200")];
    let inventory = instance("inventory", "inventory-1", &db, ns, &fast);
    let order_1 = instance("order", "order-1", &db, ns, &fast);
    until(
        Duration::from_secs(20),
        "the gateway hearing of both contexts",
        || async { common::ready_as_admin(front.addr).await.status == 200 },
    )
    .await;
    let lamp = json!({"id": "SKU-D", "name": "Lamp", "unit_price": 5000, "currency": "KRW", "stock": 10});
    let created = front.call("POST", "/api/products", &admin, Some(&lamp)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let order = front.place(&alice, "SKU-D", "d-1").await;
    let id = order["order_id"].as_str().expect("an order id").to_owned();
    front.confirmed(&alice, &id).await;

    // Forgeries change nothing: an unsealed join of an address the test
    // listens on (it must never see a request, let alone a token), an
    // unsealed leave and one sealed under another key.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let trap_url = url(trap.local_addr().expect("address"));
    let subject = format!("{ns}.instances");
    let order_1_url = url(order_1.addr);
    let forged_join = json!({"context": "order", "url": trap_url, "instance": "evil"});
    let forged_leave = json!({"context": "order", "url": order_1_url, "instance": "order-1", "leaving": true});
    let wrong_key = shop_streams::AnnouncementKey::new(&[9; 32]).expect("32 bytes");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let sealed_leave = wrong_key.seal(
        &shop_streams::Announcement {
            context: shop_streams::Context::Order,
            url: order_1_url.clone(),
            instance: "order-1".into(),
            leaving: true,
            weight: 1,
        },
        now_ms,
    );
    let client = bus.jetstream().client();
    for _ in 0..3 {
        for forged in [
            forged_join.to_string().into_bytes(),
            forged_leave.to_string().into_bytes(),
            sealed_leave.clone(),
        ] {
            client.publish(subject.clone(), forged.into()).await.expect("published");
        }
    }
    client.flush().await.expect("flushed");
    until(Duration::from_secs(10), "the forgeries heard and rejected", || async {
        let exposition = front.metrics().await;
        common::sample(&exposition, "shop_gateway_announcements_rejected_total").unwrap_or(0.0) >= 9.0
    })
    .await;
    for _ in 0..20 {
        let read = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
        assert_eq!(read.status, 200, "{}", read.body);
    }
    let exposition = front.metrics().await;
    assert!(!exposition.contains(&trap_url), "the forged instance was never added");
    assert!(
        exposition.contains(&format!("upstream=\"{order_1_url}\"")),
        "order-1 not forgotten"
    );
    let caught = tokio::time::timeout(Duration::from_millis(200), trap.accept()).await;
    assert!(caught.is_err(), "the gateway never connected to the forged address");

    // A second order instance joins and gets its share, no restart needed.
    let order_2 = instance("order", "order-2", &db, ns, &fast);
    let served_2 = format!("upstream=\"{}\"", url(order_2.addr));
    until(Duration::from_secs(20), "the new instance serving", || async {
        let read = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
        assert_eq!(read.status, 200, "{}", read.body);
        front
            .metric("shop_gateway_upstream_requests_total", &[&served_2, "outcome=\"ok\""])
            .await
            > 0.0
    })
    .await;

    // Killed without a word: its health checks fail, it leaves the
    // rotation, and requests keep being served.
    order_2.kill();
    let healthy_2 = format!("shop_gateway_upstream_healthy{{service=\"order\",{served_2}}} 0");
    until(
        Duration::from_secs(20),
        "the killed instance out of the rotation",
        || async { front.metrics().await.contains(&healthy_2) },
    )
    .await;
    for _ in 0..10 {
        let read = front.call("GET", &format!("/api/orders/{id}"), &alice, None).await;
        assert_eq!(read.status, 200, "{}", read.body);
    }

    // Stopped politely: it says it is leaving, and the gateway forgets it.
    let listed_1 = format!(
        "shop_gateway_upstream_healthy{{service=\"order\",upstream=\"{}\"}}",
        url(order_1.addr)
    );
    assert!(front.metrics().await.contains(&listed_1));
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &order_1.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(stopped.success());
    until(Duration::from_secs(20), "the stopped instance forgotten", || async {
        !front.metrics().await.contains(&listed_1)
    })
    .await;
    let gone = front.call("GET", "/api/orders", &alice, None).await;
    assert_eq!(gone.status, 503, "{}", gone.body);
    let ready = common::ready_as_admin(front.addr).await;
    assert!(
        ready.body.contains("\"order instances\":\"none available\""),
        "{}",
        ready.body
    );
    assert!(ready.body.contains("\"inventory instances\":\"ok\""), "{}", ready.body);

    drop((gateway, order_1, inventory));
    let _ = bus.delete_streams().await;
}

/// The events of both streams whose aggregate is `aggregate`.
async fn events_of(bus: &shop_adapter_jetstream::JetStreamBus, aggregate: &str) -> Vec<shop_streams::Envelope> {
    let mut found = Vec::new();
    for context in [shop_streams::Context::Order, shop_streams::Context::Inventory] {
        let name = bus.topology().stream(context).name;
        let stream = bus.jetstream().get_stream(&name).await.expect("the stream");
        let state = stream.get_info().await.expect("its state").state;
        for sequence in state.first_sequence..=state.last_sequence.max(state.first_sequence) {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let event = shop_streams::Envelope::from_bytes(&message.payload).expect("an envelope");
            if event.aggregate_id == aggregate {
                found.push(event);
            }
        }
    }
    found
}

/// Requests to each inventory upstream the gateway at `front` counted as
/// answered, by upstream URL.
async fn served(front: &Front, upstreams: &[String]) -> Vec<f64> {
    let exposition = front.metrics().await;
    upstreams
        .iter()
        .map(|upstream| {
            let labels = format!("{{service=\"inventory\",upstream=\"{upstream}\",outcome=\"ok\"}}");
            common::sample(&exposition, &format!("shop_gateway_upstream_requests_total{labels}")).unwrap_or(0.0)
        })
        .collect()
}

/// `count` reads of a product through `front` by `tokens` in turn, `at_once` at a time.
async fn read_product(front: &Front, tokens: &[String], count: usize, at_once: usize) {
    use futures::StreamExt as _;
    futures::stream::iter(0..count)
        .map(|n| {
            let token = &tokens[n % tokens.len()];
            async move { front.call("GET", "/api/products/SKU-B", token, None).await }
        })
        .buffer_unordered(at_once)
        .for_each(|answer| async move { assert_eq!(answer.status, 200, "{}", answer.body) })
        .await;
}

/// Three inventory instances (weights 1, 2 and 3 announced) behind three
/// gateways, one per strategy: weighted shares follow the weights,
/// least-requests starves the instance made slow, and hashing keeps each
/// customer on one instance, moving only the newcomer's share when a fourth
/// instance joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_balancing_strategy_shares_requests_as_it_promises() {
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('b').await;
    let ns = namespace.as_str();
    // Thousands of reads a second from one address: no rate limits in the way.
    let unlimited = [("SHOP_RATE_LIMIT_USER", "off"), ("SHOP_RATE_LIMIT_IP", "off")];
    let announcing = |weight: &str| {
        let mut settings = unlimited.to_vec();
        settings.extend([("SHOP_ANNOUNCE_EVERY_MS", "200"), ("SHOP_INSTANCE_WEIGHT", weight)]);
        instance("inventory", &format!("inventory-w{weight}"), &db, ns, &settings)
    };
    let inventories: Vec<RoleProcess> = ["1", "2", "3"].map(announcing).into();
    let urls: Vec<String> = inventories.iter().map(|i| url(i.addr)).collect();
    const LB: &str = "SHOP_LB_INVENTORY";
    let gateway = |id: &str, extra: &[(&str, &str)]| {
        let mut settings = unlimited.to_vec();
        settings.push(("SHOP_HEALTH_EVERY_MS", "200"));
        settings.extend_from_slice(extra);
        instance("gateway", id, &db, ns, &settings)
    };
    let weighted = gateway("gateway-w", &[(LB, "weighted")]);
    let hashing = gateway("gateway-h", &[(LB, "hash")]);
    // The first instance is reached through a proxy that slows it down.
    let slow = TcpProxy::start(inventories[0].addr).await.expect("proxy");
    let listed = [url(slow.addr()), urls[1].clone(), urls[2].clone()];
    let least = gateway(
        "gateway-l",
        &[
            ("SHOP_DISCOVERY", "off"),
            ("SHOP_ORDER_UPSTREAMS", "http://127.0.0.1:9"),
            ("SHOP_INVENTORY_UPSTREAMS", &listed.join(",")),
            (LB, "least-requests"),
        ],
    );
    let admin = token("ops", "admin");
    let customers: Vec<String> = (0..200).map(|n| token(&format!("customer-{n}"), "customer")).collect();
    let [weighted, hashing, least] = [&weighted, &hashing, &least].map(|g| Front { addr: g.addr });
    for front in [&weighted, &hashing] {
        until(Duration::from_secs(20), "the gateway hearing all three", || async {
            let exposition = front.metrics().await;
            exposition
                .matches("shop_gateway_upstream_healthy{service=\"inventory\"")
                .count()
                == 3
        })
        .await;
    }
    let bulb = json!({"id": "SKU-B", "name": "Bulb", "unit_price": 900, "currency": "KRW", "stock": 10});
    let created = weighted.call("POST", "/api/products", &admin, Some(&bulb)).await;
    assert_eq!(created.status, 201, "{}", created.body);

    // Weighted: 6,000 reads share 1:2:3.
    let before = served(&weighted, &urls).await;
    read_product(&weighted, &customers, 6000, 16).await;
    let after = served(&weighted, &urls).await;
    let shares: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    for (share, weight) in shares.iter().zip([1.0, 2.0, 3.0]) {
        let expected = 1000.0 * weight;
        assert!(
            (share - expected).abs() <= expected * 0.05,
            "{shares:?} is not 1:2:3 within 5%"
        );
    }

    // Least-requests: the slow instance holds its requests longer and is
    // given clearly fewer.
    slow.slow_down(Duration::from_millis(40));
    let before = served(&least, &listed).await;
    read_product(&least, &customers, 900, 12).await;
    let after = served(&least, &listed).await;
    let shares: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let fastest_share = shares[1].min(shares[2]);
    assert!(
        shares[0] * 3.0 < fastest_share,
        "the slow instance got {} of 900, the others {} and {}",
        shares[0],
        shares[1],
        shares[2]
    );
    slow.slow_down(Duration::ZERO);

    // Hash: each customer's reads land on one instance...
    async fn placement(front: &Front, customers: &[String], urls: &[String]) -> Vec<usize> {
        let mut placed = Vec::new();
        for customer in customers {
            let before = served(front, urls).await;
            read_product(front, std::slice::from_ref(customer), 3, 1).await;
            let after = served(front, urls).await;
            let grown: Vec<usize> = (0..urls.len()).filter(|&n| after[n] > before[n]).collect();
            assert_eq!(grown.len(), 1, "one customer's reads went to {grown:?}");
            assert_eq!(after[grown[0]] - before[grown[0]], 3.0);
            placed.push(grown[0]);
        }
        placed
    }
    let placed = placement(&hashing, &customers, &urls).await;
    for n in 0..3 {
        let share = placed.iter().filter(|&&p| p == n).count();
        assert!(
            (30..110).contains(&share),
            "instance {n} holds {share} of 200 customers"
        );
    }
    // ... and when a fourth joins, only the customers it takes move.
    let fourth = announcing("4");
    let mut urls = urls;
    urls.push(url(fourth.addr));
    until(Duration::from_secs(20), "the gateway hearing the fourth", || async {
        hashing
            .metrics()
            .await
            .matches("shop_gateway_upstream_healthy{service=\"inventory\"")
            .count()
            == 4
    })
    .await;
    let replaced = placement(&hashing, &customers, &urls).await;
    let moved: Vec<usize> = placed
        .iter()
        .zip(&replaced)
        .filter(|(before, after)| before != after)
        .map(|(_, after)| *after)
        .collect();
    assert!(moved.iter().all(|&to| to == 3), "customers moved only to the newcomer");
    let share = moved.len() as f64 / customers.len() as f64;
    assert!(
        (0.12..0.40).contains(&share),
        "{share} of the customers moved; about a quarter should"
    );

    drop((inventories, fourth));
    let _ = bus.delete_streams().await;
}

/// Intake needs its database alone: with Redis and NATS stopped, the order
/// instances stay ready (degraded), a new one starts, and orders through
/// the gateway are accepted into the outbox. When NATS returns they confirm
/// (the inventory locking per instance while Redis is still away); when
/// Redis returns every instance is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_survives_redis_and_nats_outages_and_catches_up() {
    use shop_testkit::{NatsServer, RedisServer};

    let mut nats = NatsServer::start().expect("a private nats-server");
    let mut redis = RedisServer::start().expect("a private redis-server");
    let (nats_url, redis_url) = (nats.url(), redis.url());
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let namespace = shop_testkit::fresh_namespace('o');
    let ns = namespace.as_str();
    let services = [
        ("SHOP_NATS_URL", nats_url.as_str()),
        ("SHOP_REDIS_URL", redis_url.as_str()),
    ];
    let inventory = instance("inventory", "inventory-1", &db, ns, &services);
    let order_1 = instance("order", "order-1", &db, ns, &services);
    let gateway = instance(
        "gateway",
        "gateway-1",
        &db,
        ns,
        &[
            services[0],
            services[1],
            ("SHOP_DISCOVERY", "off"),
            ("SHOP_ORDER_UPSTREAMS", &url(order_1.addr)),
            ("SHOP_INVENTORY_UPSTREAMS", &url(inventory.addr)),
            ("SHOP_HEALTH_EVERY_MS", "200"),
        ],
    );
    let front = Front { addr: gateway.addr };
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    let kettle = json!({"id": "SKU-O", "name": "Kettle", "unit_price": 3000, "currency": "KRW", "stock": 100});
    let created = front.call("POST", "/api/products", &admin, Some(&kettle)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let first = front.place(&alice, "SKU-O", "o-0").await;
    let first = first["order_id"].as_str().expect("an order id").to_owned();
    front.confirmed(&alice, &first).await;

    nats.kill();
    redis.kill();
    // Ready on the database alone; an admin sees what is missing.
    let report = common::ready_as_admin(order_1.addr).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(report["checks"]["database"], "ok", "{report}");
    assert_ne!(report["checks"]["event bus"], "ok", "{report}");
    assert_ne!(report["checks"]["redis"], "ok", "{report}");
    // A role starts without them, and is ready.
    let order_2 = instance("order", "order-2", &db, ns, &services);
    assert_eq!(common::ready_as_admin(order_2.addr).await.status, 200);

    let mut accepted = vec![first];
    for n in 1..=5 {
        let answer = front.place(&alice, "SKU-O", &format!("o-{n}")).await;
        accepted.push(answer["order_id"].as_str().expect("an order id").to_owned());
    }
    let direct = common::call(
        order_2.addr,
        "POST",
        "/api/orders",
        Some(&alice),
        &[("idempotency-key", "o-direct")],
        &json!({"items": [{"product_id": "SKU-O", "quantity": 1}]}).to_string(),
    )
    .await;
    assert_eq!(direct.status, 202, "{}", direct.body);
    accepted.push(direct.json()["order_id"].as_str().expect("an order id").to_owned());
    let gateway_ready = common::ready_as_admin(front.addr).await;
    assert_eq!(
        gateway_ready.status, 200,
        "the gateway keeps its instances: {}",
        gateway_ready.body
    );

    // NATS returns, Redis not yet: every accepted order confirms. The
    // consumers find the restarted server by their pulls' missed heartbeats
    // (5 s each) and the client's reconnect backoff, which under a loaded CI
    // machine took more than 20 s once: a minute is the liveness bound.
    nats.restart().expect("nats-server restarts");
    for id in &accepted {
        common::confirmed_within(Duration::from_secs(60), front.addr, &alice, id).await;
    }
    let inventory_metrics = inventory.get("/metrics").await;
    let lock_fallbacks = common::sample(&inventory_metrics, "shop_lock_fallbacks_total").unwrap_or(0.0);
    assert!(lock_fallbacks >= 1.0, "reserved under a local lock: {lock_fallbacks}");

    redis.restart().expect("redis-server restarts");
    until(Duration::from_secs(30), "every instance whole again", || async {
        let mut whole = true;
        for addr in [order_1.addr, order_2.addr, inventory.addr] {
            whole &= common::ready_as_admin(addr).await.json()["status"] == "ready";
        }
        whole
    })
    .await;
    drop((gateway, order_1, order_2, inventory));
}

/// A hostile client cannot open the circuits: 10,000 requests of bad
/// input (control bytes, broken JSON, impossible quantities, oversized or
/// mistyped bodies, forged or missing tokens) through the gateway are each
/// answered with a 4xx problem, none counts as an upstream failure, every
/// breaker stays closed, and a good order still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_leave_every_breaker_closed() {
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('x').await;
    let ns = namespace.as_str();
    let unlimited = [("SHOP_RATE_LIMIT_USER", "off"), ("SHOP_RATE_LIMIT_IP", "off")];
    let inventory = instance("inventory", "inventory-1", &db, ns, &unlimited);
    let order = instance("order", "order-1", &db, ns, &unlimited);
    let (order_url, inventory_url) = (url(order.addr), url(inventory.addr));
    let gateway = instance(
        "gateway",
        "gateway-1",
        &db,
        ns,
        &[
            unlimited[0],
            unlimited[1],
            ("SHOP_DISCOVERY", "off"),
            ("SHOP_ORDER_UPSTREAMS", &order_url),
            ("SHOP_INVENTORY_UPSTREAMS", &inventory_url),
            ("SHOP_BREAKER_WINDOW", "10"),
        ],
    );
    let front = Front { addr: gateway.addr };
    let admin = token("ops", "admin");
    let mallory = format!("Bearer {}", token("mallory", "customer"));
    let json = ("content-type", "application/json");
    let auth = ("authorization", mallory.as_str());
    let huge = vec![b'x'; 70 * 1024];
    let long_id = format!("/api/products/{}", "p".repeat(300));
    type Hostile<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8]);
    let hostile: Vec<Hostile> = vec![
        ("GET", "/api/orders/%00", vec![auth], b""),
        ("GET", "/api/products/a%00b/movements", vec![auth], b""),
        ("GET", "/api/orders?after=1_%00", vec![auth], b""),
        ("GET", "/api/orders?limit=99999999999", vec![auth], b""),
        ("GET", "/api/orders/no-such-order", vec![auth], b""),
        ("GET", &long_id, vec![auth], b""),
        ("POST", "/api/orders", vec![auth, json], b"{not json"),
        (
            "POST",
            "/api/orders",
            vec![auth, json],
            br#"{"items":[{"product_id":"SKU-X","quantity":-1}]}"#,
        ),
        (
            "POST",
            "/api/orders",
            vec![auth, json],
            br#"{"items":[{"product_id":"SKU-X","quantity":1e30}]}"#,
        ),
        (
            "POST",
            "/api/orders",
            vec![auth, json],
            br#"{"items":[{"product_id":"a\u0000b","quantity":1}]}"#,
        ),
        ("POST", "/api/orders", vec![auth, json], br#"{"items":[],"extra":true}"#),
        (
            "POST",
            "/api/orders",
            vec![auth, ("content-type", "text/plain")],
            b"items",
        ),
        ("POST", "/api/orders", vec![auth, json], &huge),
        ("POST", "/api/products", vec![auth, json], br#"{"id":"SKU-Y"}"#),
        (
            "PUT",
            "/api/products/SKU-X/price",
            vec![auth, json],
            br#"{"unit_price":1}"#,
        ),
        (
            "GET",
            "/api/orders",
            vec![("authorization", "Bearer forged.token.here")],
            b"",
        ),
        ("GET", "/api/orders", vec![], b""),
    ];
    let kettle = json!({"id": "SKU-X", "name": "Kettle", "unit_price": 3000, "currency": "KRW", "stock": 10});
    let created = front.call("POST", "/api/products", &admin, Some(&kettle)).await;
    assert_eq!(created.status, 201, "{}", created.body);

    const TOTAL: usize = 10_000;
    const CLIENTS: usize = 8;
    let hostile = std::sync::Arc::new(
        hostile
            .into_iter()
            .map(|(m, p, h, b)| {
                let headers: Vec<(String, String)> = h.into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
                (m.to_owned(), p.to_owned(), headers, b.to_vec())
            })
            .collect::<Vec<_>>(),
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let hostile = std::sync::Arc::clone(&hostile);
            let addr = front.addr;
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                for n in (client..TOTAL).step_by(CLIENTS) {
                    let (method, path, headers, body) = &hostile[n % hostile.len()];
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    let answer = common::http(addr, method, path, &headers, body).await;
                    assert!(
                        (400..500).contains(&answer.status),
                        "{method} {path}: {} {}",
                        answer.status,
                        answer.body
                    );
                    assert!(
                        !answer.body.contains("database") && !answer.body.contains("sqlx"),
                        "{}",
                        answer.body
                    );
                    *statuses.entry(answer.status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for client in clients {
        for (status, count) in client.await.expect("a client finished") {
            *statuses.entry(status).or_default() += count;
        }
    }
    assert_eq!(statuses.values().sum::<usize>(), TOTAL, "{statuses:?}");
    eprintln!("hostile requests by status: {statuses:?}");

    for upstream in [&order_url, &inventory_url] {
        let served = format!("upstream=\"{upstream}\"");
        assert_eq!(
            front.metric("shop_gateway_circuit_state", &[&served]).await,
            0.0,
            "{upstream}"
        );
        let failed = front
            .metric("shop_gateway_upstream_requests_total", &[&served, "outcome=\"error\""])
            .await
            + front
                .metric("shop_gateway_upstream_requests_total", &[&served, "outcome=\"failed\""])
                .await;
        assert_eq!(failed, 0.0, "no hostile request counted against {upstream}");
        let answered = front
            .metric("shop_gateway_upstream_requests_total", &[&served, "outcome=\"ok\""])
            .await;
        assert!(
            answered >= 500.0,
            "{upstream} answered the bad input it was sent: {answered}"
        );
    }
    let placed = front.place(&token("alice", "customer"), "SKU-X", "x-1").await;
    let id = placed["order_id"].as_str().expect("an order id").to_owned();
    front.confirmed(&token("alice", "customer"), &id).await;
    drop((gateway, order, inventory));
    let _ = bus.delete_streams().await;
}
