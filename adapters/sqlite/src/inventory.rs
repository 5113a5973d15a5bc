//! `InventoryStore` on SQLite: the `inventory_*` tables.

use shop_rules::inventory::{InventoryState, Movement, ProductStock, Reservation};
use shop_runtime::audit::Actor;
use shop_runtime::ports::{InventoryStore, InventoryWrite, NetWrite, StoreError};
use shop_streams::Context;
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::{corrupt, db_error, json_list, to_sql};
use crate::outbox::{append_outbox, begin, commit};
use crate::statements::{AUDIT, STATEMENTS};
use shop_adapter_sql::bind_product;

impl InventoryStore for SqliteStore {
    async fn load(&self, product_ids: &[String], order_id: Option<&str>) -> Result<InventoryState, StoreError> {
        STATEMENTS
            .inventory_state(&self.readers, json_list(product_ids), order_id)
            .await
    }

    async fn write_many(&self, writes: &[InventoryWrite<'_>]) -> Result<(), StoreError> {
        let net = NetWrite::of(writes)?;
        let mut tx = begin(&self.pool).await?;
        for (before, after) in &net.products {
            match before {
                Some(before) => update_product(&mut tx, after, before.version).await?,
                None => STATEMENTS.insert_product(&mut tx, after).await?,
            }
        }
        for (before, after) in &net.reservations {
            write_reservation(&mut tx, *before, after).await?;
        }
        insert_movements(&mut tx, &net.movements).await?;
        AUDIT.append_in(&mut tx, &net.audit).await?;
        append_outbox(&mut tx, Context::Inventory, net.events.iter().copied()).await?;
        commit(tx, self.signals.of(Context::Inventory)).await
    }

    shop_adapter_sql::inventory_reads!(STATEMENTS);
}

async fn update_product(
    tx: &mut Transaction<'static, Sqlite>,
    p: &ProductStock,
    expected_version: u64,
) -> Result<(), StoreError> {
    // The version in the WHERE clause is the fence: whatever a lock got
    // wrong, a writer that read an older version changes nothing.
    let updated = bind_product(
        sqlx::query(
            "UPDATE inventory_products
         SET name = ?2, unit_price = ?3, currency = ?4, available = ?5, reserved = ?6,
             initial = ?7, restocked = ?8, adjusted = ?9, deducted = ?10, version = ?11
         WHERE product_id = ?1 AND version = ?12",
        ),
        p,
    )
    .bind(to_sql(expected_version))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("product {}", p.product_id)));
    }
    Ok(())
}

/// Reservations are fenced by their status: a write applies only to the
/// reservation as it was read, so a reserve and a release of the same order
/// that race cannot both win.
async fn write_reservation(
    tx: &mut Transaction<'static, Sqlite>,
    before: Option<&Reservation>,
    after: &Reservation,
) -> Result<(), StoreError> {
    let conflict = || StoreError::Conflict(format!("reservation of order {}", after.order_id));
    let lines = serde_json::to_string(&after.lines).map_err(|e| corrupt("reservation", e))?;
    let written = match before {
        Some(before) => {
            sqlx::query("UPDATE inventory_reservations SET status = ?2, lines = ?3 WHERE order_id = ?1 AND status = ?4")
                .bind(&after.order_id)
                .bind(after.status.as_str())
                .bind(lines)
                .bind(before.status.as_str())
        }
        None => sqlx::query(
            "INSERT INTO inventory_reservations (order_id, status, lines) VALUES (?1, ?2, ?3)
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(&after.order_id)
        .bind(after.status.as_str())
        .bind(lines),
    }
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if written.rows_affected() == 0 {
        return Err(conflict());
    }
    Ok(())
}

async fn insert_movements(
    tx: &mut Transaction<'static, Sqlite>,
    movements: &[(&Movement, &Actor)],
) -> Result<(), StoreError> {
    // SQLite runs in-process: a statement per movement costs no round trip.
    for (m, actor) in movements {
        sqlx::query(
            "INSERT INTO inventory_movements (product_id, kind, quantity, order_id, reason, at, actor, request_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&m.product_id)
        .bind(m.kind.as_str())
        .bind(m.quantity)
        .bind(&m.order_id)
        .bind(&m.reason)
        .bind(m.at)
        .bind(&actor.id)
        .bind(&actor.request_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
