//! `InventoryStore` on SQLite: the `inventory_*` tables.

use shop_rules::inventory::{
    InventoryState, Movement, MovementKind, ProductStock, Reservation, ReservationStatus, StockLine,
};
use shop_runtime::ports::{InventoryStore, InventoryWrite, NetWrite, StoreError};
use shop_streams::Context;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::{corrupt, db_error, json_list, to_sql as to_sql_version, version};
use crate::outbox::{append_outbox, begin, commit};

type SqlQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

impl InventoryStore for SqliteStore {
    async fn load(&self, product_ids: &[String], order_id: Option<&str>) -> Result<InventoryState, StoreError> {
        let rows = sqlx::query(
            "SELECT product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted, deducted, version
             FROM inventory_products WHERE product_id IN (SELECT value FROM json_each(?1)) ORDER BY product_id",
        )
        .bind(json_list(product_ids))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let products = rows.iter().map(product_from_row).collect::<Result<_, _>>()?;
        let reservation = match order_id {
            Some(order_id) => self.reservation(order_id).await?,
            None => None,
        };
        Ok(InventoryState { products, reservation })
    }

    async fn write_many(&self, writes: &[InventoryWrite<'_>]) -> Result<(), StoreError> {
        let net = NetWrite::of(writes)?;
        let mut tx = begin(&self.pool).await?;
        for (before, after) in &net.products {
            match before {
                Some(before) => update_product(&mut tx, after, before.version).await?,
                None => insert_product(&mut tx, after).await?,
            }
        }
        for (before, after) in &net.reservations {
            write_reservation(&mut tx, *before, after).await?;
        }
        insert_movements(&mut tx, &net.movements).await?;
        append_outbox(&mut tx, Context::Inventory, net.events.iter().copied()).await?;
        commit(tx, self.signals.of(Context::Inventory)).await
    }

    async fn movements(&self, product_id: &str, after: u64, limit: u32) -> Result<Vec<(u64, Movement)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, product_id, kind, quantity, order_id, reason, at FROM inventory_movements
             WHERE product_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(product_id)
        .bind(to_sql_version(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let read = |e| corrupt("movement", e);
                let seq: i64 = row.try_get("seq").map_err(read)?;
                let kind: String = row.try_get("kind").map_err(read)?;
                let movement = Movement {
                    product_id: row.try_get("product_id").map_err(read)?,
                    kind: MovementKind::parse(&kind).ok_or_else(|| corrupt("movement kind", &kind))?,
                    quantity: row.try_get("quantity").map_err(read)?,
                    order_id: row.try_get("order_id").map_err(read)?,
                    reason: row.try_get("reason").map_err(read)?,
                    at: row.try_get("at").map_err(read)?,
                };
                Ok((version(seq), movement))
            })
            .collect()
    }

    async fn product(&self, product_id: &str) -> Result<Option<ProductStock>, StoreError> {
        let state = self.load(&[product_id.to_owned()], None).await?;
        Ok(state.products.into_iter().next())
    }

    async fn reservation(&self, order_id: &str) -> Result<Option<Reservation>, StoreError> {
        let row = sqlx::query("SELECT status, lines FROM inventory_reservations WHERE order_id = ?1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let read = |e| corrupt("reservation", e);
        let status: String = row.try_get("status").map_err(read)?;
        let lines: String = row.try_get("lines").map_err(read)?;
        let lines: Vec<StockLine> = serde_json::from_str(&lines).map_err(|e| corrupt("reservation", e))?;
        Ok(Some(Reservation {
            order_id: order_id.to_owned(),
            status: ReservationStatus::parse(&status).ok_or_else(|| corrupt("reservation status", &status))?,
            lines,
        }))
    }
}

fn product_from_row(row: &SqliteRow) -> Result<ProductStock, StoreError> {
    let read = |e| corrupt("product", e);
    Ok(ProductStock {
        product_id: row.try_get("product_id").map_err(read)?,
        name: row.try_get("name").map_err(read)?,
        unit_price: row.try_get("unit_price").map_err(read)?,
        currency: row.try_get("currency").map_err(read)?,
        available: row.try_get("available").map_err(read)?,
        reserved: row.try_get("reserved").map_err(read)?,
        initial: row.try_get("initial").map_err(read)?,
        restocked: row.try_get("restocked").map_err(read)?,
        adjusted: row.try_get("adjusted").map_err(read)?,
        deducted: row.try_get("deducted").map_err(read)?,
        version: version(row.try_get("version").map_err(read)?),
    })
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
    .bind(to_sql_version(expected_version))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("product {}", p.product_id)));
    }
    Ok(())
}

async fn insert_product(tx: &mut Transaction<'static, Sqlite>, p: &ProductStock) -> Result<(), StoreError> {
    let inserted = bind_product(
        sqlx::query(
            "INSERT INTO inventory_products
         (product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted, deducted, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (product_id) DO NOTHING",
        ),
        p,
    )
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("product {} already exists", p.product_id)));
    }
    Ok(())
}

/// Binds a product's columns as ?1 to ?11, in table order.
fn bind_product<'q>(query: SqlQuery<'q>, p: &'q ProductStock) -> SqlQuery<'q> {
    query
        .bind(&p.product_id)
        .bind(&p.name)
        .bind(p.unit_price)
        .bind(&p.currency)
        .bind(p.available)
        .bind(p.reserved)
        .bind(p.initial)
        .bind(p.restocked)
        .bind(p.adjusted)
        .bind(p.deducted)
        .bind(to_sql_version(p.version))
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

async fn insert_movements(tx: &mut Transaction<'static, Sqlite>, movements: &[&Movement]) -> Result<(), StoreError> {
    // SQLite runs in-process: a statement per movement costs no round trip.
    for m in movements {
        sqlx::query(
            "INSERT INTO inventory_movements (product_id, kind, quantity, order_id, reason, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&m.product_id)
        .bind(m.kind.as_str())
        .bind(m.quantity)
        .bind(&m.order_id)
        .bind(&m.reason)
        .bind(m.at)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
