//! The Product aggregate with its stock, and per-order reservations.
//!
//! A reservation spans several products and is all-or-nothing, so the state a
//! command sees is the set of products it touches plus, for order commands,
//! that order's reservation. The host loads exactly that, decides, and writes
//! the evolved state back under the products' versions.

use std::collections::BTreeSet;
use std::fmt;

use crate::common::{self, FieldError, LineError};

/// Largest stock level (available + reserved) one product may hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProductStock {
    pub product_id: String,
    pub name: String,
    pub unit_price: i64,
    pub currency: String,
    pub available: i64,
    pub reserved: i64,
    pub version: u64,
    pub initial: i64,
    pub restocked: i64,
    pub adjusted: i64,
    pub deducted: i64,
}

impl ProductStock {
    /// initial + restocked + adjusted = available + reserved + deducted.
    pub fn is_conserved(&self) -> bool {
        self.initial + self.restocked + self.adjusted == self.available + self.reserved + self.deducted
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ReservationStatus {
    Reserved,
    Rejected,
    Released,
    Deducted,
}

impl ReservationStatus {
    pub const ALL: [ReservationStatus; 4] = [Self::Reserved, Self::Rejected, Self::Released, Self::Deducted];

    /// The name stores and events use (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Rejected => "rejected",
            Self::Released => "released",
            Self::Deducted => "deducted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StockLine {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reservation {
    pub order_id: String,
    pub status: ReservationStatus,
    pub lines: Vec<StockLine>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InventoryState {
    pub products: Vec<ProductStock>,
    pub reservation: Option<Reservation>,
}

impl InventoryState {
    pub fn product(&self, product_id: &str) -> Option<&ProductStock> {
        self.products.iter().find(|p| p.product_id == product_id)
    }

    fn product_mut(&mut self, product_id: &str) -> Option<&mut ProductStock> {
        self.products.iter_mut().find(|p| p.product_id == product_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RegisterProduct {
    pub product_id: String,
    pub name: String,
    pub unit_price: i64,
    pub currency: String,
    pub initial_stock: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Restock {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Adjust {
    pub product_id: String,
    pub delta: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChangePrice {
    pub product_id: String,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OrderLines {
    pub order_id: String,
    pub lines: Vec<StockLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ReleaseReason {
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Release {
    pub order_id: String,
    pub reason: ReleaseReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum InventoryCommand {
    RegisterProduct(RegisterProduct),
    Restock(Restock),
    Adjust(Adjust),
    ChangePrice(ChangePrice),
    Reserve(OrderLines),
    Deduct(String),
    Release(Release),
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PriceChanged {
    pub product_id: String,
    pub old_price: i64,
    pub new_price: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InsufficientStock {
    pub order_id: String,
    pub shortages: Vec<Shortage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StockRestored {
    pub order_id: String,
    pub lines: Vec<StockLine>,
    pub reason: ReleaseReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum InventoryEvent {
    ProductRegistered(RegisterProduct),
    Restocked(Restock),
    Adjusted(Adjust),
    PriceChanged(PriceChanged),
    StockReserved(OrderLines),
    InsufficientStock(InsufficientStock),
    StockDeducted(OrderLines),
    StockRestored(StockRestored),
    ReservationVoided(String),
}

impl InventoryEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ProductRegistered(_) => "ProductRegistered",
            Self::Restocked(_) => "StockRestocked",
            Self::Adjusted(_) => "StockAdjusted",
            Self::PriceChanged(_) => "PriceChanged",
            Self::StockReserved(_) => "StockReserved",
            Self::InsufficientStock(_) => "InsufficientStock",
            Self::StockDeducted(_) => "StockDeducted",
            Self::StockRestored(_) => "StockRestored",
            Self::ReservationVoided(_) => "ReservationVoided",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum MovementKind {
    Initial,
    Restock,
    Adjust,
    Reserve,
    Deduct,
    Restore,
    Expire,
}

impl MovementKind {
    pub const ALL: [MovementKind; 7] = [
        Self::Initial,
        Self::Restock,
        Self::Adjust,
        Self::Reserve,
        Self::Deduct,
        Self::Restore,
        Self::Expire,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The name stores, events and the API use (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Restock => "restock",
            Self::Adjust => "adjust",
            Self::Reserve => "reserve",
            Self::Deduct => "deduct",
            Self::Restore => "restore",
            Self::Expire => "expire",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Movement {
    pub product_id: String,
    pub kind: MovementKind,
    pub quantity: i64,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Decision {
    pub events: Vec<InventoryEvent>,
    pub movements: Vec<Movement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WouldGoNegative {
    pub product_id: String,
    pub available: i64,
    pub delta: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum InventoryRejection {
    InvalidField(FieldError),
    ProductExists(String),
    UnknownProduct(String),
    QuantityTooLarge(String),
    WouldGoNegative(WouldGoNegative),
    NoLines,
    NonPositiveQuantity(LineError),
    DuplicateLine(LineError),
    ReservationNotFound(String),
    ReservationClosed(ReservationStatus),
}

impl fmt::Display for InventoryRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidField(e) => write!(f, "{e}"),
            Self::ProductExists(id) => write!(f, "product {id} already exists"),
            Self::UnknownProduct(id) => write!(f, "no such product: {id}"),
            Self::QuantityTooLarge(id) => {
                write!(f, "product {id} would hold more than {MAX_STOCK} units")
            }
            Self::WouldGoNegative(e) => write!(
                f,
                "product {} has {} available; a change of {} would make it negative",
                e.product_id, e.available, e.delta
            ),
            Self::NoLines => f.write_str("a reservation needs at least one line"),
            Self::NonPositiveQuantity(l) => write!(f, "{l}: quantity must be positive"),
            Self::DuplicateLine(l) => write!(f, "{l}: product appears more than once"),
            Self::ReservationNotFound(order) => write!(f, "order {order} has no reservation"),
            Self::ReservationClosed(status) => {
                write!(f, "the reservation is already {status:?}")
            }
        }
    }
}

impl std::error::Error for InventoryRejection {}

/// Decides what `command` does to the products and reservation in `state`.
///
/// Order commands are idempotent per order: a second reserve, deduct or
/// release for the same order decides nothing. A release seen before its
/// reserve voids the reservation, so the late reserve reserves nothing.
pub fn decide(state: &InventoryState, command: &InventoryCommand, now_ms: i64) -> Result<Decision, InventoryRejection> {
    let events = match command {
        InventoryCommand::RegisterProduct(c) => register(state, c)?,
        InventoryCommand::Restock(c) => restock(state, c)?,
        InventoryCommand::Adjust(c) => adjust(state, c)?,
        InventoryCommand::ChangePrice(c) => change_price(state, c)?,
        InventoryCommand::Reserve(c) => reserve(state, c)?,
        InventoryCommand::Deduct(order_id) => deduct(state, order_id)?,
        InventoryCommand::Release(c) => release(state, c),
    };
    let movements = events.iter().flat_map(|event| movements(event, now_ms)).collect();
    Ok(Decision { events, movements })
}

/// Folds one event into the state. Events about products absent from the
/// state change nothing for them.
pub fn evolve(mut state: InventoryState, event: &InventoryEvent) -> InventoryState {
    let mut touch = |product_id: &str, change: &dyn Fn(&mut ProductStock)| {
        if let Some(product) = state.product_mut(product_id) {
            change(product);
            product.version += 1;
        }
    };
    match event {
        InventoryEvent::ProductRegistered(e) => {
            if state.product(&e.product_id).is_none() {
                state.products.push(ProductStock {
                    product_id: e.product_id.clone(),
                    name: e.name.clone(),
                    unit_price: e.unit_price,
                    currency: e.currency.clone(),
                    available: e.initial_stock,
                    reserved: 0,
                    version: 1,
                    initial: e.initial_stock,
                    restocked: 0,
                    adjusted: 0,
                    deducted: 0,
                });
            }
        }
        InventoryEvent::Restocked(e) => touch(&e.product_id, &|p| {
            p.available += e.quantity;
            p.restocked += e.quantity;
        }),
        InventoryEvent::Adjusted(e) => touch(&e.product_id, &|p| {
            p.available += e.delta;
            p.adjusted += e.delta;
        }),
        InventoryEvent::PriceChanged(e) => touch(&e.product_id, &|p| p.unit_price = e.new_price),
        InventoryEvent::StockReserved(e) => {
            for line in &e.lines {
                touch(&line.product_id, &|p| {
                    p.available -= line.quantity;
                    p.reserved += line.quantity;
                });
            }
            state.reservation = Some(reservation(&e.order_id, ReservationStatus::Reserved, &e.lines));
        }
        InventoryEvent::InsufficientStock(e) => {
            state.reservation = Some(reservation(&e.order_id, ReservationStatus::Rejected, &[]));
        }
        InventoryEvent::StockDeducted(e) => {
            for line in &e.lines {
                touch(&line.product_id, &|p| {
                    p.reserved -= line.quantity;
                    p.deducted += line.quantity;
                });
            }
            state.reservation = Some(reservation(&e.order_id, ReservationStatus::Deducted, &e.lines));
        }
        InventoryEvent::StockRestored(e) => {
            for line in &e.lines {
                touch(&line.product_id, &|p| {
                    p.reserved -= line.quantity;
                    p.available += line.quantity;
                });
            }
            state.reservation = Some(reservation(&e.order_id, ReservationStatus::Released, &e.lines));
        }
        InventoryEvent::ReservationVoided(order_id) => {
            state.reservation = Some(reservation(order_id, ReservationStatus::Released, &[]));
        }
    }
    state
}

/// The audit-trail entries an event stands for, one per product it changes.
pub fn movements(event: &InventoryEvent, at: i64) -> Vec<Movement> {
    let entry = |product_id: &str, kind, quantity, order_id: Option<&str>, reason: Option<&str>| Movement {
        product_id: product_id.to_owned(),
        kind,
        quantity,
        order_id: order_id.map(str::to_owned),
        reason: reason.map(str::to_owned),
        at,
    };
    let per_line = |e: &OrderLines, kind| {
        e.lines
            .iter()
            .map(|l| entry(&l.product_id, kind, l.quantity, Some(&e.order_id), None))
            .collect()
    };
    match event {
        InventoryEvent::ProductRegistered(e) => {
            vec![entry(&e.product_id, MovementKind::Initial, e.initial_stock, None, None)]
        }
        InventoryEvent::Restocked(e) => {
            vec![entry(&e.product_id, MovementKind::Restock, e.quantity, None, None)]
        }
        InventoryEvent::Adjusted(e) => vec![entry(
            &e.product_id,
            MovementKind::Adjust,
            e.delta,
            None,
            Some(&e.reason),
        )],
        InventoryEvent::StockReserved(e) => per_line(e, MovementKind::Reserve),
        InventoryEvent::StockDeducted(e) => per_line(e, MovementKind::Deduct),
        InventoryEvent::StockRestored(e) => {
            let kind = match e.reason {
                ReleaseReason::Cancelled => MovementKind::Restore,
                ReleaseReason::Expired => MovementKind::Expire,
            };
            e.lines
                .iter()
                .map(|l| entry(&l.product_id, kind, l.quantity, Some(&e.order_id), None))
                .collect()
        }
        InventoryEvent::PriceChanged(_)
        | InventoryEvent::InsufficientStock(_)
        | InventoryEvent::ReservationVoided(_) => Vec::new(),
    }
}

fn reservation(order_id: &str, status: ReservationStatus, lines: &[StockLine]) -> Reservation {
    Reservation {
        order_id: order_id.to_owned(),
        status,
        lines: lines.to_vec(),
    }
}

fn existing<'a>(state: &'a InventoryState, product_id: &str) -> Result<&'a ProductStock, InventoryRejection> {
    state
        .product(product_id)
        .ok_or_else(|| InventoryRejection::UnknownProduct(product_id.to_owned()))
}

fn invalid(e: FieldError) -> InventoryRejection {
    InventoryRejection::InvalidField(e)
}

fn register(state: &InventoryState, c: &RegisterProduct) -> Result<Vec<InventoryEvent>, InventoryRejection> {
    common::check_id("id", &c.product_id).map_err(invalid)?;
    common::check_text("name", &c.name).map_err(invalid)?;
    common::check_price("unit_price", c.unit_price).map_err(invalid)?;
    common::check_currency("currency", &c.currency).map_err(invalid)?;
    if !(0..=MAX_STOCK).contains(&c.initial_stock) {
        return Err(invalid(FieldError::new(
            "stock",
            format!("must be between 0 and {MAX_STOCK}"),
        )));
    }
    if state.product(&c.product_id).is_some() {
        return Err(InventoryRejection::ProductExists(c.product_id.clone()));
    }
    Ok(vec![InventoryEvent::ProductRegistered(c.clone())])
}

fn restock(state: &InventoryState, c: &Restock) -> Result<Vec<InventoryEvent>, InventoryRejection> {
    if c.quantity <= 0 {
        return Err(invalid(FieldError::new("quantity", "must be positive")));
    }
    let product = existing(state, &c.product_id)?;
    if c.quantity > MAX_STOCK || product.available + product.reserved + c.quantity > MAX_STOCK {
        return Err(InventoryRejection::QuantityTooLarge(c.product_id.clone()));
    }
    Ok(vec![InventoryEvent::Restocked(c.clone())])
}

fn adjust(state: &InventoryState, c: &Adjust) -> Result<Vec<InventoryEvent>, InventoryRejection> {
    common::check_text("reason", &c.reason).map_err(invalid)?;
    if c.delta == 0 || !(-MAX_STOCK..=MAX_STOCK).contains(&c.delta) {
        return Err(invalid(FieldError::new(
            "delta",
            format!("must be non-zero and between -{MAX_STOCK} and {MAX_STOCK}"),
        )));
    }
    let product = existing(state, &c.product_id)?;
    if product.available + c.delta < 0 {
        return Err(InventoryRejection::WouldGoNegative(WouldGoNegative {
            product_id: c.product_id.clone(),
            available: product.available,
            delta: c.delta,
        }));
    }
    if product.available + product.reserved + c.delta > MAX_STOCK {
        return Err(InventoryRejection::QuantityTooLarge(c.product_id.clone()));
    }
    Ok(vec![InventoryEvent::Adjusted(c.clone())])
}

fn change_price(state: &InventoryState, c: &ChangePrice) -> Result<Vec<InventoryEvent>, InventoryRejection> {
    common::check_price("unit_price", c.unit_price).map_err(invalid)?;
    let product = existing(state, &c.product_id)?;
    if product.unit_price == c.unit_price {
        return Ok(Vec::new());
    }
    Ok(vec![InventoryEvent::PriceChanged(PriceChanged {
        product_id: c.product_id.clone(),
        old_price: product.unit_price,
        new_price: c.unit_price,
        currency: product.currency.clone(),
    })])
}

fn reserve(state: &InventoryState, c: &OrderLines) -> Result<Vec<InventoryEvent>, InventoryRejection> {
    common::check_id("order_id", &c.order_id).map_err(invalid)?;
    if c.lines.is_empty() {
        return Err(InventoryRejection::NoLines);
    }
    let mut seen = BTreeSet::new();
    for (index, line) in c.lines.iter().enumerate() {
        if line.quantity <= 0 {
            return Err(InventoryRejection::NonPositiveQuantity(LineError::new(
                index,
                &line.product_id,
            )));
        }
        if !seen.insert(line.product_id.as_str()) {
            return Err(InventoryRejection::DuplicateLine(LineError::new(
                index,
                &line.product_id,
            )));
        }
    }
    if state.reservation.as_ref().is_some_and(|r| r.order_id == c.order_id) {
        return Ok(Vec::new());
    }
    // A product the inventory does not know has nothing available: the order
    // side's catalogue copy can lag, and the saga must still end.
    let shortages: Vec<Shortage> = c
        .lines
        .iter()
        .filter_map(|line| {
            let available = state.product(&line.product_id).map_or(0, |p| p.available);
            (available < line.quantity).then(|| Shortage {
                product_id: line.product_id.clone(),
                requested: line.quantity,
                available,
            })
        })
        .collect();
    if shortages.is_empty() {
        Ok(vec![InventoryEvent::StockReserved(c.clone())])
    } else {
        Ok(vec![InventoryEvent::InsufficientStock(InsufficientStock {
            order_id: c.order_id.clone(),
            shortages,
        })])
    }
}

fn deduct(state: &InventoryState, order_id: &str) -> Result<Vec<InventoryEvent>, InventoryRejection> {
    match state.reservation.as_ref().filter(|r| r.order_id == order_id) {
        None => Err(InventoryRejection::ReservationNotFound(order_id.to_owned())),
        Some(r) => match r.status {
            ReservationStatus::Reserved => Ok(vec![InventoryEvent::StockDeducted(OrderLines {
                order_id: order_id.to_owned(),
                lines: r.lines.clone(),
            })]),
            ReservationStatus::Deducted => Ok(Vec::new()),
            closed => Err(InventoryRejection::ReservationClosed(closed)),
        },
    }
}

fn release(state: &InventoryState, c: &Release) -> Vec<InventoryEvent> {
    match state.reservation.as_ref().filter(|r| r.order_id == c.order_id) {
        None => vec![InventoryEvent::ReservationVoided(c.order_id.clone())],
        Some(r) if r.status == ReservationStatus::Reserved => {
            vec![InventoryEvent::StockRestored(StockRestored {
                order_id: c.order_id.clone(),
                lines: r.lines.clone(),
                reason: c.reason,
            })]
        }
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn run(state: InventoryState, command: InventoryCommand) -> Result<(InventoryState, Decision), InventoryRejection> {
        let decision = decide(&state, &command, T0)?;
        let state = decision.events.iter().fold(state, evolve);
        Ok((state, decision))
    }

    fn with_products(stock: &[(&str, i64)]) -> InventoryState {
        stock.iter().fold(InventoryState::default(), |state, (id, qty)| {
            run(
                state,
                InventoryCommand::RegisterProduct(RegisterProduct {
                    product_id: (*id).into(),
                    name: format!("Product {id}"),
                    unit_price: 1000,
                    currency: "KRW".into(),
                    initial_stock: *qty,
                }),
            )
            .expect("register")
            .0
        })
    }

    fn lines(order_id: &str, lines: &[(&str, i64)]) -> OrderLines {
        OrderLines {
            order_id: order_id.into(),
            lines: lines
                .iter()
                .map(|(p, q)| StockLine {
                    product_id: (*p).into(),
                    quantity: *q,
                })
                .collect(),
        }
    }

    fn stock(state: &InventoryState, id: &str) -> (i64, i64) {
        let p = state.product(id).expect("product");
        (p.available, p.reserved)
    }

    #[test]
    fn registering_records_the_initial_stock_movement() {
        let state = with_products(&[]);
        let (state, decision) = run(
            state,
            InventoryCommand::RegisterProduct(RegisterProduct {
                product_id: "SKU-1".into(),
                name: "Mug".into(),
                unit_price: 1200,
                currency: "KRW".into(),
                initial_stock: 100,
            }),
        )
        .expect("register");
        assert_eq!(stock(&state, "SKU-1"), (100, 0));
        assert_eq!(decision.movements[0].kind, MovementKind::Initial);
        assert_eq!(decision.movements[0].quantity, 100);
        assert!(matches!(
            decide(
                &state,
                &InventoryCommand::RegisterProduct(RegisterProduct {
                    product_id: "SKU-1".into(),
                    name: "Mug".into(),
                    unit_price: 1,
                    currency: "KRW".into(),
                    initial_stock: 1,
                }),
                T0
            ),
            Err(InventoryRejection::ProductExists(_))
        ));
    }

    #[test]
    fn a_reservation_is_all_or_nothing_with_the_shortage_per_line() {
        let state = with_products(&[("A", 5), ("B", 1)]);
        let (after, decision) = run(
            state.clone(),
            InventoryCommand::Reserve(lines("o-1", &[("A", 2), ("B", 3)])),
        )
        .expect("decided");
        assert_eq!(
            decision.events,
            vec![InventoryEvent::InsufficientStock(InsufficientStock {
                order_id: "o-1".into(),
                shortages: vec![Shortage {
                    product_id: "B".into(),
                    requested: 3,
                    available: 1
                }],
            })]
        );
        assert!(decision.movements.is_empty());
        assert_eq!(stock(&after, "A"), (5, 0), "nothing reserved when one line is short");

        let (after, decision) =
            run(state, InventoryCommand::Reserve(lines("o-2", &[("A", 2), ("B", 1)]))).expect("decided");
        assert_eq!(stock(&after, "A"), (3, 2));
        assert_eq!(stock(&after, "B"), (0, 1));
        assert_eq!(decision.movements.len(), 2);
        assert!(
            decision
                .movements
                .iter()
                .all(|m| m.kind == MovementKind::Reserve && m.order_id.as_deref() == Some("o-2"))
        );
    }

    #[test]
    fn unknown_products_are_a_shortage_not_an_error() {
        let state = with_products(&[("A", 5)]);
        let decision = decide(&state, &InventoryCommand::Reserve(lines("o-1", &[("GHOST", 1)])), T0).expect("decided");
        assert!(matches!(&decision.events[0], InventoryEvent::InsufficientStock(e) if e.shortages[0].available == 0));
    }

    #[test]
    fn a_second_reserve_for_the_same_order_changes_nothing() {
        let state = with_products(&[("A", 5)]);
        let (state, _) = run(state, InventoryCommand::Reserve(lines("o-1", &[("A", 2)]))).expect("reserve");
        let decision = decide(&state, &InventoryCommand::Reserve(lines("o-1", &[("A", 2)])), T0).expect("decided");
        assert_eq!(decision, Decision::default());
    }

    #[test]
    fn deduct_moves_reserved_units_out_and_is_idempotent() {
        let state = with_products(&[("A", 5)]);
        let (state, _) = run(state, InventoryCommand::Reserve(lines("o-1", &[("A", 2)]))).expect("reserve");
        let (state, decision) = run(state, InventoryCommand::Deduct("o-1".into())).expect("deduct");
        assert_eq!(stock(&state, "A"), (3, 0));
        assert_eq!(state.product("A").map(|p| p.deducted), Some(2));
        assert_eq!(decision.movements[0].kind, MovementKind::Deduct);
        assert_eq!(
            decide(&state, &InventoryCommand::Deduct("o-1".into()), T0),
            Ok(Decision::default())
        );
        // Deducting stock never reserved is refused: completion follows a reservation.
        assert!(matches!(
            decide(&with_products(&[("A", 1)]), &InventoryCommand::Deduct("o-9".into()), T0),
            Err(InventoryRejection::ReservationNotFound(_))
        ));
    }

    #[test]
    fn release_restores_reserved_stock_by_reason() {
        let state = with_products(&[("A", 5)]);
        let (reserved, _) = run(state, InventoryCommand::Reserve(lines("o-1", &[("A", 2)]))).expect("reserve");
        for (reason, kind) in [
            (ReleaseReason::Cancelled, MovementKind::Restore),
            (ReleaseReason::Expired, MovementKind::Expire),
        ] {
            let (after, decision) = run(
                reserved.clone(),
                InventoryCommand::Release(Release {
                    order_id: "o-1".into(),
                    reason,
                }),
            )
            .expect("release");
            assert_eq!(stock(&after, "A"), (5, 0));
            assert_eq!(decision.movements[0].kind, kind);
            let again = decide(
                &after,
                &InventoryCommand::Release(Release {
                    order_id: "o-1".into(),
                    reason,
                }),
                T0,
            );
            assert_eq!(again, Ok(Decision::default()));
        }
    }

    #[test]
    fn a_release_before_its_reserve_leaves_nothing_reserved() {
        let state = with_products(&[("A", 5)]);
        let (state, decision) = run(
            state,
            InventoryCommand::Release(Release {
                order_id: "o-1".into(),
                reason: ReleaseReason::Cancelled,
            }),
        )
        .expect("release");
        assert_eq!(decision.events, vec![InventoryEvent::ReservationVoided("o-1".into())]);
        let (state, decision) = run(state, InventoryCommand::Reserve(lines("o-1", &[("A", 2)]))).expect("late reserve");
        assert!(decision.events.is_empty());
        assert_eq!(stock(&state, "A"), (5, 0));
    }

    #[test]
    fn adjustments_never_make_stock_negative_and_need_a_reason() {
        let state = with_products(&[("A", 3)]);
        let adjust = |delta, reason: &str| {
            InventoryCommand::Adjust(Adjust {
                product_id: "A".into(),
                delta,
                reason: reason.into(),
            })
        };
        assert!(matches!(
            decide(&state, &adjust(-4, "broken"), T0),
            Err(InventoryRejection::WouldGoNegative(WouldGoNegative {
                available: 3,
                delta: -4,
                ..
            }))
        ));
        assert!(matches!(
            decide(&state, &adjust(-1, ""), T0),
            Err(InventoryRejection::InvalidField(_))
        ));
        assert!(matches!(
            decide(&state, &adjust(0, "noop"), T0),
            Err(InventoryRejection::InvalidField(_))
        ));
        let (state, decision) = run(state, adjust(-3, "water damage")).expect("adjust");
        assert_eq!(stock(&state, "A"), (0, 0));
        assert_eq!(decision.movements[0].reason.as_deref(), Some("water damage"));
        assert!(state.product("A").is_some_and(ProductStock::is_conserved));
    }

    #[test]
    fn restock_and_price_changes_validate_their_input() {
        let state = with_products(&[("A", 3)]);
        assert!(matches!(
            decide(
                &state,
                &InventoryCommand::Restock(Restock {
                    product_id: "A".into(),
                    quantity: 0
                }),
                T0
            ),
            Err(InventoryRejection::InvalidField(_))
        ));
        assert!(matches!(
            decide(
                &state,
                &InventoryCommand::Restock(Restock {
                    product_id: "A".into(),
                    quantity: MAX_STOCK
                }),
                T0
            ),
            Err(InventoryRejection::QuantityTooLarge(_))
        ));
        assert!(matches!(
            decide(
                &state,
                &InventoryCommand::Restock(Restock {
                    product_id: "Z".into(),
                    quantity: 1
                }),
                T0
            ),
            Err(InventoryRejection::UnknownProduct(_))
        ));
        let (state, decision) = run(
            state,
            InventoryCommand::ChangePrice(ChangePrice {
                product_id: "A".into(),
                unit_price: 1500,
            }),
        )
        .expect("price");
        assert!(decision.movements.is_empty(), "a price is not a stock movement");
        assert_eq!(state.product("A").map(|p| p.unit_price), Some(1500));
        assert_eq!(
            decide(
                &state,
                &InventoryCommand::ChangePrice(ChangePrice {
                    product_id: "A".into(),
                    unit_price: 1500
                }),
                T0
            ),
            Ok(Decision::default())
        );
    }

    #[test]
    fn every_event_bumps_the_version_of_the_products_it_touches() {
        let state = with_products(&[("A", 3), ("B", 3)]);
        let (state, _) = run(state, InventoryCommand::Reserve(lines("o-1", &[("A", 1)]))).expect("reserve");
        assert_eq!(state.product("A").map(|p| p.version), Some(2));
        assert_eq!(state.product("B").map(|p| p.version), Some(1));
    }
}

#[cfg(all(test, feature = "serde"))]
mod names {
    use super::{MovementKind, ReservationStatus};

    fn serde_name<T: serde::Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    #[test]
    fn stored_names_are_the_serde_names_and_parse_back() {
        for kind in MovementKind::ALL {
            assert_eq!(kind.as_str(), serde_name(kind));
            assert_eq!(MovementKind::parse(kind.as_str()), Some(kind));
        }
        for status in ReservationStatus::ALL {
            assert_eq!(status.as_str(), serde_name(status));
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(MovementKind::parse("Reserve"), None, "names are exact");
    }
}
