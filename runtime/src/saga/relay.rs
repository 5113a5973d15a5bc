//! The outbox relay: publishes committed events in commit order, then moves
//! the outbox's cursor past them.
//!
//! One relay per process and context may run; the cursor's lease lets one
//! of them publish at a time and hands over when it dies. Per batch that is
//! one read and one cursor update, whatever its size: publishing writes
//! nothing per event. A crash between publish and advance republishes the
//! batch, which the broker's dedup window and the idempotent handlers
//! absorb. The relay holding the lease also prunes what was published
//! longer ago than the retention.

use std::time::{Duration, Instant};

use shop_streams::{Context, Encoded};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::ports::{BusError, Clock, EventBus, Outbox, StoreError, SystemClock};
use crate::trace_context;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// This relay's name in the cursor's lease.
    pub name: String,
    pub batch: u32,
    /// How long the cursor stays this relay's after each round.
    pub lease: Duration,
    /// Whether the relay waits for the outbox's commit signal between rounds;
    /// off, it polls every `idle` (for comparisons).
    pub wake: bool,
    /// Pause when nothing is pending: the longest a waiting relay sleeps
    /// when woken by the commit, the poll interval when not.
    pub idle: Duration,
    /// Pause while another relay holds the lease.
    pub standby: Duration,
    /// Pause after a failure.
    pub backoff: Duration,
    /// How often the backlog is counted for the metrics.
    pub backlog_every: Duration,
    /// How long published events are kept (for `shop outbox republish`).
    pub keep: Duration,
    /// How often published events older than `keep` are pruned.
    pub prune_every: Duration,
}

impl RelaySettings {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            batch: 1000,
            lease: Duration::from_secs(10),
            wake: true,
            idle: Duration::from_millis(250),
            standby: Duration::from_millis(500),
            backoff: Duration::from_millis(500),
            backlog_every: Duration::from_secs(5),
            keep: DEFAULT_KEEP,
            prune_every: Duration::from_secs(10),
        }
    }

    pub fn keeping(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// Polls every 10 ms instead of waiting for the commit signal.
    pub fn polling(mut self) -> Self {
        self.wake = false;
        self.idle = POLL;
        self
    }
}

/// The poll interval of a relay not woken by the commit.
const POLL: Duration = Duration::from_millis(10);

/// How long published events stay in the outbox by default.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(15 * 60);

/// Rows deleted per prune statement: short transactions, few locks.
const PRUNE_CHUNK: u32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox: {0}")]
    Outbox(#[source] StoreError),
    #[error("publish: {0}")]
    Publish(#[source] BusError),
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Published this many events.
    Sent(usize),
    /// Holds the lease; nothing was pending.
    Idle,
    /// Another relay holds the lease.
    Standby,
}

/// One round: read what is pending, publish it, advance.
pub async fn relay_once(
    outbox: &impl Outbox,
    bus: &impl EventBus,
    settings: &RelaySettings,
) -> Result<Round, RelayError> {
    let pending = outbox
        .pending(&settings.name, settings.batch, settings.lease)
        .await
        .map_err(RelayError::Outbox)?;
    let Some(mut pending) = pending else {
        return Ok(Round::Standby);
    };
    if pending.events.is_empty() {
        return Ok(Round::Idle);
    }
    let spans = publish_spans(&mut pending.events);
    bus.publish(&pending.events).await.map_err(RelayError::Publish)?;
    drop(spans);
    let moved = outbox
        .advance(&settings.name, pending.cursor, pending.last, settings.lease)
        .await
        .map_err(RelayError::Outbox)?;
    if !moved {
        tracing::debug!(target: "shop::relay", relay = settings.name, "cursor moved meanwhile; reading again");
    }
    Ok(Round::Sent(pending.events.len()))
}

/// While spans are exported, each traced event's publish is a hop of its
/// trace, the parent of whoever handles it: a span per event, open until
/// the broker confirmed the batch.
fn publish_spans(events: &mut [Encoded]) -> Vec<tracing::Span> {
    if !trace_context::exporting() {
        return Vec::new();
    }
    let mut spans = Vec::new();
    for event in events.iter_mut() {
        let Some(parent) = event.traceparent() else {
            continue;
        };
        let span = tracing::info_span!(
            target: "shop::relay",
            "publish",
            otel.name = %format_args!("publish {}", event.event_type()),
            otel.kind = "producer",
            event_type = event.event_type(),
            event_id = %event.event_id(),
        );
        trace_context::adopt(&span, Some(parent));
        if let Some(publish) = trace_context::of(&span).filter(|publish| *publish != parent)
            && let Err(error) = event.set_traceparent(publish)
        {
            tracing::warn!(target: "shop::relay", event_id = %event.event_id(), %error, "trace parent not replaced; sent with the stored one");
        }
        spans.push(span);
    }
    spans
}

/// Deletes published events older than `settings.keep`, chunk by chunk.
pub async fn prune(outbox: &impl Outbox, settings: &RelaySettings, now_ms: i64) -> Result<u64, StoreError> {
    let keep = i64::try_from(settings.keep.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms.saturating_sub(keep);
    let mut pruned = 0;
    loop {
        let deleted = outbox.prune(before, PRUNE_CHUNK).await?;
        pruned += deleted;
        if deleted < u64::from(PRUNE_CHUNK) {
            return Ok(pruned);
        }
    }
}

/// Relays `context`'s outbox until `stop` turns true.
pub async fn run_relay(
    context: Context,
    outbox: impl Outbox,
    bus: impl EventBus,
    settings: RelaySettings,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut counted: Option<Instant> = None;
    let mut pruned = Instant::now();
    while !*stop.borrow() {
        if counted.is_none_or(|at| at.elapsed() >= settings.backlog_every) {
            counted = Some(Instant::now());
            match outbox.backlog().await {
                Ok(backlog) => metrics.outbox_backlog(context, backlog),
                Err(error) => tracing::debug!(target: "shop::relay", %error, "backlog not counted"),
            }
            match outbox.oldest_unpublished_at().await {
                Ok(oldest) => {
                    let age_ms = oldest.map_or(0, |at| SystemClock.now_ms().saturating_sub(at).max(0));
                    metrics.outbox_oldest_age(context, Duration::from_millis(u64::try_from(age_ms).unwrap_or(0)));
                }
                Err(error) => tracing::debug!(target: "shop::relay", %error, "oldest event not read"),
            }
        }
        if pruned.elapsed() >= settings.prune_every {
            pruned = Instant::now();
            match prune(&outbox, &settings, SystemClock.now_ms()).await {
                Ok(0) => {}
                Ok(count) => tracing::debug!(target: "shop::relay", %context, count, "pruned published events"),
                Err(error) => tracing::warn!(target: "shop::relay", %context, %error, "outbox not pruned"),
            }
        }
        let (pause, woken_by_commit) = match relay_once(&outbox, &bus, &settings).await {
            Ok(Round::Sent(sent)) => {
                tracing::debug!(target: "shop::relay", relay = settings.name, sent, "published");
                continue;
            }
            Ok(Round::Idle) => (settings.idle, settings.wake),
            Ok(Round::Standby) => (settings.standby, false),
            Err(error) => {
                tracing::warn!(target: "shop::relay", relay = settings.name, %error, "relay round failed; retrying");
                (settings.backoff, false)
            }
        };
        // The poll stays as a floor: a signal lost with a listener's
        // connection costs at most `idle`.
        let commit = async {
            if woken_by_commit {
                outbox.committed().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            () = commit => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
