//! What the shop counts and times, as Prometheus metrics.
//!
//! One [`Metrics`] per process, cloned into the services, the consumer loops,
//! the relays and the rules host (clones share their values). The `shop`
//! binary registers it and serves the registry at `/metrics`; a service that
//! was not handed one counts into an unregistered set that nobody reads.

use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shop_rules::order::{CancelReason, Order, OrderEvent};
use shop_streams::{Context, Reader};

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ContextLabel {
    order,
    inventory,
    payment,
}

impl From<Reader> for ContextLabel {
    fn from(reader: Reader) -> Self {
        match reader {
            Reader::Order => Self::order,
            Reader::Inventory => Self::inventory,
            Reader::Payment => Self::payment,
        }
    }
}

impl From<Context> for ContextLabel {
    fn from(context: Context) -> Self {
        match context {
            Context::Order => Self::order,
            Context::Inventory => Self::inventory,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContextLabels {
    pub context: ContextLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub name: String,
    /// The shadow version.
    pub candidate: String,
    /// `agree`, `disagree` or `fault`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    pub context: ContextLabel,
    pub event_type: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// From 100 µs to about 6.5 s: rule calls sit at the low end, lock waits and
/// handlers under load at the high end.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// From 1 ms to about 35 minutes: a saga step takes milliseconds when it
/// keeps up, and an expiry cancels after the payment timeout or the
/// reservation's TTL (15 and 30 minutes by default).
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 22))
}

/// From 1 ms to about 65 s: an event's way from its commit to its
/// handler is milliseconds when the saga keeps up, seconds behind a backlog.
fn delay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Debug, Clone)]
pub struct Metrics {
    orders_created: Counter,
    orders_confirmed: Counter,
    orders_completed: Counter,
    orders_cancelled: Family<ReasonLabels, Counter>,
    lock_wait: Histogram,
    rule_call: HistogramFamily<RuleLabels>,
    rule_shadow: Family<ShadowLabels, Counter>,
    handler: HistogramFamily<HandlerLabels>,
    message_delay: HistogramFamily<ContextLabels>,
    redeliveries: Family<ContextLabels, Counter>,
    dead_letters: Family<ContextLabels, Counter>,
    outbox_backlog: Family<ContextLabels, Gauge>,
    outbox_oldest_age: Family<ContextLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    consumer_lag: Family<ContextLabels, Gauge>,
    handled_together: Histogram,
    handled_one_by_one: Counter,
    saga_pending: Gauge,
    intake_shed: Counter,
    payment_intents: Family<OutcomeLabels, Counter>,
    payment_webhooks: Family<OutcomeLabels, Counter>,
    saga_steps: HistogramFamily<StepLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            orders_created: Counter::default(),
            orders_confirmed: Counter::default(),
            orders_completed: Counter::default(),
            orders_cancelled: Family::default(),
            lock_wait: latency_histogram(),
            rule_call: Family::new_with_constructor(latency_histogram),
            rule_shadow: Family::default(),
            handler: Family::new_with_constructor(latency_histogram),
            message_delay: Family::new_with_constructor(delay_histogram),
            redeliveries: Family::default(),
            dead_letters: Family::default(),
            outbox_backlog: Family::default(),
            outbox_oldest_age: Family::default(),
            consumer_lag: Family::default(),
            handled_together: Histogram::new(exponential_buckets(2.0, 2.0, 10)),
            handled_one_by_one: Counter::default(),
            saga_pending: Gauge::default(),
            intake_shed: Counter::default(),
            payment_intents: Family::default(),
            payment_webhooks: Family::default(),
            saga_steps: Family::new_with_constructor(step_histogram),
        }
    }
}

impl Metrics {
    /// Adds every metric to `registry` under the `shop_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        // Counted from zero, so every series exists (and rates are defined)
        // before the first redelivery or dead letter.
        for reader in [Reader::Order, Reader::Inventory] {
            self.redeliveries.get_or_create(&labels(reader)).inc_by(0);
            self.dead_letters.get_or_create(&labels(reader)).inc_by(0);
        }
        for outcome in ["created", "retried", "refused"] {
            self.payment_intents.get_or_create(&OutcomeLabels { outcome }).inc_by(0);
        }
        for outcome in ["applied", "duplicate", "late"] {
            self.payment_webhooks
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(0);
        }
        let shop = registry.sub_registry_with_prefix("shop");
        shop.register("orders_created", "Orders accepted", self.orders_created.clone());
        shop.register(
            "orders_confirmed",
            "Orders whose stock was reserved",
            self.orders_confirmed.clone(),
        );
        shop.register(
            "orders_completed",
            "Orders paid and deducted",
            self.orders_completed.clone(),
        );
        shop.register(
            "orders_cancelled",
            "Orders cancelled, by reason",
            self.orders_cancelled.clone(),
        );
        shop.register(
            "lock_wait_seconds",
            "Time spent acquiring the product locks",
            self.lock_wait.clone(),
        );
        shop.register(
            "rule_call_seconds",
            "Time of one call into a rule component, by component",
            self.rule_call.clone(),
        );
        shop.register(
            "rule_shadow",
            "Answers of rule versions in shadow compared with the active version's, by rule, candidate version and outcome",
            self.rule_shadow.clone(),
        );
        shop.register(
            "handler_seconds",
            "Time to handle one consumed event, by context and event type",
            self.handler.clone(),
        );
        shop.register(
            "message_delay_seconds",
            "Time from an event's commit to the end of its handling, by consuming context",
            self.message_delay.clone(),
        );
        shop.register(
            "redeliveries",
            "Messages delivered again after a failure or an expired ack wait",
            self.redeliveries.clone(),
        );
        shop.register(
            "dead_letters",
            "Messages given up on and kept as dead letters",
            self.dead_letters.clone(),
        );
        shop.register(
            "outbox_backlog",
            "Events committed but not yet published",
            self.outbox_backlog.clone(),
        );
        shop.register(
            "outbox_oldest_age_seconds",
            "How long the oldest event not yet published has waited (0: none waits)",
            self.outbox_oldest_age.clone(),
        );
        shop.register(
            "consumer_lag",
            "Messages waiting for the context's durable consumer",
            self.consumer_lag.clone(),
        );
        shop.register(
            "inventory_messages_per_commit",
            "Order events the inventory handled together in one transaction (reservations and the confirmations recorded with them)",
            self.handled_together.clone(),
        );
        shop.register(
            "saga_pending_orders",
            "Orders accepted and not yet confirmed or cancelled by the saga (sampled)",
            self.saga_pending.clone(),
        );
        shop.register(
            "intake_shed",
            "New orders refused with 503 because the saga's backlog was over its bound",
            self.intake_shed.clone(),
        );
        shop.register(
            "saga_step_seconds",
            "From an order's acceptance to its confirmation or cancellation, and from confirmation to completion, by the order's timestamps",
            self.saga_steps.clone(),
        );
        shop.register(
            "payment_intents",
            "Payment intents asked of the provider, by outcome (created, retried, refused)",
            self.payment_intents.clone(),
        );
        shop.register(
            "payment_webhooks",
            "Payment provider notices, by outcome (applied, duplicate, late, or why refused)",
            self.payment_webhooks.clone(),
        );
        shop.register(
            "inventory_messages_one_by_one",
            "Order events the inventory handled one by one after handling them together failed",
            self.handled_one_by_one.clone(),
        );
    }

    /// Counts the order lifecycle from events that were just committed, and
    /// times each step of the saga by the order's own clock: accepted ->
    /// confirmed (stock reserved), confirmed -> completed (paid), accepted
    /// -> cancelled. `order` is the order as the events left it.
    pub fn order_events(&self, order: &Order, events: &[OrderEvent]) {
        let step = |name: &'static str, from: i64, to: i64| {
            let took = to.saturating_sub(from).max(0) as f64 / 1000.0;
            self.saga_steps.get_or_create(&StepLabels { step: name }).observe(took);
        };
        for event in events {
            match event {
                OrderEvent::Created(_) => {
                    self.orders_created.inc();
                }
                OrderEvent::Confirmed(confirmed) => {
                    self.orders_confirmed.inc();
                    step("confirmed", order.created_at, confirmed.at);
                }
                OrderEvent::Completed(completed) => {
                    self.orders_completed.inc();
                    step(
                        "completed",
                        order.confirmed_at.unwrap_or(order.created_at),
                        completed.at,
                    );
                }
                OrderEvent::Cancelled(cancelled) => {
                    // An operator's free-text reason is one label, not one each.
                    let reason = match &cancelled.reason {
                        CancelReason::Other(_) => "other",
                        known => known.as_str(),
                    };
                    self.orders_cancelled
                        .get_or_create(&ReasonLabels {
                            reason: reason.to_owned(),
                        })
                        .inc();
                    step("cancelled", order.created_at, cancelled.at);
                }
            };
        }
    }

    pub fn lock_waited(&self, took: Duration) {
        self.lock_wait.observe(took.as_secs_f64());
    }

    /// Times one rule call; observed when the returned guard drops.
    pub fn rule_call(&self, rule: &str) -> Timer {
        Timer::new(
            self.rule_call
                .get_or_create(&RuleLabels { rule: rule.to_owned() })
                .clone(),
        )
    }

    /// A shadow version's answer compared: `agree`, `disagree` or `fault`.
    pub fn shadow_outcome(&self, name: &str, candidate: u32, outcome: &'static str) {
        self.rule_shadow
            .get_or_create(&ShadowLabels {
                name: name.to_owned(),
                candidate: candidate.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn handled(&self, reader: Reader, event_type: &str, took: Duration) {
        self.handler
            .get_or_create(&HandlerLabels {
                context: reader.into(),
                event_type: event_type.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// An event committed at `occurred_at` (ms since the epoch) finished
    /// its handling now. A clock behind the producer's counts as 0.
    pub fn delivered(&self, reader: Reader, occurred_at: i64) {
        use crate::ports::{Clock, SystemClock};
        let delay_ms = SystemClock.now_ms().saturating_sub(occurred_at).max(0);
        self.message_delay
            .get_or_create(&labels(reader))
            .observe(delay_ms as f64 / 1000.0);
    }

    pub fn inventory_handled_together(&self, messages: usize) {
        self.handled_together.observe(messages as f64);
    }

    pub fn inventory_handled_one_by_one(&self, messages: usize) {
        self.handled_one_by_one
            .inc_by(u64::try_from(messages).unwrap_or(u64::MAX));
    }

    pub fn redelivered(&self, reader: Reader) {
        self.redeliveries.get_or_create(&labels(reader)).inc();
    }

    pub fn dead_lettered(&self, reader: Reader, count: u64) {
        self.dead_letters.get_or_create(&labels(reader)).inc_by(count);
    }

    pub fn saga_pending(&self, pending: u64) {
        self.saga_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn intake_shed(&self) {
        self.intake_shed.inc();
    }

    /// An intent asked of the payment provider: `created`, `retried` or `refused`.
    pub fn payment_intent(&self, outcome: &'static str) {
        self.payment_intents.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// A webhook notice: applied, duplicate, late, or why it was refused.
    pub fn payment_webhook(&self, outcome: &'static str) {
        self.payment_webhooks.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn outbox_backlog(&self, context: Context, backlog: u64) {
        self.outbox_backlog
            .get_or_create(&labels(context))
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    /// How long the oldest event the relay has yet to publish has waited
    /// (zero when none waits).
    pub fn outbox_oldest_age(&self, context: Context, age: Duration) {
        self.outbox_oldest_age
            .get_or_create(&labels(context))
            .set(age.as_secs_f64());
    }

    pub fn consumer_lag(&self, reader: Reader, lag: u64) {
        self.consumer_lag
            .get_or_create(&labels(reader))
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}

fn labels(context: impl Into<ContextLabel>) -> ContextLabels {
    ContextLabels {
        context: context.into(),
    }
}

/// Observes the time since it was made when dropped.
#[must_use = "the timer observes when dropped"]
pub struct Timer {
    histogram: Histogram,
    started: Instant,
}

impl Timer {
    fn new(histogram: Histogram) -> Self {
        Self {
            histogram,
            started: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}
