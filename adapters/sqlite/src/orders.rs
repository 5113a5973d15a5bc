//! `OrderStore` on SQLite: the `orders_*` tables.

use std::collections::HashSet;

use shop_rules::order::Order;
use shop_runtime::audit::AuditRecord;
use shop_runtime::ports::{
    CatalogueEntry, CustomerKeys, OrderQuery, OrderStore, OrderWrite, Provenance, SealedDelivery, StoreError,
    StoredKey, Versioned, checked_updates,
};
use shop_streams::Context;
use sqlx::{Executor, Sqlite, Transaction};

use crate::SqliteStore;
use crate::batch::{write, write_every, written};
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

/// A new order to insert at version 1: its JSON columns and its delivery.
pub(crate) struct NewRow<'a> {
    pub order: &'a Order,
    pub columns: &'a NewColumns,
    pub delivery: Option<&'a SealedDelivery>,
}

/// Inserts each order at version 1 with its delivery unless its id is
/// taken, and answers the ids that were free: two statements however many
/// orders come (`batch.rs`).
pub(crate) async fn insert_new(
    tx: &mut Transaction<'static, Sqlite>,
    new: &[NewRow<'_>],
) -> Result<HashSet<String>, StoreError> {
    let rows: Vec<_> = new
        .iter()
        .map(|n| {
            let o = n.order;
            let policy = n.columns.policy.as_deref();
            (
                &o.id,
                &o.customer_id,
                o.status.as_str(),
                o.created_at,
                o.confirmed_at,
                &n.columns.state,
                policy,
            )
        })
        .collect();
    let fresh = written(
        tx,
        "INSERT INTO orders_orders (order_id, customer_id, status, created_at, confirmed_at, state, version, policy)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, 1, value ->> 6
         FROM json_each(?1) WHERE true
         ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        &rows,
    )
    .await?;
    let deliveries: Vec<_> = new
        .iter()
        .filter(|n| fresh.contains(&n.order.id))
        .filter_map(|n| n.delivery)
        .map(|d| (&d.order_id, &d.key_id, &d.sealed))
        .collect();
    write(
        tx,
        "INSERT INTO orders_deliveries (order_id, key_id, sealed)
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)",
        &deliveries,
    )
    .await?;
    Ok(fresh)
}

/// Updates each order from its expected version, in one statement; a
/// conflict names an order not stored at that version.
async fn update_existing(tx: &mut Transaction<'static, Sqlite>, orders: &[(&Order, u64)]) -> Result<(), StoreError> {
    let rows = orders
        .iter()
        .map(|(o, expected)| {
            Ok((
                &o.id,
                o.status.as_str(),
                o.confirmed_at,
                state_of(o)?,
                to_sql(*expected),
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // The version in the join is the fence, row by row.
    write_every(
        tx,
        "UPDATE orders_orders AS o
         SET status = u.value ->> 1, confirmed_at = u.value ->> 2, state = u.value ->> 3, version = o.version + 1
         FROM json_each(?1) AS u
         WHERE o.order_id = u.value ->> 0 AND o.version = u.value ->> 4
         RETURNING order_id",
        &rows,
        |row| row.0.as_str(),
        "order",
    )
    .await
}

/// The catalogue entries of the listed products that are known.
pub(crate) async fn read_catalogue<'e>(
    executor: impl Executor<'e, Database = Sqlite>,
    product_ids: &[String],
) -> Result<Vec<CatalogueEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT product_id, unit_price, currency, source_version FROM orders_catalogue
         WHERE product_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(json_list(product_ids))
    .fetch_all(executor)
    .await
    .map_err(db_error)?;
    rows.iter().map(rows::catalogue_entry).collect()
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
                let columns = NewColumns::of(&write)?;
                let new = NewRow {
                    order,
                    columns: &columns,
                    delivery: write.delivery,
                };
                if insert_new(&mut tx, &[new]).await?.is_empty() {
                    return Err(conflict());
                }
                1
            }
            Some(expected) => {
                update_existing(&mut tx, &[(order, expected)]).await?;
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
        update_existing(&mut tx, &orders).await?;
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
        match &self.intake {
            Some(intake) => intake.catalogue(product_ids).await,
            None => read_catalogue(&self.readers, product_ids).await,
        }
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
