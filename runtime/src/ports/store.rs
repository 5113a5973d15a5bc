//! What the store ports share: versions and the errors.
//!
//! Each context's store commits a whole change at once: the new state and
//! the events it produced (into the context's outbox). One transaction, so a
//! crash leaves either all of it or none. No store keeps an inbox of handled
//! messages: every change a message causes is fenced by the state it
//! changes (a version, an order's status, a reservation per order), so a
//! redelivered message decides nothing the second time.

/// A stored value and the version it is stored at. Versions start at 1 and
/// grow by one with every write; a write names the version it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote first: the expected version no longer holds, or the
    /// thing to create already exists. Load again and decide again.
    #[error("{0} was changed concurrently")]
    Conflict(String),
    /// The store's own guard refused the write (for example the CHECK that
    /// keeps stock non-negative). Nothing was written.
    #[error("the store refused the write: {0}")]
    Refused(String),
    /// The store could not be reached or failed; nothing was written, and the
    /// caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] super::Cause),
}
