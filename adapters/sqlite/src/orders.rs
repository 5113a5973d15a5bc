//! `OrderStore` on SQLite: the `orders_*` tables.

use shop_rules::order::{CataloguePrice, Order};
use shop_runtime::ports::{CatalogueEntry, OrderQuery, OrderStore, OrderWrite, StoreError, Versioned, checked_updates};
use shop_streams::Context;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::{corrupt, db_error, json_list, to_sql, version};
use crate::outbox::{append_outbox, begin, commit};

fn order_from(row: &SqliteRow) -> Result<Order, StoreError> {
    let text: String = row.try_get("state").map_err(|e| corrupt("order", e))?;
    serde_json::from_str(&text).map_err(|e| corrupt("order", e))
}

fn versioned_order(row: &SqliteRow) -> Result<Versioned<Order>, StoreError> {
    let stored: i64 = row.try_get("version").map_err(|e| corrupt("order", e))?;
    Ok(Versioned {
        value: order_from(row)?,
        version: version(stored),
    })
}

fn state_of(order: &Order) -> Result<String, StoreError> {
    serde_json::to_string(order).map_err(|e| corrupt("order", e))
}

/// Inserts `order` at version 1 unless its id is taken; `true` when it was.
pub(crate) async fn insert_new(
    tx: &mut Transaction<'static, Sqlite>,
    order: &Order,
    state: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO orders_orders (order_id, customer_id, status, created_at, confirmed_at, state, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&order.id)
    .bind(&order.customer_id)
    .bind(order.status.as_str())
    .bind(order.created_at)
    .bind(order.confirmed_at)
    .bind(state)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(inserted.rows_affected() == 1)
}

/// Updates `order` from version `expected`; a conflict when it is not stored at that version.
async fn update_existing(
    tx: &mut Transaction<'static, Sqlite>,
    order: &Order,
    state: &str,
    expected: u64,
) -> Result<(), StoreError> {
    let updated = sqlx::query(
        "UPDATE orders_orders SET status = ?2, confirmed_at = ?3, state = ?4, version = version + 1
         WHERE order_id = ?1 AND version = ?5",
    )
    .bind(&order.id)
    .bind(order.status.as_str())
    .bind(order.confirmed_at)
    .bind(state)
    .bind(to_sql(expected))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("order {}", order.id)));
    }
    Ok(())
}

impl OrderStore for SqliteStore {
    async fn get(&self, order_id: &str) -> Result<Option<Versioned<Order>>, StoreError> {
        let row = sqlx::query("SELECT state, version FROM orders_orders WHERE order_id = ?1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(versioned_order).transpose()
    }

    async fn write(&self, write: OrderWrite<'_>) -> Result<u64, StoreError> {
        let order = write.order;
        let state = state_of(order)?;
        if let (None, Some(intake)) = (write.expected_version, &self.intake) {
            return intake.write(order, state, write.events).await;
        }
        let mut tx = begin(&self.pool).await?;
        let conflict = || StoreError::Conflict(format!("order {}", order.id));
        let new_version = match write.expected_version {
            None => {
                if !insert_new(&mut tx, order, &state).await? {
                    return Err(conflict());
                }
                1
            }
            Some(expected) => {
                update_existing(&mut tx, order, &state, expected).await?;
                expected + 1
            }
        };
        append_outbox(&mut tx, Context::Order, write.events).await?;
        commit(tx, self.signals.of(Context::Order)).await?;
        Ok(new_version)
    }

    async fn get_many(&self, order_ids: &[String]) -> Result<Vec<Versioned<Order>>, StoreError> {
        let rows =
            sqlx::query("SELECT state, version FROM orders_orders WHERE order_id IN (SELECT value FROM json_each(?1))")
                .bind(json_list(order_ids))
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        rows.iter().map(versioned_order).collect()
    }

    async fn update_many(&self, updates: &[OrderWrite<'_>]) -> Result<(), StoreError> {
        let orders = checked_updates(updates)?;
        let mut tx = begin(&self.pool).await?;
        for (order, expected) in orders {
            update_existing(&mut tx, order, &state_of(order)?, expected).await?;
        }
        append_outbox(&mut tx, Context::Order, updates.iter().flat_map(|u| u.events)).await?;
        commit(tx, self.signals.of(Context::Order)).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders_orders WHERE status = 'PENDING'")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn confirmed_before(&self, cutoff_ms: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT order_id FROM orders_orders WHERE status = 'CONFIRMED' AND confirmed_at < ?1
             ORDER BY confirmed_at LIMIT ?2",
        )
        .bind(cutoff_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn catalogue(&self, product_ids: &[String]) -> Result<Vec<CatalogueEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT product_id, unit_price, currency, source_version FROM orders_catalogue
             WHERE product_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(product_ids))
        .fetch_all(&self.pool)
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

    async fn customer_orders(&self, query: OrderQuery<'_>) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(
            "SELECT state FROM orders_orders
             WHERE customer_id = ?1
               AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR (created_at, order_id) < (?3, ?4))
             ORDER BY created_at DESC, order_id DESC
             LIMIT ?5",
        )
        .bind(query.customer_id)
        .bind(query.status.map(|s| s.as_str()))
        .bind(query.after.map(|c| c.created_at))
        .bind(query.after.map(|c| c.order_id.as_str()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(order_from).collect()
    }

    async fn update_catalogue(&self, entry: &CatalogueEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO orders_catalogue (product_id, unit_price, currency, source_version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_id) DO UPDATE
             SET unit_price = excluded.unit_price, currency = excluded.currency, source_version = excluded.source_version
             WHERE orders_catalogue.source_version < excluded.source_version",
        )
        .bind(&entry.price.product_id)
        .bind(entry.price.unit_price)
        .bind(&entry.price.currency)
        .bind(to_sql(entry.source_version))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
