//! `OrderStore` on SQLite: the `orders_*` tables.

use std::collections::HashSet;

use shop_rules::order::Order;
use shop_runtime::audit::AuditRecord;
use shop_runtime::ports::{
    CatalogueEntry, CustomerKeys, OrderQuery, OrderStore, OrderWrite, Provenance, SealedDelivery, StoreError,
    StoredKey, StoredRecord, Versioned, checked_updates,
};
use shop_streams::{Context, Envelope};
use sqlx::{Executor, Sqlite, Transaction};

use crate::SqliteStore;
use crate::batch::{Keyed, Rows};
use crate::error::{corrupt, db_error, json_list, to_sql};
use crate::events::{EventRows, Events, to_bus, to_outbox};
use crate::outbox::{begin, commit};
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

/// A new order to insert at version 1: its JSON columns, its delivery and
/// the events written with it (`events.rs`).
pub(crate) struct NewRow<'a> {
    pub order: &'a Order,
    pub columns: &'a NewColumns,
    pub delivery: Option<&'a SealedDelivery>,
    pub events: &'a [Envelope],
}

/// New orders, their deliveries and their events, encoded before the
/// transaction begins, and inserted in one command (three statements,
/// one trip to SQLite's thread).
pub(crate) struct NewOrders {
    ids: String,
    orders: Rows,
    deliveries: Rows,
    events: EventRows,
}

/// The command [`NewOrders::insert`] runs, ending with the statement that
/// writes their events where `events` says (`events.rs`).
macro_rules! insert_new_orders {
    ($events:expr) => {
        concat!(
            "INSERT INTO orders_orders (order_id, customer_id, status, created_at, confirmed_at, state, version, policy)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, 1, value ->> 6
             FROM json_each(?1);
             INSERT INTO orders_deliveries (order_id, key_id, sealed)
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?2);
             ",
            $events
        )
    };
}

impl NewOrders {
    pub(crate) fn encode(new: &[NewRow<'_>], events: &Events) -> Result<Self, StoreError> {
        let orders: Vec<_> = new
            .iter()
            .map(|n| {
                let o = n.order;
                (
                    &o.id,
                    &o.customer_id,
                    o.status.as_str(),
                    o.created_at,
                    o.confirmed_at,
                    &n.columns.state,
                    n.columns.policy.as_deref(),
                )
            })
            .collect();
        let deliveries: Vec<_> = new
            .iter()
            .filter_map(|n| n.delivery)
            .map(|d| (&d.order_id, &d.key_id, &d.sealed))
            .collect();
        let ids: Vec<&str> = new.iter().map(|n| n.order.id.as_str()).collect();
        Ok(Self {
            ids: json_list(&ids),
            orders: Rows::of(&orders)?,
            deliveries: Rows::of(&deliveries)?,
            events: events.rows(Context::Order, new.iter().flat_map(|n| n.events))?,
        })
    }

    /// Their events, as written by [`insert`](Self::insert).
    pub(crate) fn events(&self) -> &EventRows {
        &self.events
    }

    /// Their ids that are taken already, read in `tx`: as it holds the
    /// write lock, the rest are free until it ends.
    pub(crate) async fn taken(&self, tx: &mut Transaction<'static, Sqlite>) -> Result<HashSet<String>, StoreError> {
        // One row whatever the number of orders: each row returned is a
        // hand-off from SQLite's thread of its own.
        let taken: String = sqlx::query_scalar(
            "SELECT json_group_array(order_id) FROM orders_orders WHERE order_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(self.ids.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
        serde_json::from_str(&taken).map_err(|e| corrupt("order ids", e))
    }

    /// Inserts them all (at version 1), their deliveries and their events;
    /// none of their ids may be [`taken`](Self::taken).
    pub(crate) async fn insert(&self, tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        let command = if self.events.on_bus() {
            insert_new_orders!(to_bus!("3"))
        } else {
            insert_new_orders!(to_outbox!("orders_outbox", "3"))
        };
        let done = sqlx::query(command)
            .bind(self.orders.json())
            .bind(self.deliveries.json())
            .bind(self.events.json())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        // On the bus a message id seen before stores nothing (`to_bus!`),
        // and would fail the count; every event id is a new UUIDv7.
        let rows = self.orders.len() + self.deliveries.len() + self.events.len();
        if usize::try_from(done.rows_affected()).ok() != Some(rows) {
            return Err(corrupt(
                "new orders",
                format!("{} of {rows} rows written", done.rows_affected()),
            ));
        }
        Ok(())
    }
}

/// Orders to update from their expected version, encoded before the
/// transaction begins.
fn updated_rows(orders: &[(&Order, u64)]) -> Result<Keyed, StoreError> {
    Keyed::each(orders, |(o, expected)| {
        Ok((
            o.id.clone(),
            (
                &o.id,
                o.status.as_str(),
                o.confirmed_at,
                state_of(o)?,
                to_sql(*expected),
            ),
        ))
    })
}

/// Updates each order ([`updated_rows`]), in one statement; a conflict names an
/// order not stored at its expected version.
async fn update(tx: &mut Transaction<'static, Sqlite>, orders: &Keyed) -> Result<(), StoreError> {
    // The version in the join is the fence, row by row.
    orders
        .write_every(
            tx,
            "UPDATE orders_orders AS o
             SET status = u.value ->> 1, confirmed_at = u.value ->> 2, state = u.value ->> 3, version = o.version + 1
             FROM json_each(?1) AS u
             WHERE o.order_id = u.value ->> 0 AND o.version = u.value ->> 4
             RETURNING order_id",
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
        let conflict = || StoreError::Conflict(format!("order {}", order.id));
        let (mut tx, new_version, written) = match write.expected_version {
            None => {
                let columns = NewColumns::of(&write)?;
                let new = NewOrders::encode(
                    &[NewRow {
                        order,
                        columns: &columns,
                        delivery: write.delivery,
                        events: write.events,
                    }],
                    &self.events,
                )?;
                let mut tx = begin(&self.pool).await?;
                if !new.taken(&mut tx).await?.is_empty() {
                    return Err(conflict());
                }
                new.insert(&mut tx).await?;
                (tx, 1, new.events)
            }
            Some(expected) => {
                let orders = updated_rows(&[(order, expected)])?;
                let events = self.events.rows(Context::Order, write.events)?;
                let mut tx = begin(&self.pool).await?;
                update(&mut tx, &orders).await?;
                events.append(&mut tx).await?;
                (tx, expected + 1, events)
            }
        };
        AUDIT.append_in(&mut tx, write.audit.as_slice()).await?;
        commit(tx, &self.events, &written).await?;
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
        let orders = updated_rows(&checked_updates(updates)?)?;
        let events = self
            .events
            .rows(Context::Order, updates.iter().flat_map(|u| u.events))?;
        let audit: Vec<_> = updates.iter().filter_map(|u| u.audit).collect();
        let mut tx = begin(&self.pool).await?;
        update(&mut tx, &orders).await?;
        AUDIT.append_in(&mut tx, &audit).await?;
        events.append(&mut tx).await?;
        commit(tx, &self.events, &events).await
    }

    async fn deliveries(&self, order_ids: &[String]) -> Result<Vec<SealedDelivery>, StoreError> {
        STATEMENTS.deliveries(&self.readers, json_list(order_ids)).await
    }

    async fn provenance(&self, order_ids: &[String]) -> Result<Vec<Provenance>, StoreError> {
        STATEMENTS.provenance(&self.readers, json_list(order_ids)).await
    }

    async fn record(&self, order_id: &str) -> Result<Option<StoredRecord>, StoreError> {
        STATEMENTS.order_record(&self.readers, order_id).await
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
        tx.commit().await.map_err(db_error)?;
        Ok(destroyed)
    }

    async fn keys_not_under(&self, kek_id: &str, after: &str, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        STATEMENTS.keys_not_under(&self.readers, kek_id, after, limit).await
    }

    async fn rewrap_key(&self, rewrapped: &StoredKey, previous_kek: &str) -> Result<bool, StoreError> {
        STATEMENTS.rewrap_key(&self.pool, rewrapped, previous_kek).await
    }
}
