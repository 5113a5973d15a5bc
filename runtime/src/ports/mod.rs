//! Driven ports: traits the application calls and adapters implement.
//!
//! Each port documents its contract in "MUST" sentences; `testkit` turns each
//! contract into a suite every adapter runs against itself.

pub mod api_keys;
pub mod audit_log;
pub mod bus;
pub mod cause;
pub mod clock;
pub mod customer_keys;
pub mod fallback;
pub mod inventory_store;
pub mod kv;
pub mod lock;
pub mod order_store;
pub mod outbox;
pub mod payment;
pub mod rate_limit;
pub mod rule_store;
pub mod store;

pub use api_keys::{ApiKeyRecord, ApiKeyStore};
pub use audit_log::{AuditLog, AuditQuery};
pub use bus::{BusError, DeadLetter, Delivery, EventBus, Subscription};
pub use cause::Cause;
pub use clock::{Clock, ManualClock, SystemClock};
pub use customer_keys::{CustomerKeys, StoredKey};
pub use fallback::WithFallback;
pub use inventory_store::{InventoryStore, InventoryWrite, MovementEntry, NetWrite, movement_record};
pub use kv::{KeyValue, KvError};
pub use lock::{Lease, Lock, LockError};
pub use order_store::{
    CatalogueEntry, OrderCursor, OrderQuery, OrderStore, OrderWrite, Provenance, SealedDelivery, StoredRecord,
    checked_updates,
};
pub use outbox::{Outbox, Pending};
pub use payment::{PaymentError, PaymentIntent, PaymentProvider};
pub use rate_limit::{Quota, RateLimitError, RateLimiter, Verdict};
pub use rule_store::{Changes, DISAGREEMENTS_KEPT, Disagreement, Revision, RuleStore, RuleStoreError};
pub use store::{StoreError, Versioned};

#[cfg(feature = "testkit")]
pub mod contracts;
