//! Catalogue look-ups shared by the orders waiting at once: each adapter's
//! intake reads the products every waiting order asks for in one query,
//! then answers each order with its own (see the runtime's `GroupCommit`).

use shop_runtime::ports::{CatalogueEntry, StoreError};

/// Each order's answer: the entries of its products that are known.
pub type Prices = Result<Vec<CatalogueEntry>, StoreError>;

/// Every product id `asked` names, once.
pub fn asked_once(asked: &[Vec<String>]) -> Vec<String> {
    let mut all: Vec<String> = asked.iter().flatten().cloned().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Answers each of `asked` from `read`, the entries read for all of them:
/// its own entries, or the read's failure.
pub fn answer_each(asked: &[Vec<String>], read: Prices) -> Vec<Prices> {
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
