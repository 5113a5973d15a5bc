//! How requests are started: at a fixed rate (open loop), or by workers
//! each sending the next as soon as the last is answered (closed loop).
//!
//! The open loop never waits for the system: request `i` is due at
//! `start + i / rate`, and its latency counts from then. A system that falls
//! behind collects a queue of in-flight requests; past `max_in_flight` the
//! due requests are not sent and are counted as such, rather than quietly
//! slowing the load down.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What a paced run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paced {
    pub sent: u64,
    /// Due, but not sent: too many were still in flight.
    pub not_sent: u64,
    pub elapsed: Duration,
}

/// Calls `one(i, due)` for `count` requests at `rate` per second.
pub async fn at_rate<F, Fut>(rate: f64, count: u64, max_in_flight: usize, one: F) -> Paced
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut next, mut not_sent) = (0u64, 0u64);
    while next < count {
        ticks.tick().await;
        let due_now = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(count);
        while next < due_now {
            let due = start + Duration::from_secs_f64(next as f64 / rate);
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let request = one(next, due);
                    tasks.spawn(async move {
                        request.await;
                        drop(slot);
                    });
                }
                Err(_) => not_sent += 1,
            }
            next += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Paced {
        sent: count - not_sent,
        not_sent,
        elapsed: start.elapsed(),
    }
}

/// `workers` loops, each calling `one(i)` (a fresh `i` each time) and
/// awaiting it, until `until`.
pub async fn flat_out<F, Fut>(workers: usize, until: Instant, one: F) -> Paced
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let one = Arc::new(one);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (one, counter) = (Arc::clone(&one), Arc::clone(&counter));
        tasks.spawn(async move {
            while Instant::now() < until {
                one(counter.fetch_add(1, Ordering::Relaxed)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Paced {
        sent: counter.load(Ordering::Relaxed),
        not_sent: 0,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn requests_are_due_at_the_rate_and_all_are_sent_when_answers_are_quick() {
        let dues = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&dues);
        let paced = at_rate(1000.0, 200, 1000, move |i, due| {
            seen.lock().expect("not poisoned").push((i, due));
            async {}
        })
        .await;
        assert_eq!((paced.sent, paced.not_sent), (200, 0));
        let dues = dues.lock().expect("not poisoned");
        let first = dues[0].1;
        for (i, due) in dues.iter() {
            // 1 ms apart, by schedule rather than by when they happened to go.
            let offset = due.duration_since(first).as_secs_f64();
            assert!((offset - *i as f64 / 1000.0).abs() < 1e-6, "{i}: {offset}");
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_counted_not_sent() {
        let paced = at_rate(10_000.0, 100, 10, |_, _| tokio::time::sleep(Duration::from_secs(1))).await;
        assert_eq!(paced.sent, 10);
        assert_eq!(paced.not_sent, 90);
    }
}
