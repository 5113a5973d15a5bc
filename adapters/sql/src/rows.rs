//! The stores' rows read back into the domain, the same way in both
//! databases: by column name, with JSON columns through sqlx's `Json`
//! (PostgreSQL `json`, SQLite text).

use shop_rules::inventory::{Movement, MovementKind, ProductStock, Reservation, ReservationStatus, StockLine};
use shop_rules::order::{CataloguePrice, Order};
use shop_runtime::ports::{
    CatalogueEntry, MovementEntry, Provenance, SealedDelivery, StoreError, StoredKey, StoredRecord, Versioned,
};
use shop_streams::RuleRef;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// A row value that cannot be read back is a broken store, not bad input.
pub fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("stored {what} cannot be read: {error}").into())
}

/// A stored version or sequence number (a signed 64-bit column) as the
/// ports count it.
pub fn version(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}

/// A version or sequence number as the signed 64-bit column keeps it.
pub fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The typed reads the mappers below make of a row, for any database
/// whose driver decodes these types (both of ours do).
pub trait StoreRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn number(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn order_state(&self, column: &str) -> Result<Order, sqlx::Error>;
    fn stock_lines(&self, column: &str) -> Result<Vec<StockLine>, sqlx::Error>;
}

impl<R: Row> StoreRow for R
where
    for<'c> &'c str: ColumnIndex<R>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Json<Order>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Json<Vec<StockLine>>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn number(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn order_state(&self, column: &str) -> Result<Order, sqlx::Error> {
        self.try_get::<Json<Order>, _>(column).map(|json| json.0)
    }

    fn stock_lines(&self, column: &str) -> Result<Vec<StockLine>, sqlx::Error> {
        self.try_get::<Json<Vec<StockLine>>, _>(column).map(|json| json.0)
    }
}

/// An order's provenance as its `policy` column keeps it: JSON text, or
/// NULL for an order written without one (so most rows pay nothing).
pub fn provenance_column(rules: &[RuleRef]) -> Result<Option<String>, StoreError> {
    if rules.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(rules)
        .map(Some)
        .map_err(|e| corrupt("provenance", e))
}

/// An order's provenance: its `order_id` and `policy` columns, the latter as text.
pub fn provenance(row: &impl StoreRow) -> Result<Provenance, StoreError> {
    Ok(Provenance {
        order_id: row.text("order_id").map_err(|e| corrupt("provenance", e))?,
        rules: policy(row)?,
    })
}

/// The rules of a `policy` column read as text: none when it is NULL.
fn policy(row: &impl StoreRow) -> Result<Vec<RuleRef>, StoreError> {
    match row.maybe_text("policy").map_err(|e| corrupt("provenance", e))? {
        None => Ok(Vec::new()),
        Some(json) if json.is_empty() => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt("provenance", e)),
    }
}

/// An order with its version and provenance, and its delivery's `key_id`
/// and `sealed` columns (NULL when it has none).
pub fn order_record(row: &impl StoreRow) -> Result<StoredRecord, StoreError> {
    let order = versioned_order(row)?;
    let read = |e| corrupt("delivery", e);
    let delivery = match (
        row.maybe_text("key_id").map_err(read)?,
        row.maybe_text("sealed").map_err(read)?,
    ) {
        (Some(key_id), Some(sealed)) => Some(SealedDelivery {
            order_id: order.value.id.clone(),
            key_id,
            sealed,
        }),
        _ => None,
    };
    Ok(StoredRecord {
        provenance: policy(row)?,
        delivery,
        order,
    })
}

/// A customer's wrapped data key: every column of the keys table.
pub fn stored_key(row: &impl StoreRow) -> Result<StoredKey, StoreError> {
    let read = |e| corrupt("customer key", e);
    Ok(StoredKey {
        customer_id: row.text("customer_id").map_err(read)?,
        key_id: row.text("key_id").map_err(read)?,
        kek_id: row.text("kek_id").map_err(read)?,
        wrapped: row.text("wrapped").map_err(read)?,
        created_at: row.number("created_at").map_err(read)?,
    })
}

/// An order's sealed delivery: every column of the deliveries table.
pub fn sealed_delivery(row: &impl StoreRow) -> Result<SealedDelivery, StoreError> {
    let read = |e| corrupt("delivery", e);
    Ok(SealedDelivery {
        order_id: row.text("order_id").map_err(read)?,
        key_id: row.text("key_id").map_err(read)?,
        sealed: row.text("sealed").map_err(read)?,
    })
}

/// A product's stock row: every column of the products table.
pub fn product(row: &impl StoreRow) -> Result<ProductStock, StoreError> {
    let read = |e| corrupt("product", e);
    Ok(ProductStock {
        product_id: row.text("product_id").map_err(read)?,
        name: row.text("name").map_err(read)?,
        unit_price: row.number("unit_price").map_err(read)?,
        currency: row.text("currency").map_err(read)?,
        available: row.number("available").map_err(read)?,
        reserved: row.number("reserved").map_err(read)?,
        initial: row.number("initial").map_err(read)?,
        restocked: row.number("restocked").map_err(read)?,
        adjusted: row.number("adjusted").map_err(read)?,
        deducted: row.number("deducted").map_err(read)?,
        version: version(row.number("version").map_err(read)?),
    })
}

/// A stock movement with its sequence number (`seq`).
pub fn movement(row: &impl StoreRow) -> Result<MovementEntry, StoreError> {
    let read = |e| corrupt("movement", e);
    let kind = row.text("kind").map_err(read)?;
    let movement = Movement {
        product_id: row.text("product_id").map_err(read)?,
        kind: MovementKind::parse(&kind).ok_or_else(|| corrupt("movement kind", &kind))?,
        quantity: row.number("quantity").map_err(read)?,
        order_id: row.maybe_text("order_id").map_err(read)?,
        reason: row.maybe_text("reason").map_err(read)?,
        at: row.number("at").map_err(read)?,
    };
    Ok(MovementEntry {
        seq: version(row.number("seq").map_err(read)?),
        movement,
        actor: row.maybe_text("actor").map_err(read)?,
        request_id: row.maybe_text("request_id").map_err(read)?,
    })
}

/// The reservation of `order_id`, from its `status` and `lines` columns.
pub fn reservation(order_id: &str, row: &impl StoreRow) -> Result<Reservation, StoreError> {
    let read = |e| corrupt("reservation", e);
    let status = row.text("status").map_err(read)?;
    Ok(Reservation {
        order_id: order_id.to_owned(),
        status: ReservationStatus::parse(&status).ok_or_else(|| corrupt("reservation status", &status))?,
        lines: row.stock_lines("lines").map_err(read)?,
    })
}

/// A reservation with its `order_id` column.
pub fn order_reservation(row: &impl StoreRow) -> Result<Reservation, StoreError> {
    let order_id = row.text("order_id").map_err(|e| corrupt("reservation", e))?;
    reservation(&order_id, row)
}

/// An order from its `state` column.
pub fn order(row: &impl StoreRow) -> Result<Order, StoreError> {
    row.order_state("state").map_err(|e| corrupt("order", e))
}

/// An order from its `state` column, with its `version`.
pub fn versioned_order(row: &impl StoreRow) -> Result<Versioned<Order>, StoreError> {
    Ok(Versioned {
        value: order(row)?,
        version: version(row.number("version").map_err(|e| corrupt("order", e))?),
    })
}

/// A catalogue entry as the order context keeps it.
pub fn catalogue_entry(row: &impl StoreRow) -> Result<CatalogueEntry, StoreError> {
    let read = |e| corrupt("catalogue entry", e);
    Ok(CatalogueEntry {
        price: CataloguePrice {
            product_id: row.text("product_id").map_err(read)?,
            unit_price: row.number("unit_price").map_err(read)?,
            currency: row.text("currency").map_err(read)?,
        },
        source_version: version(row.number("source_version").map_err(read)?),
    })
}
