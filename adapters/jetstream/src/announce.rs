//! Instances announcing where they serve, and gateways hearing it, over core
//! NATS on the same connection as the event bus.

use std::time::Duration;

use futures::{Stream, StreamExt};
use shop_runtime::ports::BusError;
use shop_streams::Announcement;
use tokio::task::JoinHandle;

use crate::JetStreamBus;

/// Keeps announcing until [`Announcer::leave`] (or until dropped, silently:
/// gateways then forget the instance when its announcements stop).
#[derive(Debug)]
pub struct Announcer {
    task: JoinHandle<()>,
    client: async_nats::Client,
    subject: String,
    announcements: Vec<Announcement>,
}

impl JetStreamBus {
    /// Publishes `announcements` now and every `every` after.
    pub fn announce(&self, announcements: Vec<Announcement>, every: Duration) -> Announcer {
        let client = self.jetstream().client();
        let subject = self.topology().announcements();
        let task = tokio::spawn({
            let (client, subject, announcements) = (client.clone(), subject.clone(), announcements.clone());
            async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    for announcement in &announcements {
                        // Not heard this time is heard the next: nothing to retry.
                        if let Err(error) = client.publish(subject.clone(), announcement.to_bytes().into()).await {
                            tracing::debug!(target: "shop::announce", %error, "announcement not sent");
                        }
                    }
                }
            }
        });
        Announcer {
            task,
            client,
            subject,
            announcements,
        }
    }

    /// Every announcement made in this namespace from now on; malformed ones
    /// are logged and skipped.
    pub async fn announcements(&self) -> Result<impl Stream<Item = Announcement> + Send + Unpin + use<>, BusError> {
        let subject = self.topology().announcements();
        let subscriber = self
            .jetstream()
            .client()
            .subscribe(subject.clone())
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot listen on {subject}: {e}")))?;
        Ok(Box::pin(subscriber.filter_map(|message| async move {
            Announcement::from_bytes(&message.payload)
                .inspect_err(|error| tracing::warn!(target: "shop::announce", %error, "ignoring an announcement"))
                .ok()
        })))
    }
}

impl Announcer {
    /// Stops announcing and tells gateways this instance is going.
    pub async fn leave(self) {
        self.task.abort();
        for announcement in &self.announcements {
            let leaving = Announcement {
                leaving: true,
                ..announcement.clone()
            };
            let _ = self
                .client
                .publish(self.subject.clone(), leaving.to_bytes().into())
                .await;
        }
        let _ = self.client.flush().await;
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
