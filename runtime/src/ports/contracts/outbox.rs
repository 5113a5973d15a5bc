//! The [`Outbox`] contract, fed through the order store whose writes fill it.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use uuid::Uuid;

use super::{created, order};
use crate::ports::{OrderStore, OrderWrite, Outbox};

/// Every check, against an empty store and its outbox.
pub async fn run(store: &impl OrderStore, outbox: &impl Outbox) {
    let mut written = Vec::new();
    for n in 0..30 {
        let o = order(&format!("ob-{n:02}"));
        let event = created(&o);
        written.push(event.event_id);
        let write = OrderWrite {
            order: &o,
            expected_version: None,
            events: std::slice::from_ref(&event),
            handled: None,
        };
        store.write(write).await.expect("written");
    }
    assert_eq!(outbox.backlog().await, Ok(30));

    claims_come_oldest_first_and_are_leased(outbox, &written).await;
    concurrent_claims_never_share_an_event(outbox).await;
    sent_events_leave_the_backlog_and_can_be_requeued(outbox, &written).await;
}

const LONG: Duration = Duration::from_secs(60);

async fn claims_come_oldest_first_and_are_leased(outbox: &impl Outbox, written: &[Uuid]) {
    let first = outbox.claim("relay-a", 5, LONG).await.expect("claim");
    let ids: Vec<Uuid> = first.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, written[..5], "the oldest five, in order");
    // Its own lease does not stop the relay: unmarked, they come back to it.
    let again = outbox.claim("relay-a", 5, LONG).await.expect("claim");
    assert_eq!(again.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
    // Leased: another relay gets the next ones.
    let second = outbox.claim("relay-b", 5, LONG).await.expect("claim");
    let ids: Vec<Uuid> = second.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, written[5..10]);
    // A lease that ran out (a relay that died) frees its events.
    let short = outbox
        .claim("relay-c", 3, Duration::from_millis(1))
        .await
        .expect("claim");
    assert_eq!(short.len(), 3);
    std::thread::sleep(Duration::from_millis(20));
    let retaken = outbox.claim("relay-d", 3, LONG).await.expect("claim");
    assert_eq!(
        retaken.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        short.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_eq!(retaken[0], short[0], "the envelope comes back whole");
}

async fn concurrent_claims_never_share_an_event(outbox: &impl Outbox) {
    let relays: Vec<String> = (0..6).map(|n| format!("relay-{n}")).collect();
    let claims = join_all(relays.iter().map(|relay| outbox.claim(relay, 4, LONG))).await;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for claim in claims {
        for event in claim.expect("claim") {
            total += 1;
            assert!(seen.insert(event.event_id), "{} claimed twice", event.event_id);
        }
    }
    // 30 written, 13 still leased: 17 left to share.
    assert_eq!(total, 17);
    assert!(outbox.claim("late", 10, LONG).await.expect("claim").is_empty());
}

async fn sent_events_leave_the_backlog_and_can_be_requeued(outbox: &impl Outbox, written: &[Uuid]) {
    let before_send = now_ms();
    outbox.mark_sent(written).await.expect("marked");
    outbox.mark_sent(written).await.expect("marking again is harmless");
    outbox
        .mark_sent(&[Uuid::now_v7()])
        .await
        .expect("unknown ids are ignored");
    assert_eq!(outbox.backlog().await, Ok(0));

    // An operator republishes everything sent since a point in time.
    assert_eq!(outbox.requeue_since(before_send - 60_000).await, Ok(30));
    assert_eq!(outbox.backlog().await, Ok(30));
    let again = outbox.claim("relay-z", 100, LONG).await.expect("claim");
    assert_eq!(again.iter().map(|e| e.event_id).collect::<Vec<_>>(), written);
    assert_eq!(
        outbox.requeue_since(now_ms() + 60_000).await,
        Ok(0),
        "nothing sent in the future"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
