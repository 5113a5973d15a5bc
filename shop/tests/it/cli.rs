//! The operator commands, run as the real binary against the real services.

use crate::common;

use std::process::{Command, Output};
use std::time::Duration;

use shop_adapter_postgres::Schema;
use shop_runtime::ports::{EventBus, Outbox, Subscription};
use shop_streams::Reader;

pub(crate) fn shop(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    command
        .args(args)
        .env_remove("SHOP_DATABASE_URL")
        .env_remove("SHOP_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the shop binary runs")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_from_the_command_line() {
    let (namespace, bus) = common::fresh_bus('c').await;
    // A PostgreSQL URL selects the distributed mode, and with it JetStream.
    let env = [
        ("SHOP_NAMESPACE", namespace.as_str()),
        ("SHOP_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    ];
    let empty = shop(&["dead-letters", "list"], &env);
    assert!(empty.status.success(), "{}", stderr(&empty));
    assert!(stdout(&empty).contains("no dead letters"), "{}", stdout(&empty));

    // An unreadable message on the stream inventory reads: dead-lettered on arrival.
    let subject = format!("{namespace}.order.OrderCreated");
    bus.jetstream()
        .publish(subject, b"garbage".to_vec().into())
        .await
        .expect("sent")
        .await
        .expect("stored");
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let batch = inventory
        .next_batch(10, Duration::from_millis(500))
        .await
        .expect("pull");
    assert!(batch.is_empty(), "nothing readable was delivered");

    let listed = shop(&["dead-letters", "list"], &env);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    assert!(table.contains("not an event envelope"), "{table}");
    let row = table.lines().nth(1).expect("a row under the header");
    let id = row.split_whitespace().next().expect("an id column");
    assert!(row.contains(&format!("{namespace}.order.OrderCreated")), "{row}");

    let replayed = shop(&["dead-letters", "replay", id], &env);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert!(
        stdout(&replayed).contains(&format!("replayed {id}")),
        "{}",
        stdout(&replayed)
    );
    let after = shop(&["dead-letters", "list"], &env);
    assert!(stdout(&after).contains("no dead letters"), "{}", stdout(&after));

    // Replayed means published again where it came from: the consumer gets
    // it (and, as it is still unreadable, dead-letters it again).
    let again = inventory
        .next_batch(10, Duration::from_millis(500))
        .await
        .expect("pull");
    assert!(again.is_empty());
    assert_eq!(inventory.take_dead_lettered(), 2, "the original and the replay");
    assert_eq!(bus.dead_letters(10).await.expect("listed").len(), 1);

    let unknown = shop(&["dead-letters", "replay", "999999"], &env);
    assert!(!unknown.status.success(), "an unknown id fails");
    assert!(
        stderr(&unknown).contains("no dead letter 999999"),
        "{}",
        stderr(&unknown)
    );
    let _ = bus.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_events_are_republished_from_a_point_in_time() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, _bus) = common::fresh_bus('o').await;
    let desk = common::Desk::open(store.clone(), &namespace).await;
    desk.register("SKU-O", 5).await;
    let outbox = store.outbox(Schema::Inventory);
    let lease = Duration::from_secs(30);
    let pending = outbox
        .pending("test", 10, lease)
        .await
        .expect("read")
        .expect("the lease was free");
    assert_eq!(pending.events.len(), 1, "the registration's event");
    let moved = outbox.advance("test", pending.cursor, pending.last, lease).await;
    assert_eq!(moved, Ok(true), "published");

    let env = [("SHOP_DATABASE_URL", url.as_str())];
    let before = shop(&["outbox", "backlog"], &env);
    assert!(stdout(&before).contains("inventory: 0 unsent"), "{}", stdout(&before));
    let republished = shop(
        &["outbox", "republish", "--since", "1h", "--context", "inventory"],
        &env,
    );
    assert!(republished.status.success(), "{}", stderr(&republished));
    assert!(
        stdout(&republished).contains("inventory: 1 events queued"),
        "{}",
        stdout(&republished)
    );
    assert_eq!(
        outbox.backlog().await.expect("counted"),
        1,
        "unsent again, for the relays"
    );

    let nonsense = shop(&["outbox", "republish", "--since", "soon"], &env);
    assert!(!nonsense.status.success());
    assert!(
        stderr(&nonsense).contains("expected a duration"),
        "{}",
        stderr(&nonsense)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_a_config_file_under_the_environment() {
    let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("shop.toml");
    std::fs::write(&file, format!("database_url = {url:?}\ndb_pool = 2\n")).expect("written");
    let path = file.to_string_lossy().into_owned();

    let backlog = shop(&["--config", &path, "outbox", "backlog"], &[]);
    assert!(backlog.status.success(), "{}", stderr(&backlog));
    assert!(stdout(&backlog).contains("order: 0 unsent"), "{}", stdout(&backlog));

    // The environment wins over the file.
    let elsewhere = shop(
        &["--config", &path, "outbox", "backlog"],
        &[("SHOP_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")],
    );
    assert!(
        !elsewhere.status.success(),
        "the environment's unreachable database was used"
    );

    std::fs::write(&file, "databse_url = \"postgres://x\"\n").expect("written");
    let typo = shop(&["--config", &path, "outbox", "backlog"], &[]);
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("unknown setting \"databse_url\""),
        "{}",
        stderr(&typo)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_has_the_same_operator_commands() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let env = [("SHOP_DATABASE_URL", url.as_str())];
    let migrated = shop(&["migrate"], &env);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let backlog = shop(&["outbox", "backlog"], &env);
    assert!(stdout(&backlog).contains("order: 0 unsent"), "{}", stdout(&backlog));
    let letters = shop(&["dead-letters", "list"], &env);
    assert!(letters.status.success(), "{}", stderr(&letters));
    assert!(stdout(&letters).contains("no dead letters"), "{}", stdout(&letters));
    let unknown = shop(&["dead-letters", "replay", "7"], &env);
    assert!(stderr(&unknown).contains("no dead letter 7"), "{}", stderr(&unknown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_and_change_orders_and_stock_from_the_command_line() {
    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, _bus) = common::fresh_bus('p').await;
    let desk = common::Desk::open(store.clone(), &namespace).await;
    desk.register("SKU-P", 10).await;
    // No roles run: the order side's price list is filled by hand, and orders stay PENDING.
    common::price_directly(&store, "SKU-P", 3000).await;
    desk.place("p-1", "SKU-P", 2).await;
    desk.place("p-2", "SKU-P", 1).await;
    let env = [
        ("SHOP_DATABASE_URL", url.as_str()),
        ("SHOP_NAMESPACE", namespace.as_str()),
    ];
    let json = |output: &Output| -> serde_json::Value {
        assert!(output.status.success(), "{}", stderr(output));
        serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
    };

    let shown = json(&shop(&["stock", "show", "SKU-P"], &env));
    assert_eq!(shown["available"], 10);
    let restocked = json(&shop(&["stock", "restock", "SKU-P", "5"], &env));
    assert_eq!(restocked["available"], 15);
    let adjusted = json(&shop(
        &["stock", "adjust", "SKU-P", "-3", "--reason", "broken in transit"],
        &env,
    ));
    assert_eq!(adjusted["available"], 12);
    let trail = json(&shop(&["stock", "movements", "SKU-P"], &env));
    let kinds: Vec<&str> = trail
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["initial", "restock", "adjust"]);
    let negative = shop(&["stock", "adjust", "SKU-P", "-100", "--reason", "count"], &env);
    assert!(!negative.status.success(), "stock never goes negative");
    assert!(stderr(&negative).contains("SKU-P"), "{}", stderr(&negative));

    let order = json(&shop(&["orders", "show", "p-1"], &env));
    assert_eq!(
        (&order["status"], &order["total"]),
        (&serde_json::json!("PENDING"), &serde_json::json!(6000))
    );
    let listed = json(&shop(&["orders", "list", "--customer", "carol"], &env));
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let cancelled = json(&shop(&["orders", "cancel", "p-1"], &env));
    assert_eq!(
        (&cancelled["status"], &cancelled["cancel_reason"]),
        (&serde_json::json!("CANCELLED"), &serde_json::json!("admin"))
    );
    let audited = json(&shop(&["audit", "list", "--target", "order:p-1"], &env));
    assert_eq!(
        (&audited["action"], &audited["role"], &audited["detail"]),
        (
            &serde_json::json!("order.cancel"),
            &serde_json::json!("operator"),
            &serde_json::json!({"reason": "admin"})
        ),
        "{audited}"
    );
    assert!(
        audited["actor"].as_str().is_some_and(|a| a.starts_with("cli:")),
        "{audited}"
    );
    let unpaid = shop(&["orders", "complete", "p-2"], &env);
    assert!(!unpaid.status.success(), "a pending order cannot complete");
    assert!(stderr(&unpaid).contains("PENDING"), "{}", stderr(&unpaid));
    let missing = shop(&["orders", "show", "nope"], &env);
    assert!(stderr(&missing).contains("no order nope"), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_component_is_validated_then_loaded_into_the_watched_directory() {
    let exported = tempfile::tempdir().expect("a temporary directory");
    let watched = tempfile::tempdir().expect("a temporary directory");
    let export = shop(
        &["rules", "export", &exported.path().to_string_lossy()],
        &[("SHOP_RULES_CACHE", "off")],
    );
    assert!(export.status.success(), "{}", stderr(&export));
    let plugin = exported.path().join("purchase-limit.wasm");
    let env = [
        ("SHOP_RULES_DIR", watched.path().to_str().expect("utf-8")),
        ("SHOP_RULES_CACHE", "off"),
    ];
    let loaded = shop(&["rules", "load", &plugin.to_string_lossy()], &env);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(watched.path().join("purchase-limit.wasm").is_file());
    let listed = shop(&["rules", "list"], &env);
    assert!(stdout(&listed).contains("purchase-limit"), "{}", stdout(&listed));

    let garbage = exported.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").expect("written");
    let refused = shop(&["rules", "load", &garbage.to_string_lossy()], &env);
    assert!(!refused.status.success(), "garbage is not loaded");
    assert!(!watched.path().join("garbage.wasm").exists());
}

/// `shop apikey`: a key made on the command line works through a gateway
/// and an order instance within seconds, is listed without its secret,
/// stops working when it expires or is revoked, and is kept only as a
/// digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_made_listed_expired_and_revoked_for_the_whole_deployment() {
    use std::time::Instant;

    let (store, url) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('k').await;
    let ns = namespace.as_str();
    let order = common::RoleProcess::start("order", &url, ns, &[]);
    let upstream = format!("http://{}", order.addr);
    let gateway = common::RoleProcess::start(
        "gateway",
        &url,
        ns,
        &[
            ("SHOP_DISCOVERY", "off"),
            ("SHOP_ORDER_UPSTREAMS", &upstream),
            ("SHOP_INVENTORY_UPSTREAMS", &upstream),
        ],
    );
    let env = [("SHOP_DATABASE_URL", url.as_str())];
    let created = shop(&["apikey", "create", "partner", "--role", "customer"], &env);
    assert!(created.status.success(), "{}", stderr(&created));
    let key = stdout(&created).trim().to_owned();
    assert_eq!(key.len(), 64, "a fresh 256-bit key: {key}");
    let short = shop(
        &["apikey", "create", "trial", "--role", "customer", "--expires", "4s"],
        &env,
    );
    assert!(short.status.success(), "{}", stderr(&short));
    let trial = stdout(&short).trim().to_owned();
    let taken = shop(&["apikey", "create", "partner", "--role", "admin"], &env);
    assert!(!taken.status.success(), "a name is taken once");
    assert!(stderr(&taken).contains("exists"), "{}", stderr(&taken));
    let bad = shop(&["apikey", "create", "x", "--role", "root"], &env);
    assert!(!bad.status.success() && stderr(&bad).contains("customer, admin or payment"));

    let with_key = |key: String| {
        let addrs = [gateway.addr, order.addr];
        async move {
            let mut statuses = Vec::new();
            for addr in addrs {
                statuses.push(
                    common::http(addr, "GET", "/api/orders", &[("x-api-key", &key)], b"")
                        .await
                        .status,
                );
            }
            statuses
        }
    };
    let until = |key: String, want: u16, what: &'static str| {
        let with_key = &with_key;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let statuses = with_key(key.clone()).await;
                if statuses.iter().all(|s| *s == want) {
                    return;
                }
                assert!(Instant::now() < deadline, "{what}: {statuses:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    until(key.clone(), 200, "the new key accepted by the gateway and the instance").await;
    until(trial.clone(), 200, "the trial key accepted").await;
    assert_eq!(with_key("0".repeat(64)).await, vec![401, 401], "an unknown key");

    let listed = stdout(&shop(&["apikey", "list"], &env));
    assert!(listed.contains("partner") && listed.contains("active"), "{listed}");
    assert!(!listed.contains(&key), "the key itself is never shown again");
    let stored: Vec<String> = sqlx::query_scalar("SELECT digest FROM access.api_keys")
        .fetch_all(store.pool())
        .await
        .expect("read");
    assert!(
        stored.iter().all(|d| d.len() == 64 && *d != key),
        "only digests are stored"
    );

    until(trial, 401, "the trial key refused once expired").await;
    let revoked = shop(&["apikey", "revoke", "partner"], &env);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    until(key.clone(), 401, "the revoked key refused everywhere").await;
    let listed = stdout(&shop(&["apikey", "list"], &env));
    assert!(listed.contains("revoked") && listed.contains("expired"), "{listed}");
    assert!(!shop(&["apikey", "revoke", "nobody"], &env).status.success());
    // Each change audited as the operator's, by name and scope, never the key.
    let audited = stdout(&shop(&["audit", "list", "--target", "api_key:partner"], &env));
    let entries: Vec<serde_json::Value> = audited
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["api_key.create", "api_key.revoke"], "{audited}");
    assert_eq!(entries[0]["detail"]["role"], "customer", "{audited}");
    assert!(entries.iter().all(|e| e["role"] == "operator"), "{audited}");
    assert!(!audited.contains(&key), "the key is not in the log");
    drop((gateway, order));
    let _ = bus.delete_streams().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_catalogue_is_written_for_the_namespace_set() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = dir.path().join("events");
    let target_text = target.to_string_lossy().into_owned();
    let written = shop(&["events", "write", &target_text], &[("SHOP_NAMESPACE", "acme")]);
    assert!(written.status.success(), "{}", stderr(&written));
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("asyncapi.json")).expect("written")).expect("JSON");
    assert_eq!(
        document["channels"]["OrderCreated"]["address"],
        "acme.order.OrderCreated"
    );
    let refused = shop(
        &["events", "write", &target_text],
        &[("SHOP_NAMESPACE", "Not A Namespace")],
    );
    assert!(!refused.status.success());
}

/// `SHOP_LOG_FORMAT=json`: each log line one JSON object, a request's
/// lines carrying its id; anything but text or json is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_carrying_the_request_id_role_and_instance_when_asked() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = format!("sqlite://{}", dir.path().join("shop.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve"])
        .env_remove("SHOP_CONFIG")
        .envs([
            ("SHOP_DATABASE_URL", database.as_str()),
            ("SHOP_LISTEN", "127.0.0.1:0"),
            ("SHOP_LOG_FORMAT", "json"),
            ("SHOP_LOG", "shop=info"),
            ("SHOP_INSTANCE_ID", "json-log-instance"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the shop starts");
    let stderr_pipe = child.stderr.take().expect("piped");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let next = || received.recv_timeout(Duration::from_secs(30)).expect("a log line");
    let addr: std::net::SocketAddr = loop {
        let line = next();
        if let Some((_, addr)) = line.split_once("listening on http://") {
            break addr.trim().parse().expect("an address");
        }
    };
    let answer = common::http(addr, "GET", "/health/live", &[("x-request-id", "json-log-1")], b"").await;
    assert_eq!(answer.status, 200);
    let logged = loop {
        let line = next();
        if line.contains("json-log-1") {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let entry: serde_json::Value = serde_json::from_str(&logged).unwrap_or_else(|e| panic!("{e}: {logged}"));
    assert_eq!(entry["fields"]["message"], "answered", "{entry}");
    assert_eq!(entry["spans"][0]["request_id"], "json-log-1", "{entry}");
    assert_eq!(entry["role"], "all", "{entry}");
    assert_eq!(entry["instance"], "json-log-instance", "{entry}");

    let refused = shop(&["serve"], &[("SHOP_LOG_FORMAT", "xml")]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("SHOP_LOG_FORMAT"), "{}", stderr(&refused));
}
