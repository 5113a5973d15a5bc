//! The rule platform across a deployment: two separate `shop serve`
//! processes on one PostgreSQL and one NATS, taking orders all along,
//! follow one rule store. A candidate in shadow is compared and diffed
//! but refuses nothing; promoted, publish and rollback reach both within a
//! second; a third instance started later runs the same set from its
//! first request; and every order's events name the rules that decided it.

use crate::cli::{shop, stdout};
use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use common::{RoleProcess, token};
use futures::StreamExt;
use serde_json::{Value, json};

/// `wasm` with a custom section appended: the same behaviour under
/// another hash, as a rebuilt component would be.
fn rebuilt(wasm: &[u8], stamp: &str) -> Vec<u8> {
    let name = b"build";
    let payload_len = 1 + name.len() + stamp.len();
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(u8::try_from(payload_len).expect("a short section"));
    out.push(u8::try_from(name.len()).expect("a short name"));
    out.extend_from_slice(name);
    out.extend_from_slice(stamp.as_bytes());
    out
}

/// How long until every instance runs `expected` of `name`.
async fn converged(instances: &[SocketAddr], name: &str, expected: &[(u64, String, String)]) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for addr in instances {
            all &= common::rules_running(*addr, name).await == expected;
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not converged on {expected:?}: {:?}",
            common::rules_running(instances[0], name).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Places one-unit orders, each for a customer of its own, on the
/// instances in turn until stopped; counts the orders placed and the
/// answers other than 202.
struct Load {
    stop: Arc<AtomicBool>,
    placed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(instances: Vec<SocketAddr>, product: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let placed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, placed) = (stop.clone(), placed.clone());
            async move {
                let mut failed = Vec::new();
                let body = json!({"items": [{"product_id": product, "quantity": 1}]}).to_string();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let customer = token(&format!("load-{n}"), "customer");
                    let addr = instances[n % instances.len()];
                    let answer = common::call(addr, "POST", "/api/orders", Some(&customer), &[], &body).await;
                    match answer.status {
                        202 => placed.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            failed.push(format!("{}: {}", answer.status, answer.body));
                            0
                        }
                    };
                }
                failed
            }
        });
        Self { stop, placed, task }
    }

    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self.task.await.expect("the load ran");
        (self.placed.load(Ordering::Relaxed), failed)
    }
}

/// The rules every `OrderCreated` of the namespace was decided by, by order id.
async fn provenance(bus: &shop_adapter_jetstream::JetStreamBus) -> Vec<(String, Vec<(String, u64, String)>)> {
    let namespace = bus.topology().namespace().to_string();
    let stream = bus
        .jetstream()
        .get_stream(bus.topology().stream(shop_streams::Context::Order).name)
        .await
        .expect("the order stream");
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: format!("{namespace}.order.OrderCreated"),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a reader");
    let mut created = Vec::new();
    loop {
        let mut batch = consumer.fetch().max_messages(500).messages().await.expect("a batch");
        let before = created.len();
        while let Some(message) = batch.next().await {
            let envelope: Value = serde_json::from_slice(&message.expect("a message").payload).expect("JSON");
            let rules = envelope["policy"]
                .as_array()
                .expect("the rules that decided it")
                .iter()
                .map(|r| {
                    let name = r["name"].as_str().unwrap_or_default().to_owned();
                    let hash = r["hash"].as_str().unwrap_or_default().to_owned();
                    (name, r["version"].as_u64().unwrap_or(0), hash)
                })
                .collect();
            created.push((envelope["aggregate_id"].as_str().unwrap_or_default().to_owned(), rules));
        }
        if created.len() == before {
            return created;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_follow_one_rule_store_under_load() {
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('f').await;
    let ns = namespace.as_str();
    let a = RoleProcess::start("all", &db, ns, &[("SHOP_INSTANCE_ID", "shop-a")]);
    let b = RoleProcess::start("all", &db, ns, &[("SHOP_INSTANCE_ID", "shop-b")]);
    let both = [a.addr, b.addr];
    let cli_env = [
        ("SHOP_DATABASE_URL", db.as_str()),
        ("SHOP_NAMESPACE", ns),
        ("SHOP_JWT_SECRET", common::TEST_SECRET),
        ("SHOP_RULES_CACHE", "off"),
    ];
    common::register(
        a.addr,
        &json!({"id": "SKU-F", "name": "Mug", "unit_price": 900, "currency": "KRW", "stock": 1_000_000}),
    )
    .await;
    // Both order sides know the product before the load starts.
    for (n, addr) in both.iter().enumerate() {
        common::place(*addr, &token("warm-up", "customer"), "SKU-F", &format!("warm-{n}")).await;
    }
    let load = Load::start(both.to_vec(), "SKU-F");
    let limit = shop_rules_bundle::PURCHASE_LIMIT.wasm;

    // In shadow: an order over the limit is taken, and the disagreement counted and kept.
    let shadow = common::publish_rule(a.addr, "purchase-limit", limit, true).await;
    assert_eq!(
        (shadow["version"].as_u64(), shadow["mode"].as_str()),
        (Some(1), Some("shadow"))
    );
    let v1 = shadow["hash"].as_str().expect("a hash").to_owned();
    let took = converged(&both, "purchase-limit", &[(1, v1.clone(), "shadow".into())]).await;
    println!("shadow v1 reached both instances in {took:?}");
    let big = json!({"items": [{"product_id": "SKU-F", "quantity": 12}]}).to_string();
    let placed = common::call(
        b.addr,
        "POST",
        "/api/orders",
        Some(&token("big", "customer")),
        &[],
        &big,
    )
    .await;
    assert_eq!(placed.status, 202, "a shadow refuses nothing: {}", placed.body);
    let big_order = placed.json()["order_id"].as_str().expect("an order id").to_owned();
    let metrics = b.get("/metrics").await;
    let disagreed = r#"shop_rule_shadow_total{name="purchase-limit",candidate="1",outcome="disagree"}"#;
    assert_eq!(common::sample(&metrics, disagreed), Some(1.0), "{metrics}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let diff = loop {
        let diff = stdout(&shop(&["rules", "diff", "purchase-limit"], &cli_env));
        if diff.contains(&big_order) || Instant::now() > deadline {
            break diff;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(diff.contains(&big_order), "the disagreement is kept: {diff}");
    assert!(diff.contains("shop-b") && diff.contains("purchase-limit"), "{diff}");

    // Promoted from the command line: active on both within a second.
    let promoted = shop(&["rules", "promote", "purchase-limit"], &cli_env);
    assert!(promoted.status.success(), "{}", crate::cli::stderr(&promoted));
    let took = converged(&both, "purchase-limit", &[(1, v1.clone(), "active".into())]).await;
    println!("promotion reached both instances in {took:?}");
    assert!(took < Duration::from_secs(1), "promotion took {took:?}");
    let refused = common::call(
        a.addr,
        "POST",
        "/api/orders",
        Some(&token("big-2", "customer")),
        &[],
        &big,
    )
    .await;
    assert_eq!(refused.status, 422, "the active policy refuses: {}", refused.body);

    // A second version, published through the API on the other instance.
    let second = common::publish_rule(b.addr, "purchase-limit", &rebuilt(limit, "2"), false).await;
    assert_eq!(second["version"].as_u64(), Some(2));
    let v2 = second["hash"].as_str().expect("a hash").to_owned();
    assert_ne!(v1, v2);
    let took = converged(&both, "purchase-limit", &[(2, v2.clone(), "active".into())]).await;
    println!("v2 reached both instances in {took:?}");
    assert!(took < Duration::from_secs(1), "publishing took {took:?}");
    let on_v2 = common::place(a.addr, &token("after-v2", "customer"), "SKU-F", "after-v2").await;

    // Rolled back: v1's hash again, on both.
    let rolled = shop(&["rules", "rollback", "purchase-limit"], &cli_env);
    assert!(rolled.status.success(), "{}", crate::cli::stderr(&rolled));
    let took = converged(&both, "purchase-limit", &[(1, v1.clone(), "active".into())]).await;
    println!("rollback reached both instances in {took:?}");
    assert!(took < Duration::from_secs(1), "rollback took {took:?}");
    let on_v1 = common::place(b.addr, &token("after-rollback", "customer"), "SKU-F", "after-rollback").await;

    // An instance started now runs the store's set from its first request.
    let c = RoleProcess::start("all", &db, ns, &[("SHOP_INSTANCE_ID", "shop-c")]);
    assert_eq!(
        common::rules_running(c.addr, "purchase-limit").await,
        [(1, v1.clone(), "active".to_owned())],
        "a late instance loads the current set before it serves"
    );
    assert_eq!(
        common::rules_running(c.addr, "order").await,
        common::rules_running(a.addr, "order").await
    );
    drop(c);

    let (placed, failed) = load.stop().await;
    assert!(placed > 20, "the load kept placing orders: {placed}");
    assert!(
        failed.is_empty(),
        "{} of {placed} requests failed: {failed:?}",
        failed.len()
    );

    // Provenance: each order's events name the versions that decided it.
    let id = |order: &Value| order["order_id"].as_str().expect("an order id").to_owned();
    let (on_v2, on_v1) = (id(&on_v2), id(&on_v1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        let created = provenance(&bus).await;
        let seen = |order: &str| created.iter().any(|(id, _)| id == order);
        if (seen(&on_v2) && seen(&on_v1) && seen(&big_order)) || Instant::now() > deadline {
            break created;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let policy_of = |order: &str| -> Vec<(String, u64, String)> {
        let (_, rules) = created
            .iter()
            .find(|(id, _)| id == order)
            .unwrap_or_else(|| panic!("OrderCreated of {order} published"));
        rules
            .iter()
            .filter(|(name, _, _)| name == "purchase-limit")
            .cloned()
            .collect()
    };
    assert_eq!(policy_of(&big_order), vec![], "a shadow decides nothing");
    assert_eq!(policy_of(&on_v2), vec![("purchase-limit".into(), 2, v2)]);
    assert_eq!(policy_of(&on_v1), vec![("purchase-limit".into(), 1, v1)]);
    let order_rules = created[0].1.first().expect("the order rules first");
    assert_eq!((order_rules.0.as_str(), order_rules.1), ("order", 0), "{created:?}");

    // The order view shows what the event names, on either instance:
    // the new hash on the order placed after the swap, the old one kept.
    let admin = token("ops", "admin");
    for (order, addr) in [(&on_v2, b.addr), (&on_v1, a.addr), (&big_order, a.addr)] {
        let view = common::call(addr, "GET", &format!("/api/orders/{order}"), Some(&admin), &[], "").await;
        assert_eq!(view.status, 200, "{}", view.body);
        let shown: Vec<(String, u64, String)> = view.json()["policy"]
            .as_array()
            .expect("the order view names its rules")
            .iter()
            .map(|r| {
                let text = |field: &str| r[field].as_str().unwrap_or_default().to_owned();
                (text("name"), r["version"].as_u64().unwrap_or(0), text("hash"))
            })
            .collect();
        let (_, named) = created.iter().find(|(id, _)| id == order).expect("published");
        assert_eq!(&shown, named, "order {order}");
    }

    let _ = bus.rules().delete().await;
    let _ = bus.delete_streams().await;
}
