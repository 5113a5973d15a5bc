//! `OrderStore` on PostgreSQL: schema `orders`.

use std::collections::HashSet;

use shop_rules::order::{CataloguePrice, Order};
use shop_runtime::ports::{CatalogueEntry, OrderQuery, OrderStore, OrderWrite, StoreError, Versioned, checked_updates};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use crate::PgStore;
use crate::error::{corrupt, db_error, to_sql_version, version};
use crate::schema::{Schema, append_outbox, json};

impl OrderStore for PgStore {
    async fn get(&self, order_id: &str) -> Result<Option<Versioned<Order>>, StoreError> {
        let row = sqlx::query("SELECT state, version FROM orders.orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(versioned_order).transpose()
    }

    async fn write(&self, write: OrderWrite<'_>) -> Result<u64, StoreError> {
        let order = write.order;
        if let (None, Some(intake)) = (write.expected_version, &self.intake) {
            return intake.write(order, write.events).await;
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let conflict = || StoreError::Conflict(format!("order {}", order.id));
        let new_version = match write.expected_version {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO orders.orders (order_id, customer_id, status, created_at, confirmed_at, state, version)
                     VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(&order.id)
                .bind(&order.customer_id)
                .bind(order.status.as_str())
                .bind(order.created_at)
                .bind(order.confirmed_at)
                .bind(Json(order))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err(conflict());
                }
                1
            }
            Some(expected) => {
                let updated = sqlx::query(
                    "UPDATE orders.orders SET status = $2, confirmed_at = $3, state = $4, version = version + 1
                     WHERE order_id = $1 AND version = $5",
                )
                .bind(&order.id)
                .bind(order.status.as_str())
                .bind(order.confirmed_at)
                .bind(Json(order))
                .bind(to_sql_version(expected))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if updated.rows_affected() == 0 {
                    return Err(conflict());
                }
                expected + 1
            }
        };
        append_outbox(&mut tx, Schema::Orders, write.events).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(new_version)
    }

    async fn get_many(&self, order_ids: &[String]) -> Result<Vec<Versioned<Order>>, StoreError> {
        let rows = sqlx::query("SELECT state, version FROM orders.orders WHERE order_id = ANY($1)")
            .bind(order_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(versioned_order).collect()
    }

    async fn update_many(&self, updates: &[OrderWrite<'_>]) -> Result<(), StoreError> {
        let orders = checked_updates(updates)?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if !orders.is_empty() {
            // One round trip; the version in the join is the fence, row by row.
            let updated: Vec<String> = sqlx::query_scalar(
                "UPDATE orders.orders o
                 SET status = u.status, confirmed_at = u.confirmed, state = u.state::jsonb, version = o.version + 1
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[])
                   AS u (id, status, confirmed, state, expected)
                 WHERE o.order_id = u.id AND o.version = u.expected
                 RETURNING o.order_id",
            )
            .bind(orders.iter().map(|(o, _)| o.id.as_str()).collect::<Vec<_>>())
            .bind(orders.iter().map(|(o, _)| o.status.as_str()).collect::<Vec<_>>())
            .bind(orders.iter().map(|(o, _)| o.confirmed_at).collect::<Vec<_>>())
            .bind(orders.iter().map(|(o, _)| json(*o)).collect::<Result<Vec<_>, _>>()?)
            .bind(orders.iter().map(|(_, v)| to_sql_version(*v)).collect::<Vec<_>>())
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
        append_outbox(&mut tx, Schema::Orders, updates.iter().flat_map(|u| u.events)).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        // An index-only count over the partial index of PENDING orders.
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status = 'PENDING'")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn confirmed_before(&self, cutoff_ms: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT order_id FROM orders.orders WHERE status = 'CONFIRMED' AND confirmed_at < $1
             ORDER BY confirmed_at LIMIT $2",
        )
        .bind(cutoff_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn catalogue(&self, product_ids: &[String]) -> Result<Vec<CatalogueEntry>, StoreError> {
        match &self.intake {
            Some(intake) => intake.catalogue(product_ids).await,
            None => read_catalogue(&self.pool, product_ids).await,
        }
    }

    async fn customer_orders(&self, query: OrderQuery<'_>) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(
            "SELECT state FROM orders.orders
             WHERE customer_id = $1
               AND ($2::text IS NULL OR status = $2)
               AND ($3::bigint IS NULL OR (created_at, order_id) < ($3, $4))
             ORDER BY created_at DESC, order_id DESC
             LIMIT $5",
        )
        .bind(query.customer_id)
        .bind(query.status.map(|s| s.as_str()))
        .bind(query.after.map(|c| c.created_at))
        .bind(query.after.map(|c| c.order_id.as_str()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let state: Json<Order> = row.try_get("state").map_err(|e| corrupt("order", e))?;
                Ok(state.0)
            })
            .collect()
    }

    async fn update_catalogue(&self, entry: &CatalogueEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO orders.catalogue (product_id, unit_price, currency, source_version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (product_id) DO UPDATE
             SET unit_price = EXCLUDED.unit_price, currency = EXCLUDED.currency, source_version = EXCLUDED.source_version
             WHERE orders.catalogue.source_version < EXCLUDED.source_version",
        )
        .bind(&entry.price.product_id)
        .bind(entry.price.unit_price)
        .bind(&entry.price.currency)
        .bind(to_sql_version(entry.source_version))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

fn versioned_order(row: &PgRow) -> Result<Versioned<Order>, StoreError> {
    let state: Json<Order> = row.try_get("state").map_err(|e| corrupt("order", e))?;
    let stored: i64 = row.try_get("version").map_err(|e| corrupt("order", e))?;
    Ok(Versioned {
        value: state.0,
        version: version(stored),
    })
}

/// The catalogue entries of the listed products that are known.
pub(crate) async fn read_catalogue(pool: &PgPool, product_ids: &[String]) -> Result<Vec<CatalogueEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT product_id, unit_price, currency, source_version FROM orders.catalogue WHERE product_id = ANY($1)",
    )
    .bind(product_ids)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let read = |e| corrupt("catalogue entry", e);
            Ok(CatalogueEntry {
                price: CataloguePrice {
                    product_id: row.try_get("product_id").map_err(read)?,
                    unit_price: row.try_get("unit_price").map_err(read)?,
                    currency: row.try_get("currency").map_err(read)?,
                },
                source_version: version(row.try_get("source_version").map_err(read)?),
            })
        })
        .collect()
}
