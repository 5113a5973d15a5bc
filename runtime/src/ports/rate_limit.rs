//! The rate-limit port: how many requests a caller (a user, an address) may
//! make, shared by every instance of the gateway.
//!
//! The algorithm is GCRA: a key may spend `burst` requests at once, and
//! earns them back at `per_second`. Redis in the distributed mode (one clock,
//! Redis's own, for all instances), in memory in the embedded one.

use std::future::Future;
use std::time::Duration;

/// A key's allowance: `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

impl Quota {
    /// The time one request's allowance takes to come back.
    pub fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the quota: the next request is allowed after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request against `key`. MUST allow `quota.burst` requests in
    /// a row for a key not seen lately, MUST then answer
    /// [`Verdict::Limited`] with about the time until the next request would
    /// be allowed, and MUST allow about `quota.per_second` requests a second
    /// after that. Keys MUST NOT affect each other. A limited request MUST
    /// NOT use up allowance.
    fn check(&self, key: &str, quota: Quota) -> impl Future<Output = Result<Verdict, RateLimitError>> + Send;
}

/// A shared limiter (Redis) with a local one behind it: while the shared
/// one cannot be reached, each instance counts on its own, so an outage
/// loosens the limits (to per instance) but never lifts them. The outage is
/// logged when it starts and when it ends, not once per request, and every
/// request counted locally is counted in [`Self::fallbacks`].
#[derive(Debug)]
pub struct WithFallback<P, F> {
    primary: P,
    fallback: F,
    degraded: std::sync::atomic::AtomicBool,
    fallbacks: prometheus_client::metrics::counter::Counter,
}

impl<P, F> WithFallback<P, F> {
    pub fn new(primary: P, fallback: F) -> Self {
        Self {
            primary,
            fallback,
            degraded: std::sync::atomic::AtomicBool::new(false),
            fallbacks: Default::default(),
        }
    }

    /// Requests counted by the local limiter because the shared one failed.
    pub fn fallbacks(&self) -> prometheus_client::metrics::counter::Counter {
        self.fallbacks.clone()
    }
}

impl<P: RateLimiter, F: RateLimiter> RateLimiter for WithFallback<P, F> {
    async fn check(&self, key: &str, quota: Quota) -> Result<Verdict, RateLimitError> {
        use std::sync::atomic::Ordering;
        match self.primary.check(key, quota).await {
            Ok(verdict) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::warn!(target: "shop::limits", "the shared rate limiter answers again");
                }
                Ok(verdict)
            }
            Err(error) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "shop::limits", %error, "shared rate limiter unreachable; counting per instance until it returns");
                }
                self.fallbacks.inc();
                self.fallback.check(key, quota).await
            }
        }
    }
}
