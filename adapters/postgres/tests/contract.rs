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
