//! The lock port on Redis: all keys taken by one script, or none.
//!
//! Like every Redis lock, it has no fencing token; the stores' version checks
//! are the fence. One shared `ConnectionManager` reconnects by itself.

use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::ConnectionManager;
use shop_runtime::ports::{Cause, Lease, Lock, LockError};
use uuid::Uuid;

use crate::{RedisEndpoint, connected, connected_lazily};

const ACQUIRE: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
";

const RELEASE: &str = r"
local freed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    freed = freed + 1
  end
end
return freed
";

/// Pause between attempts of a waiting acquire, doubling up to the maximum.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Further tries of a command after a failed one.
const RETRIES: usize = 2;

#[derive(Clone)]
pub struct RedisLock {
    connection: ConnectionManager,
    acquire: Script,
    release: Script,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisLock")
    }
}

impl RedisLock {
    /// Connects now: fails when Redis does not answer.
    pub async fn connect(endpoint: impl Into<RedisEndpoint>) -> Result<Self, LockError> {
        let connection = connected(&endpoint.into(), RETRIES).await;
        Ok(Self::over(connection.map_err(LockError::Unavailable)?))
    }

    /// Connects on first use (and again after every failure), so a process
    /// starts while Redis is away; only a malformed URL fails here. Must be
    /// called inside a Tokio runtime.
    pub fn connect_lazily(endpoint: impl Into<RedisEndpoint>) -> Result<Self, LockError> {
        let connection = connected_lazily(&endpoint.into(), RETRIES);
        Ok(Self::over(connection.map_err(LockError::Unavailable)?))
    }

    fn over(connection: ConnectionManager) -> Self {
        Self {
            connection,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        }
    }
}

fn unavailable(error: redis::RedisError) -> LockError {
    LockError::Unavailable(Cause::new(error))
}

impl Lock for RedisLock {
    async fn acquire(&self, keys: &[String], ttl: Duration, wait: Duration) -> Result<Lease, LockError> {
        let token = Uuid::now_v7().to_string();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let deadline = Instant::now() + wait;
        let mut pause = FIRST_PAUSE;
        let mut connection = self.connection.clone();
        loop {
            let mut invocation = self.acquire.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            let taken: i64 = invocation
                .arg(&token)
                .arg(ttl_ms)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if taken == 1 {
                return Ok(Lease {
                    keys: keys.to_vec(),
                    token,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LockError::Busy(keys.join(", ")));
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let mut invocation = self.release.prepare_invoke();
        for key in &lease.keys {
            invocation.key(key);
        }
        let mut connection = self.connection.clone();
        let _freed: i64 = invocation
            .arg(&lease.token)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
