//! `InventoryStore` on SQLite: the `inventory_*` tables.

use shop_rules::inventory::{InventoryState, ProductStock, Reservation};
use shop_runtime::ports::{InventoryStore, InventoryWrite, NetWrite, StoreError};
use shop_streams::Context;
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::batch::Keyed;
use crate::error::{corrupt, json_list, to_sql};
use crate::events::EventRows;
use crate::outbox::{begin, commit};
use crate::statements::{AUDIT, STATEMENTS};

impl InventoryStore for SqliteStore {
    async fn load(&self, product_ids: &[String], order_id: Option<&str>) -> Result<InventoryState, StoreError> {
        STATEMENTS
            .inventory_state(&self.readers, json_list(product_ids), order_id)
            .await
    }

    async fn write_many(&self, writes: &[InventoryWrite<'_>]) -> Result<(), StoreError> {
        let net = NetWrite::of(writes)?;
        let (mut inserted, mut changed) = (Vec::new(), Vec::new());
        for (before, after) in &net.products {
            match before {
                Some(before) => changed.push((*after, before.version)),
                None => inserted.push(*after),
            }
        }
        let (mut new, mut updated) = (Vec::new(), Vec::new());
        for (before, after) in &net.reservations {
            match before {
                Some(before) => updated.push((*before, *after)),
                None => new.push(*after),
            }
        }
        let rows = Encoded {
            products: products(&changed)?,
            new_reservations: new_reservations(&new)?,
            changed_reservations: changed_reservations(&updated)?,
            events: self.events.rows(Context::Inventory, net.events.iter().copied())?,
        };
        let mut tx = begin(&self.pool).await?;
        for product in inserted {
            STATEMENTS.insert_product(&mut tx, product).await?;
        }
        rows.write(&mut tx).await?;
        AUDIT.append_in(&mut tx, &net.audit).await?;
        commit(tx, &self.events, &rows.events).await
    }

    shop_adapter_sql::inventory_reads!(STATEMENTS);

    async fn reservations(&self, order_ids: &[String]) -> Result<Vec<Reservation>, StoreError> {
        STATEMENTS.reservations(&self.pool, json_list(order_ids)).await
    }
}

// Each kind of row below is written in one statement (`batch.rs` says why),
// encoded before the transaction begins.

/// A batch's rows, encoded.
struct Encoded {
    products: Keyed,
    new_reservations: Keyed,
    changed_reservations: Keyed,
    events: EventRows,
}

/// What a reservation's conflict names.
const RESERVATION: &str = "reservation of order";

impl Encoded {
    async fn write(&self, tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        // The version in the join is the fence: whatever a lock got wrong,
        // a writer that read an older version changes nothing.
        self.products
            .write_every(
                tx,
                "UPDATE inventory_products AS p
                 SET name = u.value ->> 1, unit_price = u.value ->> 2, currency = u.value ->> 3,
                     available = u.value ->> 4, reserved = u.value ->> 5, initial = u.value ->> 6,
                     restocked = u.value ->> 7, adjusted = u.value ->> 8, deducted = u.value ->> 9,
                     version = u.value ->> 10
                 FROM json_each(?1) AS u
                 WHERE p.product_id = u.value ->> 0 AND p.version = u.value ->> 11
                 RETURNING product_id",
                "product",
            )
            .await?;
        // A new reservation whose order has one already is a conflict.
        self.new_reservations
            .write_every(
                tx,
                "INSERT INTO inventory_reservations (order_id, status, lines)
                 SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true
                 ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
                RESERVATION,
            )
            .await?;
        // Reservations are fenced by their status: a write applies only to
        // the reservation as it was read, so a reserve and a release of the
        // same order that race cannot both win.
        self.changed_reservations
            .write_every(
                tx,
                "UPDATE inventory_reservations AS r SET status = u.value ->> 1, lines = u.value ->> 2
                 FROM json_each(?1) AS u
                 WHERE r.order_id = u.value ->> 0 AND r.status = u.value ->> 3
                 RETURNING order_id",
                RESERVATION,
            )
            .await?;
        self.events.append(tx).await
    }
}

/// Each product's columns from its expected version.
fn products(products: &[(&ProductStock, u64)]) -> Result<Keyed, StoreError> {
    Keyed::each(products, |(p, expected)| {
        Ok((
            p.product_id.clone(),
            (
                &p.product_id,
                &p.name,
                p.unit_price,
                &p.currency,
                p.available,
                p.reserved,
                p.initial,
                p.restocked,
                p.adjusted,
                p.deducted,
                to_sql(p.version),
                to_sql(*expected),
            ),
        ))
    })
}

fn lines_of(reservation: &Reservation) -> Result<String, StoreError> {
    serde_json::to_string(&reservation.lines).map_err(|e| corrupt("reservation", e))
}

fn new_reservations(reservations: &[&Reservation]) -> Result<Keyed, StoreError> {
    Keyed::each(reservations, |r| {
        Ok((r.order_id.clone(), (&r.order_id, r.status.as_str(), lines_of(r)?)))
    })
}

/// Each reservation as it becomes, with the status it was read in.
fn changed_reservations(reservations: &[(&Reservation, &Reservation)]) -> Result<Keyed, StoreError> {
    Keyed::each(reservations, |(before, after)| {
        Ok((
            after.order_id.clone(),
            (
                &after.order_id,
                after.status.as_str(),
                lines_of(after)?,
                before.status.as_str(),
            ),
        ))
    })
}
