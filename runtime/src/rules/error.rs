//! What can go wrong loading and calling rules.

use std::path::PathBuf;
use std::time::Duration;

/// A component was refused at load time. The previous rule set, if any, stays active.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{name}: not a WebAssembly component: {reason}")]
    NotAComponent { name: String, reason: String },
    #[error("{name}: exports none of the rule contracts ({expected}); it exports: {found}")]
    UnknownContract {
        name: String,
        expected: String,
        found: String,
    },
    #[error(
        "{name}: built against shop:rules@{found} (it exports {exports}); this host implements shop:rules@{} and runs components built against any {}.x: rebuild it against rules/wit/shop-rules.wit",
        super::CONTRACT_VERSION,
        super::component::major(super::CONTRACT_VERSION)
    )]
    OtherVersion {
        name: String,
        found: String,
        exports: String,
    },
    #[error("{name}: does not fit the {contract} contract: {reason}")]
    ContractMismatch {
        name: String,
        contract: &'static str,
        reason: String,
    },
    #[error("{name}: could not start: {reason}")]
    Start { name: String, reason: String },
    #[error("both {first} and {second} provide the {role} rules; keep one")]
    Ambiguous {
        role: super::ComponentKind,
        first: String,
        second: String,
    },
    #[error("no component provides the {0} rules")]
    Missing(super::ComponentKind),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{name}: refused: its SHA-256 {hash} is not on the allow list and it carries no signature of a trusted key"
    )]
    Untrusted { name: String, hash: String },
    #[error("the WebAssembly engine could not be configured: {0}")]
    Engine(String),
}

/// A rule call that did not come back with an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule component {component} failed: {kind}")]
pub struct RuleFault {
    /// `name@hash` of the component.
    pub component: String,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultKind {
    #[error("ran longer than its {0:?} budget")]
    Timeout(Duration),
    #[error("tried to use more than {0} bytes of memory")]
    MemoryLimit(usize),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
}

/// A rule's answer was "no" (`Rejected`), or there was no answer (`Fault`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError<R> {
    #[error("rejected: {0}")]
    Rejected(R),
    #[error(transparent)]
    Fault(#[from] RuleFault),
}

/// A policy plugin refused an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy} refused the order ({code}): {message}")]
pub struct PolicyViolation {
    pub policy: String,
    pub code: String,
    pub message: String,
}
