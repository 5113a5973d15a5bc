//! `AuditLog` on PostgreSQL: schema `audit`. The stores append their own
//! entries inside their transactions; this appends what changes no table.

use shop_runtime::ports::{AuditLog, StoreError};
use sqlx::{PgPool, Postgres, Transaction};

use crate::PgStore;
use crate::error::db_error;
use crate::statements::AUDIT;

async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    pool.begin().await.map_err(db_error)
}

async fn commit(tx: Transaction<'static, Postgres>) -> Result<(), StoreError> {
    tx.commit().await.map_err(db_error)
}

impl AuditLog for PgStore {
    shop_adapter_sql::audit_log!(AUDIT, begin, commit);
}
