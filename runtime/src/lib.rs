//! The application layer of the shop: ports, use cases and the rules host.
//!
//! It stands between the pure domain (`shop-rules`, run here as WebAssembly
//! components) and the adapters that implement its ports (`adapters/*`).
//! Nothing in this crate knows a concrete database, broker or cache: it
//! speaks to them through the traits in [`ports`], and the `shop` binary
//! wires real implementations in.
//!
//! - [`rules`]: the wasmtime host that loads, sandboxes, hot-swaps and calls
//!   the rule components, and implements the capabilities they import.
//! - [`ports`]: what the application needs from the outside world.
//! - [`saga`]: the use cases of both contexts, the outbox relay and the
//!   consumer loop that together carry an order from intake to its end.
//! - [`metrics`]: what all of the above counts and times, for Prometheus.
//! - [`audit`]: the audit log's entries and the hash chain that seals them.
//! - [`customer_data`]: delivery details sealed under per-customer keys,
//!   erased by destroying the key.
//! - [`group_commit`]: batching of writes for adapters whose transactions
//!   each cost a disk flush.
//! - [`trace_context`]: the distributed trace each hop joins and passes on.

#![deny(unsafe_code)]

pub mod audit;
pub mod customer_data;
pub mod group_commit;
pub mod metrics;
pub mod ports;
pub mod rules;
pub mod saga;
pub mod trace_context;
