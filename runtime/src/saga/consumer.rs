//! Feeds a subscription's messages to a handler and settles each one:
//! handled -> ack; transient failure -> redelivery after a backoff;
//! permanent failure -> dead letter.
//!
//! A batch is handled in rounds: every aggregate's first message together,
//! then every second one, and so on, so the events of one order are handled
//! in the order they came and those of different orders side by side (they
//! meet, if at all, at a product, where the lock and the product's version
//! keep them apart). Each round goes to the handler at once, so a handler
//! can commit it in one go: what lets one consumer keep up with intake.
//! With `together` off, each aggregate's messages are handled one by one,
//! `concurrency` aggregates at a time.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use shop_streams::{Envelope, Reader, SCHEMA_VERSION};
use tokio::sync::watch;
use tracing::Instrument;

use super::{HandleError, Handler, at_most};
use crate::metrics::Metrics;
use crate::ports::{BusError, Delivery, Subscription};
use crate::trace_context;

#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    pub batch: usize,
    /// How long one pull waits for messages.
    pub wait: Duration,
    /// Redelivery delay after the first failure, doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How often the consumer's lag is read for the metrics.
    pub lag_every: Duration,
    /// Aggregates whose messages are handled at once.
    pub concurrency: usize,
    /// Whether a batch's messages go to [`Handler::handle_many`] together,
    /// in rounds (else each to [`Handler::handle`]).
    pub together: bool,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            batch: 500,
            wait: Duration::from_millis(500),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            lag_every: Duration::from_secs(5),
            concurrency: 32,
            together: true,
        }
    }
}

/// A context's consumer loop: what it reads, what it feeds, what it counts.
pub struct Consumer<S, H> {
    /// Who consumes, and so which events.
    pub reader: Reader,
    pub subscription: S,
    pub handler: Arc<H>,
    pub settings: ConsumerSettings,
    pub metrics: Metrics,
}

/// The settling of a batch's messages, still to be awaited.
pub type Settling = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Handles one batch; returns how many messages it took, and the settling
/// of those handled together, which the caller awaits while it pulls and
/// handles the next batch. An error is the bus's failure to deliver a
/// batch: what the handler makes of each message is settled with that
/// message, never returned here.
pub async fn consume_once<S: Subscription, H: Handler>(
    consumer: &mut Consumer<S, H>,
) -> Result<(usize, Settling), BusError> {
    let Consumer {
        reader,
        subscription,
        handler,
        settings,
        metrics,
    } = consumer;
    let batch = subscription.next_batch(settings.batch, settings.wait).await?;
    metrics.dead_lettered(*reader, subscription.take_dead_lettered());
    let taken = batch.len();
    // An event's twins in a later schema version are for subscribers who
    // read that version: the shop acts on version 1, written beside them.
    // And a bus that cannot filter by event type delivers the source's
    // events this reader has no business with (`Reader::ignores`). Anything
    // else unexpected is left to the handler, which dead-letters it.
    let (batch, unread): (Vec<_>, Vec<_>) = batch.into_iter().partition(|delivery| {
        let envelope = delivery.envelope();
        let ignored = envelope.context == reader.source() && reader.ignores().contains(&envelope.event_type.as_str());
        envelope.schema_version == SCHEMA_VERSION && !ignored
    });
    let skipped = futures::future::join_all(unread.into_iter().map(Delivery::ack)).await;
    if let Some(Err(error)) = skipped.into_iter().find(Result::is_err) {
        tracing::warn!(target: "shop::consumer", %error, "a message left unread not settled");
    }
    let mut sequences: Vec<Vec<S::Delivery>> = Vec::new();
    let mut by_aggregate: HashMap<String, usize> = HashMap::new();
    for delivery in batch {
        let aggregate = delivery.envelope().aggregate_id.clone();
        let next = sequences.len();
        match by_aggregate.entry(aggregate) {
            Entry::Occupied(at) => sequences[*at.get()].push(delivery),
            Entry::Vacant(slot) => {
                slot.insert(next);
                sequences.push(vec![delivery]);
            }
        }
    }
    let (reader, settings, handler, metrics) = (*reader, &*settings, &**handler, &*metrics);
    if !settings.together {
        in_sequence(sequences, reader, settings, handler, metrics).await;
        return Ok((taken, Box::pin(std::future::ready(()))));
    }
    // Every aggregate's first message goes to the handler together with
    // the others' firsts, which it may commit at once; then the seconds,
    // and so on. An order created and cancelled within one batch is then
    // reserved with the other new orders and released with the other
    // cancels, not in a transaction of its own for each.
    let mut settlings = Vec::new();
    for round in rounds(sequences) {
        settlings.push(together(round, reader, settings, handler, metrics).await);
    }
    Ok((taken, Box::pin(futures::future::join_all(settlings).map(drop))))
}

/// Each sequence's first message, then each one's second, and so on.
fn rounds<D>(sequences: Vec<Vec<D>>) -> Vec<Vec<D>> {
    let mut rounds: Vec<Vec<D>> = Vec::new();
    for sequence in sequences {
        for (at, delivery) in sequence.into_iter().enumerate() {
            match rounds.get_mut(at) {
                Some(round) => round.push(delivery),
                None => rounds.push(vec![delivery]),
            }
        }
    }
    rounds
}

/// Messages of different aggregates, handed to the handler at once;
/// answers their settling.
async fn together<D: Delivery, H: Handler>(
    deliveries: Vec<D>,
    reader: Reader,
    settings: &ConsumerSettings,
    handler: &H,
    metrics: &Metrics,
) -> Settling {
    if deliveries.is_empty() {
        return Box::pin(std::future::ready(()));
    }
    let span = tracing::info_span!("messages", count = deliveries.len());
    let started = Instant::now();
    // Each message is a hop of its own trace, even in a batch: a span per
    // message while spans are exported, open until the batch is handled.
    let spans: Vec<tracing::Span> = match trace_context::exporting() {
        true => deliveries.iter().map(message_span).collect(),
        false => Vec::new(),
    };
    let relinked: Vec<Option<Envelope>> = deliveries
        .iter()
        .zip(&spans)
        .map(|(delivery, span)| relinked(delivery.envelope(), span))
        .collect();
    let envelopes: Vec<&Envelope> = deliveries
        .iter()
        .enumerate()
        .map(|(i, delivery)| relinked.get(i).and_then(Option::as_ref).unwrap_or(delivery.envelope()))
        .collect();
    let mut outcomes = handler
        .handle_many(&envelopes, settings.concurrency)
        .instrument(span)
        .await;
    drop(spans);
    // A message the handler gave no answer for is handed back, not dropped.
    outcomes.resize_with(deliveries.len(), || {
        Err(HandleError::Transient("the handler gave no outcome".into()))
    });
    let elapsed = started.elapsed();
    for delivery in &deliveries {
        metrics.handled(reader, &delivery.envelope().event_type, elapsed);
        metrics.delivered(reader, delivery.envelope().occurred_at);
    }
    let (settings, metrics) = (*settings, metrics.clone());
    Box::pin(async move {
        let settling = deliveries
            .into_iter()
            .zip(outcomes)
            .map(|(delivery, outcome)| settle(delivery, outcome, reader, &settings, &metrics));
        futures::future::join_all(settling).await;
    })
}

/// Each aggregate's messages in order, `concurrency` aggregates at a time.
async fn in_sequence<D: Delivery, H: Handler>(
    sequences: Vec<Vec<D>>,
    reader: Reader,
    settings: &ConsumerSettings,
    handler: &H,
    metrics: &Metrics,
) {
    let work: Vec<_> = sequences
        .into_iter()
        .map(|sequence| one_sequence(sequence, reader, settings, handler, metrics))
        .collect();
    at_most(settings.concurrency, work).await;
}

async fn one_sequence<D: Delivery, H: Handler>(
    sequence: Vec<D>,
    reader: Reader,
    settings: &ConsumerSettings,
    handler: &H,
    metrics: &Metrics,
) {
    for delivery in sequence {
        let span = message_span(&delivery);
        // Instrumented, not entered: a guard held across `.await` would tag
        // other work with this message's span.
        handle_one(delivery, reader, settings, handler, metrics)
            .instrument(span)
            .await;
    }
}

/// The span of one message's handling: in the trace of the span that
/// published it.
fn message_span<D: Delivery>(delivery: &D) -> tracing::Span {
    let envelope = delivery.envelope();
    let span = tracing::info_span!(
        "message",
        otel.name = %format_args!("handle {}", envelope.event_type),
        event_type = envelope.event_type,
        event_id = %envelope.event_id,
        correlation_id = %envelope.correlation_id,
        attempt = delivery.attempt(),
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = envelope.traceparent {
        span.record("trace_id", parent.trace_id_hex());
    }
    trace_context::adopt(&span, envelope.traceparent);
    span
}

/// `envelope` naming `span` as the trace parent of what is decided from
/// it; `None` while spans are not exported (the envelope's own parent is
/// then passed on as it came).
fn relinked(envelope: &Envelope, span: &tracing::Span) -> Option<Envelope> {
    let traceparent = trace_context::of(span)?;
    Some(Envelope {
        traceparent: Some(traceparent),
        ..envelope.clone()
    })
}

async fn handle_one<D: Delivery, H: Handler>(
    delivery: D,
    reader: Reader,
    settings: &ConsumerSettings,
    handler: &H,
    metrics: &Metrics,
) {
    let started = Instant::now();
    // What the handler decides follows from this message's span.
    let relinked = relinked(delivery.envelope(), &tracing::Span::current());
    let outcome = handler.handle(relinked.as_ref().unwrap_or(delivery.envelope())).await;
    metrics.handled(reader, &delivery.envelope().event_type, started.elapsed());
    metrics.delivered(reader, delivery.envelope().occurred_at);
    settle(delivery, outcome, reader, settings, metrics).await;
}

/// Acks what was handled, hands back what may succeed later, dead-letters the rest.
async fn settle<D: Delivery>(
    delivery: D,
    outcome: Result<(), HandleError>,
    reader: Reader,
    settings: &ConsumerSettings,
    metrics: &Metrics,
) {
    if delivery.attempt() > 1 {
        metrics.redelivered(reader);
    }
    let settled = match outcome {
        Ok(()) => delivery.ack().await,
        Err(HandleError::Transient(reason)) => {
            let delay = backoff(settings, delivery.attempt());
            tracing::warn!(target: "shop::consumer", event_id = %delivery.envelope().event_id, %reason, ?delay, "not handled; will retry");
            delivery.retry(delay).await
        }
        Err(HandleError::Permanent(reason)) => {
            metrics.dead_lettered(reader, 1);
            delivery.dead_letter(&reason).await
        }
    };
    if let Err(error) = settled {
        // Unsettled means redelivered after the ack wait: late, not lost.
        tracing::warn!(target: "shop::consumer", %error, "message not settled");
    }
}

fn backoff(settings: &ConsumerSettings, attempt: u64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
    settings
        .backoff
        .saturating_mul(1 << doublings)
        .min(settings.max_backoff)
}

/// Consumes until `stop` turns true.
///
/// A batch's acknowledgements go out while the next batch is pulled and
/// handled: waiting for them first put a commit (on SQLite, a turn at the
/// one writer) between every two batches. Nothing is delivered twice for
/// it: until settled, a message stays leased to this consumer. At most one
/// batch is being settled at a time, and the last one before stopping.
pub async fn run_consumer<S: Subscription, H: Handler>(mut consumer: Consumer<S, H>, stop: watch::Receiver<bool>) {
    let mut lag_read: Option<Instant> = None;
    let settled = || -> Settling { Box::pin(std::future::ready(())) };
    let mut settling = settled();
    while !*stop.borrow() {
        let (consumed, ()) = futures::future::join(consume_once(&mut consumer), settling).await;
        settling = match consumed {
            Ok((_, next)) => next,
            Err(error) => {
                tracing::warn!(target: "shop::consumer", %error, "pull failed; retrying");
                tokio::time::sleep(consumer.settings.backoff).await;
                settled()
            }
        };
        if lag_read.is_none_or(|at| at.elapsed() >= consumer.settings.lag_every) {
            lag_read = Some(Instant::now());
            match consumer.subscription.lag().await {
                Ok(lag) => consumer.metrics.consumer_lag(consumer.reader, lag),
                Err(error) => tracing::debug!(target: "shop::consumer", %error, "lag not read"),
            }
        }
    }
    settling.await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use shop_rules::order::{OrderCreated, OrderEvent};
    use shop_streams::{DomainEvent, RuleRef, Trace};
    use uuid::Uuid;

    use super::*;

    /// An `OrderCreated` of `order_id`, as the order rules would stamp it.
    fn created(order_id: &str) -> Envelope {
        let event = OrderEvent::Created(OrderCreated {
            order_id: order_id.into(),
            customer_id: "alice".into(),
            lines: Vec::new(),
            currency: "KRW".into(),
            total: 0,
            at: 0,
        });
        let rule = RuleRef {
            name: "order".into(),
            version: 0,
            hash: "0".repeat(64),
        };
        Envelope::new(&DomainEvent::Order(event), 1, 0, rule, Trace::root(Uuid::now_v7()))
    }

    /// What happened to the messages: handler calls and settlements.
    #[derive(Default)]
    struct Log {
        /// The event ids of each `handle_many` call, in call order.
        together: Vec<Vec<Uuid>>,
        one_by_one: Vec<Uuid>,
        acked: Vec<Uuid>,
    }

    struct Recorder(Arc<Mutex<Log>>);

    impl Handler for Recorder {
        async fn handle(&self, envelope: &Envelope) -> Result<(), HandleError> {
            self.0.lock().expect("log").one_by_one.push(envelope.event_id);
            Ok(())
        }

        async fn handle_many(&self, envelopes: &[&Envelope], _: usize) -> Vec<Result<(), HandleError>> {
            let ids = envelopes.iter().map(|e| e.event_id).collect();
            self.0.lock().expect("log").together.push(ids);
            envelopes.iter().map(|_| Ok(())).collect()
        }
    }

    struct Scripted(Envelope, Arc<Mutex<Log>>);

    impl Delivery for Scripted {
        fn envelope(&self) -> &Envelope {
            &self.0
        }

        fn attempt(&self) -> u64 {
            1
        }

        async fn ack(self) -> Result<(), BusError> {
            self.1.lock().expect("log").acked.push(self.0.event_id);
            Ok(())
        }

        async fn retry(self, _: Duration) -> Result<(), BusError> {
            Err(BusError::Unavailable("not expected".into()))
        }

        async fn dead_letter(self, _: &str) -> Result<(), BusError> {
            Err(BusError::Unavailable("not expected".into()))
        }
    }

    /// One batch, then nothing.
    struct OneBatch(Vec<Scripted>);

    impl Subscription for OneBatch {
        type Delivery = Scripted;

        async fn next_batch(&mut self, _: usize, _: Duration) -> Result<Vec<Scripted>, BusError> {
            Ok(std::mem::take(&mut self.0))
        }

        async fn lag(&mut self) -> Result<u64, BusError> {
            Ok(0)
        }

        fn take_dead_lettered(&mut self) -> u64 {
            0
        }
    }

    #[tokio::test]
    async fn a_batch_goes_to_the_handler_in_rounds_each_order_in_its_own_order() {
        let log = Arc::new(Mutex::new(Log::default()));
        // Orders a, b and c with two, one and three messages, interleaved.
        let batch: Vec<Envelope> = ["a", "b", "a", "c", "c", "c"].map(created).into();
        let id = |at: usize| batch[at].event_id;
        let expected = vec![vec![id(0), id(1), id(3)], vec![id(2), id(4)], vec![id(5)]];
        let deliveries = batch.iter().map(|e| Scripted(e.clone(), Arc::clone(&log))).collect();
        let mut consumer = Consumer {
            reader: Reader::Inventory,
            subscription: OneBatch(deliveries),
            handler: Arc::new(Recorder(Arc::clone(&log))),
            settings: ConsumerSettings::default(),
            metrics: Metrics::default(),
        };
        let (taken, settling) = consume_once(&mut consumer).await.expect("consumed");
        settling.await;
        assert_eq!(taken, 6);
        let log = log.lock().expect("log");
        assert_eq!(
            log.together, expected,
            "every order's first, then every second, then the third"
        );
        assert_eq!(log.one_by_one, Vec::<Uuid>::new());
        let mut acked = log.acked.clone();
        acked.sort();
        let mut all: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
        all.sort();
        assert_eq!(acked, all, "each message acked once");
    }
}
