//! Customer data over HTTP, in both modes: delivery details stored
//! encrypted, shown to their customer and admins only, exported, erased by
//! destroying the customer's key; and, on the real services, a marker
//! written as a delivery address that no table, stream or log line holds.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Answer, InProcess, RoleProcess, TEST_SECRET, token};
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Distributed,
    Embedded,
}

async fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: Option<&Value>) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::call(addr, method, path, Some(token), &[], &body).await
}

/// Registers SKU-1 and waits until the order side prices it.
async fn stock_up(addr: SocketAddr) {
    let admin = token("ops", "admin");
    let mug = json!({"id": "SKU-1", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 50});
    let created = call(addr, "POST", "/api/products", &admin, Some(&mug)).await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// Places an order of SKU-1 with `delivery`, waiting out the moment before
/// the order side knows the product.
async fn place(addr: SocketAddr, customer: &str, delivery: &Value) -> Answer {
    let body = json!({"items": [{"product_id": "SKU-1", "quantity": 1}], "delivery": delivery});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = call(addr, "POST", "/api/orders", &token(customer, "customer"), Some(&body)).await;
        let unknown = answer.status == 422 && answer.body.contains("no such product in the catalogue");
        if !unknown || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivery(address: &str) -> Value {
    json!({"name": "Kim Minji", "phone": "+82 10 1234 5678", "address": address})
}

async fn order_of(addr: SocketAddr, id: &str, caller: &str) -> Value {
    let answer = call(addr, "GET", &format!("/api/orders/{id}"), caller, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_customer_data_is_shown_exported_and_erased() {
    customer_data_is_shown_exported_and_erased(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_customer_data_is_shown_exported_and_erased() {
    customer_data_is_shown_exported_and_erased(Mode::Embedded).await;
}

async fn customer_data_is_shown_exported_and_erased(mode: Mode) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (url, namespace) = match mode {
        Mode::Distributed => {
            let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
            let (namespace, _bus) = common::fresh_bus('c').await;
            (url, namespace.to_string())
        }
        Mode::Embedded => (
            format!("sqlite://{}", dir.path().join("shop.db").display()),
            "shop".to_owned(),
        ),
    };
    let shop = InProcess::start(
        shop::ProcessRole::All,
        &url,
        &namespace,
        &[("SHOP_JWT_SECRET", TEST_SECRET)],
    )
    .await;
    let addr = shop.addr;
    let (alice, bob, admin, psp) = (
        token("alice", "customer"),
        token("bob", "customer"),
        token("ops", "admin"),
        token("psp", "payment"),
    );
    stock_up(addr).await;

    // Bad details are refused, naming the field, and nothing is written.
    for (bad, field) in [
        (json!({"name": "", "phone": "1", "address": "x"}), "delivery.name"),
        (
            json!({"name": "a", "phone": "01\u{0}2", "address": "x"}),
            "delivery.phone",
        ),
        (
            json!({"name": "a", "phone": "1", "address": "x".repeat(201)}),
            "delivery.address",
        ),
    ] {
        let refused = place(addr, "alice", &bad).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
        assert_eq!(refused.json()["field"], field, "{}", refused.body);
    }
    let unknown_field = place(
        addr,
        "alice",
        &json!({"name": "a", "phone": "1", "address": "x", "email": "e"}),
    )
    .await;
    assert!((400..500).contains(&unknown_field.status), "{}", unknown_field.body);
    let listed = call(addr, "GET", "/api/orders", &alice, None).await.json();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "no order written: {listed}"
    );

    let placed = place(addr, "alice", &delivery("1 Sejong-daero, Seoul")).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    assert_eq!(placed.json()["delivery"], delivery("1 Sejong-daero, Seoul"));
    let first = placed.json()["order_id"].as_str().expect("an id").to_owned();
    let bobs = place(addr, "bob", &delivery("2 Teheran-ro, Seoul")).await;
    let bobs = bobs.json()["order_id"].as_str().expect("an id").to_owned();
    let plain = call(
        addr,
        "POST",
        "/api/orders",
        &alice,
        Some(&json!({"items": [{"product_id": "SKU-1", "quantity": 1}]})),
    )
    .await;
    assert_eq!(plain.status, 202, "{}", plain.body);
    let plain = plain.json()["order_id"].as_str().expect("an id").to_owned();

    // The owner and admins see it; payment does not; another customer not even the order.
    assert_eq!(
        order_of(addr, &first, &alice).await["delivery"],
        delivery("1 Sejong-daero, Seoul")
    );
    assert_eq!(
        order_of(addr, &first, &admin).await["delivery"],
        delivery("1 Sejong-daero, Seoul")
    );
    assert_eq!(order_of(addr, &first, &psp).await["delivery"], Value::Null);
    let peek = call(addr, "GET", &format!("/api/orders/{first}"), &bob, None).await;
    assert_eq!(peek.status, 404);
    assert_eq!(order_of(addr, &plain, &alice).await["delivery"], Value::Null);

    // Export: by the customer and by an admin, nobody else.
    let export = call(addr, "GET", "/api/customers/alice/export", &alice, None).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let export = export.json();
    assert_eq!(export["customer_id"], "alice");
    let orders = export["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 2, "{export}");
    assert!(
        orders
            .iter()
            .any(|o| o["order_id"] == first.as_str() && o["delivery"] == delivery("1 Sejong-daero, Seoul"))
    );
    let by_admin = call(addr, "GET", "/api/customers/alice/export", &admin, None).await;
    // The same orders and details; their status may move on meanwhile (the saga runs).
    let what = |orders: &Value| -> Vec<(Value, Value)> {
        let orders = orders.as_array().cloned().unwrap_or_default();
        orders
            .iter()
            .map(|o| (o["order_id"].clone(), o["delivery"].clone()))
            .collect()
    };
    assert_eq!(what(&by_admin.json()["orders"]), what(&export["orders"]));
    for caller in [&bob, &psp] {
        let refused = call(addr, "GET", "/api/customers/alice/export", caller, None).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let refused = call(addr, "DELETE", "/api/customers/alice", caller, None).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }

    // Erasure: 204, again 204; the details read back as erased, the rest stays.
    let erased = call(addr, "DELETE", "/api/customers/alice", &alice, None).await;
    assert_eq!(erased.status, 204, "{}", erased.body);
    let again = call(addr, "DELETE", "/api/customers/alice", &admin, None).await;
    assert_eq!(again.status, 204, "{}", again.body);
    let after = order_of(addr, &first, &admin).await;
    assert_eq!(after["delivery"], Value::Null, "{after}");
    assert_eq!(after["delivery_erased"], true, "{after}");
    assert_eq!(
        (after["total"].as_i64(), after["items"][0]["quantity"].as_i64()),
        (Some(1200), Some(1))
    );
    let export = call(addr, "GET", "/api/customers/alice/export", &alice, None)
        .await
        .json();
    assert!(
        export["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .any(|o| o["order_id"] == first.as_str() && o["delivery_erased"] == true)
    );
    assert_eq!(
        order_of(addr, &plain, &alice).await.get("delivery_erased"),
        None,
        "it had nothing to erase"
    );
    assert_eq!(
        order_of(addr, &bobs, &bob).await["delivery"],
        delivery("2 Teheran-ro, Seoul"),
        "bob's stay"
    );

    // A later order gets a new key; the erased one stays erased.
    let later = place(addr, "alice", &delivery("3 Jong-ro, Seoul")).await;
    let later = later.json()["order_id"].as_str().expect("an id").to_owned();
    assert_eq!(
        order_of(addr, &later, &alice).await["delivery"],
        delivery("3 Jong-ro, Seoul")
    );
    assert_eq!(order_of(addr, &first, &alice).await["delivery_erased"], true);
    shop.stop().await;
}

/// The marker test: a delivery written through the API is in no table, no
/// stream message and no log line in clear, while its order went through
/// the whole saga (and a debug log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_marker_is_nowhere_in_clear() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('m').await;
    let log = Arc::new(Mutex::new(String::new()));
    let shop = RoleProcess::start_logged(
        "all",
        &url,
        &namespace.to_string(),
        &[("SHOP_LOG", "debug")],
        Some(Arc::clone(&log)),
    );
    stock_up(shop.addr).await;
    let marker = format!("MARKER{}", uuid::Uuid::now_v7().simple());
    let details = json!({"name": marker, "phone": marker, "address": marker});
    let placed = place(shop.addr, "alice", &details).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.json()["order_id"].as_str().expect("an id").to_owned();
    common::confirmed(shop.addr, &token("alice", "customer"), &id).await;
    let completed = call(
        shop.addr,
        "POST",
        &format!("/api/orders/{id}/complete"),
        &token("psp", "payment"),
        None,
    )
    .await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    assert_eq!(
        order_of(shop.addr, &id, &token("alice", "customer")).await["delivery"]["address"],
        marker.as_str()
    );

    // Every row of every table of the shop's database, as text.
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
    )
    .fetch_all(store.pool())
    .await
    .expect("the tables");
    assert!(tables.iter().any(|(_, t)| t == "deliveries"), "{tables:?}");
    let mut rows = 0;
    for (schema, table) in &tables {
        let dump: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_all(store.pool())
        .await
        .expect("a table dump");
        rows += dump.len();
        let found: Vec<&String> = dump.iter().filter(|row| row.contains(&marker)).collect();
        assert!(found.is_empty(), "{schema}.{table} holds the marker: {found:?}");
    }
    let sealed: String = sqlx::query_scalar("SELECT sealed FROM orders.deliveries WHERE order_id = $1")
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .expect("the sealed delivery is stored");
    assert!(!sealed.is_empty());

    // Every message of every stream of this namespace.
    let js = bus.jetstream();
    let names: Vec<String> = js
        .stream_names()
        .filter_map(|name| async move { name.ok() })
        .filter(|name| std::future::ready(name.contains(&namespace.to_string())))
        .collect()
        .await;
    assert!(!names.is_empty());
    let mut messages = 0;
    for name in &names {
        let stream = js.get_stream(name).await.expect("the stream");
        let state = stream.get_info().await.expect("its state").state;
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            messages += 1;
            let text = String::from_utf8_lossy(&message.payload);
            assert!(!text.contains(&marker), "{name} #{sequence} holds the marker");
            assert!(
                !format!("{:?}", message.headers).contains(&marker),
                "{name} #{sequence}'s headers"
            );
        }
    }
    assert!(messages >= 4, "the order's events were stored: {messages}");
    drop(shop);

    let log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert!(log.lines().count() > 10, "a debug log was written: {log}");
    assert!(!log.contains(&marker), "the log holds the marker");
    assert!(rows > 10, "the dump read the shop's rows: {rows}");
    let _ = bus.delete_streams().await;
}

/// `shop keys rotate` moves every customer key to a new key-encryption key
/// without losing a delivery, and `shop customers erase` erases as the API
/// does; embedded, with the keys the data directory holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_customers_are_erased_from_the_command_line() {
    use crate::cli::{shop as run, stderr, stdout};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let secrets = dir.path().join("secrets");
    // No SHOP_DATA_KEY: the data directory's own key.
    let serve = || RoleProcess::start("all", &url, "shop", &[("SHOP_DATA_KEY", "")]);
    let env = [("SHOP_DATABASE_URL", url.as_str())];

    let running = serve();
    stock_up(running.addr).await;
    let placed = place(running.addr, "alice", &delivery("1 Sejong-daero, Seoul")).await;
    let id = placed.json()["order_id"].as_str().expect("an id").to_owned();
    let bobs = place(running.addr, "bob", &delivery("2 Teheran-ro, Seoul")).await;
    let bobs = bobs.json()["order_id"].as_str().expect("an id").to_owned();
    drop(running);
    let old_key = std::fs::read_to_string(secrets.join("data-key")).expect("made on first start");

    let rotated = run(&["keys", "rotate", "--new-key"], &env);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    assert!(
        stdout(&rotated).starts_with("2 data keys re-wrapped; 0 under"),
        "{}",
        stdout(&rotated)
    );
    let new_key = std::fs::read_to_string(secrets.join("data-key")).expect("a new key");
    assert_ne!(new_key, old_key);
    assert_eq!(
        std::fs::read_to_string(secrets.join("data-key.previous")).ok(),
        Some(old_key.clone())
    );
    let unfinished = run(&["keys", "rotate", "--new-key"], &env);
    assert!(
        !unfinished.status.success(),
        "a second --new-key waits for the first rotation to end"
    );
    assert!(
        stderr(&unfinished).contains("a rotation is under way"),
        "{}",
        stderr(&unfinished)
    );
    let again = run(&["keys", "rotate"], &env);
    assert!(
        stdout(&again).starts_with("0 data keys re-wrapped"),
        "{}",
        stdout(&again)
    );

    // With the old key gone, everything still opens: it was all re-wrapped.
    std::fs::remove_file(secrets.join("data-key.previous")).expect("removed");
    let running = serve();
    let alice = token("alice", "customer");
    assert_eq!(
        order_of(running.addr, &id, &alice).await["delivery"],
        delivery("1 Sejong-daero, Seoul")
    );
    drop(running);

    // A key-encryption key that wraps none of the keys: they are reported, exit 1.
    let other_key = "ab".repeat(32);
    let stranger = [
        ("SHOP_DATABASE_URL", url.as_str()),
        ("SHOP_DATA_KEY", other_key.as_str()),
    ];
    let unknown = run(&["keys", "rotate"], &stranger);
    assert_eq!(unknown.status.code(), Some(1), "{}", stderr(&unknown));
    assert!(
        stdout(&unknown).contains("2 under a key-encryption key this process does not hold"),
        "{}",
        stdout(&unknown)
    );

    let erased = run(&["customers", "erase", "alice"], &env);
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert!(stdout(&erased).starts_with("erased"), "{}", stdout(&erased));
    let repeated = run(&["customers", "erase", "alice"], &env);
    assert!(repeated.status.success());
    assert!(
        stdout(&repeated).starts_with("nothing to erase"),
        "{}",
        stdout(&repeated)
    );
    let bad = run(&["customers", "erase", "no spaces"], &env);
    assert!(!bad.status.success());
    let running = serve();
    let order = order_of(running.addr, &id, &alice).await;
    assert_eq!(
        (order["delivery"].clone(), order["delivery_erased"].clone()),
        (Value::Null, json!(true))
    );
    let bob = token("bob", "customer");
    assert_eq!(
        order_of(running.addr, &bobs, &bob).await["delivery"],
        delivery("2 Teheran-ro, Seoul")
    );
}
