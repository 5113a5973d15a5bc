//! The two contexts' schemas, and SQL text shared by both.

use shop_streams::Envelope;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};

use shop_runtime::ports::{Handled, StoreError};

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
pub(crate) use in_schema;

/// Records a handled message; [`StoreError::AlreadyHandled`] if it was before.
pub(crate) async fn record_handled(
    tx: &mut Transaction<'static, Postgres>,
    schema: Schema,
    handled: Handled<'_>,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(in_schema!(
        schema,
        "INSERT INTO ",
        ".inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    ))
    .bind(handled.consumer)
    .bind(handled.message_id)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::AlreadyHandled(handled.message_id));
    }
    Ok(())
}

/// Appends events to the schema's outbox, in order.
pub(crate) async fn append_outbox(
    tx: &mut Transaction<'static, Postgres>,
    schema: Schema,
    events: &[Envelope],
) -> Result<(), StoreError> {
    for event in events {
        sqlx::query(in_schema!(
            schema,
            "INSERT INTO ",
            ".outbox (event_id, envelope) VALUES ($1, $2)"
        ))
        .bind(event.event_id)
        .bind(Json(event))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
