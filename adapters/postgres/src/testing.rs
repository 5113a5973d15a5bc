//! Test support: a fresh, migrated database per test on the PostgreSQL of
//! the test machine (127.0.0.1:5432 unless `SHOP_TEST_DATABASE_URL` says
//! otherwise).

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::{PgSettings, PgStore};

pub fn admin_url() -> String {
    std::env::var("SHOP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new, migrated database. Its name holds a UUIDv7, so its age is known:
/// databases left by runs more than an hour old are dropped here.
pub async fn fresh_store() -> PgStore {
    fresh_database().await.0
}

/// [`fresh_store`], with the database's URL for other processes.
pub async fn fresh_database() -> (PgStore, String) {
    let url = empty_database().await;
    let store = PgStore::connect(&PgSettings::new(url.clone())).await.expect("connect");
    store.migrate().await.expect("migrations apply");
    store.migrate().await.expect("migrating twice is a no-op");
    (store, url)
}

/// A new database with nothing in it (not migrated), and its URL.
pub async fn empty_database() -> String {
    let admin = admin_url();
    let name = format!("shop_test_{}", Uuid::now_v7().simple());
    let mut connection = PgConnection::connect(&admin).await.expect("PostgreSQL is reachable");
    drop_stale_databases(&mut connection).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("create the test database");
    match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("{admin} names no database"),
    }
}

async fn drop_stale_databases(connection: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'shop\\_test\\_%'")
        .fetch_all(&mut *connection)
        .await
        .unwrap_or_default();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for name in names {
        let created = name
            .strip_prefix("shop_test_")
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| id.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
            });
        if created.is_some_and(|at| at < hour_ago) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *connection)
            .await;
        }
    }
}
