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
    Unavailable(#[source] super::Cause),
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

/// A shared limiter with a local one behind it: while the shared one
/// cannot be reached, each instance counts on its own.
impl<P: RateLimiter, F: RateLimiter> RateLimiter for super::WithFallback<P, F> {
    async fn check(&self, key: &str, quota: Quota) -> Result<Verdict, RateLimitError> {
        if self.try_primary() {
            match self.primary.check(key, quota).await {
                Ok(verdict) => {
                    self.answered("rate limiter");
                    return Ok(verdict);
                }
                Err(error) => self.falling_back("rate limiter", Some(&error)),
            }
        } else {
            self.falling_back("rate limiter", None);
        }
        self.fallback.check(key, quota).await
    }
}
