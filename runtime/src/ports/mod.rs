//! Driven ports: traits the application calls and adapters implement.
//!
//! Each port documents its contract in "MUST" sentences; `testkit` turns each
//! contract into a suite every adapter runs against itself.

pub mod clock;
pub mod kv;

pub use clock::{Clock, ManualClock, SystemClock};
pub use kv::{KeyValue, KvError};
