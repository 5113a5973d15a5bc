//! Redis adapters: [`RedisLock`] for the lock port, [`RedisRateLimiter`] for
//! the gateway's rate limits, and [`RedisKeyValue`] for the key-value
//! capability the rule components import.
//!
//! Keys are used as given: callers put the deployment namespace in front
//! (`{ns}:lock:...`, `{ns}:rules:{component}:...`), so several deployments
//! share one Redis.

#![forbid(unsafe_code)]

mod kv;
mod lock;
mod rate_limit;

pub use kv::RedisKeyValue;
pub use lock::RedisLock;
pub use rate_limit::RedisRateLimiter;

/// Connect and command timeouts: Redis answers in well under a millisecond
/// on a healthy network, so waiting longer only delays the error.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn client(url: &str) -> Result<redis::Client, String> {
    redis::Client::open(url).map_err(|e| format!("invalid Redis URL {url:?}: {e}"))
}
