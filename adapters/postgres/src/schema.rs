//! The two contexts' schemas, and SQL text shared by both.

use std::collections::HashSet;

use shop_streams::Envelope;
use sqlx::{Postgres, Transaction};

use shop_runtime::ports::{Handled, StoreError};
use uuid::Uuid;

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

/// Records handled messages, in one round trip;
/// [`StoreError::AlreadyHandled`] if any was before.
pub(crate) async fn record_handled(
    tx: &mut Transaction<'static, Postgres>,
    schema: Schema,
    handled: &[Handled<'_>],
) -> Result<(), StoreError> {
    if handled.is_empty() {
        return Ok(());
    }
    // In key order, so two writers recording overlapping messages (two
    // instances handed the same redelivery) queue instead of deadlocking.
    let mut sorted = handled.to_vec();
    sorted.sort_by(|a, b| (a.consumer, a.message_id).cmp(&(b.consumer, b.message_id)));
    let consumers: Vec<&str> = sorted.iter().map(|h| h.consumer).collect();
    let ids: Vec<Uuid> = sorted.iter().map(|h| h.message_id).collect();
    let recorded: Vec<Uuid> = sqlx::query_scalar(in_schema!(
        schema,
        "INSERT INTO ",
        ".inbox (consumer, message_id) SELECT * FROM UNNEST($1::text[], $2::uuid[])
         ON CONFLICT DO NOTHING RETURNING message_id"
    ))
    .bind(&consumers)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    if recorded.len() == ids.len() {
        return Ok(());
    }
    // Name one that was not recorded: handled before, or twice in this run.
    let mut fresh: HashSet<Uuid> = recorded.into_iter().collect();
    let repeated = ids.iter().find(|id| !fresh.remove(id)).copied();
    Err(StoreError::AlreadyHandled(repeated.unwrap_or(ids[0])))
}

/// Appends events to the schema's outbox, in order, in one round trip.
pub(crate) async fn append_outbox<'e>(
    tx: &mut Transaction<'static, Postgres>,
    schema: Schema,
    events: impl IntoIterator<Item = &'e Envelope>,
) -> Result<(), StoreError> {
    let (mut ids, mut envelopes) = (Vec::new(), Vec::new());
    for event in events {
        ids.push(event.event_id);
        envelopes.push(json(event)?);
    }
    if ids.is_empty() {
        return Ok(());
    }
    // Sequence numbers follow the order rows are inserted in; ORDINALITY
    // makes that the order given.
    sqlx::query(in_schema!(
        schema,
        "INSERT INTO ",
        ".outbox (event_id, envelope)
         SELECT id, envelope::jsonb FROM UNNEST($1::uuid[], $2::text[]) WITH ORDINALITY AS new (id, envelope, n)
         ORDER BY n"
    ))
    .bind(&ids)
    .bind(&envelopes)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// A value as JSON text, for a `text[]` a statement casts to `jsonb`.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Refused(format!("not serialisable: {e}")))
}
