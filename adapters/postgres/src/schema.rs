//! The two contexts' schemas, and SQL text shared by both.

use shop_streams::Envelope;
use sqlx::{Postgres, Transaction};

use shop_runtime::ports::StoreError;

use crate::error::db_error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Orders,
    Inventory,
}

/// A `&'static str` statement with the schema's name between the parts:
/// `in_schema!(s, "SELECT 1 FROM ", ".inbox")`.
macro_rules! in_schema {
    ($schema:expr, $first:literal $(, $rest:literal)*) => {
        match $schema {
            $crate::schema::Schema::Orders => concat!($first $(, "orders", $rest)*),
            $crate::schema::Schema::Inventory => concat!($first $(, "inventory", $rest)*),
        }
    };
}

impl Schema {
    /// The channel writers NOTIFY when they append to the schema's outbox.
    pub(crate) fn outbox_channel(self) -> &'static str {
        match self {
            Self::Orders => "orders_outbox",
            Self::Inventory => "inventory_outbox",
        }
    }

    pub(crate) fn context(self) -> shop_streams::Context {
        match self {
            Self::Orders => shop_streams::Context::Order,
            Self::Inventory => shop_streams::Context::Inventory,
        }
    }

    /// The advisory lock key under which the schema's outbox numbers events.
    fn outbox_lock(self) -> i64 {
        // "outbox" in ASCII, and the schema.
        const BASE: i64 = 0x6f75_7462_6f78 << 8;
        match self {
            Self::Orders => BASE + 1,
            Self::Inventory => BASE + 2,
        }
    }
}

/// Appends events to the schema's outbox, in order, in one round trip. Call
/// it last in the transaction: it takes the outbox's lock, held to the
/// commit, so that events are numbered in the order they become visible
/// (the relay reads by number, see `outbox.rs`).
pub(crate) async fn append_outbox<'e>(
    tx: &mut Transaction<'_, Postgres>,
    schema: Schema,
    events: impl IntoIterator<Item = &'e Envelope>,
) -> Result<(), StoreError> {
    let envelopes = events.into_iter().map(json).collect::<Result<Vec<_>, _>>()?;
    if envelopes.is_empty() {
        return Ok(());
    }
    // The lock and the insert in one round trip. Sequence numbers follow the
    // order rows are inserted in (ORDINALITY makes that the order given),
    // and are taken one at a time (the sequence's CACHE is 1: a backend
    // caching a range would break the commit order). The NOTIFY goes out
    // at commit, to every relay listening on the database.
    sqlx::query(in_schema!(
        schema,
        "WITH numbering AS (SELECT pg_advisory_xact_lock($1), pg_notify($4, ''))
         INSERT INTO ",
        ".outbox (envelope, at)
         SELECT envelope::json, $3 FROM numbering, UNNEST($2::text[]) WITH ORDINALITY AS new (envelope, n)
         ORDER BY n"
    ))
    .bind(schema.outbox_lock())
    .bind(&envelopes)
    .bind(shop_adapter_sql::now_ms())
    .bind(schema.outbox_channel())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// A value as JSON text, for a `text[]` a statement casts to `json`.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Refused(format!("not serialisable: {e}")))
}
