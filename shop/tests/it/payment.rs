//! Payment through a provider: `shop payment-sim` as the provider, a shop
//! on PostgreSQL, NATS and Redis with `SHOP_PAYMENT_URL` pointing at it.
//! Approved orders complete and their stock is deducted; declined and
//! unanswered ones are cancelled with `PAYMENT_FAILED` and their stock
//! comes back; forged, stale and replayed notices change nothing.

use crate::common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Answer, InProcess, call, sample, token};
use serde_json::{Value, json};
use shop_runtime::ports::payment::{SIGNATURE_HEADER, sign};

const WEBHOOK_SECRET: &str = "payment-webhook-secret-for-the-tests-0123";

/// `shop payment-sim` as a child process, killed when dropped.
struct Simulator {
    child: Child,
    addr: SocketAddr,
}

impl Simulator {
    fn start(webhook: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["payment-sim", "--listen", "127.0.0.1:0", "--webhook", webhook])
            .args(args)
            .env("SHOP_PAYMENT_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("shop payment-sim starts");
        let addr = common::listening_address(&mut child);
        Self { child, addr }
    }

    async fn get(&self, path: &str) -> Value {
        let answer = call(self.addr, "GET", path, None, &[], "").await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        answer.json()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(secs).expect("fits")
}

async fn notice(shop: SocketAddr, signature: &str, body: &str) -> Answer {
    call(
        shop,
        "POST",
        "/api/payments/webhook",
        None,
        &[(SIGNATURE_HEADER, signature)],
        body,
    )
    .await
}

async fn order(shop: SocketAddr, admin: &str, id: &str) -> Value {
    let answer = call(shop, "GET", &format!("/api/orders/{id}"), Some(admin), &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_completes_declines_and_times_out_orders_once_each() {
    let (_, url) = shop_adapter_postgres::testing::fresh_database().await;
    let namespace = shop_testkit::fresh_namespace('p');
    // The shop's port is chosen first: the provider must know its webhook.
    let listen = common::free_port();
    let webhook = format!("http://{listen}/api/payments/webhook");
    // Half approved, a quarter never answered, every third intent request
    // failing once (the shop asks again), every notice sent twice.
    let sim = Simulator::start(
        &webhook,
        &[
            "--approve",
            "0.5",
            "--silent",
            "0.25",
            "--fail",
            "0.3",
            "--duplicates",
            "2",
            "--latency-ms",
            "20",
        ],
    );
    let provider = format!("http://{}", sim.addr);
    let extra = [
        ("SHOP_PAYMENT_URL", provider.as_str()),
        ("SHOP_PAYMENT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("SHOP_PAYMENT_TIMEOUT", "4s"),
        ("SHOP_EXPIRY_EVERY_MS", "200"),
    ];
    let running = InProcess::start_on(listen, shop::ProcessRole::All, &url, namespace.as_str(), &extra).await;
    let shop = running.addr;

    let admin = token("ops", "admin");
    let customer = token("carol", "customer");
    let product = json!({"id": "SKU-PAY", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 100});
    let registered = call(shop, "POST", "/api/products", Some(&admin), &[], &product.to_string()).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let mut ids = Vec::new();
    for n in 0..16 {
        let placed = common::place(shop, &customer, "SKU-PAY", &format!("pay-{n}")).await;
        ids.push(placed["order_id"].as_str().expect("an order id").to_owned());
    }

    // Every order ends COMPLETED or CANCELLED: the timeout catches the silent ones.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finals = Vec::new();
    for id in &ids {
        loop {
            let read = order(shop, &admin, id).await;
            if read["status"] == "COMPLETED" || read["status"] == "CANCELLED" {
                finals.push(read);
                break;
            }
            assert!(Instant::now() < deadline, "order {id} never settled: {read}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for read in &finals {
        let id = read["order_id"].as_str().expect("id");
        let outcome = sim.get(&format!("/v1/payment_intents/{id}")).await["outcome"].clone();
        let outcome = outcome.as_str().expect("an outcome").to_owned();
        match outcome.as_str() {
            "succeeded" => assert_eq!(read["status"], "COMPLETED", "{read}"),
            "failed" | "silent" => {
                assert_eq!(read["status"], "CANCELLED", "{read}");
                assert_eq!(read["cancel_reason"], "PAYMENT_FAILED", "{read}");
            }
            other => panic!("unknown outcome {other}"),
        }
        *seen.entry(outcome).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "approvals, declines and silences all met: {seen:?}");
    let completed = seen["succeeded"];

    // Stock: deducted for the paid, back on the shelf for the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stock = call(shop, "GET", "/api/products/SKU-PAY", Some(&admin), &[], "")
            .await
            .json();
        if stock["available"] == 100 - completed && stock["reserved"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "stock never settled: {stock}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One intent per order, though a third of the requests failed; every
    // notice twice, the second of each changing nothing.
    let stats = sim.get("/v1/stats").await;
    assert_eq!(stats["intents"], 16, "{stats}");
    assert!(stats["failed"].as_u64() >= Some(1), "{stats}");
    let answered = u64::try_from(seen["succeeded"] + seen["failed"]).expect("small");
    assert_eq!(stats["notices_sent"].as_u64(), Some(2 * answered), "{stats}");
    let metrics = call(shop, "GET", "/metrics", None, &[], "").await.body;
    let value = |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("{name} missing in\n{metrics}"));
    assert_eq!(
        value("shop_payment_webhooks_total{outcome=\"applied\"}"),
        answered as f64
    );
    assert_eq!(
        value("shop_payment_webhooks_total{outcome=\"duplicate\"}"),
        answered as f64
    );
    assert!(value("shop_payment_intents_total{outcome=\"retried\"}") >= 1.0);
    assert_eq!(value("shop_payment_intents_total{outcome=\"created\"}"), 16.0);
    assert_eq!(
        value("shop_orders_cancelled_total{reason=\"PAYMENT_FAILED\"}"),
        (16 - completed) as f64
    );
    // Each step timed once per order that took it.
    assert_eq!(value("shop_saga_step_seconds_count{step=\"confirmed\"}"), 16.0);
    assert_eq!(
        value("shop_saga_step_seconds_count{step=\"completed\"}"),
        completed as f64
    );
    assert_eq!(
        value("shop_saga_step_seconds_count{step=\"cancelled\"}"),
        (16 - completed) as f64
    );

    // Notices nobody should be able to send.
    let paid = finals
        .iter()
        .find(|o| o["status"] == "COMPLETED")
        .expect("a paid order");
    let paid_id = paid["order_id"].as_str().expect("id");
    let failed_id = finals
        .iter()
        .find(|o| o["status"] == "CANCELLED")
        .and_then(|o| o["order_id"].as_str())
        .expect("a cancelled order");
    let revive = json!({"order_id": failed_id, "status": "succeeded"}).to_string();
    let forged = sign(b"a secret the provider does not have!!!!", now(), revive.as_bytes());
    let answer = notice(shop, &forged, &revive).await;
    assert_eq!(answer.status, 403, "forged: {}", answer.body);
    let stale = sign(WEBHOOK_SECRET.as_bytes(), now() - 301, revive.as_bytes());
    let answer = notice(shop, &stale, &revive).await;
    assert_eq!(answer.status, 403, "stale: {}", answer.body);
    let answer = call(shop, "POST", "/api/payments/webhook", None, &[], &revive).await;
    assert_eq!(answer.status, 400, "unsigned: {}", answer.body);
    assert_eq!(order(shop, &admin, failed_id).await["status"], "CANCELLED");

    // A fresh, well-signed success for a paid order is a duplicate; the
    // same bytes again are a replay; a failure after it comes too late.
    let again = json!({"order_id": paid_id, "status": "succeeded"}).to_string();
    let signature = sign(WEBHOOK_SECRET.as_bytes(), now(), again.as_bytes());
    let answer = notice(shop, &signature, &again).await;
    assert_eq!(
        (answer.status, answer.json()["outcome"].clone()),
        (200, json!("duplicate"))
    );
    let answer = notice(shop, &signature, &again).await;
    assert_eq!(answer.status, 409, "replayed: {}", answer.body);
    let reverse = json!({"order_id": paid_id, "status": "failed"}).to_string();
    let answer = notice(
        shop,
        &sign(WEBHOOK_SECRET.as_bytes(), now(), reverse.as_bytes()),
        &reverse,
    )
    .await;
    assert_eq!((answer.status, answer.json()["outcome"].clone()), (200, json!("late")));
    assert_eq!(order(shop, &admin, paid_id).await["status"], "COMPLETED");
    // Signed but not a notice, or about no order.
    let garbage = r#"{"order":"x"}"#;
    let answer = notice(
        shop,
        &sign(WEBHOOK_SECRET.as_bytes(), now(), garbage.as_bytes()),
        garbage,
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let nobody = json!({"order_id": "no-such-order", "status": "succeeded"}).to_string();
    let answer = notice(
        shop,
        &sign(WEBHOOK_SECRET.as_bytes(), now(), nobody.as_bytes()),
        &nobody,
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    let metrics = call(shop, "GET", "/metrics", None, &[], "").await.body;
    for refusal in ["bad_signature", "stale", "replayed", "malformed", "unknown_order"] {
        let name = format!("shop_payment_webhooks_total{{outcome=\"{refusal}\"}}");
        assert_eq!(sample(&metrics, &name), Some(1.0), "{name} in\n{metrics}");
    }
    // And audited, summed a window at a time: wait for the window to close.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let path = "/api/audit?action=payment.webhook.refuse";
        let entries = call(shop, "GET", path, Some(&admin), &[], "").await.json();
        let mut refused = std::collections::BTreeMap::<String, u64>::new();
        for entry in entries["items"].as_array().into_iter().flatten() {
            assert_eq!(
                (&entry["actor"], &entry["role"], &entry["target"]),
                (&json!("webhook"), &json!("anonymous"), &json!("payments:webhook")),
                "{entry}"
            );
            for (reason, count) in entry["detail"]["refused"].as_object().into_iter().flatten() {
                *refused.entry(reason.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
        if refused.len() == 5 || Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let expected = ["bad_signature", "malformed", "replayed", "stale", "unknown_order"];
    assert_eq!(refused, expected.map(|r| (r.to_owned(), 1)).into(), "{refused:?}");

    // The event catalogue names the payment reader's consumer.
    let catalogue = call(shop, "GET", "/asyncapi.json", None, &[], "").await.json();
    let reads = &catalogue["operations"]["paymentReadsOrderConfirmed"];
    assert_eq!(reads["channel"]["$ref"], "#/channels/OrderConfirmed", "{reads}");
    let durable = format!("{namespace}_payment_from_order");
    assert!(
        reads["description"].as_str().is_some_and(|d| d.contains(&durable)),
        "{reads}"
    );

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_url_without_a_webhook_secret_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("SHOP_DATABASE_URL")
        .env_remove("SHOP_CONFIG")
        .env("SHOP_PAYMENT_URL", "http://127.0.0.1:9")
        .env_remove("SHOP_PAYMENT_WEBHOOK_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("shop runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SHOP_PAYMENT_WEBHOOK_SECRET"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["payment-sim", "--approve", "2"])
        .env("SHOP_PAYMENT_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .output()
        .expect("shop runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a share between 0 and 1"));
}
