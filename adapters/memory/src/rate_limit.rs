//! The rate-limit port in memory: GCRA per key, for one process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shop_runtime::ports::{Quota, RateLimitError, RateLimiter, Verdict};

/// Keys idle this long are forgotten when the map is swept.
const SWEEP_EVERY: usize = 10_000;

#[derive(Debug)]
pub struct MemoryRateLimiter {
    epoch: Instant,
    /// Per key, the theoretical arrival time of the next request, as time since `epoch`.
    arrivals: Mutex<HashMap<String, Duration>>,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            arrivals: Mutex::new(HashMap::new()),
        }
    }
}

impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Verdict, RateLimitError> {
        let now = self.epoch.elapsed();
        let interval = quota.interval();
        let tolerance = interval * quota.burst.max(1);
        let mut arrivals = self
            .arrivals
            .lock()
            .map_err(|_| RateLimitError::Unavailable("the limiter's table is poisoned".into()))?;
        if arrivals.len() >= SWEEP_EVERY {
            // Forget keys whose allowance is full again: they behave as new.
            arrivals.retain(|_, tat| *tat > now);
        }
        let tat = arrivals.get(key).copied().unwrap_or(now).max(now);
        let next = tat + interval;
        let allowed_at = next.saturating_sub(tolerance);
        if allowed_at > now {
            return Ok(Verdict::Limited {
                retry_after: allowed_at - now,
            });
        }
        arrivals.insert(key.to_owned(), next);
        Ok(Verdict::Allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryRateLimiter;

    #[tokio::test]
    async fn rate_limit_contract() {
        shop_runtime::ports::contracts::rate_limit::run(&MemoryRateLimiter::new(), "contract:").await;
    }
}
