//! Intake that sheds load the saga cannot keep up with.
//!
//! Accepting an order promises it will be confirmed or cancelled soon. When
//! the saga's backlog (orders still PENDING) passes a bound, new orders are
//! refused with "come back later" instead of joining a queue that only
//! grows: the caller sees a fast 503 with `Retry-After`, and the orders
//! already accepted are confirmed in time. The backlog is counted by a
//! sampler every few hundred milliseconds (less often behind a deep
//! backlog, where counting is dearer), not per request, so the check costs
//! intake an atomic read.
//!
//! The bound is generous by default: intake must keep taking orders while
//! inventory is briefly down (they are reserved when it comes back), and
//! sheds only once the backlog is more than a short outage explains.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::orders::OrderService;
use crate::ports::OrderStore;

/// PENDING orders past which intake sheds, by default.
pub const DEFAULT_MAX_PENDING: u64 = 50_000;

/// The intake's view of the saga's backlog, shared by the request handlers
/// and the sampler.
#[derive(Debug)]
pub struct Backpressure {
    /// `None`: never shed.
    max_pending: Option<u64>,
    pending: AtomicU64,
    retry_after: Duration,
}

/// Intake is shedding load: `pending` orders wait for the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{pending} orders are waiting for stock; try again in {} s", .retry_after.as_secs())]
pub struct Overloaded {
    pub pending: u64,
    pub retry_after: Duration,
}

impl Backpressure {
    /// Sheds once more than `max_pending` orders are PENDING (`None`: never).
    pub fn new(max_pending: Option<u64>) -> Self {
        Self {
            max_pending,
            pending: AtomicU64::new(0),
            retry_after: Duration::from_secs(1),
        }
    }

    /// Never sheds (tools, tests, and deployments that said `off`).
    pub fn off() -> Self {
        Self::new(None)
    }

    /// MUST refuse when the last sampled backlog is over the bound.
    pub fn admit(&self) -> Result<(), Overloaded> {
        let pending = self.pending.load(Ordering::Relaxed);
        match self.max_pending {
            Some(max) if pending > max => Err(Overloaded {
                pending,
                retry_after: self.retry_after,
            }),
            _ => Ok(()),
        }
    }

    pub fn record(&self, pending: u64) {
        self.pending.store(pending, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.max_pending.is_some()
    }
}

/// How often the backlog is counted.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The least time between two counts, in counts' durations: counting reads
/// every PENDING order, so behind a deep backlog one count is tens of
/// milliseconds of the database's time, and the sampler waits longer.
const PAUSE_PER_COUNT: u32 = 20;

/// Counts the PENDING orders every `every` for the service's intake (or,
/// when a count takes longer than a twentieth of that, twenty counts' time
/// after it), until `stop` turns true. A failed count keeps the last one.
pub async fn run_sampler<S: OrderStore>(
    service: Arc<OrderService<S>>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let counting = Instant::now();
        if let Err(error) = service.count_backlog().await {
            tracing::debug!(target: "shop::intake", %error, "backlog not counted");
        }
        let _ = tokio::time::timeout(pause_after(every, counting.elapsed()), stop.changed()).await;
    }
}

/// The wait after a count that took `took`: `every`, or twenty counts' time
/// when that is longer.
fn pause_after(every: Duration, took: Duration) -> Duration {
    every.max(took.saturating_mul(PAUSE_PER_COUNT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_only_past_the_bound() {
        let pressure = Backpressure::new(Some(10));
        assert_eq!(pressure.admit(), Ok(()));
        pressure.record(10);
        assert_eq!(pressure.admit(), Ok(()), "at the bound still admits");
        pressure.record(11);
        let refused = pressure.admit().expect_err("over the bound");
        assert_eq!(refused.pending, 11);
        assert!(refused.retry_after >= Duration::from_secs(1));
        pressure.record(3);
        assert_eq!(pressure.admit(), Ok(()), "admits again once the saga caught up");

        let off = Backpressure::off();
        off.record(u64::MAX);
        assert_eq!(off.admit(), Ok(()));
    }

    #[test]
    fn a_dear_count_waits_longer_for_the_next() {
        let every = Duration::from_millis(250);
        assert_eq!(
            pause_after(every, Duration::from_millis(2)),
            every,
            "cheap: the usual pace"
        );
        assert_eq!(
            pause_after(every, Duration::from_millis(58)),
            Duration::from_millis(1_160)
        );
        assert_eq!(pause_after(every, Duration::MAX), Duration::MAX, "never overflows");
    }
}
