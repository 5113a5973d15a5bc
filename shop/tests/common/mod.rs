//! Runs `shop serve` processes against the real services for the tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_postgres::PgStore;
use shop_adapter_redis::RedisLock;
use shop_rules::inventory::{InventoryCommand, RegisterProduct};
use shop_rules::order::LineRequest;
use shop_runtime::ports::{OrderStore, SystemClock};
use shop_runtime::rules::{Capabilities, RuleHost, RuleSettings};
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::{NewOrder, OrderService};
use shop_streams::{Namespace, Topology, Trace};
use uuid::Uuid;

/// How `child` exited, once it has; killed, and the test failed with
/// `what`, if it still runs at `deadline`.
pub async fn exit_by(child: &mut Child, deadline: Instant, what: &str) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `shop serve` child process, killed when dropped.
pub struct RoleProcess {
    pub child: Child,
    /// Where its HTTP endpoints listen.
    pub addr: SocketAddr,
}

impl RoleProcess {
    /// Starts `shop serve --role ROLE` on `database_url` and `namespace`,
    /// with `extra` environment, and waits until it listens.
    pub fn start(role: &str, database_url: &str, namespace: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_logged(role, database_url, namespace, extra, None)
    }

    /// As [`Self::start`], every line it logs also appended to `log`.
    pub fn start_logged(
        role: &str,
        database_url: &str,
        namespace: &str,
        extra: &[(&str, &str)],
        log: Option<Arc<std::sync::Mutex<String>>>,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
        command
            .args(["serve", "--role", role])
            .env("SHOP_LISTEN", "127.0.0.1:0")
            .envs(test_settings(role, database_url, namespace, extra))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the shop binary starts");
        let addr = logged_listening_address(&mut child, log);
        Self { child, addr }
    }

    /// SIGKILL: no shutdown, no goodbyes.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `GET path` on the role's HTTP endpoints; the body of its 200.
    pub async fn get(&self, path: &str) -> String {
        get_ok(self.addr, path).await
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a `shop` child with piped stderr says it listens (its banner's
/// `listening on http://ADDR`, up to a comma); its stderr keeps being
/// drained, so the child never blocks on a full pipe.
pub fn listening_address(child: &mut Child) -> SocketAddr {
    logged_listening_address(child, None)
}

fn logged_listening_address(child: &mut Child, log: Option<Arc<std::sync::Mutex<String>>>) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, address) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(log) = &log {
                let mut log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let _ = found.send(rest.split(',').next().unwrap_or_default().trim().to_owned());
            }
        }
    });
    address
        .recv_timeout(Duration::from_secs(60))
        .expect("the process reports where it listens")
        .parse()
        .expect("a socket address")
}

/// The settings a test shop runs with, as `SHOP_*` pairs: its database and
/// namespace, no rules cache, and the secrets a role on real services
/// refuses to start without; `extra` comes last and may say otherwise.
pub fn test_settings(role: &str, database_url: &str, namespace: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = vec![
        ("SHOP_DATABASE_URL".to_owned(), database_url.to_owned()),
        ("SHOP_NAMESPACE".to_owned(), namespace.to_owned()),
        ("SHOP_RULES_CACHE".to_owned(), "off".to_owned()),
        ("SHOP_INSTANCE_ID".to_owned(), format!("{namespace}-{role}")),
        ("SHOP_JWT_SECRET".to_owned(), TEST_SECRET.to_owned()),
        ("SHOP_DATA_KEY".to_owned(), TEST_DATA_KEY.to_owned()),
        // JetStream reserves a byte limit on the server for every stream:
        // hundreds of test namespaces would exhaust it.
        ("SHOP_STREAM_MAX_BYTES".to_owned(), "off".to_owned()),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    vars
}

/// `GET path` at `addr`; the body of its 200.
async fn get_ok(addr: SocketAddr, path: &str) -> String {
    let answer = call(addr, "GET", path, None, &[], "").await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    answer.body
}

/// A shop built by `shop::App` inside this test process (the composition
/// root `shop serve` uses), serving on a free port until stopped or dropped.
#[derive(Debug)]
pub struct InProcess {
    /// Where its HTTP endpoints listen.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// `role` on `database_url` and `namespace` with the test secrets and
    /// `extra` settings (`SHOP_*` names), as [`RoleProcess::start`] starts
    /// a process; the settings come from these pairs alone.
    pub async fn start(role: shop::ProcessRole, database_url: &str, namespace: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            role,
            database_url,
            namespace,
            extra,
        )
        .await
    }

    /// As [`Self::start`], listening on `listen`: for a shop whose address
    /// another process must know before it starts (a payment provider's
    /// webhook, say).
    pub async fn start_on(
        listen: SocketAddr,
        role: shop::ProcessRole,
        database_url: &str,
        namespace: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let vars = test_settings(&format!("{role:?}"), database_url, namespace, extra);
        let settings = shop::Settings::from_vars(vars).expect("the test settings read");
        let app = shop::App::build(&settings, role, listen)
            .await
            .expect("the shop starts");
        let addr = app.addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            running: Some(running),
        }
    }

    /// `GET path` on its HTTP endpoints; the body of its 200.
    pub async fn get(&self, path: &str) -> String {
        get_ok(self.addr, path).await
    }

    /// Stops it as SIGTERM would: requests in flight finish, roles stop.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.expect("the shop task").expect("the shop stops cleanly");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Prices `product_id` in the order side's catalogue copy directly, as the
/// saga would from the inventory's events: for tests that run no inventory.
pub async fn price_directly(store: &PgStore, product_id: &str, unit_price: i64) {
    price_directly_at(store, product_id, unit_price, 1).await;
}

/// As [`price_directly`], as of the product's `source_version` (a later
/// version replaces the price).
pub async fn price_directly_at(store: &PgStore, product_id: &str, unit_price: i64, source_version: u64) {
    let entry = shop_runtime::ports::CatalogueEntry {
        price: shop_rules::order::CataloguePrice {
            product_id: product_id.into(),
            unit_price,
            currency: "KRW".into(),
        },
        source_version,
    };
    store.update_catalogue(&entry).await.expect("priced");
}

/// The order role alone on a fresh database and namespace, with
/// `product_id` priced at `unit_price` in its catalogue copy (no inventory
/// runs to price it, nor to reserve: its orders stay PENDING), the test
/// secret and the `extra` settings.
pub async fn order_role_alone(
    prefix: char,
    product_id: &str,
    unit_price: i64,
    extra: &[(&str, &str)],
) -> (PgStore, InProcess) {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, _bus) = fresh_bus(prefix).await;
    price_directly(&store, product_id, unit_price).await;
    let mut env = vec![("SHOP_JWT_SECRET", TEST_SECRET)];
    env.extend_from_slice(extra);
    let shop = InProcess::start(shop::ProcessRole::Order, &url, namespace.as_str(), &env).await;
    (store, shop)
}

/// A namespace no other run uses, and the bus on it.
pub async fn fresh_bus(prefix: char) -> (Namespace, JetStreamBus) {
    let namespace = shop_testkit::fresh_namespace(prefix);
    let bus = JetStreamBus::connect("nats://127.0.0.1:4222", Topology::new(namespace.clone()))
        .await
        .expect("NATS is reachable");
    (namespace, bus)
}

/// The value of the sample `name` (with its labels, as exposed) in a
/// metrics exposition; `None` when absent.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The test's own hands on the system: the order service (intake without an
/// HTTP API yet) and the inventory administration, writing to the same
/// database as the role processes.
pub struct Desk {
    pub store: PgStore,
    pub orders: Arc<OrderService<PgStore>>,
    pub admin: InventoryService<PgStore, RedisLock>,
}

impl Desk {
    pub async fn open(store: PgStore, namespace: &Namespace) -> Self {
        let clock = Arc::new(SystemClock);
        let capabilities = Capabilities {
            clock: clock.clone(),
            kv: Arc::new(shop_adapter_memory::MemoryKeyValue::new()),
            namespace: namespace.to_string(),
        };
        let settings = RuleSettings {
            builtin: shop_rules_bundle::DEFAULT
                .iter()
                .map(|c| shop_runtime::rules::RuleSource::builtin(c.name, c.wasm))
                .collect(),
            ..RuleSettings::default()
        };
        let rules = Arc::new(RuleHost::start(settings, capabilities).expect("rules load"));
        let orders = OrderService::new(store.clone(), rules.clone(), clock.clone()).shared();
        let lock = RedisLock::connect("redis://127.0.0.1:6379")
            .await
            .expect("Redis is reachable");
        let admin = InventoryService::new(store.clone(), lock, rules, clock, namespace.clone());
        Self { store, orders, admin }
    }

    /// Registers a product; its price reaches the order side once an
    /// inventory role relays the event and an order role consumes it.
    pub async fn register(&self, product_id: &str, stock: i64) {
        let register = InventoryCommand::RegisterProduct(RegisterProduct {
            product_id: product_id.into(),
            name: "Kettle".into(),
            unit_price: 3000,
            currency: "KRW".into(),
            initial_stock: stock,
        });
        self.admin
            .admin(
                register,
                None,
                Trace::root(Uuid::now_v7()),
                &shop_runtime::audit::Actor::new("test", "admin", "test-register"),
            )
            .await
            .expect("registered");
    }

    /// Waits until the order side's catalogue knows `product_id`.
    pub async fn priced(&self, product_id: &str, limit: Duration) {
        let ids = [product_id.to_owned()];
        let deadline = Instant::now() + limit;
        while self.store.catalogue(&ids).await.map(|c| c.is_empty()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "{product_id} never reached the order side");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn place(&self, order_id: &str, product_id: &str, quantity: i64) {
        let new = NewOrder {
            order_id: order_id.into(),
            customer_id: "carol".into(),
            lines: vec![LineRequest {
                product_id: product_id.into(),
                quantity,
            }],
            delivery: None,
        };
        self.orders
            .place(new, Trace::root(Uuid::now_v7()))
            .await
            .expect("accepted");
    }

    /// Orders in `status`.
    pub async fn orders_in(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status = $1")
            .bind(status)
            .fetch_one(self.store.pool())
            .await
            .expect("countable")
    }

    /// Waits until no order is PENDING.
    pub async fn settled(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.orders_in("PENDING").await != 0 {
            assert!(Instant::now() < deadline, "orders still pending after {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection, byte for byte as given: for
/// what a well-behaved client would refuse to send (malformed bodies,
/// odd headers, the wrong content type). [`call`] is the API caller.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await.expect("send head");
    // A server may refuse a body it will not read; that is its answer, not an error.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Answer { status, headers, body }
}

/// A JSON request as an API caller sends it, through a real HTTP client
/// (hyper's): with a bearer token when given, and any `extra` headers (an
/// idempotency key, say).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> Answer {
    use axum::body::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a well-formed request");
    let response = client.request(request).await.expect("an HTTP answer");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = response.into_body().collect().await.expect("the whole body").to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        body.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    body
}

/// Registers `product` (the API's JSON) at `addr` as an admin; it must answer 201.
pub async fn register(addr: SocketAddr, product: &serde_json::Value) {
    let admin = token("ops", "admin");
    let created = call(addr, "POST", "/api/products", Some(&admin), &[], &product.to_string()).await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// Places an order of one `product` at `addr` once the order side knows
/// the product (it answers 422 until the catalogue reaches it); the 202's body.
pub async fn place(addr: SocketAddr, token: &str, product: &str, key: &str) -> serde_json::Value {
    let body = serde_json::json!({"items": [{"product_id": product, "quantity": 1}]}).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = call(
            addr,
            "POST",
            "/api/orders",
            Some(token),
            &[("idempotency-key", key)],
            &body,
        )
        .await;
        if answer.status == 202 {
            return answer.json();
        }
        assert!(
            answer.status == 422 && Instant::now() < deadline,
            "{}: {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 20 s) until order `id`, read at `addr`, is CONFIRMED.
pub async fn confirmed(addr: SocketAddr, token: &str, id: &str) {
    confirmed_within(Duration::from_secs(20), addr, token, id).await;
}

/// Waits (up to `limit`) until order `id`, read at `addr`, is CONFIRMED.
pub async fn confirmed_within(limit: Duration, addr: SocketAddr, token: &str, id: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = call(addr, "GET", &format!("/api/orders/{id}"), Some(token), &[], "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.json()["status"] == "CONFIRMED" {
            return;
        }
        assert!(Instant::now() < deadline, "order {id} never confirmed: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /health/ready` as an admin, who is told which check failed.
pub async fn ready_as_admin(addr: SocketAddr) -> Answer {
    call(addr, "GET", "/health/ready", Some(&token("ops", "admin")), &[], "").await
}

/// A bearer token from `shop token`, as a user would get one.
pub fn token(subject: &str, role: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["token", "--sub", subject, "--role", role])
        .env("SHOP_JWT_SECRET", TEST_SECRET)
        .output()
        .expect("shop token runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A port free now, for a shop whose address must be known before it starts.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// The secret the API tests' servers and tokens share (32 bytes at least,
/// as a role on real services demands).
pub const TEST_SECRET: &str = "api-test-secret-of-at-least-32-bytes";

/// The data key the test servers run with.
pub const TEST_DATA_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Publishes `wasm` as the rule `name` through `POST /api/rules` at `addr`
/// as an admin, in shadow or active; it must answer 201, whose body this is.
pub async fn publish_rule(addr: SocketAddr, name: &str, wasm: &[u8], shadow: bool) -> serde_json::Value {
    let admin = format!("Bearer {}", token("ops", "admin"));
    let path = format!("/api/rules?name={name}&shadow={shadow}");
    let headers = [("authorization", admin.as_str()), ("content-type", "application/wasm")];
    let answer = http(addr, "POST", &path, &headers, wasm).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.json()
}

/// What `GET /api/rules` says `addr` runs of the rule `name`: (version, hash, mode) of each.
pub async fn rules_running(addr: SocketAddr, name: &str) -> Vec<(u64, String, String)> {
    let admin = token("ops", "admin");
    let answer = call(addr, "GET", "/api/rules", Some(&admin), &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["rules"]
        .as_array()
        .expect("a list of rules")
        .iter()
        .filter(|r| r["name"] == name)
        .map(|r| {
            let text = |field: &str| r[field].as_str().unwrap_or_default().to_owned();
            (r["version"].as_u64().unwrap_or(0), text("hash"), text("mode"))
        })
        .collect()
}
