//! The audit log over HTTP and the command line, in both modes: every kind
//! of change is an entry naming its actor and request; the chain holds;
//! `shop audit verify` finds a tampered row and names it.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Answer, InProcess, TEST_SECRET, token};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Distributed,
    Embedded,
}

/// A fresh database for `mode` (and its namespace), and a directory that
/// lives as long as the test.
async fn fresh(mode: Mode) -> (String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    match mode {
        Mode::Distributed => {
            let (_store, url) = shop_adapter_postgres::testing::fresh_database().await;
            let (namespace, _bus) = common::fresh_bus('a').await;
            (url, namespace.to_string(), dir)
        }
        Mode::Embedded => {
            let url = format!("sqlite://{}", dir.path().join("shop.db").display());
            (url, "shop".to_owned(), dir)
        }
    }
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    request_id: &str,
    body: Option<Value>,
) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::call(addr, method, path, Some(token), &[("x-request-id", request_id)], &body).await
}

/// Every entry of the log, page by page, as an admin reads it.
async fn everything(addr: SocketAddr, query: &str) -> Vec<Value> {
    let admin = token("ops", "admin");
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page = call(
            addr,
            "GET",
            &format!("/api/audit?limit=3&after={after}{query}"),
            &admin,
            "read",
            None,
        )
        .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => return items,
        }
    }
}

/// One chain: numbered from 1 without gaps, each entry sealed onto the one before.
fn assert_one_chain(entries: &[Value]) {
    for (n, pair) in entries.windows(2).enumerate() {
        assert_eq!(pair[0]["seq"].as_u64(), Some(n as u64 + 1));
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "{pair:#?}");
    }
    assert_eq!(entries[0]["prev_hash"], "0".repeat(64));
}

fn find<'a>(entries: &'a [Value], action: &str, target: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action && e["target"] == target)
        .unwrap_or_else(|| panic!("no {action} on {target} in {entries:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_changes_are_audited_with_actor_and_request() {
    changes_are_audited_with_actor_and_request(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_changes_are_audited_with_actor_and_request() {
    changes_are_audited_with_actor_and_request(Mode::Embedded).await;
}

async fn changes_are_audited_with_actor_and_request(mode: Mode) {
    let (url, namespace, _dir) = fresh(mode).await;
    let shop = InProcess::start(
        shop::ProcessRole::All,
        &url,
        &namespace,
        &[("SHOP_JWT_SECRET", TEST_SECRET)],
    )
    .await;
    let addr = shop.addr;
    let (admin, alice, psp) = (
        token("ops", "admin"),
        token("alice", "customer"),
        token("psp", "payment"),
    );

    let mug = json!({"id": "SKU-A", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 10});
    let created = call(addr, "POST", "/api/products", &admin, "req-register", Some(mug)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("x-request-id"), Some("req-register"));
    for (path, request, body) in [
        ("/api/products/SKU-A/restock", "req-restock", json!({"quantity": 5})),
        (
            "/api/products/SKU-A/adjust",
            "req-adjust",
            json!({"delta": -2, "reason": "broken"}),
        ),
    ] {
        let done = call(addr, "POST", path, &admin, request, Some(body)).await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    let repriced = call(
        addr,
        "PUT",
        "/api/products/SKU-A/price",
        &admin,
        "req-price",
        Some(json!({"unit_price": 1500})),
    )
    .await;
    assert_eq!(repriced.status, 200, "{}", repriced.body);

    // An order placed under a request id of the caller's: its saga steps
    // carry it as their correlation id.
    let request = uuid::Uuid::now_v7().to_string();
    let order = json!({"items": [{"product_id": "SKU-A", "quantity": 2}]});
    let deadline = Instant::now() + Duration::from_secs(20);
    let placed = loop {
        let placed = call(addr, "POST", "/api/orders", &alice, &request, Some(order.clone())).await;
        let unpriced = placed.status == 422 && placed.body.contains("no such product in the catalogue");
        if !unpriced || Instant::now() > deadline {
            break placed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.json()["order_id"].as_str().expect("an order id").to_owned();
    common::confirmed(addr, &alice, &id).await;
    let paid = uuid::Uuid::now_v7().to_string();
    let completed = call(addr, "POST", &format!("/api/orders/{id}/complete"), &psp, &paid, None).await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    // Cancels as callers asked: the customer's own, an admin's. Only a
    // PENDING order is cancelled so: each is cancelled as soon as it is
    // placed, on another order should the saga confirm it first.
    let one = json!({"items": [{"product_id": "SKU-A", "quantity": 1}]});
    let mut cancels = Vec::new();
    for (token, who, role, request) in [
        (&alice, "alice", "customer", "req-own-cancel"),
        (&admin, "ops", "admin", "req-admin-cancel"),
    ] {
        for attempt in 1.. {
            let key = uuid::Uuid::now_v7().to_string();
            let placed = call(addr, "POST", "/api/orders", &alice, &key, Some(one.clone())).await;
            assert_eq!(placed.status, 202, "{}", placed.body);
            let other = placed.json()["order_id"].as_str().expect("an order id").to_owned();
            let path = format!("/api/orders/{other}/cancel");
            let cancelled = call(addr, "POST", &path, token, request, None).await;
            if cancelled.status == 200 {
                cancels.push((other, who, role, request));
                break;
            }
            assert!(cancelled.status == 409 && attempt < 4, "{}", cancelled.body);
        }
    }
    let erased = call(addr, "DELETE", "/api/customers/alice", &alice, "req-erase", None).await;
    assert_eq!(erased.status, 204, "{}", erased.body);

    // The deduction is the saga's, after the completion: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let entries = loop {
        let entries = everything(addr, "").await;
        if entries.iter().any(|e| e["action"] == "stock.deduct") || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let product = "product:SKU-A";
    for (action, request_id) in [
        ("product.register", "req-register"),
        ("stock.initial", "req-register"),
        ("stock.restock", "req-restock"),
        ("stock.adjust", "req-adjust"),
        ("price.change", "req-price"),
    ] {
        let entry = find(&entries, action, product);
        assert_eq!(
            (entry["actor"].as_str(), entry["role"].as_str()),
            (Some("ops"), Some("admin")),
            "{entry}"
        );
        assert_eq!(entry["request_id"], request_id, "{entry}");
        assert_eq!(entry["context"], "inventory");
    }
    assert_eq!(
        find(&entries, "price.change", product)["detail"],
        json!({"from": 1200, "to": 1500, "currency": "KRW"})
    );
    assert_eq!(
        find(&entries, "stock.adjust", product)["detail"],
        json!({"quantity": -2, "reason": "broken"})
    );
    // Each saga step carries the request that set it off: the order's, the completion's.
    for (action, actor, request) in [
        ("stock.reserve", "saga:reserve", &request),
        ("stock.deduct", "saga:deduct", &paid),
    ] {
        let entry = find(&entries, action, product);
        assert_eq!(
            (entry["actor"].as_str(), entry["role"].as_str()),
            (Some(actor), Some("saga")),
            "{entry}"
        );
        assert_eq!(entry["request_id"], request.as_str(), "{entry}");
        assert_eq!(entry["detail"]["order_id"], id.as_str());
    }
    let completion = find(&entries, "order.complete", &format!("order:{id}"));
    assert_eq!(
        (completion["actor"].as_str(), completion["role"].as_str()),
        (Some("psp"), Some("payment"))
    );
    assert_eq!(
        (completion["request_id"].as_str(), completion["context"].as_str()),
        (Some(paid.as_str()), Some("order"))
    );
    for (other, who, role, request) in &cancels {
        let cancel = find(&entries, "order.cancel", &format!("order:{other}"));
        assert_eq!(
            (cancel["actor"].as_str(), cancel["role"].as_str()),
            (Some(*who), Some(*role))
        );
        assert_eq!(cancel["request_id"], *request, "{cancel}");
        assert_eq!(cancel["detail"], json!({"reason": role}), "{cancel}");
    }
    let erasure = find(&entries, "customer.erase", "customer:alice");
    assert_eq!(
        (erasure["actor"].as_str(), erasure["role"].as_str()),
        (Some("alice"), Some("customer"))
    );
    assert_eq!(
        (erasure["request_id"].as_str(), erasure["context"].as_str()),
        (Some("req-erase"), Some("order"))
    );

    assert_one_chain(&entries);

    // Filters.
    let by_ops = everything(addr, "&actor=ops").await;
    assert!(
        by_ops.len() >= 5 && by_ops.iter().all(|e| e["actor"] == "ops"),
        "{by_ops:#?}"
    );
    let prices = everything(addr, "&action=price.change").await;
    assert_eq!(prices.len(), 1, "{prices:#?}");
    let on_alice = everything(addr, "&target=customer:alice").await;
    assert_eq!(on_alice.len(), 1, "{on_alice:#?}");

    // Admins only; bad pages refused with a problem.
    let refused = call(addr, "GET", "/api/audit", &alice, "r", None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    for bad in [
        "limit=0",
        "limit=501",
        "after=-1",
        "actor=",
        "target=%C2%9B",
        "colour=red",
    ] {
        let answer = call(addr, "GET", &format!("/api/audit?{bad}"), &admin, "r", None).await;
        assert!(
            (400..500).contains(&answer.status),
            "{bad}: {} {}",
            answer.status,
            answer.body
        );
    }

    // The movements name their actor and request too.
    let trail = call(addr, "GET", "/api/products/SKU-A/movements", &admin, "r", None)
        .await
        .json();
    let trail = trail["items"].as_array().expect("items").clone();
    let restock = trail.iter().find(|m| m["kind"] == "restock").expect("a restock");
    assert_eq!(
        (restock["actor"].as_str(), restock["request_id"].as_str()),
        (Some("ops"), Some("req-restock"))
    );
    let reserve = trail.iter().find(|m| m["kind"] == "reserve").expect("a reservation");
    assert_eq!(reserve["actor"], "saga:reserve");
    assert_eq!(reserve["request_id"], request.as_str());

    // The export carries the customer's audit entries.
    let export = call(addr, "GET", "/api/customers/alice/export", &alice, "r", None).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let audit = export.json()["audit"].clone();
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit}");
    assert_eq!(
        (audit[0]["action"].as_str(), audit[1]["action"].as_str()),
        (Some("order.cancel"), Some("customer.erase"))
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_audit_verify_names_a_tampered_entry() {
    audit_verify_names_a_tampered_entry(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_audit_verify_names_a_tampered_entry() {
    audit_verify_names_a_tampered_entry(Mode::Embedded).await;
}

async fn audit_verify_names_a_tampered_entry(mode: Mode) {
    use crate::cli::{shop as run, stderr, stdout};
    let (url, _namespace, _dir) = fresh(mode).await;
    let env = [
        ("SHOP_DATABASE_URL", url.as_str()),
        ("SHOP_DATA_KEY", common::TEST_DATA_KEY),
    ];
    verify(&env, 0, &["holds: 0 entries"]);

    // Changes from the command line are audited as the operator's.
    for n in 1..=3 {
        let erased = run(&["customers", "erase", &format!("c{n}")], &env);
        assert!(erased.status.success(), "{}", stderr(&erased));
    }
    let listed = run(&["audit", "list", "--action", "customer.erase"], &env);
    let lines: Vec<Value> = stdout(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&listed));
    assert!(
        lines
            .iter()
            .all(|l| l["role"] == "operator" && l["actor"].as_str().is_some_and(|a| a.starts_with("cli:")))
    );
    verify(&env, 0, &["holds: 3 entries"]);

    // The owner's plain rewrite is refused; past the triggers, it goes in.
    let (rewrite, past_the_trigger) = match mode {
        Mode::Distributed => (
            "UPDATE audit.entries SET actor = 'mallory' WHERE seq = 2",
            "ALTER TABLE audit.entries DISABLE TRIGGER entries_append_only",
        ),
        Mode::Embedded => (
            "UPDATE audit_entries SET actor = 'mallory' WHERE seq = 2",
            "DROP TRIGGER audit_entries_no_update",
        ),
    };
    assert!(
        as_owner(mode, &url, rewrite).await.is_err(),
        "the trigger refuses even the owner"
    );
    tamper(mode, &url, past_the_trigger).await;
    tamper(mode, &url, rewrite).await;
    verify(&env, 1, &["broken at entry 2"]);

    // Entry 2 put back as it was, the newest entry removed: the chain stops
    // short of its head. Then every head removed: entries beyond any head.
    let actor = lines[1]["actor"].as_str().expect("an actor");
    let (restore, remove_tail, remove_heads) = match mode {
        Mode::Distributed => (
            format!("UPDATE audit.entries SET actor = '{actor}' WHERE seq = 2"),
            "DELETE FROM audit.entries WHERE seq = 3",
            "ALTER TABLE audit.heads DISABLE TRIGGER heads_append_only; DELETE FROM audit.heads;",
        ),
        Mode::Embedded => (
            format!("UPDATE audit_entries SET actor = '{actor}' WHERE seq = 2"),
            "DROP TRIGGER audit_entries_no_delete; DELETE FROM audit_entries WHERE seq = 3",
            "DROP TRIGGER audit_heads_no_delete; DELETE FROM audit_heads;",
        ),
    };
    tamper(mode, &url, &restore).await;
    verify(&env, 0, &[]);
    tamper(mode, &url, remove_tail).await;
    verify(&env, 1, &["broken at entry 3", "head records entry 3"]);
    tamper(mode, &url, remove_heads).await;
    verify(&env, 1, &["broken at entry 1", "heads were removed"]);
}

/// Runs `shop audit verify` and checks its exit code and that its output
/// says each of `says`.
fn verify(env: &[(&str, &str)], code: i32, says: &[&str]) {
    use crate::cli::{shop as run, stderr, stdout};
    let verified = run(&["audit", "verify"], env);
    let out = stdout(&verified);
    assert_eq!(verified.status.code(), Some(code), "{out}{}", stderr(&verified));
    for said in says {
        assert!(out.contains(said), "no {said:?} in {out}");
    }
}

/// Runs `sql` on the database at `url` as its owner, which must succeed.
async fn tamper(mode: Mode, url: &str, sql: &str) {
    as_owner(mode, url, sql).await.expect("tampered");
}

/// Runs `sql` on the database at `url` as its owner.
async fn as_owner(mode: Mode, url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match mode {
        Mode::Distributed => {
            let mut db = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(sql).execute(&mut db).await.map(drop)
        }
        Mode::Embedded => {
            let mut db = sqlx::SqliteConnection::connect(url).await?;
            sqlx::raw_sql(sql).execute(&mut db).await.map(drop)
        }
    }
}

/// Cancels asked for at once are decided and committed together (one
/// holder of the audit chain's lock for many), yet each order changes once,
/// with one event and one audit entry naming its own caller and request,
/// however many times it was asked; a customer cannot cancel another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_asked_at_once_each_change_their_order_once_audited_as_their_callers() {
    // The order role alone: nothing reserves, so every order stays PENDING
    // until its customer cancels it.
    let (store, shop) = common::order_role_alone('c', "SKU-C", 1000, &[]).await;
    let addr = shop.addr;

    let customers = ["ann", "bob", "cho"];
    let one = json!({"items": [{"product_id": "SKU-C", "quantity": 1}]});
    let mut orders = Vec::new();
    for (at, customer) in customers.iter().enumerate() {
        let stranger = customers[(at + 1) % customers.len()];
        let caller = token(customer, "customer");
        for n in 0..8 {
            let placed = call(
                addr,
                "POST",
                "/api/orders",
                &caller,
                &format!("place-{customer}-{n}"),
                Some(one.clone()),
            )
            .await;
            assert_eq!(placed.status, 202, "{}", placed.body);
            let id = placed.json()["order_id"].as_str().expect("an order id").to_owned();
            orders.push((*customer, stranger, id));
        }
    }

    // Every order cancelled twice by its customer, and tried once by the
    // next customer, all at once.
    let asked = orders.iter().enumerate().flat_map(|(n, (customer, stranger, id))| {
        [
            (*customer, id.clone(), format!("cancel-{n}-a")),
            (*customer, id.clone(), format!("cancel-{n}-b")),
            (*stranger, id.clone(), format!("stranger-{n}")),
        ]
    });
    let answers = futures::future::join_all(asked.map(|(caller, id, request)| async move {
        let path = format!("/api/orders/{id}/cancel");
        let answer = call(addr, "POST", &path, &token(caller, "customer"), &request, None).await;
        (id, request, answer)
    }))
    .await;
    for (id, request, answer) in &answers {
        if request.starts_with("stranger") {
            assert_eq!(answer.status, 404, "{request} on {id}: {}", answer.body);
        } else {
            assert_eq!(answer.status, 200, "{request} on {id}: {}", answer.body);
            assert_eq!(answer.json()["status"], "CANCELLED", "{}", answer.body);
        }
    }

    let entries = everything(addr, "&action=order.cancel").await;
    assert_eq!(entries.len(), orders.len(), "one entry per order: {entries:#?}");
    for (n, (customer, _, id)) in orders.iter().enumerate() {
        let entry = find(&entries, "order.cancel", &format!("order:{id}"));
        assert_eq!(
            (entry["actor"].as_str(), entry["role"].as_str()),
            (Some(*customer), Some("customer"))
        );
        let request = entry["request_id"].as_str().unwrap_or_default();
        assert!(
            [format!("cancel-{n}-a"), format!("cancel-{n}-b")]
                .iter()
                .any(|r| r == request),
            "{entry}"
        );
    }
    assert_one_chain(&everything(addr, "").await);

    let cancelled: Vec<(String, i64)> = sqlx::query_as(
        "SELECT envelope->>'aggregate_id', count(*) FROM orders.outbox
         WHERE envelope->>'event_type' = 'OrderCancelled' GROUP BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("the outbox reads");
    assert_eq!(cancelled.len(), orders.len(), "{cancelled:?}");
    assert!(cancelled.iter().all(|(_, events)| *events == 1), "{cancelled:?}");
    shop.stop().await;
}
