//! Catalogue look-ups shared by the orders waiting at once: each adapter's
//! intake reads the products every waiting order asks for in one query,
//! then answers each order with its own (see the runtime's `GroupCommit`).

use std::future::Future;
use std::pin::Pin;

use shop_runtime::ports::{CatalogueEntry, StoreError};
use sqlx::Database;

use crate::Kept;

/// Each order's answer: the entries of its products that are known.
pub type Prices = Result<Vec<CatalogueEntry>, StoreError>;

/// An adapter's read of the catalogue entries of some products, on one connection.
pub type Read<DB> = for<'c> fn(&'c mut <DB as Database>::Connection, &'c [String]) -> Reading<'c>;
pub type Reading<'c> = Pin<Box<dyn Future<Output = Prices> + Send + 'c>>;

/// Answers each of `asked` from one `read` of every product they name, on
/// a connection of `kept` (kept again when the read went well).
pub async fn look_up<DB: Database>(
    kept: &Kept<DB>,
    asked: &[Vec<String>],
    db_error: fn(sqlx::Error) -> StoreError,
    read: Read<DB>,
) -> Vec<Prices> {
    let all = asked_once(asked);
    let entries = async {
        let mut connection = kept.take().await.map_err(db_error)?;
        let entries = read(&mut connection, &all).await?;
        kept.keep(connection);
        Ok(entries)
    };
    answer_each(asked, entries.await)
}

/// Every product id `asked` names, once.
fn asked_once(asked: &[Vec<String>]) -> Vec<String> {
    let mut all: Vec<String> = asked.iter().flatten().cloned().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Answers each of `asked` from `read`, the entries read for all of them:
/// its own entries, or the read's failure.
fn answer_each(asked: &[Vec<String>], read: Prices) -> Vec<Prices> {
    match read {
        Ok(entries) => asked
            .iter()
            .map(|ids| {
                Ok(entries
                    .iter()
                    .filter(|e| ids.contains(&e.price.product_id))
                    .cloned()
                    .collect())
            })
            .collect(),
        Err(error) => asked.iter().map(|_| Err(error.clone())).collect(),
    }
}
