//! `Outbox` on SQLite: the shared SQL outbox over each context's
//! `_outbox` and `_outbox_cursor` tables, and the writes that fill it.
//!
//! SQLite has one writer at a time, so events are numbered in the order
//! their transactions commit: reading "after the cursor" never skips one.

use shop_adapter_sql::{ApiKeySql, CommitSignal, Driver, OutboxSql, SqlApiKeys, SqlOutbox, api_keys_sql, outbox_sql};
use shop_runtime::ports::StoreError;
use shop_streams::{Context, Envelope};
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::batch::{Rows, write};
use crate::error::{corrupt, db_error};
use crate::now_ms;

/// A `&'static str` statement with the context's table prefix between the
/// parts: `in_context!(c, "SELECT 1 FROM ", "_outbox")`.
macro_rules! in_context {
    ($context:expr, $first:literal $(, $rest:literal)*) => {
        match $context {
            shop_streams::Context::Order => concat!($first $(, "orders", $rest)*),
            shop_streams::Context::Inventory => concat!($first $(, "inventory", $rest)*),
        }
    };
}

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

/// Events as the outbox's rows, encoded before the transaction begins.
pub(crate) fn outbox_rows<'e>(events: impl IntoIterator<Item = &'e Envelope>) -> Result<Rows, StoreError> {
    let at = now_ms();
    let rows = events
        .into_iter()
        .map(|event| Ok((serde_json::to_string(event).map_err(|e| corrupt("event", e))?, at)))
        .collect::<Result<Vec<(String, i64)>, StoreError>>()?;
    Rows::of(&rows)
}

/// Appends events ([`outbox_rows`]) to the context's outbox, in order, in
/// one statement.
pub(crate) async fn append_outbox(
    tx: &mut Transaction<'static, Sqlite>,
    context: Context,
    events: &Rows,
) -> Result<(), StoreError> {
    // `json_each` yields the array's elements in order, and the rows are
    // numbered in the order they are inserted.
    let statement = in_context!(
        context,
        "INSERT INTO ",
        "_outbox (envelope, at) SELECT value ->> 0, value ->> 1 FROM json_each(?1)"
    );
    write(tx, statement, events).await
}

/// A write transaction: takes the database's write lock at once, so two
/// writers queue instead of failing to upgrade a read lock.
pub(crate) async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
}

/// Commits a transaction that may have appended to an outbox, then wakes
/// that outbox's relay.
pub(crate) async fn commit(tx: Transaction<'static, Sqlite>, committed: &CommitSignal) -> Result<(), StoreError> {
    tx.commit().await.map_err(db_error)?;
    committed.ring();
    Ok(())
}
