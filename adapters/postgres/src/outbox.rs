//! `Outbox` on PostgreSQL: the shared SQL outbox over each context schema's
//! `outbox` and `outbox_cursor` tables.
//!
//! Writers number their events under the outbox's advisory lock
//! ([`crate::schema::append_outbox`]), held to their commit, so an event
//! visible to the relay has a higher number than every event visible
//! before it.

use shop_adapter_sql::{ApiKeySql, CommitSignal, Driver, OutboxSql, SqlApiKeys, SqlOutbox, api_keys_sql, outbox_sql};
use sqlx::postgres::PgQueryResult;
use sqlx::{PgPool, Postgres};

use crate::error::db_error;
use crate::schema::Schema;

pub type PgOutbox = SqlOutbox<Postgres>;

static ORDERS: OutboxSql = outbox_sql!("orders.outbox", "orders.outbox_cursor", "o.envelope::text");
static INVENTORY: OutboxSql = outbox_sql!("inventory.outbox", "inventory.outbox_cursor", "o.envelope::text");

/// `committed` is rung by the store's listener (see `wake.rs`).
pub(crate) fn outbox(pool: PgPool, schema: Schema, committed: CommitSignal) -> PgOutbox {
    let sql = match schema {
        Schema::Orders => &ORDERS,
        Schema::Inventory => &INVENTORY,
    };
    SqlOutbox::new(pool, sql, DRIVER, committed)
}

/// API keys in `access.api_keys`, over the same shared SQL.
pub type PgApiKeys = SqlApiKeys<Postgres>;

/// What the shared SQL code needs of this driver: the outboxes, the keys, the statements.
pub(crate) const DRIVER: Driver<Postgres> = Driver {
    db_error,
    rows_affected: PgQueryResult::rows_affected,
};

static API_KEYS: ApiKeySql = api_keys_sql!("access.api_keys", "BEGIN");

pub(crate) fn api_keys(pool: PgPool) -> PgApiKeys {
    SqlApiKeys::new(pool, &API_KEYS, crate::statements::AUDIT, DRIVER)
}
