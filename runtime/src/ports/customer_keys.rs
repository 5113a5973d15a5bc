//! The customers' data keys, as the order context's store keeps them:
//! wrapped (encrypted) under a key-encryption key the store never sees.
//! Destroying a customer's key is what erasing their data means: every
//! delivery sealed under it, wherever a copy went, stops being readable.

use std::future::Future;

use super::store::StoreError;
use crate::audit::AuditRecord;

/// A customer's data key as stored: never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub customer_id: String,
    /// Names the key in every ciphertext sealed under it; a key made after
    /// an erasure gets a new id.
    pub key_id: String,
    /// Which key-encryption key wrapped it.
    pub kek_id: String,
    /// The key sealed under that key-encryption key, as base64.
    pub wrapped: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

pub trait CustomerKeys: Send + Sync + 'static {
    /// MUST store `candidate` unless its customer has a key already, and
    /// MUST return the key the customer has afterwards: the stored one, or
    /// `candidate`. Concurrent calls for one customer MUST all return the same key.
    fn obtain_key(&self, candidate: &StoredKey) -> impl Future<Output = Result<StoredKey, StoreError>> + Send;

    /// MUST return those of `key_ids` that exist (not destroyed), in any order.
    fn keys(&self, key_ids: &[String]) -> impl Future<Output = Result<Vec<StoredKey>, StoreError>> + Send;

    /// MUST delete the customer's key and append `audit` to the audit log
    /// (as [`AuditLog::append`](super::AuditLog::append) does) in one
    /// transaction, and return whether there was a key. Idempotent: a
    /// customer without a key is not an error (and is audited all the same).
    fn destroy_key(
        &self,
        customer_id: &str,
        audit: &AuditRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// MUST return up to `limit` keys wrapped under another key-encryption
    /// key than `kek_id`, with key ids greater than `after`, in key id
    /// order: what a rotation still has to re-wrap.
    fn keys_not_under(
        &self,
        kek_id: &str,
        after: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredKey>, StoreError>> + Send;

    /// MUST replace the wrapping of `rewrapped.key_id` by `rewrapped`'s
    /// when that key is still wrapped under `previous_kek`, and return
    /// whether it did (not when the key was destroyed or re-wrapped meanwhile).
    fn rewrap_key(
        &self,
        rewrapped: &StoredKey,
        previous_kek: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
