//! The Order aggregate: placement, the forward-only status machine, cancellation.

use std::collections::BTreeSet;
use std::fmt;

use crate::common::{self, FieldError, LineError, MAX_AMOUNT};
use crate::env::Env;

/// Most lines one order may hold.
pub const MAX_LINES: usize = 100;
/// Most units of one product one line may ask for.
pub const MAX_LINE_QUANTITY: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Completed,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [Self::Pending, Self::Confirmed, Self::Completed, Self::Cancelled];

    /// The status named `text` (`PENDING`, ..., in any case).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The statuses this one may move to; the only moves the rules ever make.
    pub fn successors(self) -> &'static [OrderStatus] {
        match self {
            Self::Pending => &[Self::Confirmed, Self::Cancelled],
            Self::Confirmed => &[Self::Completed, Self::Cancelled],
            Self::Completed | Self::Cancelled => &[],
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CancelReason {
    Customer,
    Admin,
    InsufficientStock,
    ReservationExpired,
    /// The payment provider declined, or did not answer in time.
    PaymentFailed,
    Other(String),
}

impl CancelReason {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::InsufficientStock => "insufficient_stock",
            Self::ReservationExpired => "reservation_expired",
            // Spelled as DESIGN.md §10 fixes it for the API; the reasons
            // before it keep their lower-case spelling for their clients.
            Self::PaymentFailed => "PAYMENT_FAILED",
            Self::Other(reason) => reason,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    pub currency: String,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

impl Order {
    /// Derived, never stored apart from the lines it comes from. Placement
    /// bounds it by [`MAX_AMOUNT`], so it cannot overflow.
    pub fn total(&self) -> i64 {
        total_of(&self.lines).unwrap_or(i64::MAX)
    }
}

fn total_of(lines: &[OrderLine]) -> Option<i64> {
    lines.iter().try_fold(0i64, |sum, line| {
        line.unit_price
            .checked_mul(i64::from(line.quantity))
            .and_then(|amount| sum.checked_add(amount))
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LineRequest {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CataloguePrice {
    pub product_id: String,
    pub unit_price: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlaceOrder {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<LineRequest>,
    pub catalogue: Vec<CataloguePrice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum OrderCommand {
    Place(PlaceOrder),
    Confirm,
    Complete,
    Cancel(CancelReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OrderCreated {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    pub currency: String,
    pub total: i64,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OrderTransition {
    pub order_id: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: CancelReason,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum OrderEvent {
    Created(OrderCreated),
    Confirmed(OrderTransition),
    Cancelled(OrderCancelled),
    Completed(OrderTransition),
}

impl OrderEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created(_) => "OrderCreated",
            Self::Confirmed(_) => "OrderConfirmed",
            Self::Cancelled(_) => "OrderCancelled",
            Self::Completed(_) => "OrderCompleted",
        }
    }

    pub fn order_id(&self) -> &str {
        match self {
            Self::Created(e) => &e.order_id,
            Self::Confirmed(e) | Self::Completed(e) => &e.order_id,
            Self::Cancelled(e) => &e.order_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StatusChange {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum OrderRejection {
    InvalidField(FieldError),
    NoLines,
    TooManyLines(u32),
    NonPositiveQuantity(LineError),
    QuantityTooLarge(LineError),
    DuplicateLine(LineError),
    UnknownProduct(LineError),
    MixedCurrencies(LineError),
    TotalTooLarge,
    AlreadyExists,
    NotFound,
    InvalidTransition(StatusChange),
    NotCancellable(OrderStatus),
    NotExpiredYet(i64),
}

impl fmt::Display for OrderRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidField(e) => write!(f, "{e}"),
            Self::NoLines => f.write_str("an order needs at least one item"),
            Self::TooManyLines(max) => write!(f, "an order may hold at most {max} items"),
            Self::NonPositiveQuantity(l) => write!(f, "{l}: quantity must be positive"),
            Self::QuantityTooLarge(l) => {
                write!(f, "{l}: quantity must be at most {MAX_LINE_QUANTITY}")
            }
            Self::DuplicateLine(l) => write!(f, "{l}: product appears more than once"),
            Self::UnknownProduct(l) => write!(f, "{l}: no such product in the catalogue"),
            Self::MixedCurrencies(l) => {
                write!(f, "{l}: priced in another currency than the first item")
            }
            Self::TotalTooLarge => write!(f, "the order total exceeds {MAX_AMOUNT} minor units"),
            Self::AlreadyExists => f.write_str("an order with this id already exists"),
            Self::NotFound => f.write_str("no such order"),
            Self::InvalidTransition(c) => write!(f, "an order cannot go from {} to {}", c.from, c.to),
            Self::NotCancellable(s) => write!(f, "an order that is {s} can no longer be cancelled"),
            Self::NotExpiredYet(ms) => write!(f, "the reservation expires in {ms} ms"),
        }
    }
}

impl std::error::Error for OrderRejection {}

/// Decides what happens when `command` meets the order in `state`.
///
/// Repeating a command whose effect already holds (confirming a confirmed
/// order, cancelling a cancelled one) decides nothing and is not an error, so
/// redelivered messages are harmless.
pub fn decide(
    state: Option<&Order>,
    command: &OrderCommand,
    env: &impl Env,
) -> Result<Vec<OrderEvent>, OrderRejection> {
    match (state, command) {
        (None, OrderCommand::Place(place)) => place_order(place, env).map(|e| vec![e]),
        (Some(_), OrderCommand::Place(_)) => Err(OrderRejection::AlreadyExists),
        (None, _) => Err(OrderRejection::NotFound),
        (Some(order), OrderCommand::Confirm) => transition(order, OrderStatus::Confirmed, env, OrderEvent::Confirmed),
        (Some(order), OrderCommand::Complete) => transition(order, OrderStatus::Completed, env, OrderEvent::Completed),
        (Some(order), OrderCommand::Cancel(reason)) => cancel(order, reason, env),
    }
}

/// Folds one event into the order. Events that do not apply leave it as it is.
pub fn evolve(state: Option<Order>, event: &OrderEvent) -> Option<Order> {
    match (state, event) {
        (None, OrderEvent::Created(created)) => Some(Order {
            id: created.order_id.clone(),
            customer_id: created.customer_id.clone(),
            lines: created.lines.clone(),
            currency: created.currency.clone(),
            status: OrderStatus::Pending,
            cancel_reason: None,
            created_at: created.at,
            confirmed_at: None,
        }),
        (Some(mut order), OrderEvent::Confirmed(e)) => {
            order.status = OrderStatus::Confirmed;
            order.confirmed_at = Some(e.at);
            Some(order)
        }
        (Some(mut order), OrderEvent::Completed(_)) => {
            order.status = OrderStatus::Completed;
            Some(order)
        }
        (Some(mut order), OrderEvent::Cancelled(e)) => {
            order.status = OrderStatus::Cancelled;
            order.cancel_reason = Some(e.reason.clone());
            Some(order)
        }
        (state, _) => state,
    }
}

fn place_order(place: &PlaceOrder, env: &impl Env) -> Result<OrderEvent, OrderRejection> {
    common::check_id("order_id", &place.order_id).map_err(OrderRejection::InvalidField)?;
    common::check_id("customer_id", &place.customer_id).map_err(OrderRejection::InvalidField)?;
    if place.lines.is_empty() {
        return Err(OrderRejection::NoLines);
    }
    if place.lines.len() > MAX_LINES {
        return Err(OrderRejection::TooManyLines(MAX_LINES as u32));
    }

    let mut seen = BTreeSet::new();
    let mut lines = Vec::with_capacity(place.lines.len());
    let mut currency: Option<&str> = None;
    for (index, request) in place.lines.iter().enumerate() {
        let line_error = || LineError::new(index, &request.product_id);
        common::check_id(&format!("items[{index}].product_id"), &request.product_id)
            .map_err(OrderRejection::InvalidField)?;
        if request.quantity <= 0 {
            return Err(OrderRejection::NonPositiveQuantity(line_error()));
        }
        if request.quantity > MAX_LINE_QUANTITY {
            return Err(OrderRejection::QuantityTooLarge(line_error()));
        }
        if !seen.insert(request.product_id.as_str()) {
            return Err(OrderRejection::DuplicateLine(line_error()));
        }
        let price = place
            .catalogue
            .iter()
            .find(|p| p.product_id == request.product_id)
            .ok_or_else(|| OrderRejection::UnknownProduct(line_error()))?;
        match currency {
            None => currency = Some(&price.currency),
            Some(first) if first != price.currency => {
                return Err(OrderRejection::MixedCurrencies(line_error()));
            }
            Some(_) => {}
        }
        lines.push(OrderLine {
            product_id: request.product_id.clone(),
            quantity: request.quantity as u32,
            unit_price: price.unit_price,
        });
    }

    let total = total_of(&lines)
        .filter(|total| *total <= MAX_AMOUNT)
        .ok_or(OrderRejection::TotalTooLarge)?;
    Ok(OrderEvent::Created(OrderCreated {
        order_id: place.order_id.clone(),
        customer_id: place.customer_id.clone(),
        lines,
        currency: currency.unwrap_or_default().to_owned(),
        total,
        at: env.now_ms(),
    }))
}

fn transition(
    order: &Order,
    to: OrderStatus,
    env: &impl Env,
    event: fn(OrderTransition) -> OrderEvent,
) -> Result<Vec<OrderEvent>, OrderRejection> {
    if order.status == to {
        return Ok(Vec::new());
    }
    if !order.status.successors().contains(&to) {
        return Err(OrderRejection::InvalidTransition(StatusChange {
            from: order.status,
            to,
        }));
    }
    Ok(vec![event(OrderTransition {
        order_id: order.id.clone(),
        at: env.now_ms(),
    })])
}

fn cancel(order: &Order, reason: &CancelReason, env: &impl Env) -> Result<Vec<OrderEvent>, OrderRejection> {
    if let CancelReason::Other(text) = reason {
        common::check_text("reason", text).map_err(OrderRejection::InvalidField)?;
    }
    if order.status == OrderStatus::Cancelled {
        return Ok(Vec::new());
    }
    match reason {
        // Only the system cancels a confirmed order, and only once its
        // reservation has run out.
        CancelReason::ReservationExpired => {
            if order.status != OrderStatus::Confirmed {
                return Err(OrderRejection::InvalidTransition(StatusChange {
                    from: order.status,
                    to: OrderStatus::Cancelled,
                }));
            }
            let confirmed_at = order.confirmed_at.unwrap_or(order.created_at);
            let expires_at = confirmed_at.saturating_add(env.reservation_ttl_ms());
            let now = env.now_ms();
            if now < expires_at {
                return Err(OrderRejection::NotExpiredYet(expires_at - now));
            }
        }
        // Payment starts once the stock is reserved: only a confirmed
        // order has one to fail, and it fails at once, whatever the time.
        CancelReason::PaymentFailed if order.status != OrderStatus::Confirmed => {
            return Err(OrderRejection::InvalidTransition(StatusChange {
                from: order.status,
                to: OrderStatus::Cancelled,
            }));
        }
        CancelReason::PaymentFailed => {}
        _ if order.status != OrderStatus::Pending => {
            return Err(OrderRejection::NotCancellable(order.status));
        }
        _ => {}
    }
    Ok(vec![OrderEvent::Cancelled(OrderCancelled {
        order_id: order.id.clone(),
        reason: reason.clone(),
        at: env.now_ms(),
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::FixedEnv;

    const T0: i64 = 1_700_000_000_000;

    fn place(lines: &[(&str, i64)]) -> OrderCommand {
        OrderCommand::Place(PlaceOrder {
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines: lines
                .iter()
                .map(|(p, q)| LineRequest {
                    product_id: (*p).into(),
                    quantity: *q,
                })
                .collect(),
            catalogue: vec![
                CataloguePrice {
                    product_id: "SKU-1".into(),
                    unit_price: 1200,
                    currency: "KRW".into(),
                },
                CataloguePrice {
                    product_id: "SKU-2".into(),
                    unit_price: 500,
                    currency: "KRW".into(),
                },
                CataloguePrice {
                    product_id: "USD-1".into(),
                    unit_price: 9,
                    currency: "USD".into(),
                },
            ],
        })
    }

    fn placed() -> Order {
        let events = decide(None, &place(&[("SKU-1", 2), ("SKU-2", 1)]), &FixedEnv::at(T0)).expect("valid order");
        events.iter().fold(None, evolve).expect("created")
    }

    fn apply(order: &Order, command: OrderCommand, now: i64) -> Result<Order, OrderRejection> {
        let events = decide(Some(order), &command, &FixedEnv::at(now))?;
        Ok(events.iter().fold(Some(order.clone()), evolve).expect("still exists"))
    }

    #[test]
    fn placing_freezes_catalogue_prices_and_derives_the_total() {
        let order = placed();
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.lines[0].unit_price, 1200);
        assert_eq!(order.total(), 2 * 1200 + 500);
        assert_eq!(order.currency, "KRW");
        assert_eq!(order.created_at, T0);
    }

    #[test]
    fn an_order_needs_lines_with_positive_bounded_quantities() {
        let env = FixedEnv::at(T0);
        assert_eq!(decide(None, &place(&[]), &env), Err(OrderRejection::NoLines));
        assert_eq!(
            decide(None, &place(&[("SKU-1", 1), ("SKU-2", 0)]), &env),
            Err(OrderRejection::NonPositiveQuantity(LineError::new(1, "SKU-2")))
        );
        assert!(matches!(
            decide(None, &place(&[("SKU-1", -3)]), &env),
            Err(OrderRejection::NonPositiveQuantity(_))
        ));
        assert!(matches!(
            decide(None, &place(&[("SKU-1", MAX_LINE_QUANTITY + 1)]), &env),
            Err(OrderRejection::QuantityTooLarge(_))
        ));
    }

    #[test]
    fn lines_must_be_known_distinct_and_in_one_currency() {
        let env = FixedEnv::at(T0);
        assert!(matches!(
            decide(None, &place(&[("NOPE", 1)]), &env),
            Err(OrderRejection::UnknownProduct(l)) if l.product_id == "NOPE"
        ));
        assert!(matches!(
            decide(None, &place(&[("SKU-1", 1), ("SKU-1", 2)]), &env),
            Err(OrderRejection::DuplicateLine(l)) if l.index == 1
        ));
        assert!(matches!(
            decide(None, &place(&[("SKU-1", 1), ("USD-1", 2)]), &env),
            Err(OrderRejection::MixedCurrencies(_))
        ));
    }

    #[test]
    fn too_many_lines_are_refused() {
        let ids: Vec<String> = (0..=MAX_LINES).map(|i| format!("P{i}")).collect();
        let lines: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        assert_eq!(
            decide(None, &place(&lines), &FixedEnv::at(T0)),
            Err(OrderRejection::TooManyLines(MAX_LINES as u32))
        );
    }

    #[test]
    fn a_total_beyond_the_money_bound_is_refused() {
        let command = OrderCommand::Place(PlaceOrder {
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines: vec![LineRequest {
                product_id: "GOLD".into(),
                quantity: MAX_LINE_QUANTITY,
            }],
            catalogue: vec![CataloguePrice {
                product_id: "GOLD".into(),
                unit_price: MAX_AMOUNT,
                currency: "KRW".into(),
            }],
        });
        assert_eq!(
            decide(None, &command, &FixedEnv::at(T0)),
            Err(OrderRejection::TotalTooLarge)
        );
    }

    #[test]
    fn status_moves_forward_only() {
        let order = placed();
        let confirmed = apply(&order, OrderCommand::Confirm, T0 + 1).expect("confirm");
        assert_eq!(confirmed.status, OrderStatus::Confirmed);
        assert_eq!(confirmed.confirmed_at, Some(T0 + 1));
        let completed = apply(&confirmed, OrderCommand::Complete, T0 + 2).expect("complete");
        assert_eq!(completed.status, OrderStatus::Completed);
        assert_eq!(
            apply(&completed, OrderCommand::Confirm, T0 + 3),
            Err(OrderRejection::InvalidTransition(StatusChange {
                from: OrderStatus::Completed,
                to: OrderStatus::Confirmed
            }))
        );
        assert!(matches!(
            apply(&order, OrderCommand::Complete, T0 + 3),
            Err(OrderRejection::InvalidTransition(_))
        ));
    }

    #[test]
    fn repeating_a_command_whose_effect_holds_decides_nothing() {
        let confirmed = apply(&placed(), OrderCommand::Confirm, T0 + 1).expect("confirm");
        let env = FixedEnv::at(T0 + 5);
        assert_eq!(decide(Some(&confirmed), &OrderCommand::Confirm, &env), Ok(vec![]));
        let cancelled = apply(&placed(), OrderCommand::Cancel(CancelReason::Customer), T0).expect("cancel");
        assert_eq!(
            decide(Some(&cancelled), &OrderCommand::Cancel(CancelReason::Admin), &env),
            Ok(vec![])
        );
    }

    #[test]
    fn customers_cancel_only_before_confirmation() {
        let cancelled =
            apply(&placed(), OrderCommand::Cancel(CancelReason::Customer), T0 + 1).expect("pending orders cancel");
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(cancelled.cancel_reason, Some(CancelReason::Customer));

        let confirmed = apply(&placed(), OrderCommand::Confirm, T0 + 1).expect("confirm");
        assert_eq!(
            apply(&confirmed, OrderCommand::Cancel(CancelReason::Customer), T0 + 2),
            Err(OrderRejection::NotCancellable(OrderStatus::Confirmed))
        );
        // A confirmed order never goes back to pending, nor is a cancelled one revived.
        assert!(apply(&cancelled, OrderCommand::Confirm, T0 + 3).is_err());
    }

    #[test]
    fn the_system_expires_a_confirmed_order_only_after_its_ttl() {
        let confirmed = apply(&placed(), OrderCommand::Confirm, T0).expect("confirm");
        let ttl = crate::DEFAULT_RESERVATION_TTL_MS;
        assert_eq!(
            apply(
                &confirmed,
                OrderCommand::Cancel(CancelReason::ReservationExpired),
                T0 + ttl - 10
            ),
            Err(OrderRejection::NotExpiredYet(10))
        );
        let expired = apply(
            &confirmed,
            OrderCommand::Cancel(CancelReason::ReservationExpired),
            T0 + ttl,
        )
        .expect("expired");
        assert_eq!(expired.cancel_reason, Some(CancelReason::ReservationExpired));
        // Pending orders have no reservation to expire.
        assert!(matches!(
            apply(
                &placed(),
                OrderCommand::Cancel(CancelReason::ReservationExpired),
                T0 + ttl
            ),
            Err(OrderRejection::InvalidTransition(_))
        ));
    }

    #[test]
    fn every_cancellation_carries_a_reason() {
        assert!(matches!(
            apply(&placed(), OrderCommand::Cancel(CancelReason::Other("  ".into())), T0),
            Err(OrderRejection::InvalidField(e)) if e.field == "reason"
        ));
        let cancelled =
            apply(&placed(), OrderCommand::Cancel(CancelReason::Other("fraud".into())), T0).expect("cancel");
        assert_eq!(
            cancelled.cancel_reason.as_ref().map(CancelReason::as_str),
            Some("fraud")
        );
    }

    #[test]
    fn commands_for_missing_orders_and_second_placements_are_refused() {
        let env = FixedEnv::at(T0);
        assert_eq!(
            decide(None, &OrderCommand::Confirm, &env),
            Err(OrderRejection::NotFound)
        );
        assert_eq!(
            decide(Some(&placed()), &place(&[("SKU-1", 1)]), &env),
            Err(OrderRejection::AlreadyExists)
        );
    }
}
