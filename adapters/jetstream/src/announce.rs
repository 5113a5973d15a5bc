//! Instances announcing where they serve, and gateways hearing it, over core
//! NATS on the same connection as the event bus.

use std::time::Duration;

use futures::{Stream, StreamExt};
use shop_runtime::ports::{BusError, Cause, Clock, SystemClock};
use shop_streams::{Announcement, AnnouncementKey, Rejected, Trust};
use tokio::task::JoinHandle;

use crate::JetStreamBus;

/// How long a leaving instance waits for the broker to take its goodbye.
const LEAVE_FLUSH: Duration = Duration::from_secs(2);

/// Keeps announcing until [`Announcer::leave`] (or until dropped, silently:
/// gateways then forget the instance when its announcements stop).
#[derive(Debug)]
pub struct Announcer {
    task: JoinHandle<()>,
    client: async_nats::Client,
    subject: String,
    announcements: Vec<Announcement>,
    key: Option<AnnouncementKey>,
}

fn now_ms() -> u64 {
    u64::try_from(SystemClock.now_ms()).unwrap_or(0)
}

/// `announcement` as sent: sealed with `key` when there is one (else only
/// gateways that allow its address take it in).
fn wire(announcement: &Announcement, key: Option<&AnnouncementKey>) -> Vec<u8> {
    match key {
        Some(key) => key.seal(announcement, now_ms()),
        None => announcement.to_bytes(),
    }
}

impl JetStreamBus {
    /// Publishes `announcements`, sealed with `key`, now and every `every` after.
    pub fn announce(
        &self,
        announcements: Vec<Announcement>,
        every: Duration,
        key: Option<AnnouncementKey>,
    ) -> Announcer {
        let client = self.jetstream().client();
        let subject = self.topology().announcements();
        let task = tokio::spawn({
            let (client, subject, announcements, key) =
                (client.clone(), subject.clone(), announcements.clone(), key.clone());
            async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    for announcement in &announcements {
                        // Not heard this time is heard the next: nothing to retry.
                        if let Err(error) = client
                            .publish(subject.clone(), wire(announcement, key.as_ref()).into())
                            .await
                        {
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
            key,
        }
    }

    /// Every announcement made in this namespace from now on, each admitted
    /// by `trust` or rejected with the reason.
    pub async fn announcements(
        &self,
        trust: Trust,
    ) -> Result<impl Stream<Item = Result<Announcement, Rejected>> + Send + Unpin + use<>, BusError> {
        let subject = self.topology().announcements();
        let subscriber = self
            .jetstream()
            .client()
            .subscribe(subject.clone())
            .await
            .map_err(|e| BusError::Unavailable(Cause::context(format!("cannot listen on {subject}"), e)))?;
        Ok(Box::pin(
            subscriber.map(move |message| trust.admit(&message.payload, now_ms())),
        ))
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
                .publish(self.subject.clone(), wire(&leaving, self.key.as_ref()).into())
                .await;
        }
        // Leaving is a courtesy (peers forget a silent instance anyway): a
        // broker that does not answer must not hold the shutdown up.
        let _ = tokio::time::timeout(LEAVE_FLUSH, self.client.flush()).await;
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
