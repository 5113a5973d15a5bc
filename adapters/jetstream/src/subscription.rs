//! Durable pull consumers, read together in batches of what has arrived.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, Context as JsContext};
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use shop_runtime::ports::{BusError, Delivery, Subscription};
use shop_streams::topology::dead_letter_header as header;
use shop_streams::trace_parent::{self, TraceParent};
use shop_streams::{ConsumerSpec, Envelope};

use crate::unavailable;

/// A reader's consumers (one, or one per event type it reads), whose
/// messages come in one batch.
pub struct JetStreamSubscription {
    js: JsContext,
    pulls: Vec<Pull>,
    dead_lettered: u64,
}

struct Pull {
    consumer: PullConsumer,
    /// The consumer's messages, pulled ahead in the background; opened on
    /// the first read.
    messages: Option<pull::Stream>,
    spec: Arc<ConsumerSpec>,
}

impl std::fmt::Debug for JetStreamSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let consumers: Vec<_> = self
            .pulls
            .iter()
            .map(|pull| (&pull.spec.durable, pull.messages.is_some()))
            .collect();
        f.debug_struct("JetStreamSubscription")
            .field("consumers", &consumers)
            .field("dead_lettered", &self.dead_lettered)
            .finish()
    }
}

/// How long a batch that has its first message waits for more.
const LINGER: Duration = Duration::from_millis(20);

/// How long one pull request of the background puller stands.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// The server's sign of life while nothing arrives: a pull that misses two
/// in a row is broken, and the next read opens another.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

impl JetStreamSubscription {
    /// Dead-letters a message that will never be handled. Should that fail,
    /// the rest of the batch still goes on: the message, unacknowledged,
    /// comes again after the ack wait and is set aside then (unless that was
    /// its last delivery: it then stays in the stream, counted in the
    /// consumer's info as delivered and unacknowledged).
    async fn set_aside(&mut self, spec: &ConsumerSpec, message: &Message, attempt: u64, reason: &str) {
        match dead_letter(&self.js, spec, message, attempt, reason).await {
            Ok(()) => self.dead_lettered += 1,
            Err(error) => {
                tracing::warn!(target: "shop::bus", consumer = %spec.durable, %error, "dead letter not written; the message comes again")
            }
        }
    }

    /// Opens the consumers of `specs` on `stream` (a reader's, all on its
    /// source's stream), creating those missing. A consumer made now starts
    /// where `replaced` (the whole-stream consumer that earlier releases
    /// read through instead) had acknowledged, when it exists: what it has
    /// acknowledged is handled, what it has not may come twice, which the
    /// handlers absorb. Else it starts at the beginning of the stream.
    pub(crate) async fn open(
        js: JsContext,
        stream: &str,
        specs: Vec<ConsumerSpec>,
        replaced: Option<ConsumerSpec>,
    ) -> Result<Self, BusError> {
        let stream = js
            .get_stream(stream)
            .await
            .map_err(|e| unavailable(format!("stream {stream}"), e))?;
        let deliver = match &replaced {
            Some(replaced) => match acknowledged_by(&stream, replaced).await? {
                Some(floor) => {
                    tracing::info!(target: "shop::bus", consumer = %replaced.durable, floor,
                        "an earlier release's consumer: consumers made now start after what it acknowledged; \
                         delete it once no earlier release runs");
                    DeliverPolicy::ByStartSequence {
                        start_sequence: floor + 1,
                    }
                }
                None => DeliverPolicy::All,
            },
            None => DeliverPolicy::All,
        };
        let mut pulls = Vec::with_capacity(specs.len());
        for spec in specs {
            let consumer = stream
                .get_or_create_consumer(&spec.durable, config(&spec, deliver))
                .await
                .map_err(|e| unavailable(format!("consumer {}", spec.durable), e))?;
            pulls.push(Pull {
                consumer,
                messages: None,
                spec: Arc::new(spec),
            });
        }
        Ok(Self {
            js,
            pulls,
            dead_lettered: 0,
        })
    }
}

/// The stream sequence up to which `consumer` has acknowledged everything,
/// or `None` when it does not exist.
async fn acknowledged_by(stream: &Stream, consumer: &ConsumerSpec) -> Result<Option<u64>, BusError> {
    match stream.consumer_info(&consumer.durable).await {
        Ok(info) => Ok(Some(info.ack_floor.stream_sequence)),
        Err(error) if error.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
        Err(error) => Err(unavailable(format!("consumer {}", consumer.durable), error)),
    }
}

fn config(spec: &ConsumerSpec, deliver_policy: DeliverPolicy) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter_subject.clone(),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        // One delivery beyond the limit, so the last one reaches us and is
        // dead-lettered with its reason instead of silently dropped.
        max_deliver: spec.max_deliver + 1,
        max_ack_pending: spec.max_ack_pending,
        ..Default::default()
    }
}

impl Subscription for JetStreamSubscription {
    type Delivery = JetStreamDelivery;

    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<JetStreamDelivery>, BusError> {
        for pull in &mut self.pulls {
            if pull.messages.is_none() {
                let opened = pull
                    .consumer
                    .stream()
                    .max_messages_per_batch(max)
                    .expires(PULL_EXPIRES)
                    .heartbeat(PULL_HEARTBEAT)
                    .messages()
                    .await
                    .map_err(|e| unavailable(format!("pull from {}", pull.spec.durable), e))?;
                pull.messages = Some(opened);
            }
        }
        // Waits up to `wait` for the first message from any of the
        // consumers, then up to `LINGER` for more: under load a batch fills
        // at once, and a quiet stream costs a message no more than the linger.
        let mut arrived: Vec<(usize, Message)> = Vec::with_capacity(max);
        // A broken or ended pull ends this batch (what was read is still
        // handled) and the next read pulls anew. Messages the client had
        // buffered come again after the ack wait.
        let mut broken: Option<(usize, Option<String>)> = None;
        {
            // Each consumer's messages, marked with where they came from and
            // followed by a mark of their end.
            let mut merged = futures::stream::select_all(self.pulls.iter_mut().enumerate().filter_map(|(at, pull)| {
                let messages = pull.messages.as_mut()?;
                let end = futures::stream::once(futures::future::ready((at, None)));
                Some(messages.map(move |next| (at, Some(next))).chain(end))
            }));
            let mut next = match tokio::time::timeout(wait, merged.next()).await {
                Err(_) => return Ok(Vec::new()),
                Ok(first) => first,
            };
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            loop {
                match next {
                    Some((at, Some(Ok(message)))) => arrived.push((at, message)),
                    Some((at, Some(Err(error)))) => {
                        broken = Some((at, Some(error.to_string())));
                        break;
                    }
                    Some((at, None)) => {
                        broken = Some((at, None));
                        break;
                    }
                    None => break,
                }
                if arrived.len() >= max {
                    break;
                }
                next = tokio::select! {
                    next = merged.next() => next,
                    () = &mut linger => break,
                };
            }
        }
        if let Some((at, error)) = broken {
            let pull = &mut self.pulls[at];
            if let Some(error) = error {
                tracing::warn!(target: "shop::bus", consumer = %pull.spec.durable, %error, "pull interrupted");
            }
            pull.messages = None;
        }
        let mut batch = Vec::with_capacity(arrived.len());
        for (at, message) in arrived {
            let spec = Arc::clone(&self.pulls[at].spec);
            let attempt = message
                .info()
                .map_or(1, |info| u64::try_from(info.delivered).unwrap_or(1));
            let envelope = match Envelope::from_bytes(&message.payload) {
                Ok(envelope) => with_header_trace(envelope, &message),
                Err(error) => {
                    self.set_aside(&spec, &message, attempt, &error.to_string()).await;
                    continue;
                }
            };
            if attempt > u64::try_from(spec.max_deliver).unwrap_or(u64::MAX) {
                let reason = format!("not handled after {} deliveries", spec.max_deliver);
                self.set_aside(&spec, &message, attempt, &reason).await;
                continue;
            }
            batch.push(JetStreamDelivery {
                js: self.js.clone(),
                spec,
                message,
                envelope,
                attempt,
            });
        }
        Ok(batch)
    }

    async fn lag(&mut self) -> Result<u64, BusError> {
        let mut pending = 0;
        for pull in &mut self.pulls {
            let info = pull
                .consumer
                .info()
                .await
                .map_err(|e| unavailable(format!("consumer {}", pull.spec.durable), e))?;
            pending += info.num_pending;
        }
        Ok(pending)
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead_lettered)
    }
}

/// The message's `traceparent` header, when it holds one, is the trace
/// parent: a publisher outside the shop may set only the header.
fn with_header_trace(mut envelope: Envelope, message: &Message) -> Envelope {
    let header = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(trace_parent::HEADER))
        .and_then(|value| value.as_str().parse::<TraceParent>().ok());
    envelope.traceparent = header.or(envelope.traceparent);
    envelope
}

#[derive(Debug)]
pub struct JetStreamDelivery {
    js: JsContext,
    spec: Arc<ConsumerSpec>,
    message: Message,
    envelope: Envelope,
    attempt: u64,
}

impl Delivery for JetStreamDelivery {
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    fn attempt(&self) -> u64 {
        self.attempt
    }

    async fn ack(self) -> Result<(), BusError> {
        // Sent without waiting for the server's reply: a reply per message
        // would cost a round trip each, and an ack lost on the way only
        // causes a redelivery after the ack wait, which the handlers,
        // idempotent by the state they change, absorb.
        self.message.ack().await.map_err(|e| unavailable("ack".into(), e))
    }

    async fn retry(self, delay: Duration) -> Result<(), BusError> {
        self.message
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| unavailable("nak".into(), e))
    }

    async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        dead_letter(&self.js, &self.spec, &self.message, self.attempt, reason).await
    }
}

/// Keeps `message` in the dead-letter stream with why, then terminates it on
/// its consumer. Stored first: a crash in between redelivers the message and
/// dead-letters it again, never loses it.
async fn dead_letter(
    js: &JsContext,
    spec: &ConsumerSpec,
    message: &Message,
    attempt: u64,
    reason: &str,
) -> Result<(), BusError> {
    tracing::warn!(target: "shop::bus", consumer = %spec.durable, subject = %message.subject, attempt, reason, "dead letter");
    let mut headers = HeaderMap::new();
    headers.insert(header::REASON, reason);
    headers.insert(header::SUBJECT, message.subject.as_str());
    headers.insert(header::CONSUMER, spec.durable.as_str());
    headers.insert(header::DELIVERIES, attempt.to_string().as_str());
    js.publish_with_headers(spec.dead_letter_subject.clone(), headers, message.payload.clone())
        .await
        .map_err(|e| unavailable("dead letter".into(), e))?
        .await
        .map_err(|e| unavailable("dead letter ack".into(), e))?;
    message
        .ack_with(AckKind::Term)
        .await
        .map_err(|e| unavailable("terminate".into(), e))
}
