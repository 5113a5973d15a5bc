//! The [`AuditLog`] contract.

use crate::audit::{Actor, AuditEntry, AuditRecord, ChainHead, ChainWalk};
use crate::ports::{AuditLog, AuditQuery};

fn record(actor: &str, action: &str, target: &str, n: i64) -> AuditRecord {
    Actor::new(actor, "admin", format!("req-{n}")).did("inventory", action, target.to_owned(), n, &n)
}

/// Every entry, page by page.
async fn everything(log: &impl AuditLog) -> Vec<AuditEntry> {
    let mut all: Vec<AuditEntry> = Vec::new();
    loop {
        let query = AuditQuery {
            after: all.last().map_or(0, |e| e.seq),
            limit: 7,
            ..AuditQuery::default()
        };
        let page = log.entries(query).await.expect("a page");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Every check, against an empty log.
pub async fn run(log: &impl AuditLog) {
    appends_seal_one_chain_in_order(log).await;
    filters_match_exactly_and_page_by_number(log).await;
    concurrent_appends_leave_one_unbroken_chain(log).await;
}

/// MUST number and seal records onto the head, in order, and move the head.
async fn appends_seal_one_chain_in_order(log: &impl AuditLog) {
    assert_eq!(log.head().await, Ok(ChainHead::default()), "an empty log");
    let first = [record("ops", "stock.restock", "product:A", 1)];
    let next = [
        record("ops", "price.change", "product:A", 2),
        record("eve", "customer.erase", "customer:eve", 3),
    ];
    log.append(&first).await.expect("appended");
    log.append(&next).await.expect("appended");
    log.append(&[]).await.expect("nothing to append is fine");
    let mut expected = ChainHead::default();
    let mut sealed = expected.seal(&first);
    sealed.extend(expected.seal(&next));
    assert_eq!(
        everything(log).await,
        sealed,
        "numbered 1, 2, 3 and sealed as the chain seals"
    );
    assert_eq!(log.head().await, Ok(expected));
}

/// MUST return only entries matching every filter, after the cursor.
async fn filters_match_exactly_and_page_by_number(log: &impl AuditLog) {
    let query = |actor, target, action, after| AuditQuery {
        actor,
        target,
        action,
        after,
        limit: 100,
    };
    let seqs = |entries: Vec<AuditEntry>| entries.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    let by_ops = log.entries(query(Some("ops"), None, None, 0)).await.expect("read");
    assert_eq!(seqs(by_ops), [1, 2]);
    let on_a = log
        .entries(query(None, Some("product:A"), None, 1))
        .await
        .expect("read");
    assert_eq!(seqs(on_a), [2], "after entry 1");
    let erased = log
        .entries(query(Some("eve"), Some("customer:eve"), Some("customer.erase"), 0))
        .await
        .expect("read");
    assert_eq!(seqs(erased), [3]);
    let none = log.entries(query(Some("op"), None, None, 0)).await.expect("read");
    assert!(none.is_empty(), "exact matches, not prefixes");
    let limited = AuditQuery {
        limit: 2,
        ..AuditQuery::default()
    };
    assert_eq!(seqs(log.entries(limited).await.expect("read")), [1, 2]);
}

/// MUST keep one chain, numbered without gaps, however many append at once.
async fn concurrent_appends_leave_one_unbroken_chain(log: &impl AuditLog) {
    let batches: Vec<Vec<AuditRecord>> = (0..8)
        .map(|b| {
            (0..5)
                .map(|n| record(&format!("writer-{b}"), "stock.adjust", "product:C", b * 10 + n))
                .collect()
        })
        .collect();
    let appends = batches.iter().map(|batch| log.append(batch));
    for outcome in futures::future::join_all(appends).await {
        outcome.expect("appended");
    }
    let all = everything(log).await;
    assert_eq!(all.len(), 3 + 40);
    let mut walk = ChainWalk::default();
    for entry in &all {
        walk.next(entry).expect("an unbroken chain");
    }
    walk.end(&log.head().await.expect("head")).expect("ending at the head");
    for batch in &batches {
        let positions: Vec<usize> = batch
            .iter()
            .map(|r| all.iter().position(|e| &e.record == r).expect("appended"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[1] == w[0] + 1),
            "a batch stays together and in order: {positions:?}"
        );
    }
}
