//! The REST API of `shop serve --role all`, over HTTP, in both modes: on
//! PostgreSQL, NATS JetStream and Redis, and embedded on SQLite. The whole
//! flow, idempotent retries, roles, and a battery of bad input that must all
//! end in a 4xx problem and write nothing.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Answer, InProcess, TEST_SECRET, http, token};
use serde_json::{Value, json};

struct Api {
    addr: SocketAddr,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        common::call(self.addr, method, path, token, &[], &body).await
    }

    /// Places an order, waiting out the moment before the order side has
    /// heard of the product (the catalogue copy arrives through the saga).
    async fn place(&self, token: &str, body: &Value, key: Option<&str>) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let extra: Vec<(&str, &str)> = key.map(|key| ("idempotency-key", key)).into_iter().collect();
            let answer = common::call(self.addr, "POST", "/api/orders", Some(token), &extra, &body.to_string()).await;
            let unknown = answer.status == 422 && answer.body.contains("no such product in the catalogue");
            if !unknown || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn order_reaches(&self, token: &str, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.call("GET", &format!("/api/orders/{id}"), Some(token), None).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            let order = answer.json();
            if order["status"] == status {
                return order;
            }
            assert!(Instant::now() < deadline, "order {id} never became {status}: {order}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Distributed,
    Embedded,
}

/// A fresh shop in `mode`, in this process; the directory holds the embedded database.
async fn start(mode: Mode, prefix: char) -> (Api, InProcess, tempfile::TempDir) {
    start_with(mode, prefix, &[]).await
}

async fn start_with(mode: Mode, prefix: char, extra: &[(&str, &str)]) -> (Api, InProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (url, namespace) = match mode {
        Mode::Distributed => {
            let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
            let (namespace, _bus) = common::fresh_bus(prefix).await;
            (url, namespace.to_string())
        }
        Mode::Embedded => (
            format!("sqlite://{}", dir.path().join("shop.db").display()),
            "shop".to_owned(),
        ),
    };
    let mut env = vec![("SHOP_JWT_SECRET", TEST_SECRET)];
    env.extend_from_slice(extra);
    let shop = InProcess::start(shop::ProcessRole::All, &url, &namespace, &env).await;
    (Api { addr: shop.addr }, shop, dir)
}

fn order_body(product: &str, quantity: i64) -> Value {
    json!({"items": [{"product_id": product, "quantity": quantity}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_customer_orders_through_the_api_and_the_saga_answers() {
    a_customer_orders_through_the_api_and_the_saga_answers(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_customer_orders_through_the_api_and_the_saga_answers() {
    a_customer_orders_through_the_api_and_the_saga_answers(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_new_price_prices_the_next_orders_whatever_the_cache_holds() {
    a_new_price_prices_the_next_orders_whatever_the_cache_holds(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_new_price_prices_the_next_orders_whatever_the_cache_holds() {
    a_new_price_prices_the_next_orders_whatever_the_cache_holds(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_bad_input_gets_a_4xx_problem_and_writes_nothing() {
    bad_input_gets_a_4xx_problem_and_writes_nothing(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bad_input_gets_a_4xx_problem_and_writes_nothing() {
    bad_input_gets_a_4xx_problem_and_writes_nothing(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_burst_over_the_limits_gets_429() {
    a_burst_over_the_limits_gets_429(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_burst_over_the_limits_gets_429() {
    a_burst_over_the_limits_gets_429(Mode::Embedded).await;
}

async fn a_burst_over_the_limits_gets_429(mode: Mode) {
    let limits = [("SHOP_RATE_LIMIT_USER", "2/3"), ("SHOP_RATE_LIMIT_IP", "off")];
    let (api, shop, _dir) = start_with(mode, 'r', &limits).await;
    let alice = token("alice", "customer");
    let bob = token("bob", "customer");
    for n in 0..3 {
        let answer = api.call("GET", "/api/orders", Some(&alice), None).await;
        assert_eq!(answer.status, 200, "request {n} of the burst: {}", answer.body);
    }
    let limited = api.call("GET", "/api/orders", Some(&alice), None).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.header("content-type"), Some("application/problem+json"));
    let wait: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(
        api.call("GET", "/api/orders", Some(&bob), None).await.status,
        200,
        "another user has their own allowance"
    );
    assert_eq!(
        api.call("GET", "/health/live", None, None).await.status,
        200,
        "health is never limited"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        api.call("GET", "/api/orders", Some(&alice), None).await.status,
        200,
        "the allowance comes back at 2 a second"
    );
    shop.stop().await;

    // Per address: even callers without a token are counted.
    let (api, shop, _dir) = start_with(
        mode,
        's',
        &[("SHOP_RATE_LIMIT_USER", "off"), ("SHOP_RATE_LIMIT_IP", "1/2")],
    )
    .await;
    assert_eq!(api.call("GET", "/api/orders", None, None).await.status, 401);
    assert_eq!(api.call("GET", "/api/orders", None, None).await.status, 401);
    assert_eq!(api.call("GET", "/api/orders", None, None).await.status, 429);
    shop.stop().await;
}

async fn a_customer_orders_through_the_api_and_the_saga_answers(mode: Mode) {
    let (api, shop, _dir) = start(mode, 'a').await;
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    let bob = token("bob", "customer");
    let payment = token("psp", "payment");

    let mug = json!({"id": "SKU-1", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 5});
    let created = api.call("POST", "/api/products", Some(&admin), Some(&mug)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/api/products/SKU-1"));
    assert_eq!(created.json()["available"], 5);
    let again = api.call("POST", "/api/products", Some(&admin), Some(&mug)).await;
    assert_eq!(again.status, 409, "{}", again.body);

    // Intake, with an idempotency key: a retry gets the same order.
    let placed = api.place(&alice, &order_body("SKU-1", 2), Some("k-1")).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let order = placed.json();
    let id = order["order_id"].as_str().expect("an order id").to_owned();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["total"], 2400);
    assert_eq!(placed.header("location"), Some(format!("/api/orders/{id}").as_str()));
    assert!(placed.header("x-request-id").is_some());
    assert!(placed.header("x-response-time").is_some());
    let retried = api.place(&alice, &order_body("SKU-1", 2), Some("k-1")).await;
    assert_eq!(retried.status, 202);
    assert_eq!(
        retried.json()["order_id"],
        id.as_str(),
        "the same order, not a second one"
    );
    let reused = api.place(&alice, &order_body("SKU-1", 3), Some("k-1")).await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.json()["field"], "Idempotency-Key");

    let confirmed = api.order_reaches(&alice, &id, "CONFIRMED").await;
    assert_eq!(confirmed["items"][0]["unit_price"], 1200);

    // Only the owner (and staff) see an order; others are told it does not exist.
    let peeking = api.call("GET", &format!("/api/orders/{id}"), Some(&bob), None).await;
    assert_eq!(peeking.status, 404, "{}", peeking.body);
    assert_eq!(peeking.header("content-type"), Some("application/problem+json"));
    let bob_cancels = api
        .call("POST", &format!("/api/orders/{id}/cancel"), Some(&bob), None)
        .await;
    assert_eq!(bob_cancels.status, 404);
    let staff = api.call("GET", &format!("/api/orders/{id}"), Some(&admin), None).await;
    assert_eq!(staff.status, 200);

    // Roles.
    let cup = json!({"id": "SKU-2", "name": "Cup", "unit_price": 900, "currency": "KRW", "stock": 1});
    let denied = api.call("POST", "/api/products", Some(&bob), Some(&cup)).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let psp_orders = api
        .call("POST", "/api/orders", Some(&payment), Some(&order_body("SKU-1", 1)))
        .await;
    assert_eq!(psp_orders.status, 403);
    let self_paid = api
        .call("POST", &format!("/api/orders/{id}/complete"), Some(&alice), None)
        .await;
    assert_eq!(self_paid.status, 403);

    // Payment completes it; the stock is deducted.
    let completed = api
        .call("POST", &format!("/api/orders/{id}/complete"), Some(&payment), None)
        .await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    assert_eq!(completed.json()["status"], "COMPLETED");
    let late_cancel = api
        .call("POST", &format!("/api/orders/{id}/cancel"), Some(&alice), None)
        .await;
    assert_eq!(late_cancel.status, 409, "{}", late_cancel.body);

    // More than there is: cancelled by the saga.
    let greedy = api.place(&alice, &order_body("SKU-1", 10), None).await;
    assert_eq!(greedy.status, 202);
    let greedy_id = greedy.json()["order_id"].as_str().expect("id").to_owned();
    let cancelled = api.order_reaches(&alice, &greedy_id, "CANCELLED").await;
    assert_eq!(cancelled["cancel_reason"], "insufficient_stock");

    let mine = api.call("GET", "/api/orders?limit=1", Some(&alice), None).await.json();
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    let next = mine["next"].as_str().expect("a second page");
    let rest = api
        .call("GET", &format!("/api/orders?limit=1&after={next}"), Some(&alice), None)
        .await
        .json();
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));
    let only_cancelled = api
        .call("GET", "/api/orders?status=CANCELLED", Some(&alice), None)
        .await
        .json();
    assert_eq!(only_cancelled["items"][0]["order_id"], greedy_id.as_str());
    let bobs = api.call("GET", "/api/orders", Some(&bob), None).await.json();
    assert_eq!(bobs["items"].as_array().map(Vec::len), Some(0));

    // Stock administration and the audit trail.
    let product = api.call("GET", "/api/products/SKU-1", Some(&alice), None).await.json();
    assert_eq!(
        (&product["available"], &product["reserved"], &product["deducted"]),
        (&json!(3), &json!(0), &json!(2))
    );
    let restocked = api
        .call(
            "POST",
            "/api/products/SKU-1/restock",
            Some(&admin),
            Some(&json!({"quantity": 10})),
        )
        .await;
    assert_eq!(restocked.json()["available"], 13);
    let adjusted = api
        .call(
            "POST",
            "/api/products/SKU-1/adjust",
            Some(&admin),
            Some(&json!({"delta": -1, "reason": "broken"})),
        )
        .await;
    assert_eq!(adjusted.json()["available"], 12);
    let repriced = api
        .call(
            "PUT",
            "/api/products/SKU-1/price",
            Some(&admin),
            Some(&json!({"unit_price": 1500})),
        )
        .await;
    assert_eq!(repriced.json()["unit_price"], 1500);
    let trail = api
        .call("GET", "/api/products/SKU-1/movements", Some(&admin), None)
        .await
        .json();
    let kinds: Vec<&str> = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["initial", "reserve", "deduct", "restock", "adjust"]);
    let hidden = api
        .call("GET", "/api/products/SKU-1/movements", Some(&alice), None)
        .await;
    assert_eq!(hidden.status, 403);

    let metrics = shop.get("/metrics").await;
    assert_eq!(
        common::sample(&metrics, "shop_orders_created_total"),
        Some(2.0),
        "{metrics}"
    );
    shop.stop().await;
}

/// Intake keeps the prices it read (here for ten minutes), yet a price
/// change that reaches this process's catalogue copy prices the orders
/// after it: the change drops the kept price.
async fn a_new_price_prices_the_next_orders_whatever_the_cache_holds(mode: Mode) {
    let (api, shop, _dir) = start_with(mode, 'p', &[("SHOP_PRICE_CACHE_MS", "600000")]).await;
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    let cup = json!({"id": "SKU-P", "name": "Cup", "unit_price": 1200, "currency": "KRW", "stock": 1000});
    let created = api.call("POST", "/api/products", Some(&admin), Some(&cup)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let first = api.place(&alice, &order_body("SKU-P", 1), None).await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.json()["total"], 1200);

    let price = json!({"unit_price": 1500});
    let repriced = api
        .call("PUT", "/api/products/SKU-P/price", Some(&admin), Some(&price))
        .await;
    assert_eq!(repriced.status, 200, "{}", repriced.body);
    // The change reaches the order side through the saga, a moment later.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let next = api.place(&alice, &order_body("SKU-P", 1), None).await;
        assert_eq!(next.status, 202, "{}", next.body);
        let total = next.json()["total"].clone();
        if total == 1500 {
            break;
        }
        assert_eq!(total, 1200, "the old price or the new one");
        assert!(Instant::now() < deadline, "orders kept the old price");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = api.place(&alice, &order_body("SKU-P", 1), None).await;
    assert_eq!(after.json()["total"], 1500, "{}", after.body);
    shop.stop().await;
}

async fn bad_input_gets_a_4xx_problem_and_writes_nothing(mode: Mode) {
    let (api, shop, _dir) = start(mode, 'b').await;
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    let mug = json!({"id": "SKU-B", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 5});
    assert_eq!(
        api.call("POST", "/api/products", Some(&admin), Some(&mug)).await.status,
        201
    );
    // Wait until the order side can price it, so "unknown product" below means unknown.
    let probe = api.place(&alice, &order_body("SKU-B", 0), None).await;
    assert_eq!(probe.status, 422, "{}", probe.body);

    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = json!({"sub": "alice", "role": "customer", "iat": now - 7200, "exp": now - 3600});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        )
        .expect("signed")
    };
    let forged = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = json!({"sub": "alice", "role": "admin", "exp": 4_000_000_000u64});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"not the secret"),
        )
        .expect("signed")
    };
    let long_id = "x".repeat(300);
    let huge = r#"{"items":[{"product_id":"SKU-B","quantity":99999999999999999999999}]}"#;
    let oversized = format!(
        r#"{{"items":[{{"product_id":"{}","quantity":1}}]}}"#,
        "x".repeat(100_000)
    );
    let long_key = "k".repeat(300);

    struct Case<'a> {
        name: &'a str,
        method: &'a str,
        path: &'a str,
        token: Option<&'a str>,
        content_type: &'a str,
        body: String,
        key: Option<&'a str>,
        status: u16,
        field: Option<&'a str>,
    }
    let case = |name, method, path, token, body: &str, status, field| Case {
        name,
        method,
        path,
        token,
        content_type: "application/json",
        body: body.to_owned(),
        key: None,
        status,
        field,
    };
    let orders = "/api/orders";
    let good = r#"{"items":[{"product_id":"SKU-B","quantity":1}]}"#;
    let cases = vec![
        case("no token", "POST", orders, None, good, 401, None),
        case("not a JWT", "POST", orders, Some("garbage"), good, 401, None),
        case("expired token", "POST", orders, Some(&expired), good, 401, None),
        case("forged token", "POST", orders, Some(&forged), good, 401, None),
        case(
            "malformed JSON",
            "POST",
            orders,
            Some(&alice),
            "{\"items\": [",
            400,
            None,
        ),
        Case {
            content_type: "text/plain",
            ..case("not JSON at all", "POST", orders, Some(&alice), good, 415, None)
        },
        case(
            "items of the wrong type",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":"mug"}"#,
            422,
            Some("items"),
        ),
        case(
            "quantity as a string",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[{"product_id":"SKU-B","quantity":"2"}]}"#,
            422,
            Some("items[0].quantity"),
        ),
        case(
            "zero quantity",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[{"product_id":"SKU-B","quantity":0}]}"#,
            422,
            Some("items[0].quantity"),
        ),
        case(
            "negative quantity",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[{"product_id":"SKU-B","quantity":-3}]}"#,
            422,
            Some("items[0].quantity"),
        ),
        case(
            "quantity beyond any integer",
            "POST",
            orders,
            Some(&alice),
            huge,
            422,
            Some("items[0].quantity"),
        ),
        case(
            "quantity beyond the limit",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[{"product_id":"SKU-B","quantity":10001}]}"#,
            422,
            Some("items[0].quantity"),
        ),
        case(
            "unknown product",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[{"product_id":"NOPE","quantity":1}]}"#,
            422,
            Some("items[0].product_id"),
        ),
        case(
            "overlong product id",
            "POST",
            orders,
            Some(&alice),
            &format!(r#"{{"items":[{{"product_id":"{long_id}","quantity":1}}]}}"#),
            422,
            Some("items[0].product_id"),
        ),
        case(
            "empty items",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[]}"#,
            422,
            Some("items"),
        ),
        case("no items at all", "POST", orders, Some(&alice), "{}", 422, None),
        case(
            "an unknown field",
            "POST",
            orders,
            Some(&alice),
            r#"{"items":[{"product_id":"SKU-B","quantity":1}],"coupon":"FREE"}"#,
            422,
            None,
        ),
        case("an oversized body", "POST", orders, Some(&alice), &oversized, 413, None),
        Case {
            key: Some(&long_key),
            ..case(
                "an overlong idempotency key",
                "POST",
                orders,
                Some(&alice),
                good,
                400,
                Some("Idempotency-Key"),
            )
        },
        case(
            "negative stock",
            "POST",
            "/api/products",
            Some(&admin),
            r#"{"id":"SKU-N","name":"Mug","unit_price":1,"currency":"KRW","stock":-1}"#,
            422,
            Some("stock"),
        ),
        case(
            "a bad currency",
            "POST",
            "/api/products",
            Some(&admin),
            r#"{"id":"SKU-N","name":"Mug","unit_price":1,"currency":"won","stock":1}"#,
            422,
            Some("currency"),
        ),
        case(
            "an overlong name",
            "POST",
            "/api/products",
            Some(&admin),
            &format!(
                r#"{{"id":"SKU-N","name":"{}","unit_price":1,"currency":"KRW","stock":1}}"#,
                "n".repeat(500)
            ),
            422,
            Some("name"),
        ),
        case(
            "a NUL in a name",
            "POST",
            "/api/products",
            Some(&admin),
            r#"{"id":"SKU-N","name":"Mu\u0000g","unit_price":1,"currency":"KRW","stock":1}"#,
            422,
            Some("name"),
        ),
        case(
            "a NUL in an adjustment's reason",
            "POST",
            "/api/products/SKU-B/adjust",
            Some(&admin),
            r#"{"delta":1,"reason":"count\u0000"}"#,
            422,
            Some("reason"),
        ),
        case(
            "an adjustment below zero",
            "POST",
            "/api/products/SKU-B/adjust",
            Some(&admin),
            r#"{"delta":-6,"reason":"count"}"#,
            409,
            Some("delta"),
        ),
        case(
            "restocking an unknown product",
            "POST",
            "/api/products/NOPE/restock",
            Some(&admin),
            r#"{"quantity":1}"#,
            404,
            None,
        ),
        case(
            "a zero page",
            "GET",
            "/api/orders?limit=0",
            Some(&alice),
            "",
            422,
            Some("limit"),
        ),
        case(
            "an unknown status",
            "GET",
            "/api/orders?status=LOST",
            Some(&alice),
            "",
            422,
            Some("status"),
        ),
        case(
            "a bad cursor",
            "GET",
            "/api/orders?after=zzz",
            Some(&alice),
            "",
            422,
            Some("after"),
        ),
        case(
            "a bad page number",
            "GET",
            "/api/orders?limit=many",
            Some(&alice),
            "",
            400,
            None,
        ),
        // NUL bytes and other control characters: refused at the edge, not
        // handed to a database that would fail on them (the issue's repro).
        case("a NUL order id", "GET", "/api/orders/%00", Some(&alice), "", 400, None),
        case(
            "a NUL product id",
            "GET",
            "/api/products/%00",
            Some(&alice),
            "",
            400,
            None,
        ),
        case(
            "a NUL cursor",
            "GET",
            "/api/orders?after=1_%00",
            Some(&alice),
            "",
            400,
            None,
        ),
        case(
            "a NUL in a movements path",
            "GET",
            "/api/products/a%00b/movements",
            Some(&admin),
            "",
            400,
            None,
        ),
        case(
            "an escape in an id",
            "GET",
            "/api/orders/a%1bb",
            Some(&alice),
            "",
            400,
            None,
        ),
        case(
            "an unknown endpoint",
            "GET",
            "/api/nothing",
            Some(&alice),
            "",
            404,
            None,
        ),
        case("a method not served", "DELETE", orders, Some(&alice), "", 405, None),
        case(
            "an unknown order",
            "GET",
            "/api/orders/nope",
            Some(&alice),
            "",
            404,
            None,
        ),
    ];
    for case in &cases {
        let bearer = case.token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", case.content_type)];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer));
        }
        if let Some(key) = case.key {
            headers.push(("idempotency-key", key));
        }
        let answer = http(api.addr, case.method, case.path, &headers, case.body.as_bytes()).await;
        assert_eq!(answer.status, case.status, "{}: {}", case.name, answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{}: {:?}",
            case.name,
            answer.headers
        );
        let problem = answer.json();
        assert_eq!(problem["status"], case.status, "{}", case.name);
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            case.name
        );
        if let Some(field) = case.field {
            assert_eq!(problem["field"], field, "{}: {}", case.name, answer.body);
        }
    }

    let orders = api.call("GET", "/api/orders", Some(&alice), None).await.json();
    assert_eq!(
        orders["items"].as_array().map(Vec::len),
        Some(0),
        "no bad request wrote an order"
    );
    let never = api.call("GET", "/api/products/SKU-N", Some(&admin), None).await;
    assert_eq!(never.status, 404, "no bad request wrote a product");
    let untouched = api.call("GET", "/api/products/SKU-B", Some(&admin), None).await.json();
    assert_eq!(untouched["available"], 5, "no bad request moved stock");
    let trail = api
        .call("GET", "/api/products/SKU-B/movements", Some(&admin), None)
        .await
        .json();
    assert_eq!(
        trail["items"].as_array().map(Vec::len),
        Some(1),
        "only the initial stock"
    );
    shop.stop().await;
}

/// Anyone signed in lists the catalogue a page at a time, and searches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lists_in_pages_and_searches_ids_and_names() {
    let (api, shop, _dir) = start(Mode::Embedded, 'l').await;
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    for (id, name) in [("SKU-3", "Tea Cup"), ("SKU-1", "Blue Mug"), ("SKU-2", "Red Mug")] {
        let product = json!({"id": id, "name": name, "unit_price": 900, "currency": "KRW", "stock": 5});
        assert_eq!(
            api.call("POST", "/api/products", Some(&admin), Some(&product))
                .await
                .status,
            201
        );
    }
    let first = api.call("GET", "/api/products?limit=2", Some(&alice), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["id"].as_str().expect("an id").to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["SKU-1", "SKU-2"]);
    assert_eq!(first["items"][0]["available"], 5);
    assert_eq!(first["next"], "SKU-2");
    let second = api
        .call("GET", "/api/products?limit=2&after=SKU-2", Some(&alice), None)
        .await
        .json();
    assert_eq!(ids(&second), ["SKU-3"]);
    assert!(second.get("next").is_none(), "the last page: {second}");

    let mugs = api.call("GET", "/api/products?q=mUG", Some(&alice), None).await.json();
    assert_eq!(ids(&mugs), ["SKU-1", "SKU-2"]);
    let by_id = api
        .call("GET", "/api/products?q=sku-3", Some(&alice), None)
        .await
        .json();
    assert_eq!(ids(&by_id), ["SKU-3"]);
    let none = api.call("GET", "/api/products?q=%25", Some(&alice), None).await.json();
    assert_eq!(ids(&none), Vec::<String>::new(), "% searches for itself");

    for (query, field) in [("limit=0", "limit"), ("limit=101", "limit"), ("after=a%20b", "after")] {
        let refused = api
            .call("GET", &format!("/api/products?{query}"), Some(&alice), None)
            .await;
        assert_eq!(refused.status, 422, "{query}: {}", refused.body);
        assert_eq!(refused.json()["field"], field, "{query}");
    }
    let long = format!("/api/products?q={}", "x".repeat(201));
    assert_eq!(api.call("GET", &long, Some(&alice), None).await.status, 422);
    assert_eq!(
        api.call("GET", "/api/products?sort=name", Some(&alice), None)
            .await
            .status,
        400
    );
    assert_eq!(api.call("GET", "/api/products", None, None).await.status, 401);
    shop.stop().await;
}

/// One process running both contexts expands an order with its lines'
/// products as the inventory sees them now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expanded_order_carries_its_products_current_names_and_availability() {
    let (api, shop, _dir) = start(Mode::Embedded, 'x').await;
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    for (id, name) in [("SKU-1", "Blue Mug"), ("SKU-2", "Red Mug")] {
        let product = json!({"id": id, "name": name, "unit_price": 900, "currency": "KRW", "stock": 5});
        let created = api.call("POST", "/api/products", Some(&admin), Some(&product)).await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let order = json!({"items": [{"product_id": "SKU-2", "quantity": 2}, {"product_id": "SKU-1", "quantity": 1}]});
    let placed = api.place(&alice, &order, None).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.json()["order_id"].as_str().expect("an id").to_owned();
    api.order_reaches(&alice, &id, "CONFIRMED").await;
    let path = format!("/api/orders/{id}?expand=products");
    let expanded = api.call("GET", &path, Some(&alice), None).await;
    assert_eq!(expanded.status, 200, "{}", expanded.body);
    let view = expanded.json();
    assert_eq!(view["products"], "included");
    assert_eq!(view["items"][0]["product"], json!({"name": "Red Mug", "available": 3}));
    assert_eq!(view["items"][1]["product"], json!({"name": "Blue Mug", "available": 4}));
    let plain = api
        .call("GET", &format!("/api/orders/{id}"), Some(&alice), None)
        .await
        .json();
    assert!(
        plain.get("products").is_none() && plain["items"][0].get("product").is_none(),
        "{plain}"
    );

    // The composition is what the tag covers: a product change moves it.
    let tag = expanded.header("etag").expect("an ETag").to_owned();
    let restock = json!({"quantity": 10});
    let restocked = api
        .call("POST", "/api/products/SKU-2/restock", Some(&admin), Some(&restock))
        .await;
    assert_eq!(restocked.status, 200, "{}", restocked.body);
    let held = [("if-none-match", tag.as_str())];
    let moved = common::call(api.addr, "GET", &path, Some(&alice), &held, "").await;
    assert_eq!(
        moved.status, 200,
        "the restock changed the expanded order: {}",
        moved.body
    );
    assert_eq!(moved.json()["items"][0]["product"]["available"], 13);

    let other = api
        .call(
            "GET",
            &format!("/api/orders/{id}?expand=everything"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(other.status, 400, "{}", other.body);
    shop.stop().await;
}

/// Reads carry an `ETag`; `If-None-Match` saves the body while it holds,
/// and a product changes under `If-Match` only at the version read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_save_bodies_and_lost_updates() {
    let (api, shop, _dir) = start(Mode::Embedded, 'c').await;
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");
    let call = |method: &'static str,
                path: String,
                token: String,
                headers: Vec<(&'static str, String)>,
                body: &'static str| {
        let addr = api.addr;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            common::call(addr, method, &path, Some(&token), &headers, body).await
        }
    };
    let mug = json!({"id": "SKU-C", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 5});
    assert_eq!(
        api.call("POST", "/api/products", Some(&admin), Some(&mug)).await.status,
        201
    );

    let read = call("GET", "/api/products/SKU-C".into(), alice.clone(), vec![], "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.header("etag"), Some("\"1\""));
    assert_eq!(read.header("cache-control"), Some("private, no-cache"));
    let held = vec![("if-none-match", "\"1\"".to_owned())];
    let unchanged = call("GET", "/api/products/SKU-C".into(), alice.clone(), held.clone(), "").await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty(), "{}", unchanged.body);
    assert_eq!(unchanged.header("etag"), Some("\"1\""));

    // Two admins read version 1; the first change wins, the second is refused.
    let at_1 = vec![("if-match", "\"1\"".to_owned())];
    let restocked = call(
        "POST",
        "/api/products/SKU-C/restock".into(),
        admin.clone(),
        at_1.clone(),
        r#"{"quantity": 3}"#,
    )
    .await;
    assert_eq!(restocked.status, 200, "{}", restocked.body);
    assert_eq!(restocked.header("etag"), Some("\"2\""));
    let repriced = call(
        "PUT",
        "/api/products/SKU-C/price".into(),
        admin.clone(),
        at_1,
        r#"{"unit_price": 900}"#,
    )
    .await;
    assert_eq!(repriced.status, 412, "{}", repriced.body);
    assert!(repriced.body.contains("version 2"), "{}", repriced.body);
    let product = call("GET", "/api/products/SKU-C".into(), alice.clone(), held, "").await;
    assert_eq!(product.status, 200, "the copy held is stale");
    assert_eq!(
        product.json()["unit_price"],
        1200,
        "nothing written by the refused change"
    );
    assert_eq!(product.json()["available"], 8);
    let at_2 = vec![("if-match", "\"2\"".to_owned())];
    let adjusted = call(
        "POST",
        "/api/products/SKU-C/adjust".into(),
        admin.clone(),
        at_2,
        r#"{"delta": -1, "reason": "broken"}"#,
    )
    .await;
    assert_eq!(adjusted.status, 200, "{}", adjusted.body);
    let not_a_version = vec![("if-match", "\"v2\"".to_owned())];
    let refused = call(
        "POST",
        "/api/products/SKU-C/restock".into(),
        admin.clone(),
        not_a_version,
        r#"{"quantity": 1}"#,
    )
    .await;
    assert_eq!(refused.status, 400, "not a version: {}", refused.body);
    // A change the rules refuse is refused as such, whatever the version.
    let stale = vec![("if-match", "\"1\"".to_owned())];
    let negative = call(
        "POST",
        "/api/products/SKU-C/adjust".into(),
        admin.clone(),
        stale,
        r#"{"delta": -1000, "reason": "x"}"#,
    )
    .await;
    assert_eq!(negative.status, 409, "{}", negative.body);
    // Conditions are checked for admins only: others are refused first.
    let stale = vec![("if-match", "\"1\"".to_owned())];
    let customer = call(
        "POST",
        "/api/products/SKU-C/restock".into(),
        alice.clone(),
        stale,
        r#"{"quantity": 1}"#,
    )
    .await;
    assert_eq!(customer.status, 403, "{}", customer.body);

    // An order's tag follows its representation.
    let placed = api.place(&alice, &order_body("SKU-C", 1), None).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.json()["order_id"].as_str().expect("an id").to_owned();
    api.order_reaches(&alice, &id, "CONFIRMED").await;
    let order = call("GET", format!("/api/orders/{id}"), alice.clone(), vec![], "").await;
    assert_eq!(order.header("cache-control"), Some("private, no-cache"));
    let tag = order.header("etag").expect("an ETag").to_owned();
    let held = vec![("if-none-match", tag.clone())];
    let same = call("GET", format!("/api/orders/{id}"), alice.clone(), held.clone(), "").await;
    assert_eq!(same.status, 304, "{}", same.body);
    let completed = call("POST", format!("/api/orders/{id}/complete"), admin.clone(), vec![], "").await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    let now = call("GET", format!("/api/orders/{id}"), alice.clone(), held, "").await;
    assert_eq!(now.status, 200, "the order moved on");
    assert_eq!(now.json()["status"], "COMPLETED");
    assert_ne!(now.header("etag"), Some(tag.as_str()));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_allowed_origins_may_call_the_api() {
    let cors = [("SHOP_CORS_ORIGINS", "https://shop.example, https://admin.example")];
    let (api, shop, _dir) = start_with(Mode::Embedded, 'c', &cors).await;
    let preflight = |origin: &'static str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            ),
        ];
        async move { http(api.addr, "OPTIONS", "/api/orders", &headers, b"").await }
    };
    let allowed = preflight("https://shop.example").await;
    assert!(
        allowed.status < 300,
        "a preflight is answered, not refused for lack of a token: {}",
        allowed.status
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example").await;
    assert_eq!(other.header("access-control-allow-origin"), None, "not on the list");

    let alice = token("alice", "customer");
    let bearer = format!("Bearer {alice}");
    let headers = [("origin", "https://admin.example"), ("authorization", bearer.as_str())];
    let answer = http(api.addr, "GET", "/api/orders", &headers, b"").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://admin.example")
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_endpoint_and_the_ui_serves_it() {
    let (api, shop, _dir) = start(Mode::Embedded, 'd').await;
    // The event catalogue of this shop's namespace, to anyone.
    let events = api.call("GET", "/asyncapi.json", None, None).await;
    assert_eq!(events.status, 200, "{}", events.body);
    let events = events.json();
    assert_eq!(events["asyncapi"], "3.0.0");
    let address = events["channels"]["OrderCreated"]["address"]
        .as_str()
        .expect("an address");
    assert_eq!(address, "shop.order.OrderCreated", "the default namespace's subject");
    let document = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(document.status, 200);
    let document = document.json();
    let expected = [
        ("/api/orders", "post"),
        ("/api/orders", "get"),
        ("/api/orders/{id}", "get"),
        ("/api/orders/{id}/cancel", "post"),
        ("/api/orders/{id}/complete", "post"),
        ("/api/products", "post"),
        ("/api/products/{id}", "get"),
        ("/api/products/{id}/restock", "post"),
        ("/api/products/{id}/adjust", "post"),
        ("/api/products/{id}/price", "put"),
        ("/api/products/{id}/movements", "get"),
    ];
    for (path, method) in expected {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not described");
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {path} says nothing of 401"
        );
    }
    let place = &document["paths"]["/api/orders"]["post"];
    assert!(place["responses"]["202"].is_object());
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for schema in ["PlaceBody", "OrderView", "ProductView", "Problem", "MovementPage"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let ui = api.call("GET", "/docs/", None, None).await;
    assert_eq!(ui.status, 200);
    assert!(ui.body.contains("swagger"), "{}", &ui.body[..ui.body.len().min(200)]);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_and_api_keys_are_accepted() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let public = format!("{fixtures}/rs256-test-public.pem");
    let settings = [
        ("SHOP_JWT_PUBLIC_KEY", public.as_str()),
        (
            "SHOP_API_KEYS",
            "shipping:admin:shipping-key-0123456789, psp:payment:psp-key-0123456789abc",
        ),
    ];
    let (api, shop, _dir) = start_with(Mode::Embedded, 'k', &settings).await;

    let private = std::fs::read(format!("{fixtures}/rs256-test-private.pem")).expect("the test key");
    let signer = EncodingKey::from_rsa_pem(&private).expect("an RSA key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rs256 = |exp: u64| {
        let claims = json!({"sub": "carol", "role": "customer", "iat": now, "exp": exp});
        encode(&Header::new(Algorithm::RS256), &claims, &signer).expect("signed")
    };
    let fresh = api.call("GET", "/api/orders", Some(&rs256(now + 600)), None).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let stale = api.call("GET", "/api/orders", Some(&rs256(now - 3600)), None).await;
    assert_eq!(stale.status, 401);
    assert!(stale.body.contains("expired"), "{}", stale.body);
    // HS256 tokens from `shop token` still work beside it.
    assert_eq!(
        api.call("GET", "/api/orders", Some(&token("dan", "customer")), None)
            .await
            .status,
        200
    );

    let with_key = |key: &'static str, method: &'static str, path: &'static str, body: Option<Value>| {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        async move {
            let headers = [("content-type", "application/json"), ("x-api-key", key)];
            http(api.addr, method, path, &headers, body.as_bytes()).await
        }
    };
    let mug = json!({"id": "SKU-K", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 5});
    let registered = with_key("shipping-key-0123456789", "POST", "/api/products", Some(mug)).await;
    assert_eq!(registered.status, 201, "an admin key may register: {}", registered.body);
    let refused = with_key("psp-key-0123456789abc", "GET", "/api/products/SKU-K/movements", None).await;
    assert_eq!(refused.status, 403, "a payment key is no admin");
    let unknown = with_key("not-a-key-at-all-000", "GET", "/api/products/SKU-K", None).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.header("content-type"), Some("application/problem+json"));
    shop.stop().await;
}

/// A price changed by another order instance (here: written to the shared
/// catalogue copy behind this one's back) prices this instance's orders
/// within `SHOP_PRICE_CACHE_MS`, though it kept the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_a_price_changed_elsewhere_prices_orders_within_the_cache_lifetime() {
    let (store, shop) = common::order_role_alone('e', "SKU-E", 1200, &[("SHOP_PRICE_CACHE_MS", "500")]).await;
    let api = Api { addr: shop.addr };
    let alice = token("alice", "customer");
    let first = api.place(&alice, &order_body("SKU-E", 1), None).await;
    assert_eq!(first.json()["total"], 1200, "{}", first.body);

    common::price_directly_at(&store, "SKU-E", 1500, 2).await;
    // Ten lifetimes: long enough for any scheduling, far short of forever.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let next = api.place(&alice, &order_body("SKU-E", 1), None).await;
        assert_eq!(next.status, 202, "{}", next.body);
        if next.json()["total"] == 1500 {
            break;
        }
        assert!(Instant::now() < deadline, "orders kept the old price: {}", next.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shop.stop().await;
}

/// Past `SHOP_INTAKE_MAX_PENDING` orders waiting for the saga, intake answers
/// a fast 503 with `Retry-After` and writes nothing; once the backlog is
/// worked off it takes orders again. Only the order role runs, so nothing
/// confirms the orders: the backlog stays until they are cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_intake_sheds_load_past_the_saga_backlog() {
    use shop_runtime::ports::OrderStore;
    let (store, shop) = common::order_role_alone('k', "SKU-K", 500, &[("SHOP_INTAKE_MAX_PENDING", "2")]).await;
    let api = Api { addr: shop.addr };
    let alice = token("alice", "customer");
    let mut accepted = Vec::new();
    for _ in 0..3 {
        let answer = api.place(&alice, &order_body("SKU-K", 1), None).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        accepted.push(answer.json()["order_id"].as_str().expect("an id").to_owned());
    }
    // The backlog is counted a few times a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let answer = api.place(&alice, &order_body("SKU-K", 1), None).await;
        if answer.status != 202 {
            break answer;
        }
        accepted.push(answer.json()["order_id"].as_str().expect("an id").to_owned());
        assert!(
            Instant::now() < deadline,
            "intake never shed with {} orders pending",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.header("content-type"), Some("application/problem+json"));
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(shed.body.contains("waiting for stock"), "{}", shed.body);
    assert_eq!(
        store.pending_count().await,
        Ok(accepted.len() as u64),
        "the refused order was not written"
    );
    // The gauge is sampled a few times a second: the last order accepted
    // may be counted at the next sample.
    let deadline = Instant::now() + Duration::from_secs(3);
    let metrics = loop {
        let metrics = shop.get("/metrics").await;
        let pending = common::sample(&metrics, "shop_saga_pending_orders");
        if pending == Some(accepted.len() as f64) || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        common::sample(&metrics, "shop_intake_shed_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        common::sample(&metrics, "shop_saga_pending_orders"),
        Some(accepted.len() as f64)
    );

    // The saga's work done (here: the customer cancels them all), intake admits again.
    for id in &accepted {
        let answer = api
            .call("POST", &format!("/api/orders/{id}/cancel"), Some(&alice), None)
            .await;
        assert!((200..300).contains(&answer.status), "{}", answer.body);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = api.place(&alice, &order_body("SKU-K", 1), None).await;
        if answer.status == 202 {
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(Instant::now() < deadline, "intake never admitted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
