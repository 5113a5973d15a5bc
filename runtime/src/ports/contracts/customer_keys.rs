//! The [`CustomerKeys`] contract.

use crate::audit::{Actor, AuditRecord};
use crate::ports::{AuditLog, AuditQuery, CustomerKeys, StoredKey};

fn key(customer: &str, key_id: &str, kek_id: &str) -> StoredKey {
    StoredKey {
        customer_id: customer.to_owned(),
        key_id: key_id.to_owned(),
        kek_id: kek_id.to_owned(),
        wrapped: format!("wrapped {key_id} under {kek_id}"),
        created_at: 1_000,
    }
}

/// The audit record of erasing `customer`.
fn erased(customer: &str) -> AuditRecord {
    Actor::new("ops", "admin", "req-erase").did(
        "order",
        "customer.erase",
        format!("customer:{customer}"),
        1_000,
        &serde_json::json!({}),
    )
}

/// Every check, against a store without keys (and its audit log).
pub async fn run(keys: &(impl CustomerKeys + AuditLog)) {
    a_customer_has_one_key_until_it_is_destroyed(keys).await;
    concurrent_first_orders_share_one_key(keys).await;
    rotation_finds_and_rewraps_keys_under_other_keks(keys).await;
}

/// MUST keep the first key obtained, hand it out afterwards, forget it
/// when destroyed (idempotently), and take a new one after that.
async fn a_customer_has_one_key_until_it_is_destroyed(keys: &(impl CustomerKeys + AuditLog)) {
    let first = key("dana", "k-dana-1", "kek-a");
    assert_eq!(keys.obtain_key(&first).await, Ok(first.clone()));
    let later = key("dana", "k-dana-2", "kek-a");
    assert_eq!(
        keys.obtain_key(&later).await,
        Ok(first.clone()),
        "the stored key, not the candidate"
    );
    let asked = ["k-dana-1".to_owned(), "k-dana-2".to_owned(), "k-absent".to_owned()];
    assert_eq!(keys.keys(&asked).await, Ok(vec![first.clone()]));

    assert_eq!(keys.destroy_key("dana", &erased("dana")).await, Ok(true));
    assert_eq!(keys.destroy_key("dana", &erased("dana")).await, Ok(false), "idempotent");
    assert_eq!(keys.destroy_key("nobody", &erased("nobody")).await, Ok(false));
    assert_eq!(keys.keys(&asked).await, Ok(vec![]), "destroyed for good");
    let query = AuditQuery {
        target: Some("customer:dana"),
        limit: 10,
        ..AuditQuery::default()
    };
    let audited = keys.entries(query).await.expect("audit entries");
    assert_eq!(
        audited.len(),
        2,
        "each erasure is audited, even a repeated one: {audited:?}"
    );
    assert!(audited.iter().all(|e| e.record == erased("dana")));
    assert_eq!(
        keys.obtain_key(&later).await,
        Ok(later.clone()),
        "a new key after erasure"
    );
    keys.destroy_key("dana", &erased("dana")).await.expect("destroyed");
}

/// MUST give every one of concurrent first calls for a customer the same key.
async fn concurrent_first_orders_share_one_key(keys: &impl CustomerKeys) {
    let candidates: Vec<_> = (0..12)
        .map(|n| key("erin", &format!("k-erin-{n:02}"), "kek-a"))
        .collect();
    let obtained = futures::future::join_all(candidates.iter().map(|c| keys.obtain_key(c))).await;
    let first = obtained[0].clone().expect("obtained");
    assert!(candidates.contains(&first));
    assert!(obtained.iter().all(|o| o.as_ref() == Ok(&first)), "{obtained:?}");
    keys.destroy_key("erin", &erased("erin")).await.expect("destroyed");
}

/// MUST list the keys under other key-encryption keys in key id order
/// after a cursor, and re-wrap one only while it is under the expected one.
async fn rotation_finds_and_rewraps_keys_under_other_keks(keys: &impl CustomerKeys) {
    let old = [
        key("f1", "k-f1", "kek-old"),
        key("f2", "k-f2", "kek-old"),
        key("f3", "k-f3", "kek-older"),
    ];
    let current = key("f4", "k-f4", "kek-new");
    for k in old.iter().chain([&current]) {
        keys.obtain_key(k).await.expect("stored");
    }
    assert_eq!(keys.keys_not_under("kek-new", "", 10).await, Ok(old.to_vec()));
    assert_eq!(
        keys.keys_not_under("kek-new", "k-f1", 1).await,
        Ok(vec![old[1].clone()])
    );
    assert_eq!(keys.keys_not_under("kek-new", "k-f3", 10).await, Ok(vec![]));

    let rewrapped = key("f1", "k-f1", "kek-new");
    assert_eq!(keys.rewrap_key(&rewrapped, "kek-old").await, Ok(true));
    assert_eq!(
        keys.rewrap_key(&rewrapped, "kek-old").await,
        Ok(false),
        "not under kek-old any more"
    );
    assert_eq!(keys.keys(&["k-f1".to_owned()]).await, Ok(vec![rewrapped]));
    keys.destroy_key("f2", &erased("f2")).await.expect("destroyed");
    assert_eq!(
        keys.rewrap_key(&key("f2", "k-f2", "kek-new"), "kek-old").await,
        Ok(false),
        "destroyed stays destroyed"
    );
    assert_eq!(keys.keys_not_under("kek-new", "", 10).await, Ok(vec![old[2].clone()]));
    for customer in ["f1", "f3", "f4"] {
        keys.destroy_key(customer, &erased(customer)).await.expect("destroyed");
    }
}
