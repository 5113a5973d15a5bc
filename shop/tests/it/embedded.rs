//! The embedded mode as a user meets it: `shop serve` with nothing
//! configured keeps everything under `./data`, and a process killed mid-saga
//! loses nothing when it starts again.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{RoleProcess, TEST_SECRET, token};
use serde_json::{Value, json};

async fn call(shop: &RoleProcess, method: &str, path: &str, token: &str, body: Option<Value>) -> common::Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::call(shop.addr, method, path, Some(token), &[], &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_the_shop_runs_embedded_under_data() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("SHOP_DATABASE_URL")
        .env_remove("SHOP_CONFIG")
        .env("SHOP_RULES_CACHE", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the shop binary starts");
    let database = dir.path().join("data/shop.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !database.exists() {
        assert!(Instant::now() < deadline, "no database under ./data");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    // Its own secrets, made on first start, for its user alone; `shop token`
    // in the same directory signs with the same one.
    use std::os::unix::fs::PermissionsExt;
    let secret_file = dir.path().join("data/secrets/jwt-secret");
    for file in [&secret_file, &dir.path().join("data/secrets/data-key")] {
        let mode = std::fs::metadata(file)
            .expect("made on first start")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let secret = std::fs::read_to_string(&secret_file).expect("readable");
    let output = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["token", "--sub", "alice"])
        .current_dir(dir.path())
        .env_remove("SHOP_DATABASE_URL")
        .env_remove("SHOP_JWT_SECRET")
        .output()
        .expect("shop token runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let key = jsonwebtoken::DecodingKey::from_secret(secret.trim().as_bytes());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims =
        jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).expect("signed with the made secret");
    assert_eq!(claims.claims["sub"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shop_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let env = [("SHOP_JWT_SECRET", TEST_SECRET)];
    let first = RoleProcess::start("all", &url, "shop", &env);
    let mut second = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "--role", "all"])
        .env("SHOP_LISTEN", "127.0.0.1:0")
        .envs(common::test_settings("all", &url, "shop", &env))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shop binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = common::exit_by(&mut second, deadline, "a second shop on the same file kept running").await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("piped"), &mut stderr).expect("read");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("another process consumes the events of"), "{stderr}");
    // The first one goes on serving.
    first.get("/health/ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_embedded_shop_resumes_the_saga_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let env = [("SHOP_JWT_SECRET", TEST_SECRET)];
    let admin = token("ops", "admin");
    let alice = token("alice", "customer");

    let shop = RoleProcess::start("all", &url, "shop", &env);
    let mug = json!({"id": "SKU-E", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 50});
    assert_eq!(
        call(&shop, "POST", "/api/products", &admin, Some(mug)).await.status,
        201
    );
    let order = json!({"items": [{"product_id": "SKU-E", "quantity": 1}]});
    // The catalogue copy reaches the order side through the saga first.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut accepted = Vec::new();
    loop {
        let answer = call(&shop, "POST", "/api/orders", &alice, Some(order.clone())).await;
        if answer.status == 202 {
            accepted.push(answer.json()["order_id"].as_str().expect("id").to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "{}: {}", answer.status, answer.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then a burst, all at once, and the process killed as the last is accepted.
    let burst = (0..79).map(|_| call(&shop, "POST", "/api/orders", &alice, Some(order.clone())));
    for answer in futures::future::join_all(burst).await {
        assert_eq!(answer.status, 202, "{}", answer.body);
        accepted.push(answer.json()["order_id"].as_str().expect("id").to_owned());
    }
    shop.kill();

    let shop = RoleProcess::start("all", &url, "shop", &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut confirmed = 0;
    let mut cancelled = 0;
    for id in &accepted {
        loop {
            let status = call(&shop, "GET", &format!("/api/orders/{id}"), &alice, None)
                .await
                .json()["status"]
                .clone();
            match status.as_str() {
                Some("CONFIRMED") => confirmed += 1,
                Some("CANCELLED") => cancelled += 1,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                other => panic!("order {id} stuck at {other:?}"),
            }
            break;
        }
    }
    assert_eq!(
        (confirmed, cancelled),
        (50, 30),
        "every accepted order settled, stock decided which"
    );
    let product = call(&shop, "GET", "/api/products/SKU-E", &admin, None).await.json();
    assert_eq!((&product["available"], &product["reserved"]), (&json!(0), &json!(50)));
    let trail = call(&shop, "GET", "/api/products/SKU-E/movements?limit=500", &admin, None)
        .await
        .json();
    let reserves = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|m| m["kind"] == "reserve")
        .count();
    assert_eq!(reserves, 50, "one reserve per confirmed order, none twice");
    shop.kill();
    // The serving shop wrote each change's events straight into the bus of
    // its file: none of them went through an outbox.
    let db = sqlx::SqlitePool::connect(&url).await.expect("opened");
    let outboxed: i64 =
        sqlx::query_scalar("SELECT (SELECT count(*) FROM orders_outbox) + (SELECT count(*) FROM inventory_outbox)")
            .fetch_one(&db)
            .await
            .expect("counted");
    assert_eq!(outboxed, 0);
}
