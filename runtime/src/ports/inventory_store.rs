//! The inventory context's store: product stock, reservations, the stock
//! movement audit trail, its outbox.
//!
//! A stock movement is kept once, as its entry in the audit log
//! ([`movement_record`]): the trail the movements endpoint pages through is
//! the audit chain's `stock.*` entries on the product.

use std::collections::HashMap;
use std::future::Future;

use shop_rules::inventory::{InventoryState, Movement, ProductStock, Reservation};
use shop_streams::Envelope;

use super::audit_log::AuditLog;
use super::store::StoreError;
use crate::audit::{Actor, AuditRecord};

/// One atomic change of the products a command touched.
#[derive(Debug, Clone, Copy)]
pub struct InventoryWrite<'a> {
    /// The state as loaded: its product versions are the ones expected.
    pub before: &'a InventoryState,
    /// The state to store. A product here and not in `before` is new.
    pub after: &'a InventoryState,
    /// Each is sealed onto the audit chain as [`movement_record`] says.
    pub movements: &'a [Movement],
    pub events: &'a [Envelope],
    /// Who asked for the change: each movement names them.
    pub actor: &'a Actor,
    /// The audit log's account of the rest of the change (a product
    /// registered, a price changed), appended in its transaction ahead of
    /// the movements' records.
    pub audit: &'a [AuditRecord],
}

/// The context of the inventory's audit entries, movements among them.
pub(crate) const AUDIT_CONTEXT: &str = "inventory";

/// The target that names product `product_id` in the audit log: the
/// movements are read back by it.
pub(crate) fn product_target(product_id: &str) -> String {
    format!("product:{product_id}")
}

/// The audit record that keeps `movement`, by `actor`: action
/// `stock.<kind>` on target `product:<id>`, at the movement's time, with
/// its quantity, order and reason as the detail. Adapters read movements
/// back from these records' columns, so its shape is part of the schema.
pub fn movement_record(movement: &Movement, actor: &Actor) -> AuditRecord {
    /// The detail's fields in key order, as earlier releases wrote them.
    #[derive(serde::Serialize)]
    struct Detail<'m> {
        #[serde(skip_serializing_if = "Option::is_none")]
        order_id: Option<&'m str>,
        quantity: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'m str>,
    }
    let detail = Detail {
        order_id: movement.order_id.as_deref(),
        quantity: movement.quantity,
        reason: movement.reason.as_deref(),
    };
    actor.did(
        AUDIT_CONTEXT,
        &format!("stock.{}", movement.kind.as_str()),
        product_target(&movement.product_id),
        movement.at,
        &detail,
    )
}

/// A stored movement: its number, and who caused it through which request
/// (unknown for movements recorded before the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementEntry {
    pub seq: u64,
    pub movement: Movement,
    pub actor: Option<String>,
    pub request_id: Option<String>,
}

pub trait InventoryStore: AuditLog + Send + Sync + 'static {
    /// MUST return the listed products that exist (with their versions) and,
    /// when `order_id` is given, that order's reservation if there is one.
    fn load(
        &self,
        product_ids: &[String],
        order_id: Option<&str>,
    ) -> impl Future<Output = Result<InventoryState, StoreError>> + Send;

    /// MUST write every changed product, the reservation, the outbox events,
    /// the audit records and then each movement's [`movement_record`] by
    /// the write's actor (all sealed onto the audit chain as
    /// [`AuditLog::append`](super::AuditLog::append) does) in one transaction.
    /// MUST return [`StoreError::Conflict`] when any product's stored version
    /// is not the one in `before` (or a new product exists already), or the
    /// stored reservation is not the one in `before` (an order has at most
    /// one: that is what makes a repeated reservation harmless), and
    /// [`StoreError::Refused`] when stock would become negative or stop being
    /// conserved; in every error case it MUST write nothing.
    fn write(&self, write: InventoryWrite<'_>) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.write_many(&[write]).await }
    }

    /// MUST do what [`Self::write`] does for each of `writes`, in order, in
    /// one transaction: all of them or, on any error, none. Each write's
    /// `before` MUST match what the writes ahead of it left (a product's
    /// version, an order's reservation); when it does not, MUST return
    /// [`StoreError::Conflict`]. Many handled messages, one commit.
    fn write_many(&self, writes: &[InventoryWrite<'_>]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST return the product's movements oldest first, `limit` at most,
    /// starting after the movement numbered `after` (0 for the first page),
    /// each with its number, actor and request id: the audit chain's
    /// [`movement_record`]s on the product, after any movements an earlier
    /// release kept apart (which name no actor).
    fn movements(
        &self,
        product_id: &str,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<MovementEntry>, StoreError>> + Send;

    /// MUST return the product, or `None`.
    fn product(&self, product_id: &str) -> impl Future<Output = Result<Option<ProductStock>, StoreError>> + Send;

    /// MUST return products in id order, `limit` at most, with ids after
    /// `after` (from the first when `None`), and with `search` only those
    /// whose id or name contains it, ignoring ASCII case (`%` and `_` in
    /// it are plain characters).
    fn products(
        &self,
        after: Option<&str>,
        search: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ProductStock>, StoreError>> + Send;

    /// MUST return the order's reservation, or `None`.
    fn reservation(&self, order_id: &str) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// MUST return the reservations of those of `order_ids` that have one,
    /// in any order.
    fn reservations(&self, order_ids: &[String]) -> impl Future<Output = Result<Vec<Reservation>, StoreError>> + Send;
}

/// What a run of writes changes in all, for adapters that commit it at once:
/// each product and reservation once (as first read, as last written), and
/// everything the writes append, in order.
#[derive(Debug, Default)]
pub struct NetWrite<'a> {
    /// Changed products, sorted by id (a fixed order of row locks, so two
    /// writers never deadlock), with the state they were read at (`None`
    /// for a new product).
    pub products: Vec<(Option<&'a ProductStock>, &'a ProductStock)>,
    /// Changed reservations, with the state they were read at (`None` for a new one).
    pub reservations: Vec<(Option<&'a Reservation>, &'a Reservation)>,
    pub events: Vec<&'a Envelope>,
    /// Each write's audit records, then its movements' records, in order.
    pub audit: Vec<AuditRecord>,
}

impl<'a> NetWrite<'a> {
    /// MUST return [`StoreError::Conflict`] when a write's `before` is not
    /// what the writes ahead of it left.
    pub fn of(writes: &[InventoryWrite<'a>]) -> Result<Self, StoreError> {
        let mut net = Self::default();
        let mut products: HashMap<&str, usize> = HashMap::new();
        let mut reservations: HashMap<&str, usize> = HashMap::new();
        for write in writes {
            for after in &write.after.products {
                let before = write.before.product(&after.product_id);
                chain(
                    &mut net.products,
                    &mut products,
                    ("product", &after.product_id),
                    before,
                    after,
                )?;
            }
            if let Some(after) = &write.after.reservation {
                let before = write.before.reservation.as_ref();
                chain(
                    &mut net.reservations,
                    &mut reservations,
                    ("reservation of order", &after.order_id),
                    before,
                    after,
                )?;
            }
            net.events.extend(write.events);
            net.audit.extend_from_slice(write.audit);
            net.audit
                .extend(write.movements.iter().map(|m| movement_record(m, write.actor)));
        }
        net.products.retain(|(before, after)| *before != Some(*after));
        net.products.sort_by(|a, b| a.1.product_id.cmp(&b.1.product_id));
        net.reservations.retain(|(before, after)| *before != Some(*after));
        Ok(net)
    }
}

/// Adds one write's change of the `what` at `key` to `changes`: as first
/// read, as last written. A `before` that is not what the writes ahead left
/// is a conflict.
fn chain<'a, T: PartialEq>(
    changes: &mut Vec<(Option<&'a T>, &'a T)>,
    at: &mut HashMap<&'a str, usize>,
    (what, key): (&str, &'a str),
    before: Option<&'a T>,
    after: &'a T,
) -> Result<(), StoreError> {
    match at.get(key) {
        Some(&index) if before != Some(changes[index].1) => {
            Err(StoreError::Conflict(format!("{what} {key} (the writes do not chain)")))
        }
        Some(&index) => {
            changes[index].1 = after;
            Ok(())
        }
        None => {
            at.insert(key, changes.len());
            changes.push((before, after));
            Ok(())
        }
    }
}
