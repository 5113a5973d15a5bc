//! The order context's store: orders, its copy of the catalogue, its outbox.

use std::future::Future;

use shop_rules::order::{CataloguePrice, Order, OrderStatus};
use shop_streams::{Envelope, RuleRef};

use super::audit_log::AuditLog;
use super::customer_keys::CustomerKeys;
use super::store::{StoreError, Versioned};
use crate::audit::AuditRecord;

/// One atomic change of an order.
#[derive(Debug, Clone, Copy)]
pub struct OrderWrite<'a> {
    pub order: &'a Order,
    /// `None` creates the order; `Some(v)` updates it from version `v`.
    pub expected_version: Option<u64>,
    /// Events to publish, in order; they go to the outbox.
    pub events: &'a [Envelope],
    /// The delivery details of a new order, sealed; written with it.
    pub delivery: Option<&'a SealedDelivery>,
    /// What a caller asked for (an admin's cancel, say), sealed onto the
    /// audit chain with the change; the saga's own steps carry none.
    pub audit: Option<&'a AuditRecord>,
}

impl OrderWrite<'_> {
    /// The rules that decided a new order, kept with it for its view: those
    /// its first event names (the order rules, then each policy that let it
    /// in). Empty for an update, whose decider its own events name.
    pub fn provenance(&self) -> &[RuleRef] {
        match (self.expected_version, self.events.first()) {
            (None, Some(created)) => &created.policy,
            _ => &[],
        }
    }
}

/// The rules that decided an order when it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub order_id: String,
    pub rules: Vec<RuleRef>,
}

/// An order's delivery details as stored: sealed under its customer's data
/// key (see [`CustomerKeys`]), bound to the order by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedDelivery {
    pub order_id: String,
    /// The customer's data key it is sealed under.
    pub key_id: String,
    /// Nonce and ciphertext, as base64.
    pub sealed: String,
}

/// An order as stored with what is kept beside it: all that a read of one
/// order shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub order: Versioned<Order>,
    /// Its delivery details, sealed, when it has them.
    pub delivery: Option<SealedDelivery>,
    /// The rules that placed it; empty when none were kept.
    pub provenance: Vec<RuleRef>,
}

/// A product as the order side knows it: enough to price a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub price: CataloguePrice,
    /// The inventory-side version of the product this entry reflects; an
    /// older update never overwrites a newer one.
    pub source_version: u64,
}

/// Where a page of a customer's orders ended: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCursor {
    pub created_at: i64,
    pub order_id: String,
}

impl OrderCursor {
    pub fn after(order: &Order) -> Self {
        Self {
            created_at: order.created_at,
            order_id: order.id.clone(),
        }
    }
}

/// Which of a customer's orders to list.
#[derive(Debug, Clone, Copy)]
pub struct OrderQuery<'a> {
    pub customer_id: &'a str,
    pub status: Option<OrderStatus>,
    pub after: Option<&'a OrderCursor>,
    pub limit: u32,
}

/// The order context's store; its customers' data keys live beside the
/// orders they protect.
pub trait OrderStore: CustomerKeys + AuditLog + Send + Sync + 'static {
    /// MUST return the order and its version, or `None` when it does not exist.
    fn get(&self, order_id: &str) -> impl Future<Output = Result<Option<Versioned<Order>>, StoreError>> + Send;

    /// MUST write the order, its `delivery` (when creating it), its `audit`
    /// record and append `events` to the outbox in one transaction, and
    /// return the new version. MUST return
    /// [`StoreError::Conflict`] when creating an order that exists or when
    /// the stored version is not `expected_version`, and then write nothing.
    fn write(&self, write: OrderWrite<'_>) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// MUST return those of `order_ids` that exist, with their versions, in any order.
    fn get_many(&self, order_ids: &[String]) -> impl Future<Output = Result<Vec<Versioned<Order>>, StoreError>> + Send;

    /// MUST write each of `updates` as [`Self::write`] would (their events to
    /// the outbox, their audit records onto the chain) in one transaction: all of it or, on any error, nothing.
    /// Each update MUST name an existing order by its `expected_version`, and
    /// an order at most once; else, or when a stored version is not the
    /// expected one, MUST return [`StoreError::Conflict`]. Many handled
    /// messages, one commit.
    fn update_many(&self, updates: &[OrderWrite<'_>]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST return the sealed delivery details of those of `order_ids` that
    /// have them, in any order.
    fn deliveries(&self, order_ids: &[String]) -> impl Future<Output = Result<Vec<SealedDelivery>, StoreError>> + Send;

    /// MUST return, for those of `order_ids` whose creating write had a
    /// [`OrderWrite::provenance`], that provenance, in any order.
    fn provenance(&self, order_ids: &[String]) -> impl Future<Output = Result<Vec<Provenance>, StoreError>> + Send;

    /// MUST return the order with its version, its sealed delivery details
    /// and its provenance, as [`Self::get`], [`Self::deliveries`] and
    /// [`Self::provenance`] would each return them, or `None` when it does
    /// not exist: one read where those are three.
    fn record(&self, order_id: &str) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send;

    /// MUST return how many orders are PENDING: accepted, and neither
    /// confirmed nor cancelled yet by the saga. Intake sheds load by it.
    fn pending_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// MUST return up to `limit` ids of CONFIRMED orders confirmed before
    /// `cutoff_ms` (milliseconds since the epoch), oldest first: the
    /// candidates for reservation expiry.
    fn confirmed_before(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// MUST return the entries of the listed products that are known, in any order.
    fn catalogue(&self, product_ids: &[String])
    -> impl Future<Output = Result<Vec<CatalogueEntry>, StoreError>> + Send;

    /// MUST return up to `limit` orders of the customer (only those in
    /// `status` when given), newest first: by creation time, then id, both
    /// descending, and strictly after the cursor when given.
    fn customer_orders(&self, query: OrderQuery<'_>) -> impl Future<Output = Result<Vec<Order>, StoreError>> + Send;

    /// MUST store `entry` unless the same or a newer `source_version` of the
    /// product is stored already (so a repeated update changes nothing).
    fn update_catalogue(&self, entry: &CatalogueEntry) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The orders `updates` change, checked to be updates of distinct orders:
/// what [`OrderStore::update_many`] may write.
pub fn checked_updates<'a>(updates: &[OrderWrite<'a>]) -> Result<Vec<(&'a Order, u64)>, StoreError> {
    let mut seen = std::collections::HashSet::new();
    updates
        .iter()
        .map(|update| match update.expected_version {
            Some(expected) if seen.insert(update.order.id.as_str()) => Ok((update.order, expected)),
            Some(_) => Err(StoreError::Conflict(format!("order {} (named twice)", update.order.id))),
            None => Err(StoreError::Conflict(format!(
                "order {} (not an update)",
                update.order.id
            ))),
        })
        .collect()
}
