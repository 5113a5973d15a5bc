//! `Outbox` on SQLite: one per context's tables.
//!
//! A claim is one `UPDATE ... RETURNING` under SQLite's single writer, so
//! two relays never lease the same row; a lease that runs out (a relay that
//! died) makes its rows claimable again, and a relay's own leases never
//! stop it.

use std::time::Duration;

use shop_runtime::ports::{Outbox, StoreError};
use shop_streams::{Context, Envelope};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use crate::error::{corrupt, db_error, json_list};
use crate::{millis, now_ms};

/// A `&'static str` statement with the context's table prefix between the
/// parts: `in_context!(c, "SELECT 1 FROM ", "_inbox")`.
macro_rules! in_context {
    ($context:expr, $first:literal $(, $rest:literal)*) => {
        match $context {
            shop_streams::Context::Order => concat!($first $(, "orders", $rest)*),
            shop_streams::Context::Inventory => concat!($first $(, "inventory", $rest)*),
        }
    };
}

#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    context: Context,
}

impl SqliteOutbox {
    pub fn new(pool: SqlitePool, context: Context) -> Self {
        Self { pool, context }
    }
}

impl Outbox for SqliteOutbox {
    async fn claim(&self, relay: &str, limit: u32, lease: Duration) -> Result<Vec<Envelope>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(in_context!(
            self.context,
            "UPDATE ",
            "_outbox SET leased_by = ?1, lease_until = ?2
             WHERE seq IN (
                 SELECT seq FROM ",
            "_outbox
                 WHERE sent_at IS NULL AND (lease_until IS NULL OR lease_until < ?3 OR leased_by = ?1)
                 ORDER BY seq LIMIT ?4)
             RETURNING seq, envelope"
        ))
        .bind(relay)
        .bind(now.saturating_add(millis(lease)))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let read = |e| corrupt("outbox row", e);
                let seq: i64 = row.try_get("seq").map_err(read)?;
                let text: String = row.try_get("envelope").map_err(read)?;
                let envelope: Envelope = serde_json::from_str(&text).map_err(|e| corrupt("outbox row", e))?;
                Ok((seq, envelope))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, envelope)| envelope).collect())
    }

    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        let ids: Vec<String> = event_ids.iter().map(Uuid::to_string).collect();
        sqlx::query(in_context!(
            self.context,
            "UPDATE ",
            "_outbox SET sent_at = ?1, leased_by = NULL, lease_until = NULL
             WHERE event_id IN (SELECT value FROM json_each(?2)) AND sent_at IS NULL"
        ))
        .bind(now_ms())
        .bind(json_list(&ids))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(in_context!(
            self.context,
            "SELECT count(*) FROM ",
            "_outbox WHERE sent_at IS NULL"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn requeue_since(&self, since_ms: i64) -> Result<u64, StoreError> {
        let requeued = sqlx::query(in_context!(
            self.context,
            "UPDATE ",
            "_outbox SET sent_at = NULL WHERE sent_at >= ?1"
        ))
        .bind(since_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(requeued.rows_affected())
    }
}

/// Records a handled message; [`StoreError::AlreadyHandled`] if it was before.
pub(crate) async fn record_handled(
    tx: &mut Transaction<'static, Sqlite>,
    context: Context,
    handled: shop_runtime::ports::Handled<'_>,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(in_context!(
        context,
        "INSERT INTO ",
        "_inbox (consumer, message_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
    ))
    .bind(handled.consumer)
    .bind(handled.message_id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::AlreadyHandled(handled.message_id));
    }
    Ok(())
}

/// Appends events to the context's outbox, in order.
pub(crate) async fn append_outbox<'e>(
    tx: &mut Transaction<'static, Sqlite>,
    context: Context,
    events: impl IntoIterator<Item = &'e Envelope>,
) -> Result<(), StoreError> {
    // Collected first: an iterator held across the awaits below would make
    // the future's lifetimes too hard for the trait's `Send` bound.
    let events: Vec<&Envelope> = events.into_iter().collect();
    for event in events {
        let text = serde_json::to_string(event).map_err(|e| corrupt("event", e))?;
        sqlx::query(in_context!(
            context,
            "INSERT INTO ",
            "_outbox (event_id, envelope) VALUES (?1, ?2)"
        ))
        .bind(event.event_id.to_string())
        .bind(text)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// A write transaction: takes the database's write lock at once, so two
/// writers queue instead of failing to upgrade a read lock.
pub(crate) async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
}
