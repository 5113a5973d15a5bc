//! `Outbox` on SQLite: one log and one cursor per context's tables.
//!
//! SQLite has one writer at a time, so events are numbered in the order
//! their transactions commit: reading "after the cursor" never skips one.
//! The relay reads without writing while its lease is fresh, and writes the
//! cursor row once per published batch.

use std::time::Duration;

use shop_runtime::ports::{Outbox, Pending, StoreError};
use shop_streams::{Context, Envelope};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::error::{corrupt, db_error, to_sql, version};
use crate::{millis, now_ms};

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

#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    context: Context,
}

impl SqliteOutbox {
    pub fn new(pool: SqlitePool, context: Context) -> Self {
        Self { pool, context }
    }

    /// Whether `relay` holds a lease with more than half of `lease` left,
    /// and what is pending (events only then).
    async fn read(&self, relay: &str, limit: u32, lease: Duration) -> Result<(bool, Pending), StoreError> {
        let fresh_until = now_ms().saturating_add(millis(lease) / 2);
        let rows = sqlx::query(in_context!(
            self.context,
            "SELECT c.position, (c.holder IS ?1 AND c.lease_until > ?3) AS fresh, o.seq, o.envelope
             FROM ",
            "_outbox_cursor c
             LEFT JOIN (SELECT seq, envelope FROM ",
            "_outbox
                        WHERE seq > (SELECT position FROM ",
            "_outbox_cursor WHERE id = 1)
                        ORDER BY seq LIMIT ?2) o
               ON c.holder IS ?1 AND c.lease_until > ?3
             WHERE c.id = 1 ORDER BY o.seq"
        ))
        .bind(relay)
        .bind(i64::from(limit))
        .bind(fresh_until)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(first) = rows.first() else {
            return Err(corrupt("outbox cursor", "missing"));
        };
        let read = |e| corrupt("outbox row", e);
        let position = version(first.try_get("position").map_err(read)?);
        let fresh: bool = first.try_get("fresh").map_err(read)?;
        let mut pending = Pending {
            cursor: position,
            last: position,
            events: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let seq: Option<i64> = row.try_get("seq").map_err(read)?;
            let text: Option<String> = row.try_get("envelope").map_err(read)?;
            if let (Some(seq), Some(text)) = (seq, text) {
                pending.last = version(seq);
                pending
                    .events
                    .push(serde_json::from_str(&text).map_err(|e| corrupt("outbox row", e))?);
            }
        }
        Ok((fresh, pending))
    }
}

impl Outbox for SqliteOutbox {
    async fn pending(&self, relay: &str, limit: u32, lease: Duration) -> Result<Option<Pending>, StoreError> {
        let (fresh, pending) = self.read(relay, limit, lease).await?;
        if fresh {
            return Ok(Some(pending));
        }
        let now = now_ms();
        let taken = sqlx::query(in_context!(
            self.context,
            "UPDATE ",
            "_outbox_cursor SET holder = ?1, lease_until = ?2
             WHERE id = 1 AND (holder IS ?1 OR holder IS NULL OR lease_until < ?3)"
        ))
        .bind(relay)
        .bind(now.saturating_add(millis(lease)))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if taken.rows_affected() == 0 {
            return Ok(None);
        }
        // Read again now that the lease is fresh.
        let (_, pending) = self.read(relay, limit, lease).await?;
        Ok(Some(pending))
    }

    async fn advance(&self, relay: &str, from: u64, to: u64, lease: Duration) -> Result<bool, StoreError> {
        let moved = sqlx::query(in_context!(
            self.context,
            "UPDATE ",
            "_outbox_cursor SET position = ?3, lease_until = ?4 WHERE id = 1 AND holder IS ?1 AND position = ?2"
        ))
        .bind(relay)
        .bind(to_sql(from))
        .bind(to_sql(to))
        .bind(now_ms().saturating_add(millis(lease)))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(moved.rows_affected() == 1)
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(in_context!(
            self.context,
            "SELECT count(*) FROM ",
            "_outbox WHERE seq > (SELECT position FROM ",
            "_outbox_cursor WHERE id = 1)"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn rewind_to(&self, since_ms: i64) -> Result<u64, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let position: i64 = sqlx::query_scalar(in_context!(
            self.context,
            "SELECT position FROM ",
            "_outbox_cursor WHERE id = 1"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let first: Option<i64> = sqlx::query_scalar(in_context!(
            self.context,
            "SELECT min(seq) FROM ",
            "_outbox WHERE at >= ?1 AND seq <= ?2"
        ))
        .bind(since_ms)
        .bind(position)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(first) = first else { return Ok(0) };
        let again: i64 = sqlx::query_scalar(in_context!(
            self.context,
            "SELECT count(*) FROM ",
            "_outbox WHERE seq >= ?1 AND seq <= ?2"
        ))
        .bind(first)
        .bind(position)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(in_context!(
            self.context,
            "UPDATE ",
            "_outbox_cursor SET position = ?1 WHERE id = 1"
        ))
        .bind(first - 1)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(u64::try_from(again).unwrap_or(0))
    }

    async fn prune(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        // The oldest `limit` published rows, of which those old enough.
        let pruned = sqlx::query(in_context!(
            self.context,
            "DELETE FROM ",
            "_outbox WHERE seq IN (
                 SELECT seq FROM ",
            "_outbox WHERE seq <= (SELECT position FROM ",
            "_outbox_cursor WHERE id = 1)
                 ORDER BY seq LIMIT ?2)
             AND at < ?1"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(pruned.rows_affected())
    }
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
    let at = now_ms();
    for event in events {
        let text = serde_json::to_string(event).map_err(|e| corrupt("event", e))?;
        sqlx::query(in_context!(
            context,
            "INSERT INTO ",
            "_outbox (envelope, at) VALUES (?1, ?2)"
        ))
        .bind(text)
        .bind(at)
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
