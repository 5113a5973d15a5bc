//! From SQLite errors to the ports' errors.

pub(crate) use shop_adapter_sql::rows::{corrupt, to_sql};
use shop_runtime::ports::{Cause, StoreError};

/// SQLite result codes the stores answer differently (extended codes).
const CONSTRAINT_CHECK: &str = "275";

pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.code().as_deref() == Some(CONSTRAINT_CHECK)
    {
        return StoreError::Refused(db.message().to_owned());
    }
    StoreError::Unavailable(Cause::new(error))
}

/// A list bound as one JSON array, read back with `json_each`.
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}
