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
    Unavailable(String),
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
