//! Local locks for the embedded mode: one process, so a map under a mutex.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shop_runtime::ports::{Lease, Lock, LockError};
use tokio::sync::Notify;

/// How often a waiter looks again when no release wakes it (a lease that
/// expires wakes nobody).
const RECHECK: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
pub struct MemoryLock {
    held: Mutex<HashMap<String, (u64, Instant)>>,
    released: Notify,
    next_token: AtomicU64,
}

impl MemoryLock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every key or none.
    fn try_take(&self, keys: &[String], token: u64, ttl: Duration) -> Result<bool, LockError> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| LockError::Unavailable("the in-process lock table was poisoned by a panic".into()))?;
        let now = Instant::now();
        if keys
            .iter()
            .any(|key| held.get(key).is_some_and(|(_, until)| *until > now))
        {
            return Ok(false);
        }
        for key in keys {
            held.insert(key.clone(), (token, now + ttl));
        }
        Ok(true)
    }
}

impl Lock for MemoryLock {
    async fn acquire(&self, keys: &[String], ttl: Duration, wait: Duration) -> Result<Lease, LockError> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + wait;
        loop {
            // Registered before trying, so a release in between is not missed.
            let released = self.released.notified();
            if self.try_take(keys, token, ttl)? {
                return Ok(Lease {
                    keys: keys.to_vec(),
                    token: token.to_string(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LockError::Busy(keys.join(", ")));
            }
            let _ = tokio::time::timeout(left.min(RECHECK), released).await;
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let token: u64 = lease.token.parse().unwrap_or(u64::MAX);
        if let Ok(mut held) = self.held.lock() {
            for key in &lease.keys {
                if held.get(key).is_some_and(|(owner, _)| *owner == token) {
                    held.remove(key);
                }
            }
        }
        self.released.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryLock;

    #[tokio::test]
    async fn passes_the_lock_contract() {
        shop_runtime::ports::contracts::lock::run(&MemoryLock::new(), "contract:").await;
    }
}
