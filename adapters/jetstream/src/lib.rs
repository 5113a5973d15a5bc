//! The event bus on NATS JetStream.
//!
//! Streams and consumers come from `shop-streams`' [`Topology`] and are
//! created when missing, on connect or (connecting lazily) on first use. Publishes are pipelined and awaited as a
//! batch, each with `Nats-Msg-Id` = event id. Subscriptions pull batches from
//! the durable consumers shared by all instances of a role (one, or one per
//! event type the role reads); what cannot be read
//! or was delivered too often goes to the dead-letter stream with its reason,
//! where operators list and replay it. Instances also announce where they
//! serve on the same connection, for gateways to find them.

#![forbid(unsafe_code)]

mod announce;
mod dead_letters;
mod rules;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, context::Context as JsContext, stream};
use shop_runtime::ports::{BusError, Cause, DeadLetter, EventBus};
use shop_streams::trace_parent;
use shop_streams::{Context, Encoded, Reader, StreamSpec, Topology};
use tokio::sync::OnceCell;

pub use announce::Announcer;
pub use rules::JetStreamRuleStore;
pub use subscription::{JetStreamDelivery, JetStreamSubscription};

/// Attempts of one publish whose acknowledgement did not arrive; each retry
/// reuses the event id, so the broker stores the event once.
const PUBLISH_ATTEMPTS: usize = 3;

/// Where NATS is and how to be let in: the URL (`nats://[user:password@]host:port`,
/// `tls://` for TLS, several comma-separated for a cluster), credentials
/// (an nkey seed, or the contents of a `.creds` file) and, for TLS under a
/// private CA, that CA's certificate file.
#[derive(Clone, Default)]
pub struct NatsEndpoint {
    pub url: String,
    pub credentials: Option<String>,
    pub tls_ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for NatsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEndpoint")
            .field("url", &self.redacted())
            .field("credentials", &self.credentials.is_some())
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl NatsEndpoint {
    /// The URL without user and password, for messages and logs.
    pub fn redacted(&self) -> String {
        self.url
            .split(',')
            .map(|url| match (url.split_once("://"), url.rsplit_once('@')) {
                (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
                _ => url.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl NatsEndpoint {
    /// `user:password` (or a lone token) before the first URL's host.
    fn user_info(&self) -> Option<(String, Option<String>)> {
        let first = self.url.split(',').next()?;
        let (_, rest) = first.split_once("://")?;
        let (info, _) = rest.split('/').next()?.rsplit_once('@')?;
        Some(match info.split_once(':') {
            Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
            None => (info.to_owned(), None),
        })
    }
}

impl From<&str> for NatsEndpoint {
    fn from(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }
}

impl From<&String> for NatsEndpoint {
    fn from(url: &String) -> Self {
        Self::from(url.as_str())
    }
}

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
    pub async fn connect(endpoint: impl Into<NatsEndpoint>, topology: Topology) -> Result<Self, BusError> {
        let bus = Self::open(endpoint.into(), topology, false).await?;
        bus.streams().await?;
        Ok(bus)
    }

    /// Connects in the background and keeps trying, so a process starts
    /// while NATS is away; only a malformed URL or credentials fail here.
    /// The streams are made sure of on first use: until NATS answers,
    /// publishes and subscriptions fail with [`BusError::Unavailable`] and
    /// are retried by their callers.
    pub async fn connect_lazily(endpoint: impl Into<NatsEndpoint>, topology: Topology) -> Result<Self, BusError> {
        Self::open(endpoint.into(), topology, true).await
    }

    /// Connects (in the background, as [`Self::connect_lazily`]) without
    /// creating anything: for a gateway, which only hears announcements and
    /// has no business making the contexts' streams.
    pub async fn connect_without_streams(
        endpoint: impl Into<NatsEndpoint>,
        topology: Topology,
    ) -> Result<Self, BusError> {
        let bus = Self::open(endpoint.into(), topology, true).await?;
        let _ = bus.streams.set(());
        Ok(bus)
    }

    async fn open(endpoint: NatsEndpoint, topology: Topology, in_background: bool) -> Result<Self, BusError> {
        let mut options = async_nats::ConnectOptions::new()
            .name("shop")
            .connection_timeout(Duration::from_secs(3))
            // Keep reconnecting for ever: a restarted server is found again.
            .max_reconnects(None);
        if in_background {
            options = options.retry_on_initial_connect();
        }
        if let Some(credentials) = endpoint.credentials.as_deref().map(str::trim) {
            options = match credentials.starts_with("SU") && !credentials.contains(char::is_whitespace) {
                true => options.nkey(credentials.to_owned()),
                false => options.credentials(credentials).map_err(|e| {
                    BusError::Refused(format!(
                        "NATS credentials are neither an nkey seed nor a .creds file: {e}"
                    ))
                })?,
            };
        }
        // The client takes user and password (or a token) from its options,
        // not from the URL: a URL that names them is read here.
        if let Some((user, password)) = endpoint.user_info() {
            options = match password {
                Some(password) => options.user_and_password(user, password),
                None => options.token(user),
            };
        }
        if let Some(ca) = &endpoint.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let url = endpoint.redacted();
        // A cluster's servers, comma-separated: the client takes them as a list.
        let servers: Vec<&str> = endpoint
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let client = options
            .connect(servers)
            .await
            .map_err(|e| BusError::Unavailable(Cause::context(format!("cannot connect to NATS at {url}"), e)))?;
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

    /// Creates the stream `spec` describes, or brings an existing one's
    /// retention limits to the spec's (the settings of the newest start win).
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            duplicate_window: spec.duplicate_window,
            max_age: spec.max_age,
            max_bytes: spec
                .max_bytes
                .map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            discard: stream::DiscardPolicy::Old,
            num_replicas: spec.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let stream = self
            .js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| unavailable(format!("stream {}", spec.name), e))?;
        let current = &stream.cached_info().config;
        if current.max_age != config.max_age || current.max_bytes != config.max_bytes {
            let updated = stream::Config {
                max_age: config.max_age,
                max_bytes: config.max_bytes,
                ..current.clone()
            };
            self.js
                .update_stream(updated)
                .await
                .map_err(|e| unavailable(format!("update the limits of stream {}", spec.name), e))?;
            tracing::info!(target: "shop::bus", stream = %spec.name, max_age = ?spec.max_age, max_bytes = ?spec.max_bytes, "stream retention changed");
        }
        Ok(())
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

    async fn send(&self, event: &Encoded) -> Result<PublishAckFuture, BusError> {
        let subject = self
            .topology
            .versioned_subject(event.context(), event.event_type(), event.schema_version());
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(event.text().as_bytes().to_vec().into())
            .message_id(event.message_id());
        // Where tools that read NATS headers (not the envelope) look for it.
        if let Some(parent) = event.traceparent() {
            publish = publish.header(trace_parent::HEADER, parent.to_string());
        }
        self.js
            .send_publish(subject, publish)
            .await
            .map_err(|e| unavailable(format!("publish {}", event.event_id()), e))
    }
}

pub(crate) fn unavailable(what: String, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BusError {
    BusError::Unavailable(Cause::context(what, error))
}

impl EventBus for JetStreamBus {
    type Subscription = JetStreamSubscription;

    async fn publish(&self, events: &[Encoded]) -> Result<(), BusError> {
        self.streams().await?;
        // Subscribers may read an event in a later schema version, on its
        // own subject version: its twins go out with it.
        let twins: Vec<Encoded> = events.iter().flat_map(Encoded::twins).collect();
        let mut pending: Vec<&Encoded> = events.iter().chain(&twins).collect();
        let mut last_error = None;
        for _ in 0..PUBLISH_ATTEMPTS {
            // Send them all, then wait for the acks: one round trip for the
            // batch. The acks are awaited together because each one's timeout
            // starts when it is awaited: one after the other, a batch of N
            // behind a silent broker would take N timeouts per attempt.
            let mut acks = Vec::with_capacity(pending.len());
            for event in &pending {
                acks.push(self.send(event).await);
            }
            let outcomes = futures::future::join_all(pending.iter().zip(acks).map(|(event, ack)| async move {
                match ack {
                    Ok(ack) => ack
                        .await
                        .map(drop)
                        .map_err(|e| unavailable(format!("ack of {}", event.event_id()), e)),
                    Err(error) => Err(error),
                }
            }))
            .await;
            let mut failed = Vec::new();
            for (event, outcome) in pending.into_iter().zip(outcomes) {
                if let Err(error) = outcome {
                    tracing::warn!(target: "shop::bus", event_id = %event.event_id(), %error, "publish not confirmed; retrying");
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

    async fn subscribe(&self, reader: Reader) -> Result<JetStreamSubscription, BusError> {
        self.streams().await?;
        // A reader that now reads by type replaces the whole-stream consumer
        // earlier releases made (and may still read during an upgrade).
        let replaced = reader.by_type().then(|| self.topology.consumer(reader));
        let stream = self.topology.stream(reader.source()).name;
        JetStreamSubscription::open(self.js.clone(), &stream, self.topology.consumers(reader), replaced).await
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
