//! The rate-limit port on Redis: GCRA in one script, on Redis's clock, so
//! every gateway instance counts against the same allowance.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use shop_runtime::ports::{Cause, Quota, RateLimitError, RateLimiter, Verdict};

use crate::{RedisEndpoint, connected, connected_lazily};

/// KEYS[1]: the key; ARGV: interval and tolerance in microseconds.
/// Answers 0 when allowed, else the microseconds until it would be.
const GCRA: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
local allowed_at = next - tolerance
if allowed_at > now then return allowed_at - now end
redis.call('SET', KEYS[1], next, 'PX', math.ceil(tolerance / 1000) + 1)
return 0
";

/// Further tries of a command after a failed one.
const RETRIES: usize = 1;

#[derive(Clone)]
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    gcra: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisRateLimiter")
    }
}

impl RedisRateLimiter {
    /// Connects now: fails when Redis does not answer.
    pub async fn connect(endpoint: impl Into<RedisEndpoint>) -> Result<Self, RateLimitError> {
        let connection = connected(&endpoint.into(), RETRIES).await;
        Ok(Self::over(connection.map_err(RateLimitError::Unavailable)?))
    }

    /// Connects on first use (and again after every failure), so a process
    /// starts while Redis is away; only a malformed URL fails here. Must be
    /// called inside a Tokio runtime.
    pub fn connect_lazily(endpoint: impl Into<RedisEndpoint>) -> Result<Self, RateLimitError> {
        let connection = connected_lazily(&endpoint.into(), RETRIES);
        Ok(Self::over(connection.map_err(RateLimitError::Unavailable)?))
    }

    fn over(connection: ConnectionManager) -> Self {
        Self {
            connection,
            gcra: Script::new(GCRA),
        }
    }
}

impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Verdict, RateLimitError> {
        let interval = u64::try_from(quota.interval().as_micros()).unwrap_or(u64::MAX);
        let tolerance = interval.saturating_mul(u64::from(quota.burst.max(1)));
        let mut connection = self.connection.clone();
        let wait: u64 = self
            .gcra
            .key(key)
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| RateLimitError::Unavailable(Cause::new(e)))?;
        Ok(match wait {
            0 => Verdict::Allowed,
            micros => Verdict::Limited {
                retry_after: Duration::from_micros(micros),
            },
        })
    }
}
