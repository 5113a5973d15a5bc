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

/// Rows a fenced statement must write, every one of them, with the key
/// that names each (in its `RETURNING` column).
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    rows: Rows,
    keys: Vec<String>,
}

impl Keyed {
    /// The row `row` makes of each item, named by the key it gives with it.
    pub(crate) fn each<'i, I, T: serde::Serialize>(
        items: &'i [I],
        row: impl FnMut(&'i I) -> Result<(String, T), StoreError>,
    ) -> Result<Self, StoreError> {
        let (keys, rows): (Vec<String>, Vec<T>) = items
            .iter()
            .map(row)
            .collect::<Result<Vec<_>, StoreError>>()?
            .into_iter()
            .unzip();
        Ok(Self {
            rows: Rows::of(&rows)?,
            keys,
        })
    }

    /// Runs `statement` over the rows; a conflict over the first it did
    /// not write, whose row was not as read (a version or status fence) or
    /// was there already. No rows, no statement.
    pub(crate) async fn write_every(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        statement: &'static str,
        what: &str,
    ) -> Result<(), StoreError> {
        if self.rows.len == 0 {
            return Ok(());
        }
        let written: HashSet<String> = sqlx::query_scalar(statement)
            .bind(self.rows.json.as_str())
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
        match self.keys.iter().find(|key| !written.contains(*key)) {
            Some(lost) => Err(StoreError::Conflict(format!("{what} {lost}"))),
            None => Ok(()),
        }
    }
}
