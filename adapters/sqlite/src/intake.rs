//! Group commit of new orders, as on PostgreSQL (see the runtime's
//! `GroupCommit`): with `synchronous = FULL` every SQLite commit is a flush
//! of the write-ahead log, and there is one writer at a time, so new orders
//! that queue while a commit is under way share the next one.

use std::collections::HashSet;

use shop_adapter_sql::{CommitSignal, OutboxSignals};
use shop_rules::order::Order;
use shop_runtime::group_commit::GroupCommit;
use shop_runtime::ports::{SealedDelivery, StoreError};
use shop_streams::{Context, Envelope};
use sqlx::SqlitePool;

use crate::orders::{NewColumns, insert_new};
use crate::outbox::{append_outbox, begin, commit};

/// Most orders one transaction carries.
const BATCH: usize = 256;

#[derive(Debug)]
struct NewOrder {
    order: Order,
    columns: NewColumns,
    events: Vec<Envelope>,
    delivery: Option<SealedDelivery>,
}

#[derive(Debug, Clone)]
pub(crate) struct Intake {
    group: GroupCommit<NewOrder, Result<u64, StoreError>>,
}

impl Intake {
    /// One writer: SQLite has one anyway.
    pub(crate) fn start(pool: SqlitePool, signals: OutboxSignals) -> Self {
        let group = GroupCommit::start(1, BATCH, move |batch| write_batch(pool.clone(), signals.clone(), batch));
        Self { group }
    }

    /// Writes `order` (version 1, stored as `columns`) and its `events` to
    /// the outbox, with whatever other new orders are waiting.
    pub(crate) async fn write(
        &self,
        order: &Order,
        columns: NewColumns,
        events: &[Envelope],
        delivery: Option<&SealedDelivery>,
    ) -> Result<u64, StoreError> {
        let new = NewOrder {
            order: order.clone(),
            columns,
            events: events.to_vec(),
            delivery: delivery.cloned(),
        };
        self.group
            .submit(new)
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the order intake writer stopped".into())))
    }
}

async fn write_batch(pool: SqlitePool, signals: OutboxSignals, batch: Vec<NewOrder>) -> Vec<Result<u64, StoreError>> {
    match insert(&pool, signals.of(Context::Order), &batch).await {
        Ok(written) => written
            .into_iter()
            .zip(&batch)
            .map(|(written, new)| match written {
                true => Ok(1),
                false => Err(StoreError::Conflict(format!("order {}", new.order.id))),
            })
            .collect(),
        Err(error) => batch.iter().map(|_| Err(error.clone())).collect(),
    }
}

/// One transaction; for each order, whether it was written (its id was free).
async fn insert(pool: &SqlitePool, committed: &CommitSignal, batch: &[NewOrder]) -> Result<Vec<bool>, StoreError> {
    let mut tx = begin(pool).await?;
    let mut taken = HashSet::with_capacity(batch.len());
    let mut written = Vec::with_capacity(batch.len());
    for new in batch {
        let order = &new.order;
        if !taken.insert(order.id.as_str()) {
            written.push(false);
            continue;
        }
        let fresh = insert_new(&mut tx, order, &new.columns, new.delivery.as_ref()).await?;
        if fresh {
            append_outbox(&mut tx, Context::Order, &new.events).await?;
        }
        written.push(fresh);
    }
    commit(tx, committed).await?;
    Ok(written)
}
