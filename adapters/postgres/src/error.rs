//! From database errors to the ports' errors.

pub(crate) use shop_adapter_sql::rows::to_sql;
use shop_runtime::ports::{Cause, StoreError};

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
    StoreError::Unavailable(Cause::new(error))
}
