//! `Outbox` on PostgreSQL: one log and one cursor per context schema.
//!
//! Writers number their events under the outbox's advisory lock
//! ([`crate::schema::append_outbox`]), held to their commit, so an event
//! visible to the relay has a higher number than every event visible before
//! it: reading "after the cursor" never skips a slower transaction. The
//! relay reads without writing while its lease is fresh, and writes the
//! cursor row once per published batch.

use std::time::Duration;

use shop_runtime::ports::{Outbox, Pending, StoreError};
use shop_streams::Envelope;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use crate::error::{corrupt, db_error, to_sql_version, version};
use crate::schema::{Schema, in_schema};

#[derive(Debug, Clone)]
pub struct PgOutbox {
    pool: PgPool,
    schema: Schema,
}

impl PgOutbox {
    pub fn new(pool: PgPool, schema: Schema) -> Self {
        Self { pool, schema }
    }

    /// The cursor, whether `relay` holds a lease with more than half of
    /// `lease` left, and (only then) up to `limit` events after the cursor.
    async fn read(&self, relay: &str, limit: u32, lease: Duration) -> Result<(bool, Pending), StoreError> {
        let rows = sqlx::query(in_schema!(
            self.schema,
            "SELECT c.position, (c.holder = $1 AND c.lease_until > now() + make_interval(secs => $3)) AS fresh,
                    o.seq, o.envelope
             FROM ",
            ".outbox_cursor c
             LEFT JOIN LATERAL (
                 SELECT seq, envelope FROM ",
            ".outbox
                 WHERE seq > c.position AND c.holder = $1
                   AND c.lease_until > now() + make_interval(secs => $3)
                 ORDER BY seq LIMIT $2) o ON true
             WHERE c.id = 1 ORDER BY o.seq"
        ))
        .bind(relay)
        .bind(i64::from(limit))
        .bind(lease.as_secs_f64() / 2.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(first) = rows.first() else {
            return Err(corrupt("outbox cursor", "missing"));
        };
        let read = |e| corrupt("outbox row", e);
        let position = version(first.try_get("position").map_err(read)?);
        let fresh: Option<bool> = first.try_get("fresh").map_err(read)?;
        let mut pending = Pending {
            cursor: position,
            last: position,
            events: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let seq: Option<i64> = row.try_get("seq").map_err(read)?;
            let envelope: Option<Json<Envelope>> = row.try_get("envelope").map_err(read)?;
            if let (Some(seq), Some(envelope)) = (seq, envelope) {
                pending.last = version(seq);
                pending.events.push(envelope.0);
            }
        }
        Ok((fresh.unwrap_or(false), pending))
    }
}

impl Outbox for PgOutbox {
    async fn pending(&self, relay: &str, limit: u32, lease: Duration) -> Result<Option<Pending>, StoreError> {
        let (fresh, pending) = self.read(relay, limit, lease).await?;
        if !fresh {
            let taken: Option<i64> = sqlx::query_scalar(in_schema!(
                self.schema,
                "UPDATE ",
                ".outbox_cursor SET holder = $1, lease_until = now() + make_interval(secs => $2)
                 WHERE id = 1 AND (holder = $1 OR holder IS NULL OR lease_until < now())
                 RETURNING position"
            ))
            .bind(relay)
            .bind(lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
            if taken.is_none() {
                return Ok(None);
            }
            // Read again now that the lease is fresh.
            let (_, pending) = self.read(relay, limit, lease).await?;
            return Ok(Some(pending));
        }
        Ok(Some(pending))
    }

    async fn advance(&self, relay: &str, from: u64, to: u64, lease: Duration) -> Result<bool, StoreError> {
        let moved = sqlx::query(in_schema!(
            self.schema,
            "UPDATE ",
            ".outbox_cursor SET position = $3, lease_until = now() + make_interval(secs => $4)
             WHERE id = 1 AND holder = $1 AND position = $2"
        ))
        .bind(relay)
        .bind(to_sql_version(from))
        .bind(to_sql_version(to))
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(moved.rows_affected() == 1)
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(in_schema!(
            self.schema,
            "SELECT count(*) FROM ",
            ".outbox WHERE seq > (SELECT position FROM ",
            ".outbox_cursor WHERE id = 1)"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn rewind_to(&self, since_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let position: i64 = sqlx::query_scalar(in_schema!(
            self.schema,
            "SELECT position FROM ",
            ".outbox_cursor WHERE id = 1 FOR UPDATE"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let first: Option<i64> = sqlx::query_scalar(in_schema!(
            self.schema,
            "SELECT min(seq) FROM ",
            ".outbox WHERE created_at >= to_timestamp($1::float8 / 1000) AND seq <= $2"
        ))
        .bind(since_ms as f64)
        .bind(position)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(first) = first else { return Ok(0) };
        let again: i64 = sqlx::query_scalar(in_schema!(
            self.schema,
            "SELECT count(*) FROM ",
            ".outbox WHERE seq >= $1 AND seq <= $2"
        ))
        .bind(first)
        .bind(position)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(in_schema!(
            self.schema,
            "UPDATE ",
            ".outbox_cursor SET position = $1 WHERE id = 1"
        ))
        .bind(first - 1)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(u64::try_from(again).unwrap_or(0))
    }

    async fn prune(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        // The oldest `limit` published rows, of which those old enough: a
        // scan of `limit` index entries, never of everything kept.
        let pruned = sqlx::query(in_schema!(
            self.schema,
            "DELETE FROM ",
            ".outbox WHERE seq IN (
                 SELECT seq FROM ",
            ".outbox WHERE seq <= (SELECT position FROM ",
            ".outbox_cursor WHERE id = 1)
                 ORDER BY seq LIMIT $2)
             AND created_at < to_timestamp($1::float8 / 1000)"
        ))
        .bind(before_ms as f64)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(pruned.rows_affected())
    }
}
