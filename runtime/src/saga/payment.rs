//! Payment: the step after a confirmation, when the deployment has a
//! payment provider.
//!
//! The payment reader gets every `OrderConfirmed` and asks the provider for
//! an intent (idempotency key = order id). A provider outage fails the
//! message transiently, so the broker hands it back with a growing delay:
//! the retries ride on the published event, and none is lost. The provider
//! answers through a signed webhook notice: `succeeded` completes the order
//! (the inventory then deducts its stock), `failed` cancels it with
//! `PAYMENT_FAILED` (the inventory releases it). An order nobody answers for
//! is cancelled the same way by the expiry once the payment timeout passes.
//! The order's state makes every notice count once: a duplicate, or a
//! `failed` after a `succeeded`, changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shop_rules::order::{CancelReason, Order, OrderCommand, OrderEvent, OrderRejection, OrderStatus};
use shop_streams::{DomainEvent, Envelope, Trace};

use super::HandleError;
use super::orders::{Asked, Commanded, OrderError, OrderService};
use super::refusals::{REFUSAL_WINDOW, Refusals};
use crate::metrics::Metrics;
use crate::ports::payment::{SignatureError, verify};
use crate::ports::{Clock, KeyValue, OrderStore, PaymentError, PaymentIntent, PaymentProvider};

/// How far a notice's signature time may be from now (DESIGN.md §10).
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The shared secret notices are signed with.
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl WebhookSecret {
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(Arc::from(secret.as_ref()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// A provider's notice, as its body carries it. Fields a provider adds are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notice {
    pub order_id: String,
    pub status: NoticeStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeStatus {
    Succeeded,
    Failed,
}

/// What a notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Completed or cancelled the order.
    Applied,
    /// The order was so already: a duplicate notice.
    Duplicate,
    /// The order had moved on the other way (a success after the timeout
    /// cancelled it, a failure after it completed): nothing changes, and an
    /// operator must look (a refund, say).
    Late,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
        }
    }
}

/// Why a notice was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("this notice was delivered before (same signature)")]
    Replayed,
    #[error("the notice is not {{\"order_id\", \"status\": \"succeeded\" | \"failed\"}}: {0}")]
    Malformed(String),
    #[error("no order {0}")]
    UnknownOrder(String),
    /// The replay memory or the order store did not answer: the provider
    /// should deliver it again later.
    #[error("{0}")]
    Unavailable(String),
}

impl WebhookError {
    /// The metric label of a refusal.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Signature(SignatureError::Malformed) => "malformed_signature",
            Self::Signature(SignatureError::Mismatch) => "bad_signature",
            Self::Signature(SignatureError::OutOfWindow(..)) => "stale",
            Self::Replayed => "replayed",
            Self::Malformed(_) => "malformed",
            Self::UnknownOrder(_) => "unknown_order",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// Remembers signatures already accepted, in the shared key-value store,
/// so a notice captured and sent again is refused on any instance.
#[derive(Clone)]
pub struct ReplayGuard {
    kv: Arc<dyn KeyValue>,
    prefix: String,
}

impl ReplayGuard {
    pub fn new(kv: Arc<dyn KeyValue>, prefix: impl Into<String>) -> Self {
        Self {
            kv,
            prefix: prefix.into(),
        }
    }

    /// True the first time `v1` is seen. A signature is remembered for
    /// twice the window: past it, the window refuses the notice anyway.
    async fn first_sighting(&self, v1: &str) -> Result<bool, WebhookError> {
        let (kv, key) = (Arc::clone(&self.kv), format!("{}payment-webhook:{v1}", self.prefix));
        // The port is synchronous (rules call it from inside WebAssembly).
        let seen = tokio::task::spawn_blocking(move || kv.increment(&key, 1, Some(SIGNATURE_TOLERANCE * 2)))
            .await
            .map_err(|e| WebhookError::Unavailable(e.to_string()))?
            .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        Ok(seen == 1)
    }
}

pub struct PaymentService<S, P> {
    /// Notices arriving together have their order changes committed
    /// together, when this is [`OrderService::shared`].
    orders: Arc<OrderService<S>>,
    provider: P,
    secret: WebhookSecret,
    replays: ReplayGuard,
    /// Refused notices, audited a window at a time.
    refusals: Arc<Refusals>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl<S: OrderStore, P: PaymentProvider> PaymentService<S, P> {
    pub fn new(
        orders: Arc<OrderService<S>>,
        provider: P,
        secret: WebhookSecret,
        replays: ReplayGuard,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            orders,
            provider,
            secret,
            replays,
            refusals: Arc::default(),
            clock,
            metrics: Metrics::default(),
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The payment reader's step: an intent for a confirmed order. An order
    /// that moved on meanwhile (cancelled, completed) asks for none; an
    /// intent the provider refuses outright fails the payment at once.
    pub async fn request(&self, envelope: &Envelope) -> Result<(), HandleError> {
        let mut outcome = self.request_many(&[envelope], 1).await;
        outcome
            .pop()
            .unwrap_or_else(|| Err(HandleError::Transient("no outcome".into())))
    }

    /// Confirmations of different orders, as [`Self::request`] would take
    /// them, their orders read in one query.
    pub async fn request_many(&self, envelopes: &[&Envelope], concurrency: usize) -> Vec<Result<(), HandleError>> {
        let wanted: Vec<Result<Option<String>, HandleError>> = envelopes.iter().map(|e| confirmed_order(e)).collect();
        let ids: Vec<String> = wanted
            .iter()
            .filter_map(|w| w.as_ref().ok().cloned().flatten())
            .collect();
        let mut orders: HashMap<String, Order> = match self.orders.get_many(&ids).await {
            Ok(orders) => orders.into_iter().map(|o| (o.id.clone(), o)).collect(),
            Err(error) => {
                let error = error.to_string();
                return envelopes
                    .iter()
                    .map(|_| Err(HandleError::Transient(error.clone())))
                    .collect();
            }
        };
        let work = envelopes
            .iter()
            .zip(wanted)
            .map(|(envelope, wanted)| {
                let order = wanted
                    .as_ref()
                    .ok()
                    .cloned()
                    .flatten()
                    .and_then(|id| orders.remove(&id));
                async move {
                    match wanted? {
                        Some(order_id) => self.request_for(envelope, &order_id, order).await,
                        None => Ok(()),
                    }
                }
            })
            .collect();
        super::at_most(concurrency, work).await
    }

    async fn request_for(&self, envelope: &Envelope, order_id: &str, order: Option<Order>) -> Result<(), HandleError> {
        let order = order.ok_or_else(|| HandleError::Transient(format!("order {order_id} not found yet")))?;
        if order.status != OrderStatus::Confirmed {
            return Ok(());
        }
        let intent = PaymentIntent {
            amount: order.total(),
            order_id: order.id,
            customer_id: order.customer_id,
            currency: order.currency,
        };
        match self.provider.create_intent(&intent).await {
            Ok(intent_id) => {
                self.metrics.payment_intent("created");
                tracing::info!(target: "shop::payment", order_id = intent.order_id, intent_id, "payment intent created");
                Ok(())
            }
            Err(PaymentError::Unavailable(error)) => {
                self.metrics.payment_intent("retried");
                Err(HandleError::Transient(error.to_string()))
            }
            Err(PaymentError::Refused(why)) => {
                self.metrics.payment_intent("refused");
                tracing::warn!(target: "shop::payment", order_id = intent.order_id, %why, "the provider refused the intent; the payment failed");
                let trace = Trace::follows(envelope);
                match self
                    .orders
                    .cancel(&intent.order_id, CancelReason::PaymentFailed, trace, None)
                    .await
                {
                    Ok(_) | Err(OrderError::Rejected(_)) => Ok(()),
                    Err(other) => Err(HandleError::Transient(other.to_string())),
                }
            }
        }
    }

    /// A provider's webhook call: `signature` is the `Shop-Signature` header.
    /// Checks the signature, its age and that it was not seen before, then
    /// settles the order. Counted by outcome; refusals audited.
    pub async fn accept(&self, signature: &str, body: &[u8], trace: Trace) -> Result<Settled, WebhookError> {
        let outcome = self.accept_counted(signature, body, trace).await;
        match &outcome {
            Ok(settled) => self.metrics.payment_webhook(settled.as_str()),
            Err(refused) => {
                self.metrics.payment_webhook(refused.as_str());
                tracing::warn!(target: "shop::payment", reason = refused.as_str(), error = %refused, "payment notice refused");
                self.audit_refusal(refused, trace);
            }
        }
        outcome
    }

    /// Sums a refusal into the open window, and opening one, has it
    /// audited when the window closes. A notice we could not take (our
    /// outage, not the caller's doing) is no refusal.
    fn audit_refusal(&self, refused: &WebhookError, trace: Trace) {
        if matches!(refused, WebhookError::Unavailable(_)) {
            return;
        }
        let request_id = trace.correlation_id.to_string();
        if !self.refusals.count(refused.as_str(), &request_id, self.clock.now_ms()) {
            return;
        }
        let (orders, refusals, clock) = (
            Arc::clone(&self.orders),
            Arc::clone(&self.refusals),
            Arc::clone(&self.clock),
        );
        tokio::spawn(async move {
            tokio::time::sleep(REFUSAL_WINDOW).await;
            let Some(record) = refusals.close(clock.now_ms()) else {
                return;
            };
            if let Err(error) = orders.store().append(std::slice::from_ref(&record)).await {
                tracing::error!(target: "shop::payment", %error, detail = record.detail, "refused payment notices not audited");
            }
        });
    }

    async fn accept_counted(&self, signature: &str, body: &[u8], trace: Trace) -> Result<Settled, WebhookError> {
        let now = self.clock.now_ms() / 1000;
        let tolerance = i64::try_from(SIGNATURE_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
        let signed = verify(self.secret.as_bytes(), signature, body, now, tolerance)?;
        if !self.replays.first_sighting(&signed.v1).await? {
            return Err(WebhookError::Replayed);
        }
        let notice: Notice = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        self.settle(&notice, trace).await
    }

    /// Completes or cancels the order a notice is about, once. Notices
    /// arriving together are decided and committed together.
    pub async fn settle(&self, notice: &Notice, trace: Trace) -> Result<Settled, WebhookError> {
        let command = match notice.status {
            NoticeStatus::Succeeded => OrderCommand::Complete,
            NoticeStatus::Failed => OrderCommand::Cancel(CancelReason::PaymentFailed),
        };
        let asked = Asked {
            order_id: notice.order_id.clone(),
            command,
            trace,
            by: None,
            owner: None,
        };
        match self.orders.command_asked(asked).await {
            Ok(Commanded::Changed(_)) => Ok(Settled::Applied),
            Ok(Commanded::Unchanged(_)) => Ok(Settled::Duplicate),
            Err(OrderError::Rejected(OrderRejection::InvalidTransition(_) | OrderRejection::NotCancellable(_))) => {
                tracing::warn!(target: "shop::payment", order_id = notice.order_id, status = ?notice.status, "payment notice for an order that moved on; nothing changes");
                Ok(Settled::Late)
            }
            Err(OrderError::NotFound(id)) => Err(WebhookError::UnknownOrder(id)),
            Err(other) => Err(WebhookError::Unavailable(other.to_string())),
        }
    }
}

impl<S: OrderStore, P: PaymentProvider> super::Handler for PaymentService<S, P> {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandleError> {
        self.request(envelope).await
    }

    async fn handle_many(&self, envelopes: &[&Envelope], concurrency: usize) -> Vec<Result<(), HandleError>> {
        self.request_many(envelopes, concurrency).await
    }
}

/// The order a confirmation is about; `None` for any other event (the
/// reader's filter lets only confirmations through).
fn confirmed_order(envelope: &Envelope) -> Result<Option<String>, HandleError> {
    match envelope.event() {
        Ok(DomainEvent::Order(OrderEvent::Confirmed(confirmed))) => Ok(Some(confirmed.order_id)),
        Ok(_) => Ok(None),
        Err(error) => Err(HandleError::Permanent(error.to_string())),
    }
}
