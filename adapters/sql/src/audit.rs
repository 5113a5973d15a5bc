//! The audit log over any SQL database sqlx speaks: entries sealed onto
//! the chain inside the writer's own transaction, and the chain's heads.
//!
//! The chain is sealed by the writer (`runtime::audit`), under a lock held
//! to the commit, so entries are numbered in the order they become visible.
//! The head is a table of its own, appended to (never updated) with each
//! append: the serving roles may insert and read audit rows, nothing else,
//! and deleting the newest entries leaves a head that points past them.

use std::borrow::Borrow;

use shop_runtime::audit::{AuditEntry, AuditRecord, ChainHead};
use shop_runtime::ports::{AuditQuery, StoreError};
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, QueryBuilder, Type};

use crate::Driver;
use crate::rows::{StoreRow, corrupt, to_sql, version};

/// One adapter's SQL for the audit log; `$N` is the N-th parameter.
#[derive(Debug)]
pub struct AuditSql {
    /// Takes the chain's lock until the transaction ends (a no-op where
    /// the transaction holds the whole database already).
    pub lock: &'static str,
    /// The last head (`seq`, `hash`), or no row while the log is empty.
    pub head: &'static str,
    /// `$1` seq, `$2` hash: the new head.
    pub insert_head: &'static str,
    /// `INSERT INTO <entries> (seq, context, at, actor, role, action,
    /// target, request_id, detail, prev_hash, hash) `, followed by the values.
    pub insert_entries: &'static str,
    /// `$1` actor or NULL, `$2` target or NULL, `$3` action or NULL, `$4`
    /// after, `$5` limit: the matching entries' columns, by seq.
    pub entries: &'static str,
}

/// Rows per INSERT: eleven parameters each, well inside every driver's limit.
const ROWS_PER_INSERT: usize = 500;

/// [`AuditSql`] run through the adapter's [`Driver`].
#[derive(Debug)]
pub struct AuditStatements<DB: Database> {
    sql: &'static AuditSql,
    driver: Driver<DB>,
}

impl<DB: Database> Clone for AuditStatements<DB> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<DB: Database> Copy for AuditStatements<DB> {}

impl<DB: Database> AuditStatements<DB> {
    pub const fn new(sql: &'static AuditSql, driver: Driver<DB>) -> Self {
        Self { sql, driver }
    }
}

impl<DB> AuditStatements<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> DB::Arguments: IntoArguments<DB>,
    DB::Row: StoreRow,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB>,
{
    /// Seals `records` onto the chain inside the transaction `tx` is in.
    pub async fn append_in<R: Borrow<AuditRecord> + Sync>(
        &self,
        tx: &mut DB::Connection,
        records: &[R],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let db_error = self.driver.db_error;
        sqlx::query::<DB>(self.sql.lock)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut head = match sqlx::query::<DB>(self.sql.head)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
        {
            Some(row) => chain_head(&row)?,
            None => ChainHead::default(),
        };
        let entries = head.seal(records.iter().map(Borrow::borrow));
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<DB>::new(self.sql.insert_entries);
            insert.push_values(chunk, |mut row, e| {
                let r = &e.record;
                row.push_bind(to_sql(e.seq))
                    .push_bind(r.context.as_str())
                    .push_bind(r.at)
                    .push_bind(r.actor.as_str())
                    .push_bind(r.role.as_str())
                    .push_bind(r.action.as_str())
                    .push_bind(r.target.as_str())
                    .push_bind(r.request_id.as_str())
                    .push_bind(r.detail.as_str())
                    .push_bind(e.prev_hash.as_str())
                    .push_bind(e.hash.as_str());
            });
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        sqlx::query::<DB>(self.sql.insert_head)
            .bind(to_sql(head.seq))
            .bind(head.hash.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    pub async fn entries(&self, pool: &Pool<DB>, query: AuditQuery<'_>) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query::<DB>(self.sql.entries)
            .bind(query.actor)
            .bind(query.target)
            .bind(query.action)
            .bind(to_sql(query.after))
            .bind(i64::from(query.limit))
            .fetch_all(pool)
            .await
            .map_err(self.driver.db_error)?
            .iter()
            .map(entry)
            .collect()
    }

    pub async fn head(&self, pool: &Pool<DB>) -> Result<ChainHead, StoreError> {
        let row = sqlx::query::<DB>(self.sql.head)
            .fetch_optional(pool)
            .await
            .map_err(self.driver.db_error)?;
        row.as_ref().map_or_else(|| Ok(ChainHead::default()), chain_head)
    }
}

fn chain_head(row: &impl StoreRow) -> Result<ChainHead, StoreError> {
    let bad = |e| corrupt("audit head", e);
    Ok(ChainHead {
        seq: version(row.number("seq").map_err(bad)?),
        hash: row.text("hash").map_err(bad)?,
    })
}

fn entry(row: &impl StoreRow) -> Result<AuditEntry, StoreError> {
    let bad = |e| corrupt("audit entry", e);
    let text = |column| row.text(column).map_err(bad);
    Ok(AuditEntry {
        seq: version(row.number("seq").map_err(bad)?),
        record: AuditRecord {
            context: text("context")?,
            at: row.number("at").map_err(bad)?,
            actor: text("actor")?,
            role: text("role")?,
            action: text("action")?,
            target: text("target")?,
            request_id: text("request_id")?,
            detail: text("detail")?,
        },
        prev_hash: text("prev_hash")?,
        hash: text("hash")?,
    })
}

/// The [`AuditLog`](shop_runtime::ports::AuditLog) methods both adapters
/// answer alike, inside their `impl AuditLog`: through `$statements` (their
/// [`AuditStatements`]), appending in a transaction from `$begin(&self.pool)`
/// finished by `$commit(tx)`, and reading on `self.$readers` (`self.pool`
/// unless named).
#[macro_export]
macro_rules! audit_log {
    ($statements:path, $begin:expr, $commit:expr) => {
        $crate::audit_log!($statements, $begin, $commit, pool);
    };
    ($statements:path, $begin:expr, $commit:expr, $readers:ident) => {
        async fn append(
            &self,
            records: &[::shop_runtime::audit::AuditRecord],
        ) -> Result<(), ::shop_runtime::ports::StoreError> {
            if records.is_empty() {
                return Ok(());
            }
            let mut tx = $begin(&self.pool).await?;
            let records: Vec<&::shop_runtime::audit::AuditRecord> = records.iter().collect();
            $statements.append_in(&mut tx, &records).await?;
            $commit(tx).await
        }

        async fn entries(
            &self,
            query: ::shop_runtime::ports::AuditQuery<'_>,
        ) -> Result<Vec<::shop_runtime::audit::AuditEntry>, ::shop_runtime::ports::StoreError> {
            $statements.entries(&self.$readers, query).await
        }

        async fn head(&self) -> Result<::shop_runtime::audit::ChainHead, ::shop_runtime::ports::StoreError> {
            $statements.head(&self.$readers).await
        }
    };
}
