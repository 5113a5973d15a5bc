//! The event bus on NATS JetStream.
//!
//! Streams and consumers come from `shop-streams`' [`Topology`] and are
//! created when missing, on connect or (connecting lazily) on first use. Publishes are pipelined and awaited as a
//! batch, each with `Nats-Msg-Id` = event id. Subscriptions pull batches from
//! a durable consumer shared by all instances of a role; what cannot be read
//! or was delivered too often goes to the dead-letter stream with its reason,
//! where operators list and replay it. Instances also announce where they
//! serve on the same connection, for gateways to find them.

#![forbid(unsafe_code)]

mod announce;
mod dead_letters;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, context::Context as JsContext, stream};
use shop_runtime::ports::{BusError, DeadLetter, EventBus};
use shop_streams::{Context, Envelope, StreamSpec, Topology};
use tokio::sync::OnceCell;

pub use announce::Announcer;
pub use subscription::{JetStreamDelivery, JetStreamSubscription};

/// Attempts of one publish whose acknowledgement did not arrive; each retry
/// reuses the event id, so the broker stores the event once.
const PUBLISH_ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct JetStreamBus {
    js: JsContext,
    topology: Topology,
    /// Set once the streams of `topology` are known to exist (or are not
    /// this connection's business): until then, every use makes sure of them.
    streams: Arc<OnceCell<()>>,
}

impl JetStreamBus {
    /// Connects and makes sure the streams of `topology` exist: fails when
    /// the server does not answer.
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, BusError> {
        let bus = Self::open(url, topology, false).await?;
        bus.streams().await?;
        Ok(bus)
    }

    /// Connects in the background and keeps trying, so a process starts
    /// while NATS is away; only a malformed URL fails here. The streams are
    /// made sure of on first use: until NATS answers, publishes and
    /// subscriptions fail with [`BusError::Unavailable`] and are retried by
    /// their callers.
    pub async fn connect_lazily(url: &str, topology: Topology) -> Result<Self, BusError> {
        Self::open(url, topology, true).await
    }

    /// Connects (in the background, as [`Self::connect_lazily`]) without
    /// creating anything: for a gateway, which only hears announcements and
    /// has no business making the contexts' streams.
    pub async fn connect_without_streams(url: &str, topology: Topology) -> Result<Self, BusError> {
        let bus = Self::open(url, topology, true).await?;
        let _ = bus.streams.set(());
        Ok(bus)
    }

    async fn open(url: &str, topology: Topology, in_background: bool) -> Result<Self, BusError> {
        let mut options = async_nats::ConnectOptions::new()
            .name("shop")
            .connection_timeout(Duration::from_secs(3))
            // Keep reconnecting for ever: a restarted server is found again.
            .max_reconnects(None);
        if in_background {
            options = options.retry_on_initial_connect();
        }
        let client = options
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        Ok(Self {
            js: jetstream::new(client),
            topology,
            streams: Arc::new(OnceCell::new()),
        })
    }

    /// Makes sure, once per connection, that the streams exist.
    async fn streams(&self) -> Result<(), BusError> {
        self.streams
            .get_or_try_init(|| async {
                for spec in [
                    self.topology.stream(Context::Order),
                    self.topology.stream(Context::Inventory),
                    self.topology.dead_letter_stream(),
                ] {
                    self.ensure_stream(&spec).await?;
                }
                Ok(())
            })
            .await
            .copied()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The JetStream context, for tests and tools that go below the port.
    pub fn jetstream(&self) -> &JsContext {
        &self.js
    }

    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<stream::Stream, BusError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: spec.name.clone(),
                subjects: spec.subjects.clone(),
                duplicate_window: spec.duplicate_window,
                max_age: spec.max_age,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("stream {}", spec.name), e))
    }

    /// Deletes this namespace's streams (and with them its consumers).
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        for name in [
            self.topology.stream(Context::Order).name,
            self.topology.stream(Context::Inventory).name,
            self.topology.dead_letter_stream().name,
        ] {
            self.js
                .delete_stream(&name)
                .await
                .map_err(|e| unavailable(format!("delete stream {name}"), e))?;
        }
        Ok(())
    }

    async fn send(&self, event: &Envelope) -> Result<PublishAckFuture, BusError> {
        let subject = self.topology.subject(event.context, &event.event_type);
        let publish = jetstream::message::PublishMessage::build()
            .payload(event.to_bytes().into())
            .message_id(event.event_id.to_string());
        self.js
            .send_publish(subject, publish)
            .await
            .map_err(|e| unavailable(format!("publish {}", event.event_id), e))
    }
}

pub(crate) fn unavailable(what: String, error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {error}"))
}

impl EventBus for JetStreamBus {
    type Subscription = JetStreamSubscription;

    async fn publish(&self, events: &[Envelope]) -> Result<(), BusError> {
        self.streams().await?;
        let mut pending: Vec<&Envelope> = events.iter().collect();
        let mut last_error = None;
        for _ in 0..PUBLISH_ATTEMPTS {
            // Send them all, then wait for the acks: one round trip for the batch.
            let mut acks = Vec::with_capacity(pending.len());
            for event in &pending {
                acks.push(self.send(event).await);
            }
            let mut failed = Vec::new();
            for (event, ack) in pending.into_iter().zip(acks) {
                let outcome = match ack {
                    Ok(ack) => ack
                        .await
                        .map(drop)
                        .map_err(|e| unavailable(format!("ack of {}", event.event_id), e)),
                    Err(error) => Err(error),
                };
                if let Err(error) = outcome {
                    tracing::warn!(target: "shop::bus", event_id = %event.event_id, %error, "publish not confirmed; retrying");
                    last_error = Some(error);
                    failed.push(event);
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            pending = failed;
        }
        Err(last_error.unwrap_or_else(|| BusError::Unavailable("publish failed".into())))
    }

    async fn subscribe(&self, context: Context) -> Result<JetStreamSubscription, BusError> {
        self.streams().await?;
        JetStreamSubscription::open(self.js.clone(), self.topology.consumer(context)).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        self.streams().await?;
        dead_letters::list(&self.js, &self.topology, limit).await
    }

    async fn replay_dead_letter(&self, id: u64) -> Result<(), BusError> {
        self.streams().await?;
        dead_letters::replay(&self.js, &self.topology, id).await
    }
}
