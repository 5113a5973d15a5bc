//! Group commit of new orders, as on PostgreSQL (see the runtime's
//! `GroupCommit`): with `synchronous = FULL` every SQLite commit is a flush
//! of the write-ahead log, and there is one writer at a time, so new orders
//! that queue while a commit is under way share the next one.
//!
//! The catalogue look-ups that price new orders share queries the same way:
//! one each was nearly every statement the shop ran, each a trip to a
//! reader's thread and back, and its connection's test on the way back
//! to the pool.

use std::collections::HashSet;

use shop_adapter_sql::Kept;
use shop_adapter_sql::lookups::{self, Prices, Reading};
use shop_rules::order::Order;
use shop_runtime::group_commit::GroupCommit;
use shop_runtime::ports::{SealedDelivery, StoreError};
use shop_streams::Envelope;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

use crate::error::db_error;
use crate::events::Events;
use crate::orders::{NewColumns, NewOrders, NewRow, read_catalogue};
use crate::outbox::{begin, commit};

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
    /// The catalogue look-ups that price new orders, one query for all
    /// the orders waiting.
    prices: GroupCommit<Vec<String>, Prices>,
}

impl Intake {
    /// One writer: SQLite has one anyway. One look-up at a time on
    /// `readers`, kept between rounds: the orders arriving meanwhile share
    /// the next.
    pub(crate) fn start(pool: SqlitePool, readers: SqlitePool, events: Events) -> Self {
        let group = GroupCommit::start(1, BATCH, move |batch| write_batch(pool.clone(), events.clone(), batch));
        let lookups = Kept::new(readers, 1);
        let prices = GroupCommit::start(1, BATCH, move |asked| look_up(lookups.clone(), asked));
        Self { group, prices }
    }

    /// The catalogue entries of `product_ids` that are known, read with
    /// whatever other look-ups are waiting.
    pub(crate) async fn catalogue(&self, product_ids: &[String]) -> Prices {
        self.prices
            .submit(product_ids.to_vec())
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the catalogue readers stopped".into())))
    }

    /// Writes `order` (version 1, stored as `columns`) and its `events`
    /// (where the store writes events: `events.rs`), with whatever other
    /// new orders are waiting.
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

async fn look_up(kept: Kept<Sqlite>, asked: Vec<Vec<String>>) -> Vec<Prices> {
    lookups::look_up(&kept, &asked, db_error, catalogue_on).await
}

fn catalogue_on<'c>(connection: &'c mut SqliteConnection, product_ids: &'c [String]) -> Reading<'c> {
    Box::pin(read_catalogue(connection, product_ids))
}

async fn write_batch(pool: SqlitePool, events: Events, batch: Vec<NewOrder>) -> Vec<Result<u64, StoreError>> {
    match insert(&pool, &events, &batch).await {
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
async fn insert(pool: &SqlitePool, events: &Events, batch: &[NewOrder]) -> Result<Vec<bool>, StoreError> {
    // An id twice in one batch: the first is the one written.
    let mut seen = HashSet::with_capacity(batch.len());
    let first: Vec<bool> = batch.iter().map(|new| seen.insert(new.order.id.as_str())).collect();
    let mut rows: Vec<NewRow<'_>> = batch
        .iter()
        .zip(&first)
        .filter(|(_, first)| **first)
        .map(|(new, _)| NewRow {
            order: &new.order,
            columns: &new.columns,
            delivery: new.delivery.as_ref(),
            events: &new.events,
        })
        .collect();
    let mut new = NewOrders::encode(&rows, events)?;
    let mut tx = begin(pool).await?;
    let taken = new.taken(&mut tx).await?;
    if !taken.is_empty() {
        // Rare (a client's retry of an order already written): encoded again.
        rows.retain(|row| !taken.contains(&row.order.id));
        new = NewOrders::encode(&rows, events)?;
    }
    new.insert(&mut tx).await?;
    commit(tx, events, new.events()).await?;
    Ok(batch
        .iter()
        .zip(first)
        .map(|(new, first)| first && !taken.contains(&new.order.id))
        .collect())
}
