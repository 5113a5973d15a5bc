//! `AuditLog` on SQLite: the `audit_*` tables. The stores append their own
//! entries inside their transactions; this appends what changes no table,
//! and reads the log on the readers' connections, beside the writer.

use shop_runtime::ports::{AuditLog, StoreError};
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::db_error;
use crate::outbox::begin;
use crate::statements::AUDIT;

async fn commit(tx: Transaction<'static, Sqlite>) -> Result<(), StoreError> {
    tx.commit().await.map_err(db_error)
}

impl AuditLog for SqliteStore {
    shop_adapter_sql::audit_log!(AUDIT, begin, commit, readers);
}
