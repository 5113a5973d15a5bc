//! Event types that are also written in a later schema version, beside
//! version 1, on a subject version of their own (docs/events/README.md).
//!
//! Version 2 gives the reason of a cancellation one wire form everywhere:
//! version 1 of `OrderCancelled` writes `"customer"` but `{"other": "..."}`,
//! and `StockRestored` calls a lapsed reservation `expired` where the order
//! calls it `reservation_expired`. In version 2 a reason is always one code
//! of a closed set, written the same in every event, and free text has a
//! field of its own. The version 1 twin keeps being written, so subscribers
//! move at their pace; the shop's own consumers act on version 1.

use serde::{Deserialize, Serialize};
use shop_rules::inventory::{ReleaseReason, StockLine, StockRestored};
use shop_rules::order::{CancelReason, OrderCancelled};

/// Why an order was cancelled, as every version 2 event writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelCode {
    Customer,
    Admin,
    InsufficientStock,
    ReservationExpired,
    /// The payment provider declined, or did not answer in time.
    PaymentFailed,
    /// Any other reason: `note` says which.
    Other,
}

/// `OrderCancelled`, version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderCancelledV2 {
    pub order_id: String,
    pub reason: CancelCode,
    /// The words of an `other` reason; absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// Why reserved units went back to the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreCode {
    /// The order was cancelled before its reservation lapsed (its
    /// `OrderCancelled` names the reason).
    OrderCancelled,
    /// The reservation lapsed: the order was cancelled with the reason of
    /// the same name.
    ReservationExpired,
}

/// `StockRestored`, version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StockRestoredV2 {
    pub order_id: String,
    pub lines: Vec<StockLine>,
    pub reason: RestoreCode,
}

impl From<&OrderCancelled> for OrderCancelledV2 {
    fn from(event: &OrderCancelled) -> Self {
        let (reason, note) = match &event.reason {
            CancelReason::Customer => (CancelCode::Customer, None),
            CancelReason::Admin => (CancelCode::Admin, None),
            CancelReason::InsufficientStock => (CancelCode::InsufficientStock, None),
            CancelReason::ReservationExpired => (CancelCode::ReservationExpired, None),
            CancelReason::PaymentFailed => (CancelCode::PaymentFailed, None),
            CancelReason::Other(text) => (CancelCode::Other, Some(text.clone())),
        };
        Self {
            order_id: event.order_id.clone(),
            reason,
            note,
            at: event.at,
        }
    }
}

impl From<OrderCancelledV2> for OrderCancelled {
    fn from(event: OrderCancelledV2) -> Self {
        let reason = match event.reason {
            CancelCode::Customer => CancelReason::Customer,
            CancelCode::Admin => CancelReason::Admin,
            CancelCode::InsufficientStock => CancelReason::InsufficientStock,
            CancelCode::ReservationExpired => CancelReason::ReservationExpired,
            CancelCode::PaymentFailed => CancelReason::PaymentFailed,
            CancelCode::Other => CancelReason::Other(event.note.unwrap_or_default()),
        };
        Self {
            order_id: event.order_id,
            reason,
            at: event.at,
        }
    }
}

impl From<&StockRestored> for StockRestoredV2 {
    fn from(event: &StockRestored) -> Self {
        Self {
            order_id: event.order_id.clone(),
            lines: event.lines.clone(),
            reason: match event.reason {
                ReleaseReason::Cancelled => RestoreCode::OrderCancelled,
                ReleaseReason::Expired => RestoreCode::ReservationExpired,
            },
        }
    }
}

impl From<StockRestoredV2> for StockRestored {
    fn from(event: StockRestoredV2) -> Self {
        Self {
            order_id: event.order_id,
            lines: event.lines,
            reason: match event.reason {
                RestoreCode::OrderCancelled => ReleaseReason::Cancelled,
                RestoreCode::ReservationExpired => ReleaseReason::Expired,
            },
        }
    }
}
