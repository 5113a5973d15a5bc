//! The lock port: short mutual exclusion across instances, so two handlers
//! do not work on the same product at once.
//!
//! A lock is an optimisation, never the guarantee: leases expire, clocks and
//! networks misbehave. Correctness comes from the stores' version checks and
//! constraints; the lock only keeps conflicts (and their retries) rare.
//! Redis in the distributed mode, in-process in the embedded mode.

use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else held a key for all of `wait`.
    #[error("lock busy: {0}")]
    Busy(String),
    #[error("lock service unavailable: {0}")]
    Unavailable(#[source] super::Cause),
}

/// Proof of holding some keys, until released or `ttl` passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub keys: Vec<String>,
    /// Unique per acquisition: a release only frees keys still held under it.
    pub token: String,
}

pub trait Lock: Send + Sync + 'static {
    /// MUST take every key in `keys` or none, waiting up to `wait` while any
    /// is held, and hold them until released or until `ttl` has passed.
    /// MUST return [`LockError::Busy`] when `wait` runs out.
    fn acquire(
        &self,
        keys: &[String],
        ttl: Duration,
        wait: Duration,
    ) -> impl Future<Output = Result<Lease, LockError>> + Send;

    /// MUST free the lease's keys that are still held under its token, and
    /// leave alone any key that expired and was taken by someone else.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), LockError>> + Send;
}

/// Marks the leases of each side of a [`super::WithFallback`], so a lease
/// goes back to the lock that gave it, whichever is in use by then.
const SHARED: &str = "shared:";
const LOCAL: &str = "local:";

/// A shared lock with a local one behind it: while the shared one cannot be
/// reached, each instance excludes on its own. Handlers of different
/// instances may then meet on a product; the stores' version checks make
/// that a retry, not an error.
impl<P: Lock, F: Lock> Lock for super::WithFallback<P, F> {
    async fn acquire(&self, keys: &[String], ttl: Duration, wait: Duration) -> Result<Lease, LockError> {
        if self.try_primary() {
            match self.primary.acquire(keys, ttl, wait).await {
                Ok(lease) => {
                    self.answered("lock");
                    return Ok(marked(lease, SHARED));
                }
                Err(LockError::Unavailable(error)) => self.falling_back("lock", Some(&error)),
                Err(busy) => return Err(busy),
            }
        } else {
            self.falling_back("lock", None);
        }
        self.fallback
            .acquire(keys, ttl, wait)
            .await
            .map(|lease| marked(lease, LOCAL))
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let unmarked = |token: &str| Lease {
            keys: lease.keys.clone(),
            token: token.to_owned(),
        };
        match (lease.token.strip_prefix(SHARED), lease.token.strip_prefix(LOCAL)) {
            (Some(token), _) => self.primary.release(&unmarked(token)).await,
            (_, Some(token)) => self.fallback.release(&unmarked(token)).await,
            // Not one of ours: nothing of ours to free.
            (None, None) => Ok(()),
        }
    }
}

fn marked(mut lease: Lease, side: &str) -> Lease {
    lease.token.insert_str(0, side);
    lease
}
