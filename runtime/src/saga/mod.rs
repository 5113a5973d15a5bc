//! The use cases of both contexts and the saga between them.
//!
//! - [`orders::OrderService`]: intake, customer and payment commands, and the
//!   order side's reactions to inventory events (confirm, cancel, catalogue);
//! - [`inventory::InventoryService`]: product administration and the
//!   inventory side's reactions to order events (reserve, release, deduct);
//! - [`payment::PaymentService`]: intents for confirmed orders, and the
//!   provider's signed notices that complete or cancel them;
//! - [`relay`]: the outbox relay that publishes committed events;
//! - [`backpressure`]: intake that sheds load the saga cannot keep up with;
//! - [`prices`]: the prices intake read, reused for a bounded time;
//! - [`consumer`]: the loop that feeds a subscription's messages to a handler
//!   and settles each one;
//! - [`roles`]: the relays, consumers and expiry of each role, started and
//!   stopped together.
//!
//! Every decision comes from the rule components; services only load state,
//! ask the rules, and commit the outcome through the ports.

pub mod backpressure;
pub mod consumer;
pub mod inventory;
pub mod orders;
pub mod payment;
pub mod prices;
pub mod refusals;
pub mod relay;
pub mod roles;
mod turns;
pub mod use_cases;

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

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

    /// Handles messages of different aggregates, in any order; MUST answer
    /// one outcome per envelope, in their order, each as [`Self::handle`]
    /// would. A handler that can commit several at once overrides this; by
    /// default they are handled one by one, `concurrency` at a time.
    fn handle_many(
        &self,
        envelopes: &[&Envelope],
        concurrency: usize,
    ) -> impl Future<Output = Vec<Result<(), HandleError>>> + Send {
        one_by_one(self, envelopes, concurrency)
    }
}

/// Runs `round` now and then every `every` after the last one ended,
/// until `stop` turns true (a stop cuts the wait short).
pub(crate) async fn rounds_until_stopped<F, R>(every: Duration, mut stop: watch::Receiver<bool>, mut round: F)
where
    F: FnMut() -> R,
    R: Future<Output = ()>,
{
    while !*stop.borrow() {
        round().await;
        let _ = tokio::time::timeout(every, stop.changed()).await;
    }
}

/// Each envelope through [`Handler::handle`], `concurrency` at a time.
pub(crate) async fn one_by_one<H: Handler + ?Sized>(
    handler: &H,
    envelopes: &[&Envelope],
    concurrency: usize,
) -> Vec<Result<(), HandleError>> {
    let work: Vec<_> = envelopes.iter().map(|envelope| handler.handle(envelope)).collect();
    at_most(concurrency, work).await
}

/// Runs `work`, `limit` at a time (the next starts as soon as any ends),
/// and answers each one's output in the order given.
pub(crate) async fn at_most<F: Future>(limit: usize, work: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = work.iter().map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    for (at, future) in work.into_iter().enumerate() {
        if running.len() >= limit.max(1)
            && let Some((done, output)) = running.next().await
        {
            outputs[done] = Some(output);
        }
        running.push(async move { (at, future.await) });
    }
    while let Some((done, output)) = running.next().await {
        outputs[done] = Some(output);
    }
    // Every future ran to its end above, so every slot is filled.
    outputs.into_iter().flatten().collect()
}

/// The envelopes at `together` handled by `at_once`, which answers one
/// outcome for each of them (or fails as a whole, and then they are handled
/// one by one after all); the rest one by one meanwhile. One outcome per
/// envelope, in order.
pub(crate) async fn together_and_alone<H: Handler, E: std::fmt::Display>(
    handler: &H,
    envelopes: &[&Envelope],
    concurrency: usize,
    together: &[usize],
    at_once: impl Future<Output = Result<Vec<Result<(), HandleError>>, E>>,
) -> Vec<Result<(), HandleError>> {
    let mut outcomes: Vec<Option<Result<(), HandleError>>> = envelopes.iter().map(|_| None).collect();
    let mut is_together = vec![false; envelopes.len()];
    for &at in together {
        is_together[at] = true;
    }
    let others: Vec<usize> = (0..envelopes.len()).filter(|&at| !is_together[at]).collect();
    let alone: Vec<&Envelope> = others.iter().map(|&at| envelopes[at]).collect();
    let (outcome, alone) = futures::future::join(at_once, one_by_one(handler, &alone, concurrency)).await;
    for (at, outcome) in others.into_iter().zip(alone) {
        outcomes[at] = Some(outcome);
    }
    let each = match outcome {
        Ok(each) => each,
        Err(error) => {
            tracing::debug!(target: "shop::saga", %error, count = together.len(), "handling together failed; one by one");
            let each: Vec<&Envelope> = together.iter().map(|&at| envelopes[at]).collect();
            one_by_one(handler, &each, concurrency).await
        }
    };
    for (&at, outcome) in together.iter().zip(each) {
        outcomes[at] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err(HandleError::Transient("not handled".into()))))
        .collect()
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
        version: stamp.version,
        hash: stamp.hash.to_string(),
    }
}

pub(crate) fn next_version<T>(stored: Option<&Versioned<T>>) -> u64 {
    stored.map_or(1, |s| s.version + 1)
}
