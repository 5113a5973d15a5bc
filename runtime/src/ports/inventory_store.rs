//! The inventory context's store: product stock, reservations, the stock
//! movement audit trail, its outbox and inbox.

use std::future::Future;

use shop_rules::inventory::{InventoryState, Movement, ProductStock, Reservation};
use shop_streams::Envelope;

use super::store::{Handled, StoreError};

/// One atomic change of the products a command touched.
#[derive(Debug, Clone, Copy)]
pub struct InventoryWrite<'a> {
    /// The state as loaded: its product versions are the ones expected.
    pub before: &'a InventoryState,
    /// The state to store. A product here and not in `before` is new.
    pub after: &'a InventoryState,
    pub movements: &'a [Movement],
    pub events: &'a [Envelope],
    pub handled: Option<Handled<'a>>,
}

pub trait InventoryStore: Send + Sync + 'static {
    /// MUST return the listed products that exist (with their versions) and,
    /// when `order_id` is given, that order's reservation if there is one.
    fn load(
        &self,
        product_ids: &[String],
        order_id: Option<&str>,
    ) -> impl Future<Output = Result<InventoryState, StoreError>> + Send;

    /// MUST write every changed product, the reservation, the movements, the
    /// outbox events and the inbox record in one transaction.
    /// MUST return [`StoreError::Conflict`] when any product's stored version
    /// is not the one in `before` (or a new product exists already),
    /// [`StoreError::AlreadyHandled`] when the inbox holds `handled`, and
    /// [`StoreError::Refused`] when stock would become negative or stop being
    /// conserved; in every error case it MUST write nothing.
    fn write(&self, write: InventoryWrite<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST record `handled` alone; [`StoreError::AlreadyHandled`] when it was recorded before.
    fn mark_handled(&self, handled: Handled<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST return the product's movements oldest first, `limit` at most,
    /// starting after the movement numbered `after` (0 for the first page),
    /// each with its number.
    fn movements(
        &self,
        product_id: &str,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(u64, Movement)>, StoreError>> + Send;

    /// MUST return the product, or `None`.
    fn product(&self, product_id: &str) -> impl Future<Output = Result<Option<ProductStock>, StoreError>> + Send;

    /// MUST return the order's reservation, or `None`.
    fn reservation(&self, order_id: &str) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;
}
