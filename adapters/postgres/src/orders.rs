//! `OrderStore` on PostgreSQL: schema `orders`.

use std::collections::HashSet;

use shop_rules::order::Order;
use shop_runtime::audit::AuditRecord;
use shop_runtime::ports::{
    CatalogueEntry, CustomerKeys, OrderQuery, OrderStore, OrderWrite, Provenance, SealedDelivery, StoreError,
    StoredKey, StoredRecord, Versioned, checked_updates,
};
use sqlx::Connection;

use crate::PgStore;
use crate::error::{db_error, to_sql};
use crate::schema::{Schema, append_outbox, json};
use crate::statements::{AUDIT, STATEMENTS};
use shop_adapter_sql::rows;

impl OrderStore for PgStore {
    async fn get(&self, order_id: &str) -> Result<Option<Versioned<Order>>, StoreError> {
        STATEMENTS.order(&self.pool, order_id).await
    }

    async fn write(&self, write: OrderWrite<'_>) -> Result<u64, StoreError> {
        let order = write.order;
        // The intake writes new orders in batches; an audited one is written alone.
        if let (None, Some(intake), None) = (write.expected_version, &self.intake, write.audit) {
            return intake.write(&write).await;
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let conflict = || StoreError::Conflict(format!("order {}", order.id));
        let new_version = match write.expected_version {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO orders.orders (order_id, customer_id, status, created_at, confirmed_at, state, version, policy)
                     VALUES ($1, $2, $3, $4, $5, $6::json, 1, $7::json) ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(&order.id)
                .bind(&order.customer_id)
                .bind(order.status.as_str())
                .bind(order.created_at)
                .bind(order.confirmed_at)
                .bind(json(order)?)
                .bind(rows::provenance_column(write.provenance())?)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err(conflict());
                }
                if let Some(delivery) = write.delivery {
                    insert_deliveries(&mut tx, &[delivery]).await?;
                }
                1
            }
            Some(expected) => {
                let updated = sqlx::query(
                    "UPDATE orders.orders SET status = $2, confirmed_at = $3, state = $4::json, version = version + 1
                     WHERE order_id = $1 AND version = $5",
                )
                .bind(&order.id)
                .bind(order.status.as_str())
                .bind(order.confirmed_at)
                .bind(json(order)?)
                .bind(to_sql(expected))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if updated.rows_affected() == 0 {
                    return Err(conflict());
                }
                expected + 1
            }
        };
        AUDIT.append_in(&mut tx, write.audit.as_slice()).await?;
        append_outbox(&mut tx, Schema::Orders, write.events).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(new_version)
    }

    async fn get_many(&self, order_ids: &[String]) -> Result<Vec<Versioned<Order>>, StoreError> {
        let mut connection = self.kept.take().await.map_err(db_error)?;
        let rows = sqlx::query("SELECT state, version FROM orders.orders WHERE order_id = ANY($1)")
            .bind(order_ids)
            .fetch_all(&mut *connection)
            .await
            .map_err(db_error)?;
        self.kept.keep(connection);
        rows.iter().map(rows::versioned_order).collect()
    }

    async fn update_many(&self, updates: &[OrderWrite<'_>]) -> Result<(), StoreError> {
        let orders = checked_updates(updates)?;
        let mut connection = self.kept.take().await.map_err(db_error)?;
        let mut tx = connection.begin().await.map_err(db_error)?;
        if !orders.is_empty() {
            // One round trip; the version in the join is the fence, row by row.
            let updated: Vec<String> = sqlx::query_scalar(
                "UPDATE orders.orders o
                 SET status = u.status, confirmed_at = u.confirmed, state = u.state::json, version = o.version + 1
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[])
                   AS u (id, status, confirmed, state, expected)
                 WHERE o.order_id = u.id AND o.version = u.expected
                 RETURNING o.order_id",
            )
            .bind(orders.iter().map(|(o, _)| o.id.as_str()).collect::<Vec<_>>())
            .bind(orders.iter().map(|(o, _)| o.status.as_str()).collect::<Vec<_>>())
            .bind(orders.iter().map(|(o, _)| o.confirmed_at).collect::<Vec<_>>())
            .bind(orders.iter().map(|(o, _)| json(*o)).collect::<Result<Vec<_>, _>>()?)
            .bind(orders.iter().map(|(_, v)| to_sql(*v)).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            if updated.len() < orders.len() {
                let updated: HashSet<&str> = updated.iter().map(String::as_str).collect();
                let lost = orders.iter().find(|(o, _)| !updated.contains(o.id.as_str()));
                let lost = lost.map_or("?", |(o, _)| o.id.as_str());
                return Err(StoreError::Conflict(format!("order {lost}")));
            }
        }
        let audit: Vec<_> = updates.iter().filter_map(|u| u.audit).collect();
        AUDIT.append_in(&mut tx, &audit).await?;
        append_outbox(&mut tx, Schema::Orders, updates.iter().flat_map(|u| u.events)).await?;
        tx.commit().await.map_err(db_error)?;
        self.kept.keep(connection);
        Ok(())
    }

    async fn deliveries(&self, order_ids: &[String]) -> Result<Vec<SealedDelivery>, StoreError> {
        STATEMENTS.deliveries(&self.pool, order_ids).await
    }

    async fn provenance(&self, order_ids: &[String]) -> Result<Vec<Provenance>, StoreError> {
        STATEMENTS.provenance(&self.pool, order_ids).await
    }

    async fn record(&self, order_id: &str) -> Result<Option<StoredRecord>, StoreError> {
        STATEMENTS.order_record(&self.pool, order_id).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        STATEMENTS.pending_count(&self.pool).await
    }

    async fn confirmed_before(&self, cutoff_ms: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        STATEMENTS.confirmed_before(&self.pool, cutoff_ms, limit).await
    }

    async fn catalogue(&self, product_ids: &[String]) -> Result<Vec<CatalogueEntry>, StoreError> {
        match &self.intake {
            Some(intake) => intake.catalogue(product_ids).await,
            None => read_catalogue(&self.pool, product_ids).await,
        }
    }

    async fn customer_orders(&self, query: OrderQuery<'_>) -> Result<Vec<Order>, StoreError> {
        STATEMENTS.customer_orders(&self.pool, query).await
    }

    async fn update_catalogue(&self, entry: &CatalogueEntry) -> Result<(), StoreError> {
        STATEMENTS.update_catalogue(&self.pool, entry).await
    }
}

/// Stores sealed deliveries of orders inserted in `tx`, in one round trip.
pub(crate) async fn insert_deliveries(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    deliveries: &[&SealedDelivery],
) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO orders.deliveries (order_id, key_id, sealed)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])",
    )
    .bind(deliveries.iter().map(|d| d.order_id.as_str()).collect::<Vec<_>>())
    .bind(deliveries.iter().map(|d| d.key_id.as_str()).collect::<Vec<_>>())
    .bind(deliveries.iter().map(|d| d.sealed.as_str()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

impl CustomerKeys for PgStore {
    async fn obtain_key(&self, candidate: &StoredKey) -> Result<StoredKey, StoreError> {
        match &self.intake {
            Some(intake) => intake.obtain_key(candidate).await,
            None => STATEMENTS.obtain_key(&self.pool, candidate).await,
        }
    }

    async fn keys(&self, key_ids: &[String]) -> Result<Vec<StoredKey>, StoreError> {
        STATEMENTS.keys(&self.pool, key_ids).await
    }

    async fn destroy_key(&self, customer_id: &str, audit: &AuditRecord) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let destroyed = STATEMENTS.destroy_key(&mut tx, customer_id).await?;
        AUDIT.append_in(&mut tx, &[audit]).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(destroyed)
    }

    async fn keys_not_under(&self, kek_id: &str, after: &str, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        STATEMENTS.keys_not_under(&self.pool, kek_id, after, limit).await
    }

    async fn rewrap_key(&self, rewrapped: &StoredKey, previous_kek: &str) -> Result<bool, StoreError> {
        STATEMENTS.rewrap_key(&self.pool, rewrapped, previous_kek).await
    }
}

/// The catalogue entries of the listed products that are known.
pub(crate) async fn read_catalogue(
    db: impl sqlx::PgExecutor<'_>,
    product_ids: &[String],
) -> Result<Vec<CatalogueEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT product_id, unit_price, currency, source_version FROM orders.catalogue WHERE product_id = ANY($1)",
    )
    .bind(product_ids)
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    rows.iter().map(rows::catalogue_entry).collect()
}
