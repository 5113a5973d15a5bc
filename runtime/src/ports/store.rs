//! What the store ports share: versions, the inbox record, and the errors.
//!
//! Each context's store commits a whole change at once: the new state, the
//! events it produced (into the context's outbox) and, when the change
//! handles a message, that message's id (into the context's inbox). One
//! transaction, so a crash leaves either all of it or none.

use uuid::Uuid;

/// A stored value and the version it is stored at. Versions start at 1 and
/// grow by one with every write; a write names the version it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// A message a write handles: recorded in the inbox in the same transaction,
/// so a redelivery is recognised and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled<'a> {
    /// The consumer that handled it (a message may matter to several).
    pub consumer: &'a str,
    pub message_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote first: the expected version no longer holds, or the
    /// thing to create already exists. Load again and decide again.
    #[error("{0} was changed concurrently")]
    Conflict(String),
    /// The inbox already holds this message: it was handled before.
    #[error("message {0} was already handled")]
    AlreadyHandled(Uuid),
    /// The store's own guard refused the write (for example the CHECK that
    /// keeps stock non-negative). Nothing was written.
    #[error("the store refused the write: {0}")]
    Refused(String),
    /// The store could not be reached or failed; nothing was written, and the
    /// caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}
