//! The use cases of both contexts and the saga between them.
//!
//! - [`orders::OrderService`]: intake, customer and payment commands, and the
//!   order side's reactions to inventory events (confirm, cancel, catalogue);
//! - [`inventory::InventoryService`]: product administration and the
//!   inventory side's reactions to order events (reserve, release, deduct);
//! - [`relay`]: the outbox relay that publishes committed events;
//! - [`consumer`]: the loop that feeds a subscription's messages to a handler
//!   and settles each one;
//! - [`roles`]: the relays, consumers and expiry of each role, started and
//!   stopped together.
//!
//! Every decision comes from the rule components; services only load state,
//! ask the rules, and commit the outcome through the ports.

pub mod consumer;
pub mod inventory;
pub mod orders;
pub mod relay;
pub mod roles;
mod turns;

use std::future::Future;

use shop_streams::{Envelope, RuleRef};

use crate::ports::{StoreError, Versioned};
use crate::rules::{RuleFault, RuleStamp};

/// How often a write that lost a version race is decided again before the
/// message is handed back to the broker for a later attempt.
pub const CONFLICT_RETRIES: usize = 8;

/// Why handling a message failed, and so how to settle it.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth another delivery: a store, lock or rule host hiccup, or a
    /// conflict that kept losing.
    #[error("{0}")]
    Transient(String),
    /// Never handleable (an unknown event type, a payload that breaks the
    /// schema): dead-letter it.
    #[error("{0}")]
    Permanent(String),
}

/// What a consumer feeds each message to.
pub trait Handler: Send + Sync + 'static {
    /// MUST be idempotent: a message may arrive more than once.
    fn handle(&self, envelope: &Envelope) -> impl Future<Output = Result<(), HandleError>> + Send;
}

impl From<StoreError> for HandleError {
    fn from(error: StoreError) -> Self {
        Self::Transient(error.to_string())
    }
}

impl From<RuleFault> for HandleError {
    fn from(error: RuleFault) -> Self {
        Self::Transient(error.to_string())
    }
}

pub(crate) fn rule_ref(stamp: &RuleStamp) -> RuleRef {
    RuleRef {
        name: stamp.name.to_string(),
        hash: stamp.hash.to_string(),
    }
}

pub(crate) fn next_version<T>(stored: Option<&Versioned<T>>) -> u64 {
    stored.map_or(1, |s| s.version + 1)
}

/// A write whose message was handled before is a success: that is the point of the inbox.
pub(crate) fn settle(outcome: Result<(), StoreError>) -> Result<(), HandleError> {
    match outcome {
        Ok(()) | Err(StoreError::AlreadyHandled(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
