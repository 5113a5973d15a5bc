//! The rule store contract.

use std::time::Duration;

use futures::StreamExt;

use crate::ports::{DISAGREEMENTS_KEPT, Disagreement, RuleStore, RuleStoreError};
use crate::rules::{Release, RuleMode};

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn disagreement(name: &str, n: usize) -> Disagreement {
    Disagreement {
        name: name.to_owned(),
        candidate: 2,
        instance: "shop-1".into(),
        at: i64::try_from(n).unwrap_or(i64::MAX),
        input: serde_json::json!({ "order_id": format!("o-{n}") }),
        active: serde_json::json!("allowed"),
        shadow: serde_json::json!({ "refused": "LIMIT" }),
    }
}

/// Every check, against a fresh, empty store.
pub async fn run(store: &impl RuleStore) {
    components_are_kept_by_hash(store).await;
    releases_change_by_compare_and_set(store).await;
    saves_are_announced(store).await;
    disagreements_are_bounded_newest_kept(store).await;
}

async fn components_are_kept_by_hash(store: &impl RuleStore) {
    assert_eq!(
        store.component(&hash(9)).await,
        Err(RuleStoreError::MissingComponent(hash(9)))
    );
    // Larger than one NATS message, as real components are.
    let wasm: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store.put_component(&hash(1), &wasm).await.expect("put");
    store.put_component(&hash(1), &wasm).await.expect("put again");
    assert_eq!(store.component(&hash(1)).await.expect("read back"), wasm);
}

async fn releases_change_by_compare_and_set(store: &impl RuleStore) {
    assert!(
        store.releases().await.expect("listed").is_empty(),
        "a fresh store has no releases"
    );
    let mut release = Release::new("purchase-limit");
    release.publish(&hash(1), 10, None, RuleMode::Active);
    let first = store.save(&release, None).await.expect("first save");
    assert_eq!(
        store.save(&release, None).await,
        Err(RuleStoreError::Conflict("purchase-limit".into())),
        "a second first save conflicts"
    );
    release.publish(&hash(2), 20, None, RuleMode::Shadow);
    let second = store.save(&release, Some(first)).await.expect("saved on its revision");
    assert_ne!(first, second);
    assert_eq!(
        store.save(&release, Some(first)).await,
        Err(RuleStoreError::Conflict("purchase-limit".into())),
        "a save on a stale revision conflicts"
    );
    let mut order = Release::new("order");
    order.publish(&hash(3), 30, Some("5ig".into()), RuleMode::Active);
    store.save(&order, None).await.expect("another name");
    let stored = store.releases().await.expect("listed");
    let names: Vec<&str> = stored.iter().map(|(r, _)| r.name.as_str()).collect();
    assert_eq!(names, ["order", "purchase-limit"]);
    assert_eq!(stored[1], (release, second));
    assert_eq!(stored[0].0, order);
}

async fn saves_are_announced(store: &impl RuleStore) {
    let mut changes = store.changes().await.expect("watching");
    let (mut release, revision) = store
        .releases()
        .await
        .expect("listed")
        .into_iter()
        .find(|(r, _)| r.name == "order")
        .expect("saved before");
    release.publish(&hash(4), 40, None, RuleMode::Active);
    store.save(&release, Some(revision)).await.expect("saved");
    let noticed = tokio::time::timeout(Duration::from_secs(1), changes.next()).await;
    assert_eq!(noticed, Ok(Some(())), "a save is noticed within a second");
}

async fn disagreements_are_bounded_newest_kept(store: &impl RuleStore) {
    assert!(store.disagreements("purchase-limit").await.expect("read").is_empty());
    for n in 0..DISAGREEMENTS_KEPT + 5 {
        store
            .record_disagreement(&disagreement("purchase-limit", n))
            .await
            .expect("recorded");
    }
    store
        .record_disagreement(&disagreement("order", 0))
        .await
        .expect("recorded");
    let kept = store.disagreements("purchase-limit").await.expect("read");
    assert_eq!(kept.len(), DISAGREEMENTS_KEPT);
    assert_eq!(
        kept.first(),
        Some(&disagreement("purchase-limit", 5)),
        "the oldest went"
    );
    assert_eq!(
        kept.last(),
        Some(&disagreement("purchase-limit", DISAGREEMENTS_KEPT + 4))
    );
    assert_eq!(
        store.disagreements("order").await.expect("read"),
        vec![disagreement("order", 0)]
    );
}
