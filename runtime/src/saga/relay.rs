//! The outbox relay: publishes committed events, then marks them sent.
//!
//! Several relays may run (one per process); the outbox's leases keep them
//! apart. A crash between publish and mark republishes the batch later,
//! which the broker's dedup window and the consumers' inboxes absorb.

use std::time::{Duration, Instant};

use shop_streams::Context;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::ports::{EventBus, Outbox};

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// This relay's name in the outbox leases.
    pub name: String,
    pub batch: u32,
    /// How long a claimed batch is this relay's alone.
    pub lease: Duration,
    /// Pause when the outbox is empty.
    pub idle: Duration,
    /// Pause after a failure.
    pub backoff: Duration,
    /// How often the backlog is counted for the metrics.
    pub backlog_every: Duration,
}

impl RelaySettings {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            batch: 500,
            lease: Duration::from_secs(30),
            idle: Duration::from_millis(20),
            backoff: Duration::from_millis(500),
            backlog_every: Duration::from_secs(5),
        }
    }
}

/// One round: claim, publish, mark. Returns how many events went out.
pub async fn relay_once(outbox: &impl Outbox, bus: &impl EventBus, settings: &RelaySettings) -> Result<usize, String> {
    let batch = outbox
        .claim(&settings.name, settings.batch, settings.lease)
        .await
        .map_err(|e| e.to_string())?;
    if batch.is_empty() {
        return Ok(0);
    }
    bus.publish(&batch).await.map_err(|e| e.to_string())?;
    let ids: Vec<_> = batch.iter().map(|e| e.event_id).collect();
    outbox.mark_sent(&ids).await.map_err(|e| e.to_string())?;
    Ok(batch.len())
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
    while !*stop.borrow() {
        if counted.is_none_or(|at| at.elapsed() >= settings.backlog_every) {
            counted = Some(Instant::now());
            match outbox.backlog().await {
                Ok(backlog) => metrics.outbox_backlog(context, backlog),
                Err(error) => tracing::debug!(target: "shop::relay", %error, "backlog not counted"),
            }
        }
        let pause = match relay_once(&outbox, &bus, &settings).await {
            Ok(0) => settings.idle,
            Ok(sent) => {
                tracing::debug!(target: "shop::relay", relay = settings.name, sent, "published");
                continue;
            }
            Err(error) => {
                tracing::warn!(target: "shop::relay", relay = settings.name, %error, "relay round failed; retrying");
                settings.backoff
            }
        };
        let _ = tokio::time::timeout(pause, stop.changed()).await;
    }
}
