//! From SQLite errors to the ports' errors.

use shop_runtime::ports::StoreError;

/// SQLite result codes the stores answer differently (extended codes).
const CONSTRAINT_CHECK: &str = "275";

pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.code().as_deref() == Some(CONSTRAINT_CHECK)
    {
        return StoreError::Refused(db.message().to_owned());
    }
    StoreError::Unavailable(error.to_string())
}

/// A row value that cannot be read back is a broken store, not bad input.
pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("stored {what} cannot be read: {error}"))
}

pub(crate) fn version(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}

pub(crate) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A list bound as one JSON array, read back with `json_each`.
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}
