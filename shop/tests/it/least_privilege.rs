//! The distributed mode on least-privilege roles, set up by the SQL the
//! deployment guide gives (deploy/postgres-roles.sql): serving roles that
//! may only read and write their own context's rows refuse to run on an
//! unmigrated database, `shop migrate` runs as the migrator, and then an
//! order and an inventory instance run the whole saga as those roles.

use crate::common;

use std::process::{Command, Stdio};

use common::{InProcess, TEST_DATA_KEY, TEST_SECRET, token};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// `url` with `user` in place of its user.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_roles_need_no_more_than_their_own_rows() {
    let url = shop_adapter_postgres::testing::empty_database().await;
    let database = url.rsplit('/').next().expect("a database name").to_owned();
    let suffix = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let (migrator, order_role, inventory_role) = (
        format!("shop_migrator_{suffix}"),
        format!("shop_order_{suffix}"),
        format!("shop_inventory_{suffix}"),
    );
    // The documented setup, with roles of this run's own.
    let setup = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/postgres-roles.sql"))
        .expect("the setup SQL")
        .lines()
        .filter(|line| !line.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(":\"database\"", &database)
        .replace("shop_migrator", &migrator)
        .replace("shop_order", &order_role)
        .replace("shop_inventory", &inventory_role);
    let mut admin = PgConnection::connect(&url).await.expect("connect as the superuser");
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut admin)
        .await
        .expect("the setup SQL runs");

    let order_url = as_user(&url, &order_role);
    let inventory_url = as_user(&url, &inventory_role);
    let secrets = [("SHOP_JWT_SECRET", TEST_SECRET), ("SHOP_DATA_KEY", TEST_DATA_KEY)];

    // Not migrated yet: a serving role says what to do, and does not start.
    let early = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "--role", "order", "--listen", "127.0.0.1:0"])
        .env("SHOP_DATABASE_URL", &order_url)
        .envs(secrets)
        .stdin(Stdio::null())
        .output()
        .expect("the shop binary runs");
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success(), "{stderr}");
    assert!(stderr.contains("shop migrate"), "{stderr}");

    // The migration, as the migrator.
    let migrated = Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("migrate")
        .env("SHOP_DATABASE_URL", &order_url)
        .env("SHOP_MIGRATION_DATABASE_URL", as_user(&url, &migrator))
        .stdin(Stdio::null())
        .output()
        .expect("the shop binary runs");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    // What a serving role may not do.
    let mut order_db = PgConnection::connect(&order_url)
        .await
        .expect("connect as the order role");
    for (what, sql) in [
        ("read the other context", "SELECT count(*) FROM inventory.products"),
        ("change the schema", "CREATE TABLE orders.intruder (x int)"),
        ("drop a table", "DROP TABLE orders.orders"),
        ("create a schema", "CREATE SCHEMA intruder"),
        ("change an audit entry", "UPDATE audit.entries SET actor = 'mallory'"),
        ("remove an audit entry", "DELETE FROM audit.entries"),
        ("remove the audit heads", "DELETE FROM audit.heads"),
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut order_db).await;
        assert!(refused.is_err(), "the order role could {what}");
    }
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut order_db)
        .await
        .expect("read");
    assert!(!superuser);

    // The saga, on those roles alone.
    let (namespace, bus) = common::fresh_bus('l').await;
    let ns = namespace.as_str();
    let inventory = InProcess::start(shop::ProcessRole::Inventory, &inventory_url, ns, &[]).await;
    let order = InProcess::start(shop::ProcessRole::Order, &order_url, ns, &[]).await;
    for addr in [inventory.addr, order.addr] {
        let ready = common::ready_as_admin(addr).await;
        assert_eq!(ready.status, 200, "{}", ready.body);
    }
    let product = json!({"id": "SKU-L", "name": "Lock", "unit_price": 700, "currency": "KRW", "stock": 3});
    common::register(inventory.addr, &product).await;
    let alice = token("alice", "customer");
    let placed = common::place(order.addr, &alice, "SKU-L", "l-1").await;
    let id = placed["order_id"].as_str().expect("an order id");
    common::confirmed(order.addr, &alice, id).await;

    // Both roles appended to the audit log; neither may rewrite it.
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit.entries")
        .fetch_one(&mut order_db)
        .await
        .expect("the serving role reads the audit log");
    assert!(audited >= 3, "registration, its stock and the reservation: {audited}");
    let mut inventory_db = PgConnection::connect(&inventory_url)
        .await
        .expect("connect as the inventory role");
    for sql in [
        "UPDATE audit.entries SET actor = 'mallory'",
        "DELETE FROM audit.entries WHERE seq = 1",
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut inventory_db)
            .await
            .expect_err(sql);
        assert!(refused.to_string().contains("permission denied"), "{sql}: {refused}");
    }
    drop((order, inventory, order_db));
    let _ = bus.delete_streams().await;

    // The roles are the cluster's: they go with the database.
    drop(admin);
    let mut server = PgConnection::connect(&shop_adapter_postgres::testing::admin_url())
        .await
        .expect("connect");
    for statement in [
        format!("DROP DATABASE {database} WITH (FORCE)"),
        format!("DROP ROLE {migrator}"),
        format!("DROP ROLE {order_role}"),
        format!("DROP ROLE {inventory_role}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut server)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}
