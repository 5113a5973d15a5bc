//! The rules host: runs the domain rules as sandboxed WebAssembly components.
//!
//! Components implement one of the worlds of `rules/wit/shop-rules.wit`
//! (`order`, `inventory` or `policy`); the host recognises which from what a
//! component exports. Every call runs on a pre-instantiated, reused instance
//! under a CPU deadline (epoch interruption) and a memory cap; a trap, a
//! timeout or a memory hit becomes a [`RuleFault`] and the instance is
//! thrown away, so a rule can never crash or hang the host. Compiled code is
//! cached on disk by content hash and authenticated; a rules directory's
//! components run only when [`RuleTrust`] admits them. [`RuleHost::reload`] swaps in changed
//! components atomically: calls in flight finish on the version they started.

mod bindings;
mod cache;
mod component;
mod error;
mod host;
mod imports;
mod source;
mod trust;

pub use component::{ComponentInfo, Role, RuleStamp};
pub use error::{FaultKind, LoadError, PolicyViolation, RuleError, RuleFault};
pub use host::{Decided, ReloadReport, RuleHost, RuleSettings, WatchHandle};
pub use imports::Capabilities;
pub use source::RuleSource;
pub use trust::RuleTrust;

/// The contract version this host implements (the WIT package version).
pub const CONTRACT_VERSION: &str = "0.1.0";
