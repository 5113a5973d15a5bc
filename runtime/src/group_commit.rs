//! Group commit, for adapters whose every transaction costs a disk flush.
//!
//! Callers [`submit`](GroupCommit::submit) one item each and wait; a few
//! writer tasks each take every item queued (up to `max_batch`) and hand
//! them to the adapter's `commit`, which writes them in one transaction and
//! answers each. Nothing waits for a batch to fill: a lone item is committed
//! at once, alone; batches form only while the writers are busy, which is
//! exactly when they help. Reads that every request makes (a lookup by
//! key) batch the same way, into one query.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

type Waiting<T, R> = (T, oneshot::Sender<R>);

#[derive(Debug)]
pub struct GroupCommit<T, R> {
    queue: mpsc::Sender<Waiting<T, R>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts `writers` tasks calling `commit` with batches of up to
    /// `max_batch` items. `commit` MUST answer every item of its batch, in
    /// order. The tasks end when the last handle is dropped.
    pub fn start<F, Fut>(writers: usize, max_batch: usize, commit: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let max_batch = max_batch.max(1);
        let (queue, waiting) = mpsc::channel::<Waiting<T, R>>(max_batch * writers.max(1) * 4);
        let waiting = Arc::new(Mutex::new(waiting));
        let commit = Arc::new(commit);
        for _ in 0..writers.max(1) {
            let (waiting, commit) = (Arc::clone(&waiting), Arc::clone(&commit));
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut waiting = waiting.lock().await;
                        let Some(first) = waiting.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < max_batch {
                            match waiting.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    let (items, answers): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                    let outcomes = commit(items).await;
                    // A caller that went away (a timed-out request) misses
                    // its answer; what was committed stays committed.
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(outcome);
                    }
                }
            });
        }
        Self { queue }
    }

    /// Queues `item` and waits for its outcome; `None` when the writers are
    /// gone, or `commit` gave no answer for it.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (answer, outcome) = oneshot::channel();
        self.queue.send((item, answer)).await.ok()?;
        outcome.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_lone_item_goes_at_once_and_a_crowd_shares_batches() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let group = GroupCommit::start(1, 50, move |items: Vec<u32>| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().await.push(items.len());
                // A slow flush: the crowd queues behind it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                items.into_iter().map(|n| n * 2).collect()
            }
        });
        assert_eq!(group.submit(21).await, Some(42));
        assert_eq!(*batches.lock().await, [1], "nobody waited for company");

        let crowd = (0..200).map(|n| {
            let group = group.clone();
            tokio::spawn(async move { group.submit(n).await })
        });
        let answers: Vec<_> = futures::future::join_all(crowd).await;
        for (n, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.ok().flatten(), Some(n as u32 * 2), "each gets its own answer");
        }
        let sizes = batches.lock().await.clone();
        assert_eq!(sizes.iter().sum::<usize>(), 201);
        assert!(sizes.iter().all(|s| *s <= 50), "{sizes:?}");
        assert!(sizes.len() < 20, "batched, not one by one: {sizes:?}");
    }

    #[tokio::test]
    async fn an_unanswered_item_gets_none() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let group = GroupCommit::start(2, 10, move |_items: Vec<u8>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Vec::<u8>::new() }
        });
        assert_eq!(group.submit(1).await, None);
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
