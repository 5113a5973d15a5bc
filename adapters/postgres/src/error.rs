//! From database errors to the ports' errors.

use shop_runtime::ports::StoreError;

/// SQLSTATE codes the stores answer differently.
const CHECK_VIOLATION: &str = "23514";
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK: &str = "40P01";
const DATA_EXCEPTION_CLASS: &str = "22";

pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        match db.code().as_deref() {
            Some(CHECK_VIOLATION) => return StoreError::Refused(db.message().to_owned()),
            Some(SERIALIZATION_FAILURE | DEADLOCK) => return StoreError::Conflict(db.message().to_owned()),
            // Class 22, "data exception": a value the database cannot take
            // (a NUL byte in text, say) is the caller's, not an outage.
            Some(code) if code.starts_with(DATA_EXCEPTION_CLASS) => {
                return StoreError::Refused(db.message().to_owned());
            }
            _ => {}
        }
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

pub(crate) fn to_sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}
