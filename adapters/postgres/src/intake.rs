//! Group commit of new orders.
//!
//! Order intake is one small transaction per order, and on this class of
//! machine a transaction costs a WAL flush: a few thousand a second at most.
//! So new orders queue, and each of a few writers takes all that are queued
//! (up to [`BATCH`]) and commits them together: one multi-row insert of the
//! orders, one of their outbox rows, one flush. A lone order is written at
//! once, alone.
//!
//! Each order learns the outcome of the commit that carried it. An order id
//! that is taken already (a retried intake), or twice in one batch, is
//! refused alone with a conflict; a failed commit fails its whole batch,
//! which wrote nothing. The queueing is the runtime's [`GroupCommit`].
//!
//! The catalogue lookups that price each new order queue the same way and
//! share one query: otherwise they would be the one round trip to the
//! database every order still pays alone. So do the lookups of the data
//! keys that seal orders' delivery details.
//!
//! The writers and the look-up keep their connections between batches
//! ([`Kept`]): under load they run back to back, and giving a connection
//! back to the pool costs a round trip each time.

use std::collections::HashSet;

use shop_adapter_sql::lookups::{self, Prices, Reading};
use shop_adapter_sql::{Kept, rows};
use shop_rules::order::Order;
use shop_runtime::group_commit::GroupCommit;
use shop_runtime::ports::{OrderWrite, SealedDelivery, StoreError, StoredKey};
use shop_streams::Envelope;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};

use crate::error::db_error;
use crate::orders::{insert_deliveries, read_catalogue};
use crate::schema::{Schema, append_outbox, json};

/// Most orders one transaction carries.
const BATCH: usize = 256;

/// Transactions committing at once: while one waits for its flush, the next
/// batch is being sent.
const WRITERS: usize = 4;

/// Catalogue look-ups in flight at once. A read waits for no flush, so one
/// at a time is enough, and the orders arriving meanwhile share the next:
/// four at once priced about three orders a query at 4,000 orders/s.
const LOOKUPS: usize = 1;

#[derive(Debug)]
struct NewOrder {
    order: Order,
    /// Its provenance, as the `policy` column takes it.
    policy: Option<String>,
    events: Vec<Envelope>,
    delivery: Option<SealedDelivery>,
}

type Key = Result<StoredKey, StoreError>;

#[derive(Debug, Clone)]
pub(crate) struct Intake {
    group: GroupCommit<NewOrder, Result<u64, StoreError>>,
    /// The catalogue lookups that price new orders, grouped the same way:
    /// one query for all the orders waiting, instead of one each.
    prices: GroupCommit<Vec<String>, Prices>,
    /// Customers' data keys, obtained the same way.
    keys: GroupCommit<StoredKey, Key>,
}

impl Intake {
    /// Starts the writers on `pool`; they stop when the last handle is dropped.
    pub(crate) fn start(pool: PgPool) -> Self {
        let writes = Kept::new(pool.clone(), WRITERS);
        let group = GroupCommit::start(WRITERS, BATCH, move |batch| commit(writes.clone(), batch));
        let lookups = Kept::new(pool.clone(), LOOKUPS);
        let prices = GroupCommit::start(LOOKUPS, BATCH, move |asked| look_up(lookups.clone(), asked));
        let keys = GroupCommit::start(WRITERS, BATCH, move |candidates| obtain_keys(pool.clone(), candidates));
        Self { group, prices, keys }
    }

    /// The customer's data key, or `candidate` stored as it, with whatever
    /// other keys are asked for.
    pub(crate) async fn obtain_key(&self, candidate: &StoredKey) -> Key {
        self.keys
            .submit(candidate.clone())
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the key readers stopped".into())))
    }

    /// The catalogue entries of `product_ids` that are known, read with
    /// whatever other lookups are waiting.
    pub(crate) async fn catalogue(&self, product_ids: &[String]) -> Prices {
        self.prices
            .submit(product_ids.to_vec())
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the catalogue readers stopped".into())))
    }

    /// Writes a new order (version 1) with its provenance and delivery,
    /// and its events to the outbox, with whatever other new orders are waiting.
    pub(crate) async fn write(&self, write: &OrderWrite<'_>) -> Result<u64, StoreError> {
        let new = NewOrder {
            order: write.order.clone(),
            policy: rows::provenance_column(write.provenance())?,
            events: write.events.to_vec(),
            delivery: write.delivery.cloned(),
        };
        self.group
            .submit(new)
            .await
            .unwrap_or_else(|| Err(StoreError::Unavailable("the order intake writers stopped".into())))
    }
}

async fn look_up(kept: Kept<Postgres>, asked: Vec<Vec<String>>) -> Vec<Prices> {
    lookups::look_up(&kept, &asked, db_error, catalogue_on).await
}

fn catalogue_on<'c>(connection: &'c mut PgConnection, product_ids: &'c [String]) -> Reading<'c> {
    Box::pin(read_catalogue(connection, product_ids))
}

/// The keys of the candidates' customers: read in one query; those who have
/// none get their first candidate, stored in one insert that yields to a
/// key stored meanwhile, and read again.
async fn obtain_keys(pool: PgPool, candidates: Vec<StoredKey>) -> Vec<Key> {
    let read = |customers: Vec<String>| {
        let pool = pool.clone();
        async move {
            let rows = sqlx::query(
                "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders.customer_keys
                 WHERE customer_id = ANY($1)",
            )
            .bind(customers)
            .fetch_all(&pool)
            .await
            .map_err(db_error)?;
            rows.iter()
                .map(|row| shop_adapter_sql::rows::stored_key(row).map(|k| (k.customer_id.clone(), k)))
                .collect::<Result<std::collections::HashMap<_, _>, _>>()
        }
    };
    let outcome = async {
        let mut customers: Vec<String> = candidates.iter().map(|c| c.customer_id.clone()).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut keys = read(customers).await?;
        let mut missing: Vec<&StoredKey> = Vec::new();
        for candidate in &candidates {
            if !keys.contains_key(&candidate.customer_id)
                && !missing.iter().any(|m| m.customer_id == candidate.customer_id)
            {
                missing.push(candidate);
            }
        }
        if !missing.is_empty() {
            sqlx::query(
                "INSERT INTO orders.customer_keys (customer_id, key_id, kek_id, wrapped, created_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
                 ON CONFLICT (customer_id) DO NOTHING",
            )
            .bind(missing.iter().map(|k| k.customer_id.as_str()).collect::<Vec<_>>())
            .bind(missing.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>())
            .bind(missing.iter().map(|k| k.kek_id.as_str()).collect::<Vec<_>>())
            .bind(missing.iter().map(|k| k.wrapped.as_str()).collect::<Vec<_>>())
            .bind(missing.iter().map(|k| k.created_at).collect::<Vec<_>>())
            .execute(&pool)
            .await
            .map_err(db_error)?;
            keys.extend(read(missing.iter().map(|k| k.customer_id.clone()).collect()).await?);
        }
        Ok::<_, StoreError>(keys)
    };
    match outcome.await {
        Ok(keys) => candidates
            .iter()
            .map(|c| {
                keys.get(&c.customer_id)
                    .cloned()
                    .ok_or_else(|| StoreError::Conflict(format!("the key of customer {}", c.customer_id)))
            })
            .collect(),
        Err(error) => candidates.iter().map(|_| Err(error.clone())).collect(),
    }
}

async fn commit(kept: Kept<Postgres>, batch: Vec<NewOrder>) -> Vec<Result<u64, StoreError>> {
    // The first of two writes of one id takes it; the second is refused.
    let mut ids = HashSet::with_capacity(batch.len());
    let first: Vec<bool> = batch.iter().map(|new| ids.insert(new.order.id.as_str())).collect();
    let unique: Vec<&NewOrder> = batch.iter().zip(&first).filter(|(_, f)| **f).map(|(n, _)| n).collect();
    let written = async {
        let mut connection = kept.take().await.map_err(db_error)?;
        let inserted = insert(&mut connection, &unique).await?;
        kept.keep(connection);
        Ok::<_, StoreError>(inserted)
    }
    .await;
    batch
        .iter()
        .zip(first)
        .map(|(new, first)| match &written {
            Ok(inserted) if first && inserted.contains(&new.order.id) => Ok(1),
            Ok(_) => Err(StoreError::Conflict(format!("order {}", new.order.id))),
            Err(error) => Err(error.clone()),
        })
        .collect()
}

/// The batch's orders, from arrays; `$tail` settles what an id already
/// taken does.
macro_rules! insert_orders {
    ($tail:literal) => {
        concat!(
            "INSERT INTO orders.orders (order_id, customer_id, status, created_at, confirmed_at, state, version, policy)
             SELECT id, customer, status, created, confirmed, state::json, 1, policy::json
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[])
                 AS new (id, customer, status, created, confirmed, state, policy) ",
            $tail,
            " RETURNING order_id"
        )
    };
}

/// One transaction: the orders whose ids are free, and the deliveries and
/// outbox rows of those. Returns the ids written.
///
/// An id is nearly always free, so the batch is first written by a plain
/// insert: `ON CONFLICT` costs every row a probe of the key and a second
/// record in the log (its speculative insertion confirmed). Should an id be
/// taken, that transaction fails whole and the batch is written again,
/// skipping the ids taken.
async fn insert(connection: &mut PgConnection, batch: &[&NewOrder]) -> Result<HashSet<String>, StoreError> {
    match write(connection, batch, insert_orders!("")).await? {
        Some(inserted) => Ok(inserted),
        None => {
            let skipping = insert_orders!("ON CONFLICT (order_id) DO NOTHING");
            let inserted = write(connection, batch, skipping).await?;
            inserted.ok_or_else(|| StoreError::Conflict("a new order's unique key was taken".into()))
        }
    }
}

/// The batch written in one transaction with `insert_orders`; `None` when
/// that found an id taken (and so wrote nothing).
async fn write(
    connection: &mut PgConnection,
    batch: &[&NewOrder],
    insert_orders: &'static str,
) -> Result<Option<HashSet<String>>, StoreError> {
    let mut tx = connection.begin().await.map_err(db_error)?;
    let rows = sqlx::query(insert_orders)
        .bind(batch.iter().map(|n| n.order.id.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|n| n.order.customer_id.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|n| n.order.status.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|n| n.order.created_at).collect::<Vec<_>>())
        .bind(batch.iter().map(|n| n.order.confirmed_at).collect::<Vec<_>>())
        .bind(batch.iter().map(|n| json(&n.order)).collect::<Result<Vec<_>, _>>()?)
        .bind(batch.iter().map(|n| n.policy.as_deref()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await;
    let rows = match rows {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(None),
        rows => rows.map_err(db_error)?,
    };
    let inserted = rows
        .iter()
        .map(|row| row.try_get::<String, _>("order_id"))
        .collect::<Result<HashSet<_>, _>>()
        .map_err(db_error)?;
    let written = || batch.iter().filter(|n| inserted.contains(&n.order.id));
    let deliveries: Vec<&SealedDelivery> = written().filter_map(|n| n.delivery.as_ref()).collect();
    insert_deliveries(&mut tx, &deliveries).await?;
    let events: Vec<&Envelope> = written().flat_map(|n| &n.events).collect();
    append_outbox(&mut tx, Schema::Orders, events).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(Some(inserted))
}
