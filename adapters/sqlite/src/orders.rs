//! `OrderStore` on SQLite: the `orders_*` tables.

use shop_rules::order::Order;
use shop_runtime::audit::AuditRecord;
use shop_runtime::ports::{
    CatalogueEntry, CustomerKeys, OrderQuery, OrderStore, OrderWrite, Provenance, SealedDelivery, StoreError,
    StoredKey, Versioned, checked_updates,
};
use shop_streams::Context;
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::{corrupt, db_error, json_list, to_sql};
use crate::outbox::{append_outbox, begin, commit};
use crate::statements::{AUDIT, STATEMENTS};
use shop_adapter_sql::rows;

fn state_of(order: &Order) -> Result<String, StoreError> {
    serde_json::to_string(order).map_err(|e| corrupt("order", e))
}

/// A new order's JSON columns, encoded before its transaction begins.
#[derive(Debug, Clone)]
pub(crate) struct NewColumns {
    pub state: String,
    pub policy: Option<String>,
}

impl NewColumns {
    pub fn of(write: &OrderWrite<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            state: state_of(write.order)?,
            policy: rows::provenance_column(write.provenance())?,
        })
    }
}

/// Inserts `order` at version 1 with its `delivery` unless its id is
/// taken; `true` when it was.
pub(crate) async fn insert_new(
    tx: &mut Transaction<'static, Sqlite>,
    order: &Order,
    columns: &NewColumns,
    delivery: Option<&SealedDelivery>,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO orders_orders (order_id, customer_id, status, created_at, confirmed_at, state, version, policy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&order.id)
    .bind(&order.customer_id)
    .bind(order.status.as_str())
    .bind(order.created_at)
    .bind(order.confirmed_at)
    .bind(&columns.state)
    .bind(columns.policy.as_deref())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    let fresh = inserted.rows_affected() == 1;
    if let (true, Some(delivery)) = (fresh, delivery) {
        sqlx::query("INSERT INTO orders_deliveries (order_id, key_id, sealed) VALUES (?1, ?2, ?3)")
            .bind(&delivery.order_id)
            .bind(&delivery.key_id)
            .bind(&delivery.sealed)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
    }
    Ok(fresh)
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
        STATEMENTS.order(&self.readers, order_id).await
    }

    async fn write(&self, write: OrderWrite<'_>) -> Result<u64, StoreError> {
        let order = write.order;
        // The intake writes new orders in batches; an audited one is written alone.
        if let (None, Some(intake), None) = (write.expected_version, &self.intake, write.audit) {
            return intake
                .write(order, NewColumns::of(&write)?, write.events, write.delivery)
                .await;
        }
        let mut tx = begin(&self.pool).await?;
        let conflict = || StoreError::Conflict(format!("order {}", order.id));
        let new_version = match write.expected_version {
            None => {
                if !insert_new(&mut tx, order, &NewColumns::of(&write)?, write.delivery).await? {
                    return Err(conflict());
                }
                1
            }
            Some(expected) => {
                update_existing(&mut tx, order, &state_of(order)?, expected).await?;
                expected + 1
            }
        };
        AUDIT.append_in(&mut tx, write.audit.as_slice()).await?;
        append_outbox(&mut tx, Context::Order, write.events).await?;
        commit(tx, self.signals.of(Context::Order)).await?;
        Ok(new_version)
    }

    async fn get_many(&self, order_ids: &[String]) -> Result<Vec<Versioned<Order>>, StoreError> {
        let rows =
            sqlx::query("SELECT state, version FROM orders_orders WHERE order_id IN (SELECT value FROM json_each(?1))")
                .bind(json_list(order_ids))
                .fetch_all(&self.readers)
                .await
                .map_err(db_error)?;
        rows.iter().map(rows::versioned_order).collect()
    }

    async fn update_many(&self, updates: &[OrderWrite<'_>]) -> Result<(), StoreError> {
        let orders = checked_updates(updates)?;
        let mut tx = begin(&self.pool).await?;
        for (order, expected) in orders {
            update_existing(&mut tx, order, &state_of(order)?, expected).await?;
        }
        let audit: Vec<_> = updates.iter().filter_map(|u| u.audit).collect();
        AUDIT.append_in(&mut tx, &audit).await?;
        append_outbox(&mut tx, Context::Order, updates.iter().flat_map(|u| u.events)).await?;
        commit(tx, self.signals.of(Context::Order)).await
    }

    async fn deliveries(&self, order_ids: &[String]) -> Result<Vec<SealedDelivery>, StoreError> {
        STATEMENTS.deliveries(&self.readers, json_list(order_ids)).await
    }

    async fn provenance(&self, order_ids: &[String]) -> Result<Vec<Provenance>, StoreError> {
        STATEMENTS.provenance(&self.readers, json_list(order_ids)).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        STATEMENTS.pending_count(&self.readers).await
    }

    async fn confirmed_before(&self, cutoff_ms: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        STATEMENTS.confirmed_before(&self.readers, cutoff_ms, limit).await
    }

    async fn catalogue(&self, product_ids: &[String]) -> Result<Vec<CatalogueEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT product_id, unit_price, currency, source_version FROM orders_catalogue
             WHERE product_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(product_ids))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::catalogue_entry).collect()
    }

    async fn customer_orders(&self, query: OrderQuery<'_>) -> Result<Vec<Order>, StoreError> {
        STATEMENTS.customer_orders(&self.readers, query).await
    }

    async fn update_catalogue(&self, entry: &CatalogueEntry) -> Result<(), StoreError> {
        STATEMENTS.update_catalogue(&self.pool, entry).await
    }
}

impl CustomerKeys for SqliteStore {
    async fn obtain_key(&self, candidate: &StoredKey) -> Result<StoredKey, StoreError> {
        STATEMENTS.obtain_key(&self.pool, candidate).await
    }

    async fn keys(&self, key_ids: &[String]) -> Result<Vec<StoredKey>, StoreError> {
        STATEMENTS.keys(&self.readers, json_list(key_ids)).await
    }

    async fn destroy_key(&self, customer_id: &str, audit: &AuditRecord) -> Result<bool, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let destroyed = STATEMENTS.destroy_key(&mut tx, customer_id).await?;
        AUDIT.append_in(&mut tx, &[audit]).await?;
        commit(tx, self.signals.of(Context::Order)).await?;
        Ok(destroyed)
    }

    async fn keys_not_under(&self, kek_id: &str, after: &str, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        STATEMENTS.keys_not_under(&self.readers, kek_id, after, limit).await
    }

    async fn rewrap_key(&self, rewrapped: &StoredKey, previous_kek: &str) -> Result<bool, StoreError> {
        STATEMENTS.rewrap_key(&self.pool, rewrapped, previous_kek).await
    }
}
