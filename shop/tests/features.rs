//! Runs the Gherkin features of `features/specs/api` against the `shop`
//! binary. The step definitions live here, beside the binary they start;
//! the saga and rules features run from the `features` crate.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Answer, InProcess, TEST_SECRET, token};
use cucumber::{World, given, then, when};
use serde_json::{Value, json};

#[derive(World, Default)]
struct ApiWorld {
    shop: Option<InProcess>,
    _dir: Option<tempfile::TempDir>,
    /// The embedded shop's database, for the `shop` commands the scenarios run.
    database_url: Option<String>,
    tokens: BTreeMap<String, String>,
    /// Each customer's last order id.
    orders: BTreeMap<String, String>,
    answer: Option<Answer>,
}

impl std::fmt::Debug for ApiWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiWorld")
            .field("orders", &self.orders)
            .finish_non_exhaustive()
    }
}

impl ApiWorld {
    fn token(&mut self, who: &str, role: &str) -> String {
        self.tokens
            .entry(who.to_owned())
            .or_insert_with(|| token(who, role))
            .clone()
    }

    async fn call(&mut self, who: &str, role: &str, method: &str, path: &str, body: &str) -> Answer {
        let token = self.token(who, role);
        let addr = self.shop.as_ref().expect("a running shop").addr;
        common::call(addr, method, path, Some(&token), &[], body).await
    }

    async fn order(&mut self, who: &str, body: &str, key: Option<&str>) -> Answer {
        let token = self.token(who, "customer");
        let addr = self.shop.as_ref().expect("a running shop").addr;
        let extra: Vec<(&str, &str)> = key.map(|key| ("idempotency-key", key)).into_iter().collect();
        let answer = common::call(addr, "POST", "/api/orders", Some(&token), &extra, body).await;
        if answer.status == 202 {
            let id = answer.json()["order_id"].as_str().unwrap_or_default().to_owned();
            self.orders.insert(who.to_owned(), id);
        }
        answer
    }

    fn answer(&self) -> &Answer {
        self.answer.as_ref().expect("a request was made")
    }
}

#[given("a shop running embedded")]
async fn a_shop(world: &mut ApiWorld) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    world.shop = Some(
        InProcess::start(
            shop::ProcessRole::All,
            &url,
            "shop",
            &[("SHOP_JWT_SECRET", TEST_SECRET)],
        )
        .await,
    );
    world._dir = Some(dir);
    world.database_url = Some(url);
}

/// The webhook secret the payment scenarios' shop and provider share.
const WEBHOOK_SECRET: &str = "feature-webhook-secret-0123456789abcdef";
/// How long the payment scenarios' shop waits for a notice.
const PAYMENT_TIMEOUT_SECS: u64 = 4;

#[given(expr = "a shop running embedded with a payment provider that {}")]
async fn a_shop_with_payment(world: &mut ApiWorld, behaviour: String) {
    let (approve, silent) = match behaviour.as_str() {
        "approves" => (1.0, 0.0),
        "declines" => (0.0, 0.0),
        "stays silent" => (0.0, 1.0),
        other => panic!("no provider that {other}"),
    };
    let listen = common::free_port();
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let provider_url = format!("http://{}", provider.local_addr().expect("addr"));
    let settings = shop_adapter_payment::sim::SimSettings {
        webhook: format!("http://{listen}/api/payments/webhook").parse().expect("a URI"),
        secret: WEBHOOK_SECRET.as_bytes().to_vec(),
        approve,
        silent,
        fail: 0.0,
        latency: Duration::from_millis(20),
        duplicates: 1,
    };
    tokio::spawn(shop_adapter_payment::sim::serve(
        provider,
        settings,
        std::future::pending(),
    ));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let timeout = format!("{PAYMENT_TIMEOUT_SECS}s");
    let extra = [
        ("SHOP_JWT_SECRET", TEST_SECRET),
        ("SHOP_PAYMENT_URL", provider_url.as_str()),
        ("SHOP_PAYMENT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("SHOP_PAYMENT_TIMEOUT", timeout.as_str()),
        ("SHOP_EXPIRY_EVERY_MS", "200"),
    ];
    world.shop = Some(InProcess::start_on(listen, shop::ProcessRole::All, &url, "shop", &extra).await);
    world._dir = Some(dir);
    world.database_url = Some(url);
}

#[when(expr = "a forger says {word}'s payment succeeded")]
async fn forged_notice(world: &mut ApiWorld, who: String) {
    let who = who.trim_end_matches("'s").to_owned();
    let id = world.orders.get(&who).cloned().expect("an order of theirs");
    let body = json!({"order_id": id, "status": "succeeded"}).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let signature = shop_runtime::ports::payment::sign(
        b"not-the-secret-the-shop-shares-with-its-provider",
        i64::try_from(now).expect("fits"),
        body.as_bytes(),
    );
    let addr = world.shop.as_ref().expect("a running shop").addr;
    world.answer = Some(
        common::call(
            addr,
            "POST",
            "/api/payments/webhook",
            None,
            &[("shop-signature", &signature)],
            &body,
        )
        .await,
    );
}

#[then(expr = "{word}'s order is still {word}")]
async fn still(world: &mut ApiWorld, who: String, status: String) {
    let id = world.orders.get(&who).cloned().expect("an order of theirs");
    let order = world
        .call(&who, "customer", "GET", &format!("/api/orders/{id}"), "")
        .await
        .json();
    assert_eq!(order["status"], status.as_str(), "{order}");
}

#[then(expr = "{word}'s order becomes CANCELLED because of {word}")]
async fn cancelled_because(world: &mut ApiWorld, who: String, reason: String) {
    let id = world.orders.get(&who).cloned().expect("an order of theirs");
    let deadline = Instant::now() + Duration::from_secs(20 + PAYMENT_TIMEOUT_SECS);
    loop {
        let order = world
            .call(&who, "customer", "GET", &format!("/api/orders/{id}"), "")
            .await
            .json();
        if order["status"] == "CANCELLED" {
            assert_eq!(order["cancel_reason"], reason.as_str(), "{order}");
            return;
        }
        assert!(Instant::now() < deadline, "{who}'s order was never cancelled: {order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[given(expr = "the admin has registered {string} at {int} KRW with {int} in stock")]
async fn registered(world: &mut ApiWorld, product: String, price: i64, stock: i64) {
    let body = json!({"id": product, "name": product, "unit_price": price, "currency": "KRW", "stock": stock});
    let answer = world
        .call("ops", "admin", "POST", "/api/products", &body.to_string())
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    // The order side learns the price through the saga; wait until it can.
    // The probe asks for more than there is: accepted once the price is
    // known, then cancelled by the saga, reserving nothing.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = json!({"items": [{"product_id": product, "quantity": stock + 1}]}).to_string();
        let answer = world.order("probe", &probe, None).await;
        if !answer.body.contains("no such product in the catalogue") {
            break;
        }
        assert!(Instant::now() < deadline, "the price never reached the order side");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[when(expr = "{word} orders {int} of {string}")]
async fn orders(world: &mut ApiWorld, who: String, quantity: i64, product: String) {
    let body = json!({"items": [{"product_id": product, "quantity": quantity}]}).to_string();
    world.answer = Some(world.order(&who, &body, None).await);
}

#[when(expr = "{word} orders {int} of {string} with Idempotency-Key {string}")]
async fn orders_with_key(world: &mut ApiWorld, who: String, quantity: i64, product: String, key: String) {
    let body = json!({"items": [{"product_id": product, "quantity": quantity}]}).to_string();
    world.answer = Some(world.order(&who, &body, Some(&key)).await);
}

#[when(expr = "{word} sends the order body {}")]
async fn sends_body(world: &mut ApiWorld, who: String, body: String) {
    world.answer = Some(world.order(&who, body.trim(), None).await);
}

#[when(expr = "{word} registers {string}")]
async fn registers(world: &mut ApiWorld, who: String, product: String) {
    let body = json!({"id": product, "name": product, "unit_price": 1, "currency": "KRW", "stock": 1});
    world.answer = Some(
        world
            .call(&who, "customer", "POST", "/api/products", &body.to_string())
            .await,
    );
}

#[then(expr = "the answer is {int} and the order is {word}")]
async fn answered_with_status(world: &mut ApiWorld, status: u16, order_status: String) {
    let answer = world.answer();
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.json()["status"], order_status.as_str());
}

#[then(expr = "{word}'s order becomes {word}")]
async fn becomes(world: &mut ApiWorld, who: String, status: String) {
    let id = world.orders.get(&who).cloned().expect("an order of theirs");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let order = world
            .call(&who, "customer", "GET", &format!("/api/orders/{id}"), "")
            .await
            .json();
        if order["status"] == status.as_str() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who}'s order never became {status}: {order}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[then(expr = "{string} shows {int} available and {int} reserved")]
async fn shows(world: &mut ApiWorld, product: String, available: i64, reserved: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stock = world
            .call("ops", "admin", "GET", &format!("/api/products/{product}"), "")
            .await
            .json();
        if stock["available"] == available && stock["reserved"] == reserved {
            return;
        }
        assert!(Instant::now() < deadline, "{product} is {stock}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[then(expr = "{word} has {int} order(s)")]
async fn has_orders(world: &mut ApiWorld, who: String, count: usize) {
    let page = world.call(&who, "customer", "GET", "/api/orders", "").await.json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(count), "{page}");
}

#[then(expr = "{word} reading {word}'s order is told {int}")]
async fn reading_other(world: &mut ApiWorld, reader: String, owner: String, status: u16) {
    let owner = owner.trim_end_matches("'s").to_owned();
    let id = world.orders.get(&owner).cloned().unwrap_or_else(|| {
        panic!(
            "no order of {owner:?} among {:?}; last answer {:?}",
            world.orders, world.answer
        )
    });
    let answer = world
        .call(&reader, "customer", "GET", &format!("/api/orders/{id}"), "")
        .await;
    assert_eq!(answer.status, status, "{}", answer.body);
}

#[then(expr = "the answer is {int} with a problem body")]
async fn problem(world: &mut ApiWorld, status: u16) {
    let answer = world.answer();
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/problem+json"));
}

#[then(expr = "the answer is {int} naming the field {string}")]
async fn naming(world: &mut ApiWorld, status: u16, field: String) {
    let answer = world.answer();
    assert_eq!(answer.status, status, "{}", answer.body);
    let problem: Value = answer.json();
    assert_eq!(problem["field"], field.as_str(), "{problem}");
}

#[when("the admin publishes the purchase-limit policy in shadow")]
async fn publish_in_shadow(world: &mut ApiWorld) {
    let addr = world.shop.as_ref().expect("a running shop").addr;
    common::publish_rule(addr, "purchase-limit", shop_rules_bundle::PURCHASE_LIMIT.wasm, true).await;
}

/// Runs `shop ARGS` on the scenario's database; its standard output.
fn run_shop(world: &ApiWorld, args: &str) -> String {
    let url = world.database_url.as_deref().expect("an embedded shop");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(args.split_whitespace())
        .env("SHOP_DATABASE_URL", url)
        .env("SHOP_RULES_CACHE", "off")
        .env_remove("SHOP_CONFIG")
        .output()
        .expect("the shop binary runs");
    assert!(
        output.status.success(),
        "shop {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[when(expr = "the author runs `shop {}`")]
async fn author_runs(world: &mut ApiWorld, args: String) {
    run_shop(world, &args);
}

/// Waits (at most 2 s) until the shop runs exactly `expected` of `name`.
async fn until_it_runs(world: &mut ApiWorld, name: &str, expected: Vec<(u64, String)>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let addr = world.shop.as_ref().expect("a running shop").addr;
        let now: Vec<(u64, String)> = common::rules_running(addr, name)
            .await
            .into_iter()
            .map(|(version, _, mode)| (version, mode))
            .collect();
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: runs {now:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[then(expr = "the shop runs {word} version {int} in shadow")]
async fn runs_in_shadow(world: &mut ApiWorld, name: String, version: u64) {
    until_it_runs(world, &name, vec![(version, "shadow".into())]).await;
}

#[then(expr = "the shop runs {word} version {int} as active")]
async fn runs_active(world: &mut ApiWorld, name: String, version: u64) {
    until_it_runs(world, &name, vec![(version, "active".into())]).await;
}

#[then(expr = "the shop runs no {word}")]
async fn runs_none(world: &mut ApiWorld, name: String) {
    until_it_runs(world, &name, Vec::new()).await;
}

#[then(expr = "the shop counted {int} disagreement(s) of {word} version {int}")]
async fn counted(world: &mut ApiWorld, count: u64, name: String, version: u64) {
    let metrics = world.shop.as_ref().expect("a running shop").get("/metrics").await;
    let sample = format!(r#"shop_rule_shadow_total{{name="{name}",candidate="{version}",outcome="disagree"}}"#);
    assert_eq!(common::sample(&metrics, &sample), Some(count as f64), "{metrics}");
}

#[then(expr = "`shop rules diff {word}` shows {word}'s order")]
async fn diff_shows(world: &mut ApiWorld, name: String, who: String) {
    let order = world.orders.get(&who).cloned().expect("an order placed");
    // The disagreement is stored a moment after the answer.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let diff = run_shop(world, &format!("rules diff {name}"));
        if diff.contains(&order) {
            return;
        }
        assert!(Instant::now() < deadline, "{order} not in:\n{diff}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    let specs = concat!(env!("CARGO_MANIFEST_DIR"), "/../features/specs/api");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(
        ApiWorld::cucumber()
            .max_concurrent_scenarios(2)
            .fail_on_skipped()
            .run_and_exit(specs),
    );
}
