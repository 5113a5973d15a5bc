//! The rule store port: the rule components a deployment published and
//! their releases, shared by every instance, so `shop rules publish` (or
//! `POST /api/rules`) changes what the whole fleet runs.
//!
//! JetStream's object store and key-value buckets keep it in the
//! distributed mode, the SQLite database in the embedded one. Components
//! are kept by content hash; a release is one record per rule name,
//! changed by compare-and-set on its revision so two publishers never
//! overwrite each other.

use std::future::Future;
use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use super::Cause;
use crate::rules::Release;

/// A release's revision in the store: what a save must name to replace it.
pub type Revision = u64;

/// A stream of change notices.
pub type Changes = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// How many disagreements a store keeps per rule name; older ones go.
pub const DISAGREEMENTS_KEPT: usize = 100;

/// A shadow version's answer that differed from the active version's, with
/// what both were asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    pub name: String,
    /// The shadow version.
    pub candidate: u32,
    /// The instance that saw it.
    pub instance: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub input: serde_json::Value,
    pub active: serde_json::Value,
    pub shadow: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleStoreError {
    #[error("the rule store is unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// Another publisher changed the release first.
    #[error("the release of {0} changed meanwhile")]
    Conflict(String),
    #[error("the rule store has no component of hash {0}")]
    MissingComponent(String),
    #[error("the rule store holds a malformed record: {0}")]
    Corrupt(String),
}

pub trait RuleStore: Send + Sync + 'static {
    /// MUST keep `wasm` under `hash` (its hex SHA-256) for as long as the
    /// store lives; putting the same hash again MUST succeed.
    fn put_component(&self, hash: &str, wasm: &[u8]) -> impl Future<Output = Result<(), RuleStoreError>> + Send;

    /// MUST return the bytes put under `hash`, and
    /// [`RuleStoreError::MissingComponent`] when none were.
    fn component(&self, hash: &str) -> impl Future<Output = Result<Vec<u8>, RuleStoreError>> + Send;

    /// MUST return every release saved, with its revision, ordered by name.
    fn releases(&self) -> impl Future<Output = Result<Vec<(Release, Revision)>, RuleStoreError>> + Send;

    /// MUST store `release` when the stored revision of its name is still
    /// `expected` (`None`: nothing stored under the name) and return the new
    /// revision, and MUST return [`RuleStoreError::Conflict`], storing
    /// nothing, when it is not.
    fn save(
        &self,
        release: &Release,
        expected: Option<Revision>,
    ) -> impl Future<Output = Result<Revision, RuleStoreError>> + Send;

    /// MUST yield a notice within a second of every save made after the
    /// call, by any process sharing the store (several saves may share one
    /// notice), for as long as the stream is polled.
    fn changes(&self) -> impl Future<Output = Result<Changes, RuleStoreError>> + Send;

    /// MUST keep `disagreement`, and of one name only the newest
    /// [`DISAGREEMENTS_KEPT`].
    fn record_disagreement(
        &self,
        disagreement: &Disagreement,
    ) -> impl Future<Output = Result<(), RuleStoreError>> + Send;

    /// MUST return the disagreements kept for `name`, oldest first.
    fn disagreements(&self, name: &str) -> impl Future<Output = Result<Vec<Disagreement>, RuleStoreError>> + Send;
}
