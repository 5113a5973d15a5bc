//! The API key port: keys third-party callers present (`X-Api-Key`), kept
//! where every instance reads them, so `shop apikey` creates and revokes a
//! key for the whole deployment.
//!
//! Only a key's SHA-256 digest is stored; the key itself is shown once, when
//! it is made. Each key has a name, a role (its scope: what it may call)
//! and an optional expiry; a revoked key stays listed, refused.

use std::future::Future;

use super::StoreError;
use crate::audit::AuditRecord;

/// One key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub name: String,
    /// `customer`, `admin` or `payment`.
    pub role: String,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now_ms`: not revoked, not expired.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|expires| now_ms < expires)
    }
}

pub trait ApiKeyStore: Send + Sync + 'static {
    /// MUST store `record` and seal `audit` onto the audit chain in one
    /// transaction, and MUST return [`StoreError::Conflict`] (storing
    /// nothing) when a key of that name, or of that digest, exists.
    fn create_api_key(
        &self,
        record: &ApiKeyRecord,
        audit: &AuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// MUST return every stored key, revoked and expired ones too, by name.
    fn api_keys(&self) -> impl Future<Output = Result<Vec<ApiKeyRecord>, StoreError>> + Send;

    /// MUST mark the key `name` revoked at `at_ms` (a key revoked before
    /// keeps its first time) and seal `audit` onto the audit chain in one
    /// transaction, and MUST answer `false`, sealing nothing, when there is
    /// no such key.
    fn revoke_api_key(
        &self,
        name: &str,
        at_ms: i64,
        audit: &AuditRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
