//! The store and outbox contracts against a real PostgreSQL (127.0.0.1:5432
//! unless `SHOP_TEST_DATABASE_URL` says otherwise), each test in a database
//! of its own, created and migrated for it.

use shop_adapter_postgres::Schema;
use shop_adapter_postgres::testing::fresh_store;
use shop_runtime::ports::contracts;

#[tokio::test]
async fn order_store_contract() {
    let store = fresh_store().await;
    contracts::order_store::run(&store, &store.outbox(Schema::Orders)).await;
}

#[tokio::test]
async fn customer_keys_contract() {
    // Group commit (the default) obtains keys in batches, as intake does.
    contracts::customer_keys::run(&fresh_store().await).await;
}

#[tokio::test]
async fn customer_keys_contract_one_statement_at_a_time() {
    let (_, url) = shop_adapter_postgres::testing::fresh_database().await;
    let settings = shop_adapter_postgres::PgSettings {
        group_commit: false,
        ..shop_adapter_postgres::PgSettings::new(url)
    };
    let store = shop_adapter_postgres::PgStore::connect(&settings)
        .await
        .expect("connect");
    contracts::customer_keys::run(&store).await;
}

#[tokio::test]
async fn inventory_store_contract() {
    contracts::inventory_store::run(&fresh_store().await).await;
}

#[tokio::test]
async fn audit_log_contract() {
    contracts::audit_log::run(&fresh_store().await).await;
}

#[tokio::test]
async fn the_audit_log_refuses_every_change_but_an_append() {
    let store = fresh_store().await;
    let record = shop_runtime::audit::Actor::new("ops", "admin", "r-1").did(
        "inventory",
        "stock.restock",
        "product:A".into(),
        1,
        &1,
    );
    shop_runtime::ports::AuditLog::append(&store, &[record])
        .await
        .expect("appended");
    for sql in [
        "UPDATE audit.entries SET actor = 'mallory'",
        "DELETE FROM audit.entries",
        "TRUNCATE audit.entries",
        "UPDATE audit.heads SET seq = 0",
        "DELETE FROM audit.heads",
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await;
        let error = refused.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
}

#[tokio::test]
async fn api_key_store_contract() {
    let store = fresh_store().await;
    contracts::api_keys::run(&store.api_keys(), &store).await;
}

#[tokio::test]
async fn order_outbox_contract() {
    let store = fresh_store().await;
    contracts::outbox::run(&store, &store.outbox(Schema::Orders)).await;
}

#[tokio::test]
async fn the_database_itself_refuses_negative_stock() {
    let store = fresh_store().await;
    let refused = sqlx::query(
        "INSERT INTO inventory.products
         (product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted, deducted, version)
         VALUES ('X', 'x', 1, 'KRW', -1, 1, 0, 0, 0, 0, 1)",
    )
    .execute(store.pool())
    .await;
    let error = refused.expect_err("CHECK constraint");
    assert!(error.to_string().contains("products_available_check"), "{error}");
}

#[tokio::test]
async fn an_outage_keeps_the_driver_error_as_its_cause() {
    use shop_runtime::ports::{OrderStore, StoreError};
    let store = fresh_store().await;
    store.pool().close().await;
    let Err(StoreError::Unavailable(cause)) = store.get("o-1").await else {
        panic!("a closed pool is an outage");
    };
    assert!(
        matches!(cause.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::PoolClosed)),
        "{cause:?}"
    );
}

/// The backend serving `connection`: the same process is the same connection.
async fn backend(connection: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("a backend")
}

#[tokio::test]
async fn a_kept_connection_serves_the_next_round_and_goes_back_once_unused() {
    use std::time::Duration;

    let (_, url) = shop_adapter_postgres::testing::fresh_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("connect");
    let kept = shop_adapter_sql::Kept::idle_for(pool.clone(), 1, Duration::from_millis(300));
    let mut first = kept.take().await.expect("a connection");
    let served = backend(&mut first).await;
    kept.keep(first);
    let mut again = kept.take().await.expect("the kept connection");
    assert_eq!(
        backend(&mut again).await,
        served,
        "the next round gets the same connection"
    );
    kept.keep(again);
    assert_eq!(pool.num_idle(), 0, "kept, not given back to the pool");
    // Unused for longer than its idle time, it goes back to the pool.
    let back = async {
        while pool.num_idle() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), back)
        .await
        .expect("given back to the pool");
    let mut pooled = pool.acquire().await.expect("from the pool");
    assert_eq!(backend(&mut pooled).await, served, "the pool got it back, open");
}

#[tokio::test]
async fn nothing_is_kept_that_the_pool_would_miss() {
    use std::time::Duration;

    let (_, url) = shop_adapter_postgres::testing::fresh_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .expect("connect");
    // An hour's idle time: only the pool's need can have given it back.
    let kept = shop_adapter_sql::Kept::idle_for(pool.clone(), 1, Duration::from_secs(3600));
    let connection = kept.take().await.expect("one of the pool's two connections");
    let mut other = pool.acquire().await.expect("the other one, busy elsewhere");
    kept.keep(connection);
    let mut pooled = pool.acquire().await.expect("the first connection, given back at once");
    backend(&mut pooled).await;
    backend(&mut other).await;
}

#[tokio::test]
async fn every_session_plans_each_execution_with_its_arguments() {
    // A generic plan frozen on a near-empty table kept scanning every order
    // for each of the saga's batches (see `CUSTOM_PLANS`).
    let store = fresh_store().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut connection = store.pool().acquire().await.expect("a connection");
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&mut *connection)
            .await
            .expect("the setting");
        assert_eq!(mode, shop_adapter_postgres::CUSTOM_PLANS.1);
        sessions.push(connection);
    }
}

/// The upgrade that keeps movements in the audit log
/// (0010_movements_in_audit.sql), from a database of the release before.
#[tokio::test]
async fn movements_from_before_the_audit_log_stay_first_in_the_trail() {
    use shop_adapter_postgres::{PgSettings, PgStore};
    use shop_runtime::ports::contracts::inventory_store::{MOVEMENTS_BEFORE_THE_UPGRADE, trail_after_the_upgrade};

    let url = shop_adapter_postgres::testing::empty_database().await;
    let store = PgStore::connect(&PgSettings::new(url)).await.expect("connect");
    sqlx::migrate!("./migrations")
        .run_to(9, store.pool())
        .await
        .expect("the migrations before it");
    let insert = format!(
        "INSERT INTO inventory.movements (product_id, kind, quantity, order_id, reason, at, actor, request_id)
         VALUES {MOVEMENTS_BEFORE_THE_UPGRADE}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
        .execute(store.pool())
        .await
        .expect("movements of an earlier release");
    store.migrate().await.expect("the upgrade");
    trail_after_the_upgrade(&store).await;
}
