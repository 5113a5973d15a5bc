//! Rows written in one statement: sqlx hands every statement to the
//! connection's thread and waits for the answer, so the saga's batches bind
//! their rows as one JSON array (`?1`), which the statement reads back with
//! `json_each` and `->>`. A statement per row would pace the saga by that
//! hand-off, not by SQLite.
//!
//! The arrays are encoded before the transaction begins ([`Rows::of`]):
//! while a write transaction is open every other writer waits for the one
//! connection, and under load the task that holds it may wait for a Tokio
//! worker between two statements. Encoding there held the database for
//! work that needs no lock.

use std::collections::HashSet;

use shop_runtime::ports::StoreError;
use sqlx::{Sqlite, Transaction};

use crate::error::{corrupt, db_error};

/// Rows as the JSON array a statement reads.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    json: String,
    len: usize,
}

impl Rows {
    /// Fails rather than write fewer rows than given.
    pub(crate) fn of<T: serde::Serialize>(rows: &[T]) -> Result<Self, StoreError> {
        Ok(Self {
            json: serde_json::to_string(rows).map_err(|e| corrupt("rows to write", e))?,
            len: rows.len(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn json(&self) -> &str {
        &self.json
    }
}

/// Runs `statement` over `rows`; no rows, no statement.
pub(crate) async fn write(
    tx: &mut Transaction<'static, Sqlite>,
    statement: &'static str,
    rows: &Rows,
) -> Result<(), StoreError> {
    if rows.len == 0 {
        return Ok(());
    }
    sqlx::query(statement)
        .bind(rows.json.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Runs `statement` over `rows` and answers the keys it returns (its
/// `RETURNING` column): the rows it wrote. No rows, no statement.
async fn written(
    tx: &mut Transaction<'static, Sqlite>,
    statement: &'static str,
    rows: &Rows,
) -> Result<HashSet<String>, StoreError> {
    if rows.len == 0 {
        return Ok(HashSet::new());
    }
    Ok(sqlx::query_scalar(statement)
        .bind(rows.json.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect())
}

/// Runs `statement` over `rows`, every one of which it must write (its
/// `RETURNING` column naming each row, as `keys` name them in order): a
/// conflict over the first it did not, whose row was not as read (a
/// version or status fence) or was there already.
pub(crate) async fn write_every<'k>(
    tx: &mut Transaction<'static, Sqlite>,
    statement: &'static str,
    rows: &Rows,
    mut keys: impl Iterator<Item = &'k str>,
    what: &str,
) -> Result<(), StoreError> {
    let written = written(tx, statement, rows).await?;
    match keys.find(|key| !written.contains(*key)) {
        Some(lost) => Err(StoreError::Conflict(format!("{what} {lost}"))),
        None => Ok(()),
    }
}
