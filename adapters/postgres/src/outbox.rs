//! `Outbox` on PostgreSQL: one per context schema.
//!
//! A claim leases rows with `FOR UPDATE SKIP LOCKED`, so concurrent relays
//! skip each other's rows instead of waiting, and a lease that runs out (a
//! relay that died) makes its rows claimable again. A relay's own leases
//! never stop it: rows it published but could not mark come back to it.

use std::time::Duration;

use shop_runtime::ports::{Outbox, StoreError};
use shop_streams::Envelope;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::{corrupt, db_error};
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
}

impl Outbox for PgOutbox {
    async fn claim(&self, relay: &str, limit: u32, lease: Duration) -> Result<Vec<Envelope>, StoreError> {
        let rows = sqlx::query(in_schema!(
            self.schema,
            "UPDATE ",
            ".outbox SET leased_by = $1, lease_until = now() + make_interval(secs => $3)
             WHERE seq IN (
                 SELECT seq FROM ",
            ".outbox
                 WHERE sent_at IS NULL AND (lease_until IS NULL OR lease_until < now() OR leased_by = $1)
                 ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING seq, envelope"
        ))
        .bind(relay)
        .bind(i64::from(limit))
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let read = |e| corrupt("outbox row", e);
                let seq: i64 = row.try_get("seq").map_err(read)?;
                let envelope: Json<Envelope> = row.try_get("envelope").map_err(read)?;
                Ok((seq, envelope.0))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, envelope)| envelope).collect())
    }

    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        sqlx::query(in_schema!(
            self.schema,
            "UPDATE ",
            ".outbox SET sent_at = now(), leased_by = NULL, lease_until = NULL
             WHERE event_id = ANY($1) AND sent_at IS NULL"
        ))
        .bind(event_ids)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(in_schema!(
            self.schema,
            "SELECT count(*) FROM ",
            ".outbox WHERE sent_at IS NULL"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn requeue_since(&self, since_ms: i64) -> Result<u64, StoreError> {
        let requeued = sqlx::query(in_schema!(
            self.schema,
            "UPDATE ",
            ".outbox SET sent_at = NULL WHERE sent_at >= to_timestamp($1::float8 / 1000)"
        ))
        .bind(since_ms as f64)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(requeued.rows_affected())
    }
}
