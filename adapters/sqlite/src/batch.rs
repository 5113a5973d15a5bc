//! Rows written in one statement: sqlx hands every statement to the
//! connection's thread and waits for the answer, so the saga's batches bind
//! their rows as one JSON array (`?1`), which the statement reads back with
//! `json_each` and `->>`. A statement per row would pace the saga by that
//! hand-off, not by SQLite.

use std::collections::HashSet;

use shop_runtime::ports::StoreError;
use sqlx::{Sqlite, Transaction};

use crate::error::{corrupt, db_error};

/// `rows` as the JSON array a statement reads. Fails rather than write
/// fewer rows than given.
fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| corrupt("rows to write", e))
}

/// Runs `statement` over `rows`; no rows, no statement.
pub(crate) async fn write<T: serde::Serialize>(
    tx: &mut Transaction<'static, Sqlite>,
    statement: &'static str,
    rows: &[T],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(statement)
        .bind(json_rows(rows)?)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Runs `statement` over `rows` and answers the keys it returns (its
/// `RETURNING` column): the rows it wrote. No rows, no statement.
pub(crate) async fn written<T: serde::Serialize>(
    tx: &mut Transaction<'static, Sqlite>,
    statement: &'static str,
    rows: &[T],
) -> Result<HashSet<String>, StoreError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(sqlx::query_scalar(statement)
        .bind(json_rows(rows)?)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect())
}

/// Runs `statement` over `rows`, every one of which it must write (its
/// `RETURNING` column naming each row as `key` does): a conflict over the
/// first it did not, whose row was not as read (a version or status fence)
/// or was there already.
pub(crate) async fn write_every<T: serde::Serialize>(
    tx: &mut Transaction<'static, Sqlite>,
    statement: &'static str,
    rows: &[T],
    key: impl Fn(&T) -> &str,
    what: &str,
) -> Result<(), StoreError> {
    let written = written(tx, statement, rows).await?;
    match rows.iter().map(key).find(|key| !written.contains(*key)) {
        Some(lost) => Err(StoreError::Conflict(format!("{what} {lost}"))),
        None => Ok(()),
    }
}
