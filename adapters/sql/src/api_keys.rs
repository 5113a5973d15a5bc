//! `ApiKeyStore` over any SQL database sqlx speaks: one row per key, with
//! its digest as hex text and times as integer milliseconds. Each change
//! is sealed onto the audit chain in its own transaction.

use shop_runtime::audit::AuditRecord;
use shop_runtime::ports::{ApiKeyRecord, ApiKeyStore, StoreError};
use shop_streams::hex;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::Driver;
use crate::audit::AuditStatements;
use crate::rows::StoreRow;

/// The key table's statements, in the SQL both databases speak (`$N`
/// parameters). Built by [`api_keys_sql!`].
#[derive(Debug)]
pub struct ApiKeySql {
    /// Opens a transaction that will write (SQLite's must say so up front).
    pub begin: &'static str,
    /// `$1` name, `$2` role, `$3` digest, `$4` created, `$5` expires.
    pub create: &'static str,
    /// Every key by name: name, role, digest, created, expires, revoked.
    pub list: &'static str,
    /// `$1` name, `$2` revoked at: keeps an earlier revocation.
    pub revoke: &'static str,
}

/// The [`ApiKeySql`] of the table `$table`.
#[macro_export]
macro_rules! api_keys_sql {
    ($table:literal, $begin:literal) => {
        $crate::ApiKeySql {
            begin: $begin,
            create: concat!(
                "INSERT INTO ",
                $table,
                " (name, role, digest, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)"
            ),
            list: concat!(
                "SELECT name, role, digest, created_ms, expires_ms, revoked_ms FROM ",
                $table,
                " ORDER BY name"
            ),
            revoke: concat!(
                "UPDATE ",
                $table,
                " SET revoked_ms = COALESCE(revoked_ms, $2) WHERE name = $1"
            ),
        }
    };
}

pub struct SqlApiKeys<DB: Database> {
    pool: Pool<DB>,
    sql: &'static ApiKeySql,
    audit: AuditStatements<DB>,
    driver: Driver<DB>,
}

impl<DB: Database> std::fmt::Debug for SqlApiKeys<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlApiKeys").finish_non_exhaustive()
    }
}

impl<DB: Database> Clone for SqlApiKeys<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: self.sql,
            audit: self.audit,
            driver: self.driver,
        }
    }
}

impl<DB: Database> SqlApiKeys<DB> {
    pub fn new(pool: Pool<DB>, sql: &'static ApiKeySql, audit: AuditStatements<DB>, driver: Driver<DB>) -> Self {
        Self {
            pool,
            sql,
            audit,
            driver,
        }
    }
}

fn corrupt(error: impl std::fmt::Display) -> StoreError {
    crate::rows::corrupt("API key", error)
}

impl<DB> ApiKeyStore for SqlApiKeys<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    DB::Row: StoreRow,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn create_api_key(&self, record: &ApiKeyRecord, audit: &AuditRecord) -> Result<(), StoreError> {
        let db_error = self.driver.db_error;
        let mut tx = self.pool.begin_with(self.sql.begin).await.map_err(db_error)?;
        sqlx::query::<DB>(self.sql.create)
            .bind(record.name.clone())
            .bind(record.role.clone())
            .bind(hex::encode(&record.digest))
            .bind(record.created_ms)
            .bind(record.expires_ms)
            .execute(&mut *tx)
            .await
            .map_err(|error| match error.as_database_error() {
                Some(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("an API key named {} (or with that key) exists", record.name))
                }
                _ => db_error(error),
            })?;
        self.audit.append_in(&mut tx, &[audit]).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query::<DB>(self.sql.list)
            .fetch_all(&self.pool)
            .await
            .map_err(self.driver.db_error)?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get(2).map_err(corrupt)?;
                Ok(ApiKeyRecord {
                    name: row.try_get(0).map_err(corrupt)?,
                    role: row.try_get(1).map_err(corrupt)?,
                    digest: hex::decode(&text)
                        .and_then(|bytes| bytes.try_into().ok())
                        .ok_or_else(|| corrupt("a digest that is not 64 hex digits"))?,
                    created_ms: row.try_get(3).map_err(corrupt)?,
                    expires_ms: row.try_get(4).map_err(corrupt)?,
                    revoked_ms: row.try_get(5).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn revoke_api_key(&self, name: &str, at_ms: i64, audit: &AuditRecord) -> Result<bool, StoreError> {
        let db_error = self.driver.db_error;
        let mut tx = self.pool.begin_with(self.sql.begin).await.map_err(db_error)?;
        let revoked = sqlx::query::<DB>(self.sql.revoke)
            .bind(name.to_owned())
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if (self.driver.rows_affected)(&revoked) != 1 {
            return Ok(false);
        }
        self.audit.append_in(&mut tx, &[audit]).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }
}
