//! The [`Outbox`] contract, fed through the order store whose writes fill it.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use shop_streams::Encoded;
use uuid::Uuid;

use super::{created, order};
use crate::ports::{OrderStore, OrderWrite, Outbox, Pending};

/// Every check, against an empty store and its outbox.
pub async fn run(store: &impl OrderStore, outbox: &impl Outbox) {
    let before_writing = now_ms();
    let mut written = Vec::new();
    for n in 0..30 {
        written.push(write(store, format!("ob-{n:02}")).await);
    }
    assert_eq!(outbox.backlog().await, Ok(30));
    let oldest = outbox.oldest_unpublished_at().await.expect("read").expect("30 wait");
    assert!(
        (before_writing..=now_ms()).contains(&oldest),
        "committed while writing: {oldest}"
    );

    one_relay_reads_in_order_and_advances(outbox, &written).await;
    a_lease_that_ran_out_changes_hands(outbox, &written).await;
    concurrent_commits_are_all_read_once(store, outbox, &mut written).await;
    rewinding_publishes_again_and_pruning_keeps_the_unpublished(outbox, &written, before_writing).await;
    a_commit_wakes_a_waiting_relay(store, outbox).await;
}

const LONG: Duration = Duration::from_secs(60);

async fn write(store: &impl OrderStore, id: String) -> Uuid {
    let o = order(&id);
    let event = created(&o);
    let write = OrderWrite {
        order: &o,
        expected_version: None,
        events: std::slice::from_ref(&event),
        delivery: None,
        audit: None,
    };
    store.write(write).await.expect("written");
    event.event_id
}

fn ids(pending: &Pending) -> Vec<Uuid> {
    pending.events.iter().map(Encoded::event_id).collect()
}

async fn one_relay_reads_in_order_and_advances(outbox: &impl Outbox, written: &[Uuid]) {
    let first = outbox
        .pending("relay-a", 5, LONG)
        .await
        .expect("read")
        .expect("the lease was free");
    assert_eq!(ids(&first), written[..5], "the oldest five, in order");
    assert!(first.last > first.cursor);
    let whole = first.events[0].envelope().expect("the envelope comes back whole");
    assert_eq!(whole.event_id, written[0]);
    // Not advanced: the same five again.
    let again = outbox
        .pending("relay-a", 5, LONG)
        .await
        .expect("read")
        .expect("its own lease");
    assert_eq!(again, first);
    // Another relay waits while the lease lives.
    assert_eq!(outbox.pending("relay-b", 5, LONG).await, Ok(None));
    assert_eq!(
        outbox.advance("relay-b", first.cursor, first.last, LONG).await,
        Ok(false)
    );

    assert_eq!(
        outbox.advance("relay-a", first.cursor, first.last, LONG).await,
        Ok(true)
    );
    assert_eq!(
        outbox.advance("relay-a", first.cursor, first.last, LONG).await,
        Ok(false),
        "the cursor is no longer where it was read"
    );
    assert_eq!(outbox.backlog().await, Ok(25));
    let next = outbox
        .pending("relay-a", 5, LONG)
        .await
        .expect("read")
        .expect("its own lease");
    assert_eq!(next.cursor, first.last);
    assert_eq!(ids(&next), written[5..10]);
    // Its last advance renews the lease for a moment only: then it dies.
    let moment = Duration::from_millis(1);
    assert_eq!(
        outbox.advance("relay-a", next.cursor, next.last, moment).await,
        Ok(true)
    );
}

async fn a_lease_that_ran_out_changes_hands(outbox: &impl Outbox, written: &[Uuid]) {
    std::thread::sleep(Duration::from_millis(20));
    let taken = outbox
        .pending("relay-b", 5, LONG)
        .await
        .expect("read")
        .expect("the lease ran out");
    assert_eq!(ids(&taken), written[10..15], "from where relay-a left off");
    // relay-a comes back too late: it neither reads nor advances.
    assert_eq!(outbox.pending("relay-a", 5, LONG).await, Ok(None));
    assert_eq!(
        outbox.advance("relay-a", taken.cursor, taken.last, LONG).await,
        Ok(false)
    );
    let mut cursor = taken.cursor;
    let mut pending = taken;
    while !pending.events.is_empty() {
        assert_eq!(outbox.advance("relay-b", cursor, pending.last, LONG).await, Ok(true));
        cursor = pending.last;
        pending = outbox
            .pending("relay-b", 7, LONG)
            .await
            .expect("read")
            .expect("its lease");
    }
    assert_eq!(outbox.backlog().await, Ok(0));
    assert_eq!(outbox.oldest_unpublished_at().await, Ok(None), "nothing waits");
}

/// Many writers commit at once while a relay reads: every event is read
/// exactly once, however the commits interleave.
async fn concurrent_commits_are_all_read_once(store: &impl OrderStore, outbox: &impl Outbox, written: &mut Vec<Uuid>) {
    let mut seen = BTreeSet::new();
    const WRITERS: usize = 80;
    let relay = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < WRITERS && std::time::Instant::now() < deadline {
            let pending = outbox
                .pending("relay-b", 16, LONG)
                .await
                .expect("read")
                .expect("its lease");
            if pending.events.is_empty() {
                tokio_free_pause().await;
                continue;
            }
            for event in &pending.events {
                assert!(seen.insert(event.event_id()), "{} read twice", event.event_id());
            }
            assert_eq!(
                outbox.advance("relay-b", pending.cursor, pending.last, LONG).await,
                Ok(true)
            );
        }
    };
    let writers = join_all((0..WRITERS).map(|n| write(store, format!("cc-{n:02}"))));
    let (new, ()) = futures::future::join(writers, relay).await;
    let expected: BTreeSet<Uuid> = new.iter().copied().collect();
    assert_eq!(seen, expected, "every committed event read once, none skipped");
    assert_eq!(outbox.backlog().await, Ok(0));
    written.extend(new);
}

async fn rewinding_publishes_again_and_pruning_keeps_the_unpublished(
    outbox: &impl Outbox,
    written: &[Uuid],
    before_writing: i64,
) {
    let total = written.len() as u64;
    let future = now_ms() + 60_000;
    assert_eq!(outbox.rewind_to(future).await, Ok(0), "nothing committed in the future");
    // An operator republishes everything committed since a point in time.
    assert_eq!(outbox.rewind_to(before_writing - 60_000).await, Ok(total));
    assert_eq!(outbox.backlog().await, Ok(total));
    // Unpublished again: none of it may be pruned.
    assert_eq!(outbox.prune(future, 1_000).await, Ok(0));
    let again = outbox
        .pending("relay-b", 1_000, LONG)
        .await
        .expect("read")
        .expect("its lease");
    let mut again_ids = ids(&again);
    again_ids.sort();
    let mut all = written.to_vec();
    all.sort();
    assert_eq!(again_ids, all);
    assert_eq!(
        outbox.advance("relay-b", again.cursor, again.last, LONG).await,
        Ok(true)
    );

    // Published and older than the bound: pruned oldest first, in chunks.
    assert_eq!(
        outbox.prune(before_writing - 60_000, 1_000).await,
        Ok(0),
        "none old enough"
    );
    assert_eq!(outbox.prune(future, 50).await, Ok(50));
    assert_eq!(outbox.prune(future, 1_000).await, Ok(total - 50));
    assert_eq!(outbox.rewind_to(before_writing - 60_000).await, Ok(0), "pruned is gone");
    assert_eq!(outbox.backlog().await, Ok(0));
}

async fn a_commit_wakes_a_waiting_relay(store: &impl OrderStore, outbox: &impl Outbox) {
    // The earlier writes' signal may be kept for one wait: take it.
    within(Duration::from_millis(200), outbox.committed()).await;
    let waiting = within(Duration::from_secs(10), outbox.committed());
    let (woken, _) = futures::join!(waiting, write(store, "ob-wake".into()));
    assert!(
        woken,
        "a relay waiting on committed() was not woken within 10 s of a commit"
    );
}

/// Whether `future` finished within `limit`.
async fn within(limit: Duration, future: impl std::future::Future<Output = ()>) -> bool {
    futures::pin_mut!(future);
    matches!(
        futures::future::select(future, timer(limit)).await,
        futures::future::Either::Left(_)
    )
}

/// A short pause.
async fn tokio_free_pause() {
    let _ = timer(Duration::from_millis(5)).await;
}

/// Resolves after `limit`, on a thread of its own: the contracts run on any executor.
fn timer(limit: Duration) -> futures::channel::oneshot::Receiver<()> {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = tx.send(());
    });
    rx
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
