//! Feeds a subscription's messages to a handler and settles each one:
//! handled -> ack; transient failure -> redelivery after a backoff;
//! permanent failure -> dead letter.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::{HandleError, Handler};
use crate::ports::{Delivery, Subscription};

#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    pub batch: usize,
    /// How long one pull waits for messages.
    pub wait: Duration,
    /// Redelivery delay after the first failure, doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            batch: 100,
            wait: Duration::from_millis(500),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Handles and settles one batch; returns how many messages it took.
pub async fn consume_once<S: Subscription, H: Handler>(
    subscription: &mut S,
    settings: &ConsumerSettings,
    handler: &H,
) -> Result<usize, String> {
    let batch = subscription
        .next_batch(settings.batch, settings.wait)
        .await
        .map_err(|e| e.to_string())?;
    let taken = batch.len();
    for delivery in batch {
        let span = tracing::info_span!(
            "message",
            event_type = delivery.envelope().event_type,
            event_id = %delivery.envelope().event_id,
            correlation_id = %delivery.envelope().correlation_id,
            attempt = delivery.attempt(),
        );
        // Instrumented, not entered: a guard held across `.await` would tag
        // other tasks' work with this message's span.
        settle(delivery, settings, handler).instrument(span).await;
    }
    Ok(taken)
}

async fn settle<D: Delivery, H: Handler>(delivery: D, settings: &ConsumerSettings, handler: &H) {
    let settled = match handler.handle(delivery.envelope()).await {
        Ok(()) => delivery.ack().await,
        Err(HandleError::Transient(reason)) => {
            let delay = backoff(settings, delivery.attempt());
            tracing::warn!(target: "shop::consumer", %reason, ?delay, "not handled; will retry");
            delivery.retry(delay).await
        }
        Err(HandleError::Permanent(reason)) => delivery.dead_letter(&reason).await,
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
pub async fn run_consumer<S: Subscription, H: Handler>(
    mut subscription: S,
    settings: ConsumerSettings,
    handler: Arc<H>,
    stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        if let Err(error) = consume_once(&mut subscription, &settings, &*handler).await {
            tracing::warn!(target: "shop::consumer", %error, "pull failed; retrying");
            tokio::time::sleep(settings.backoff).await;
        }
    }
}
