//! `InventoryStore` on PostgreSQL: schema `inventory`.

use shop_rules::inventory::{InventoryState, ProductStock, Reservation};
use shop_runtime::ports::{InventoryStore, InventoryWrite, NetWrite, StoreError};
use sqlx::{Connection, Postgres, Transaction};

use crate::PgStore;
use crate::error::{db_error, to_sql};
use crate::schema::{Schema, append_outbox, json};
use crate::statements::{AUDIT, STATEMENTS};

impl InventoryStore for PgStore {
    async fn load(&self, product_ids: &[String], order_id: Option<&str>) -> Result<InventoryState, StoreError> {
        STATEMENTS.inventory_state(&self.pool, product_ids, order_id).await
    }

    async fn write_many(&self, writes: &[InventoryWrite<'_>]) -> Result<(), StoreError> {
        let net = NetWrite::of(writes)?;
        let mut connection = self.kept.take().await.map_err(db_error)?;
        let mut tx = connection.begin().await.map_err(db_error)?;
        let mut changed = Vec::with_capacity(net.products.len());
        for (before, after) in &net.products {
            match before {
                Some(before) => changed.push((*after, before.version)),
                None => STATEMENTS.insert_product(&mut tx, after).await?,
            }
        }
        update_products(&mut tx, &changed).await?;
        let mut new = Vec::new();
        for &(before, after) in &net.reservations {
            match before {
                Some(before) => update_reservation(&mut tx, before, after).await?,
                None => new.push(after),
            }
        }
        insert_reservations(&mut tx, &new).await?;
        // The audit chain's lock, then the outbox's: both held to the commit.
        // The movements are kept as audit entries (`movement_record`).
        AUDIT.append_in(&mut tx, &net.audit).await?;
        append_outbox(&mut tx, Schema::Inventory, net.events.iter().copied()).await?;
        tx.commit().await.map_err(db_error)?;
        self.kept.keep(connection);
        Ok(())
    }

    shop_adapter_sql::inventory_reads!(STATEMENTS);

    async fn reservations(&self, order_ids: &[String]) -> Result<Vec<Reservation>, StoreError> {
        STATEMENTS.reservations(&self.pool, order_ids).await
    }
}

/// Changed products, each fenced by the version it was read at, in two
/// round trips however many there are.
async fn update_products(
    tx: &mut Transaction<'_, Postgres>,
    changed: &[(&ProductStock, u64)],
) -> Result<(), StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = changed.iter().map(|(p, _)| p.product_id.as_str()).collect();
    // Row locks in product order (`changed` is sorted by product, and so
    // is this), so two writers of overlapping products queue instead of
    // deadlocking.
    sqlx::query("SELECT 1 FROM inventory.products WHERE product_id = ANY($1) ORDER BY product_id FOR UPDATE")
        .bind(&ids)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    let numbers = |f: fn(&ProductStock) -> i64| changed.iter().map(|(p, _)| f(p)).collect::<Vec<_>>();
    // The version in the join is the fence: whatever a lock got wrong, a
    // writer that read an older version changes nothing.
    let updated: Vec<String> = sqlx::query_scalar(
        "UPDATE inventory.products p
         SET name = u.name, unit_price = u.unit_price, currency = u.currency, available = u.available,
             reserved = u.reserved, initial = u.initial, restocked = u.restocked, adjusted = u.adjusted,
             deducted = u.deducted, version = u.version
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::int8[], $7::int8[],
                     $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[])
           AS u (id, name, unit_price, currency, available, reserved, initial, restocked, adjusted, deducted,
                 version, expected)
         WHERE p.product_id = u.id AND p.version = u.expected
         RETURNING p.product_id",
    )
    .bind(&ids)
    .bind(changed.iter().map(|(p, _)| p.name.as_str()).collect::<Vec<_>>())
    .bind(numbers(|p| p.unit_price))
    .bind(changed.iter().map(|(p, _)| p.currency.as_str()).collect::<Vec<_>>())
    .bind(numbers(|p| p.available))
    .bind(numbers(|p| p.reserved))
    .bind(numbers(|p| p.initial))
    .bind(numbers(|p| p.restocked))
    .bind(numbers(|p| p.adjusted))
    .bind(numbers(|p| p.deducted))
    .bind(numbers(|p| to_sql(p.version)))
    .bind(
        changed
            .iter()
            .map(|(_, expected)| to_sql(*expected))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db_error)?;
    if updated.len() < changed.len() {
        let updated: std::collections::HashSet<&str> = updated.iter().map(String::as_str).collect();
        let lost = changed.iter().find(|(p, _)| !updated.contains(p.product_id.as_str()));
        return Err(StoreError::Conflict(format!(
            "product {}",
            lost.map_or("?", |(p, _)| p.product_id.as_str())
        )));
    }
    Ok(())
}

/// Reservations are fenced by their status: a write applies only to the
/// reservation as it was read, so a reserve and a release of the same order
/// that race cannot both win.
async fn update_reservation(
    tx: &mut Transaction<'_, Postgres>,
    before: &Reservation,
    after: &Reservation,
) -> Result<(), StoreError> {
    // The status read is the fence, as the version is for products.
    let written = sqlx::query(
        "UPDATE inventory.reservations SET status = $2, lines = $3::json WHERE order_id = $1 AND status = $4",
    )
    .bind(&after.order_id)
    .bind(after.status.as_str())
    .bind(json(&after.lines)?)
    .bind(before.status.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if written.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("reservation of order {}", after.order_id)));
    }
    Ok(())
}

/// New reservations, in one round trip; any that exists already is a
/// conflict. That is rare (two instances racing for one order), so a plain
/// insert finds it: `ON CONFLICT` would cost every row a probe of the key
/// and a second record in the log.
async fn insert_reservations(
    tx: &mut Transaction<'_, Postgres>,
    reservations: &[&Reservation],
) -> Result<(), StoreError> {
    if reservations.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = reservations.iter().map(|r| r.order_id.as_str()).collect();
    let statuses: Vec<&str> = reservations.iter().map(|r| r.status.as_str()).collect();
    let lines = reservations
        .iter()
        .map(|r| json(&r.lines))
        .collect::<Result<Vec<_>, _>>()?;
    let inserted = sqlx::query(
        "INSERT INTO inventory.reservations (order_id, status, lines)
         SELECT id, status, lines::json FROM UNNEST($1::text[], $2::text[], $3::text[]) AS new (id, status, lines)",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&lines)
    .execute(&mut **tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            // PostgreSQL's detail names the key: "Key (order_id)=(...) already exists."
            let detail = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|e| e.detail());
            Err(StoreError::Conflict(format!(
                "a reservation exists already: {}",
                detail.unwrap_or(db.message())
            )))
        }
        inserted => inserted.map(drop).map_err(db_error),
    }
}
