//! `InventoryStore` on SQLite: the `inventory_*` tables.

use shop_rules::inventory::{InventoryState, Movement, ProductStock, Reservation};
use shop_runtime::audit::Actor;
use shop_runtime::ports::{InventoryStore, InventoryWrite, NetWrite, StoreError};
use shop_streams::Context;
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::batch::{write, write_every};
use crate::error::{corrupt, json_list, to_sql};
use crate::outbox::{append_outbox, begin, commit};
use crate::statements::{AUDIT, STATEMENTS};

impl InventoryStore for SqliteStore {
    async fn load(&self, product_ids: &[String], order_id: Option<&str>) -> Result<InventoryState, StoreError> {
        STATEMENTS
            .inventory_state(&self.readers, json_list(product_ids), order_id)
            .await
    }

    async fn write_many(&self, writes: &[InventoryWrite<'_>]) -> Result<(), StoreError> {
        let net = NetWrite::of(writes)?;
        let mut tx = begin(&self.pool).await?;
        let mut changed = Vec::with_capacity(net.products.len());
        for (before, after) in &net.products {
            match before {
                Some(before) => changed.push((*after, before.version)),
                None => STATEMENTS.insert_product(&mut tx, after).await?,
            }
        }
        update_products(&mut tx, &changed).await?;
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for (before, after) in &net.reservations {
            match before {
                Some(before) => changed.push((*before, *after)),
                None => new.push(*after),
            }
        }
        insert_reservations(&mut tx, &new).await?;
        update_reservations(&mut tx, &changed).await?;
        insert_movements(&mut tx, &net.movements).await?;
        AUDIT.append_in(&mut tx, &net.audit).await?;
        append_outbox(&mut tx, Context::Inventory, net.events.iter().copied()).await?;
        commit(tx, self.signals.of(Context::Inventory)).await
    }

    shop_adapter_sql::inventory_reads!(STATEMENTS);
}

// Each kind of row below is written in one statement (`batch.rs` says why).

/// Each product from its expected version. The version in the join is the
/// fence: whatever a lock got wrong, a writer that read an older version
/// changes nothing.
async fn update_products(
    tx: &mut Transaction<'static, Sqlite>,
    products: &[(&ProductStock, u64)],
) -> Result<(), StoreError> {
    let rows: Vec<_> = products
        .iter()
        .map(|(p, expected)| {
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
            )
        })
        .collect();
    write_every(
        tx,
        "UPDATE inventory_products AS p
         SET name = u.value ->> 1, unit_price = u.value ->> 2, currency = u.value ->> 3,
             available = u.value ->> 4, reserved = u.value ->> 5, initial = u.value ->> 6,
             restocked = u.value ->> 7, adjusted = u.value ->> 8, deducted = u.value ->> 9,
             version = u.value ->> 10
         FROM json_each(?1) AS u
         WHERE p.product_id = u.value ->> 0 AND p.version = u.value ->> 11
         RETURNING product_id",
        &rows,
        |row| row.0.as_str(),
        "product",
    )
    .await
}

/// What a reservation's conflict names.
const RESERVATION: &str = "reservation of order";

fn lines_of(reservation: &Reservation) -> Result<String, StoreError> {
    serde_json::to_string(&reservation.lines).map_err(|e| corrupt("reservation", e))
}

/// New reservations; one whose order has a reservation already is a conflict.
async fn insert_reservations(
    tx: &mut Transaction<'static, Sqlite>,
    reservations: &[&Reservation],
) -> Result<(), StoreError> {
    let rows = reservations
        .iter()
        .map(|r| Ok((&r.order_id, r.status.as_str(), lines_of(r)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    write_every(
        tx,
        "INSERT INTO inventory_reservations (order_id, status, lines)
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true
         ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        &rows,
        |(order_id, ..)| order_id.as_str(),
        RESERVATION,
    )
    .await
}

/// Reservations are fenced by their status: a write applies only to the
/// reservation as it was read, so a reserve and a release of the same order
/// that race cannot both win.
async fn update_reservations(
    tx: &mut Transaction<'static, Sqlite>,
    reservations: &[(&Reservation, &Reservation)],
) -> Result<(), StoreError> {
    let rows = reservations
        .iter()
        .map(|(before, after)| {
            Ok((
                &after.order_id,
                after.status.as_str(),
                lines_of(after)?,
                before.status.as_str(),
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    write_every(
        tx,
        "UPDATE inventory_reservations AS r SET status = u.value ->> 1, lines = u.value ->> 2
         FROM json_each(?1) AS u
         WHERE r.order_id = u.value ->> 0 AND r.status = u.value ->> 3
         RETURNING order_id",
        &rows,
        |(order_id, ..)| order_id.as_str(),
        RESERVATION,
    )
    .await
}

async fn insert_movements(
    tx: &mut Transaction<'static, Sqlite>,
    movements: &[(&Movement, &Actor)],
) -> Result<(), StoreError> {
    let rows: Vec<_> = movements
        .iter()
        .map(|(m, actor)| {
            (
                &m.product_id,
                m.kind.as_str(),
                m.quantity,
                &m.order_id,
                &m.reason,
                m.at,
                &actor.id,
                &actor.request_id,
            )
        })
        .collect();
    // `json_each` yields the rows in order, and they are numbered as inserted.
    write(
        tx,
        "INSERT INTO inventory_movements (product_id, kind, quantity, order_id, reason, at, actor, request_id)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7
         FROM json_each(?1)",
        &rows,
    )
    .await
}
