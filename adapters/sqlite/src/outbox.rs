//! `Outbox` on SQLite: the shared SQL outbox over each context's
//! `_outbox` and `_outbox_cursor` tables (filled by the stores' writes,
//! `events.rs`), and the write transactions' begin and commit.
//!
//! SQLite has one writer at a time, so events are numbered in the order
//! their transactions commit: reading "after the cursor" never skips one.

use shop_adapter_sql::{ApiKeySql, CommitSignal, Driver, OutboxSql, SqlApiKeys, SqlOutbox, api_keys_sql, outbox_sql};
use shop_runtime::ports::StoreError;
use shop_streams::Context;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::error::db_error;
use crate::events::{EventRows, Events};

pub type SqliteOutbox = SqlOutbox<Sqlite>;

static ORDERS: OutboxSql = outbox_sql!("orders_outbox", "orders_outbox_cursor", "o.envelope");
static INVENTORY: OutboxSql = outbox_sql!("inventory_outbox", "inventory_outbox_cursor", "o.envelope");

/// API keys in the `api_keys` table, over the same shared SQL.
pub type SqliteApiKeys = SqlApiKeys<Sqlite>;

/// What the shared SQL code needs of this driver: the outboxes, the keys, the statements.
pub(crate) const DRIVER: Driver<Sqlite> = Driver {
    db_error,
    rows_affected: SqliteQueryResult::rows_affected,
};

static API_KEYS: ApiKeySql = api_keys_sql!("api_keys", "BEGIN IMMEDIATE");

pub(crate) fn api_keys(pool: SqlitePool) -> SqliteApiKeys {
    SqlApiKeys::new(pool, &API_KEYS, crate::statements::AUDIT, DRIVER)
}

/// One process writes the database, so the writers ring `committed`
/// themselves after each commit. The relay reads on `readers`, beside the
/// writer.
pub(crate) fn outbox(pool: SqlitePool, readers: SqlitePool, context: Context, committed: CommitSignal) -> SqliteOutbox {
    let sql = match context {
        Context::Order => &ORDERS,
        Context::Inventory => &INVENTORY,
    };
    SqlOutbox::new(pool, sql, DRIVER, committed).reading_from(readers)
}

/// A write transaction: takes the database's write lock at once, so two
/// writers queue instead of failing to upgrade a read lock.
pub(crate) async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
}

/// Commits a transaction that wrote `written`, then wakes whoever takes them.
pub(crate) async fn commit(
    tx: Transaction<'static, Sqlite>,
    events: &Events,
    written: &EventRows,
) -> Result<(), StoreError> {
    tx.commit().await.map_err(db_error)?;
    events.committed(written);
    Ok(())
}
