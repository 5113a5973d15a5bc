//! In-process adapters: the embedded mode's implementations of the runtime's
//! ports, for a shop that runs as one process with nothing else installed.
//!
//! They pass the same contract suites (`shop_runtime::ports::contracts`)
//! as the Redis, Postgres and JetStream adapters.

#![forbid(unsafe_code)]

mod kv;
mod lock;
mod rate_limit;

pub use kv::MemoryKeyValue;
pub use lock::MemoryLock;
pub use rate_limit::MemoryRateLimiter;
