//! The event bus in the SQLite file: a durable, in-process JetStream.
//!
//! `bus_messages` is the stream (deduplicated by event id) of the messages
//! some consumer reads; `bus_pending` holds, per consumer, what it has still
//! to handle, with its delivery count and when it may be delivered (again),
//! filled by a trigger as each message is stored, for the consumers the
//! message names; `bus_dead_letters` keeps what was given up on. A pulled
//! message is leased for the consumer's ack wait: one that is never settled
//! comes back, as on JetStream. Publishing wakes the waiting subscriptions
//! of this process at once.
//!
//! Acknowledgements share commits, as new orders do (`intake.rs`): with
//! `synchronous = FULL` every commit flushes the log, and a consumer settles
//! a whole batch at once, so one commit per ack would bound the saga by the
//! disk's flush rate. The same writer keeps the stream bounded: messages
//! every consumer is done with, older than the duplicate window, are pruned.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use shop_runtime::group_commit::GroupCommit;
use shop_runtime::ports::{BusError, Cause, DeadLetter, Delivery, EventBus, Subscription};
use shop_streams::{ConsumerSpec, Context, Encoded, Envelope, Reader, Topology, hex};
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::batch::{Rows, write};
use crate::error::json_list;
use crate::events::{Routes, to_bus};
use crate::outbox::begin;
use crate::{SqliteStore, millis, now_ms};

/// How often a waiting subscription looks for messages whose retry delay ran out.
const POLL: Duration = Duration::from_millis(25);
/// Most acknowledgements one commit carries.
const ACK_BATCH: usize = 1024;
/// How often the stream is pruned, and how many messages at most each time.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
const PRUNE_LIMIT: i64 = 20_000;

/// A consumer's acknowledgement of one message: (consumer, sequence).
type Ack = (Arc<str>, i64);

#[derive(Debug, Clone)]
pub struct SqliteBus {
    pool: SqlitePool,
    /// Reads that change nothing (counts, dead letters), beside the writer.
    readers: SqlitePool,
    routes: Routes,
    acks: GroupCommit<Ack, Result<(), BusError>>,
}

fn unavailable(what: &str, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BusError {
    BusError::Unavailable(Cause::context(what, error))
}

impl SqliteBus {
    /// Needs a Tokio runtime: the acknowledgement writer is a task of its own.
    pub fn new(store: &SqliteStore, topology: Topology) -> Self {
        let pool = store.pool().clone();
        let routes = Routes::new(topology);
        let acks = AckWriter {
            pool: pool.clone(),
            consumers: routes.durables(),
            keep: routes.topology().stream(Context::Order).duplicate_window,
            pruned_at: Arc::new(AtomicI64::new(now_ms())),
        };
        let acks = GroupCommit::start(1, ACK_BATCH, move |batch| {
            let acks = acks.clone();
            async move { acks.commit(batch).await }
        });
        Self {
            pool,
            readers: store.readers.clone(),
            routes,
            acks,
        }
    }

    /// Who reads what, and how subscriptions are woken: for a store that
    /// publishes into this bus.
    pub(crate) fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Removes up to `limit` messages every consumer is done with that were
    /// published before `before_ms`; answers how many went.
    pub async fn prune(&self, before_ms: i64, limit: i64) -> Result<u64, BusError> {
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("prune", e))?;
        let pruned = prune_in(&mut tx, &self.routes.durables(), before_ms, limit).await?;
        tx.commit().await.map_err(|e| unavailable("prune", e))?;
        Ok(pruned)
    }

    pub fn topology(&self) -> &Topology {
        self.routes.topology()
    }

    /// Makes every leased message deliverable now, and answers how many.
    /// For a process starting on an embedded database that only it uses:
    /// what is leased then was leased by a process that died, and need not
    /// wait out its ack wait.
    pub async fn release_leases(&self) -> Result<u64, BusError> {
        let released = sqlx::query("UPDATE bus_pending SET visible_at = 0 WHERE visible_at > ?1 AND deliveries > 0")
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| unavailable("release leases", e))?;
        Ok(released.rows_affected())
    }

    /// Publishes `body` as it is to `subject` (`{ns}.{context}.{type}`), for
    /// tools and tests that go below the port, such as sending a message no
    /// consumer can read.
    pub async fn publish_raw(&self, subject: &str, body: &[u8]) -> Result<(), BusError> {
        let (context, event_type) = self
            .context_of(subject)
            .ok_or_else(|| BusError::Refused(format!("{subject} is not a subject of this namespace")))?;
        let consumers = self.routes.readers_of(context, event_type);
        let message = Outgoing {
            msg_id: Uuid::now_v7().to_string(),
            subject: subject.to_owned(),
            body,
            consumers,
        };
        let rows = encode(&[message])?;
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("publish", e))?;
        insert(&mut tx, &rows).await?;
        tx.commit().await.map_err(|e| unavailable("publish", e))?;
        self.routes.published().notify_waiters();
        Ok(())
    }

    /// The context and event type a subject of this namespace names.
    fn context_of<'s>(&self, subject: &'s str) -> Option<(Context, &'s str)> {
        let rest = subject
            .strip_prefix(self.topology().namespace().as_str())?
            .strip_prefix('.')?;
        [Context::Order, Context::Inventory]
            .into_iter()
            .find_map(|c| Some((c, rest.strip_prefix(c.as_str())?.strip_prefix('.')?)))
    }
}

/// A message to store, with the consumers it is queued for.
struct Outgoing<'b> {
    msg_id: String,
    subject: String,
    body: &'b [u8],
    consumers: Vec<String>,
}

/// Messages as the rows [`insert`] reads, encoded before the transaction
/// begins (`batch.rs`).
fn encode(messages: &[Outgoing<'_>]) -> Result<Rows, BusError> {
    let at = now_ms();
    // Bodies travel as hex: a body need not be text (see `publish_raw`).
    let rows: Vec<(&str, &str, String, &[String], i64)> = messages
        .iter()
        .map(|m| {
            (
                m.msg_id.as_str(),
                m.subject.as_str(),
                hex::encode(m.body),
                m.consumers.as_slice(),
                at,
            )
        })
        .collect();
    Rows::of(&rows).map_err(|e| unavailable("publish", e))
}

/// Stores each message ([`encode`]) once per id, in one statement whatever
/// the number of messages; the stream's trigger queues what is stored for
/// its consumers (migration 0009).
async fn insert(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, messages: &Rows) -> Result<(), BusError> {
    // Seen before: stored once, delivered once (the conflict stores nothing).
    write(tx, to_bus!("1", hex), messages)
        .await
        .map_err(|e| unavailable("publish", e))
}

/// Commits acknowledgements in groups, and prunes the stream now and then.
#[derive(Debug, Clone)]
struct AckWriter {
    pool: SqlitePool,
    consumers: Vec<String>,
    /// Messages are kept this long after publishing, so a republished event
    /// id is still recognised as a duplicate; beyond it, the handlers
    /// (idempotent by the state they change) make a duplicate harmless, as
    /// with JetStream's duplicate window.
    keep: Duration,
    pruned_at: Arc<AtomicI64>,
}

impl AckWriter {
    async fn commit(&self, acks: Vec<Ack>) -> Vec<Result<(), BusError>> {
        let outcome = self.write(&acks).await;
        vec![outcome; acks.len()]
    }

    async fn write(&self, acks: &[Ack]) -> Result<(), BusError> {
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("ack", e))?;
        // One statement per consumer, the sequences as a JSON array.
        let mut by_consumer: Vec<(&str, Vec<i64>)> = Vec::new();
        for (consumer, seq) in acks {
            match by_consumer.iter_mut().find(|(c, _)| *c == &**consumer) {
                Some((_, seqs)) => seqs.push(*seq),
                None => by_consumer.push((consumer, vec![*seq])),
            }
        }
        for (consumer, seqs) in by_consumer {
            let seqs = serde_json::to_string(&seqs).map_err(|e| unavailable("ack", e))?;
            sqlx::query("DELETE FROM bus_pending WHERE consumer = ?1 AND seq IN (SELECT value FROM json_each(?2))")
                .bind(consumer)
                .bind(seqs)
                .execute(&mut *tx)
                .await
                .map_err(|e| unavailable("ack", e))?;
        }
        let now = now_ms();
        let due = now.saturating_sub(self.pruned_at.load(Ordering::Relaxed)) >= millis(PRUNE_EVERY);
        if due {
            let pruned = prune_in(
                &mut tx,
                &self.consumers,
                now.saturating_sub(millis(self.keep)),
                PRUNE_LIMIT,
            )
            .await?;
            tracing::debug!(target: "shop::bus", pruned, "stream pruned");
        }
        tx.commit().await.map_err(|e| unavailable("ack", e))?;
        if due {
            self.pruned_at.store(now, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Deletes up to `limit` messages published before `before_ms` that come
/// before every consumer's oldest pending one (those are done with).
async fn prune_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    consumers: &[String],
    before_ms: i64,
    limit: i64,
) -> Result<u64, BusError> {
    let mut first_pending = i64::MAX;
    for consumer in consumers {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT min(seq) FROM bus_pending WHERE consumer = ?1")
            .bind(consumer)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| unavailable("prune", e))?;
        first_pending = first_pending.min(oldest.unwrap_or(i64::MAX));
    }
    let pruned = sqlx::query(
        "DELETE FROM bus_messages WHERE seq IN (
             SELECT seq FROM bus_messages WHERE seq < ?1 AND published_at < ?2 ORDER BY seq LIMIT ?3)",
    )
    .bind(first_pending)
    .bind(before_ms)
    .bind(limit)
    .execute(&mut **tx)
    .await
    .map_err(|e| unavailable("prune", e))?;
    Ok(pruned.rows_affected())
}

impl EventBus for SqliteBus {
    type Subscription = SqliteSubscription;

    async fn publish(&self, events: &[Encoded]) -> Result<(), BusError> {
        // Only what some consumer reads (`Routes::route` says why).
        let messages: Vec<Outgoing> = events
            .iter()
            .filter_map(|event| {
                let (subject, consumers) = self.routes.route(event.context(), event.event_type())?;
                Some(Outgoing {
                    msg_id: event.event_id().to_string(),
                    subject,
                    body: event.text().as_bytes(),
                    consumers,
                })
            })
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        let rows = encode(&messages)?;
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("publish", e))?;
        insert(&mut tx, &rows).await?;
        tx.commit().await.map_err(|e| unavailable("publish", e))?;
        self.routes.published().notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, reader: Reader) -> Result<SqliteSubscription, BusError> {
        Ok(SqliteSubscription {
            pool: self.pool.clone(),
            readers: self.readers.clone(),
            acks: self.acks.clone(),
            published: Arc::clone(self.routes.published()),
            spec: self.topology().consumer(reader),
            dead_lettered: 0,
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let rows = sqlx::query(
            "SELECT id, consumer, subject, reason, deliveries, body FROM bus_dead_letters ORDER BY id LIMIT ?1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await
        .map_err(|e| unavailable("dead letters", e))?;
        rows.iter()
            .map(|row| {
                let read = |e| unavailable("dead letter", e);
                let id: i64 = row.try_get("id").map_err(read)?;
                let deliveries: i64 = row.try_get("deliveries").map_err(read)?;
                Ok(DeadLetter {
                    id: u64::try_from(id).unwrap_or(0),
                    consumer: row.try_get("consumer").map_err(read)?,
                    subject: row.try_get("subject").map_err(read)?,
                    reason: row.try_get("reason").map_err(read)?,
                    deliveries: u64::try_from(deliveries).unwrap_or(0),
                    body: row.try_get("body").map_err(read)?,
                })
            })
            .collect()
    }

    async fn replay_dead_letter(&self, id: u64) -> Result<(), BusError> {
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("replay", e))?;
        let row = sqlx::query("DELETE FROM bus_dead_letters WHERE id = ?1 RETURNING consumer, subject, body")
            .bind(i64::try_from(id).unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| unavailable("replay", e))?
            .ok_or_else(|| BusError::Refused(format!("no dead letter {id}")))?;
        let read = |e| unavailable("dead letter", e);
        let consumer: String = row.try_get("consumer").map_err(read)?;
        let subject: String = row.try_get("subject").map_err(read)?;
        let body: Vec<u8> = row.try_get("body").map_err(read)?;
        // A fresh id: the original was stored under its own already.
        let message = Outgoing {
            msg_id: Uuid::now_v7().to_string(),
            subject,
            body: &body,
            consumers: vec![consumer],
        };
        insert(&mut tx, &encode(&[message])?).await?;
        tx.commit().await.map_err(|e| unavailable("replay", e))?;
        self.routes.published().notify_waiters();
        Ok(())
    }
}

#[derive(Debug)]
pub struct SqliteSubscription {
    pool: SqlitePool,
    readers: SqlitePool,
    acks: GroupCommit<Ack, Result<(), BusError>>,
    published: Arc<Notify>,
    spec: ConsumerSpec,
    dead_lettered: u64,
}

struct Pulled {
    seq: i64,
    deliveries: i64,
    subject: String,
    body: Vec<u8>,
}

impl SqliteSubscription {
    /// Leases up to `max` deliverable messages for the ack wait.
    async fn pull(&self, max: usize) -> Result<Vec<Pulled>, BusError> {
        let now = now_ms();
        // The writer only leases; the messages are read beside it. Reading
        // them in the lease (a look-up and a body copied per row) took
        // the one writer for work a reader does as well.
        let mut leased: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE bus_pending SET deliveries = deliveries + 1, visible_at = ?3
             WHERE consumer = ?1 AND seq IN (
                 SELECT seq FROM bus_pending WHERE consumer = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?4)
             RETURNING seq, deliveries",
        )
        .bind(&self.spec.durable)
        .bind(now)
        .bind(now.saturating_add(millis(self.spec.ack_wait)))
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| unavailable("pull", e))?;
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        leased.sort_unstable();
        let seqs: Vec<i64> = leased.iter().map(|(seq, _)| *seq).collect();
        // A message is pruned only once no consumer has it pending, so
        // each leased one is there to read.
        let messages: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, subject, body FROM bus_messages WHERE seq IN (SELECT value FROM json_each(?1)) ORDER BY seq",
        )
        .bind(json_list(&seqs))
        .fetch_all(&self.readers)
        .await
        .map_err(|e| unavailable("pulled messages", e))?;
        if messages.len() != leased.len() {
            return Err(unavailable(
                "pulled messages",
                format!("{} of {} leased messages found", messages.len(), leased.len()),
            ));
        }
        Ok(leased
            .into_iter()
            .zip(messages)
            .map(|((seq, deliveries), (_, subject, body))| Pulled {
                seq,
                deliveries,
                subject,
                body,
            })
            .collect())
    }
}

impl Subscription for SqliteSubscription {
    type Delivery = SqliteDelivery;

    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<SqliteDelivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a publish in between still wakes us.
            let published = self.published.notified();
            let mut batch = Vec::new();
            let consumer: Arc<str> = Arc::from(self.spec.durable.as_str());
            for message in self.pull(max).await? {
                let attempt = u64::try_from(message.deliveries).unwrap_or(1);
                let key = Key {
                    pool: self.pool.clone(),
                    acks: self.acks.clone(),
                    consumer: Arc::clone(&consumer),
                    seq: message.seq,
                };
                let reason = match Envelope::from_bytes(&message.body) {
                    Err(error) => error.to_string(),
                    Ok(_) if attempt > u64::try_from(self.spec.max_deliver).unwrap_or(u64::MAX) => {
                        format!("not handled after {} deliveries", self.spec.max_deliver)
                    }
                    Ok(envelope) => {
                        batch.push(SqliteDelivery {
                            key,
                            envelope,
                            attempt,
                            subject: message.subject,
                            body: message.body,
                        });
                        continue;
                    }
                };
                tracing::warn!(target: "shop::bus", consumer = %self.spec.durable, subject = %message.subject, attempt, %reason, "dead letter");
                key.dead_letter(&message.subject, &message.body, attempt, &reason)
                    .await?;
                self.dead_lettered += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !batch.is_empty() || left.is_zero() {
                return Ok(batch);
            }
            let _ = tokio::time::timeout(left.min(POLL), published).await;
        }
    }

    async fn lag(&mut self) -> Result<u64, BusError> {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM bus_pending WHERE consumer = ?1 AND deliveries = 0")
                .bind(&self.spec.durable)
                .fetch_one(&self.readers)
                .await
                .map_err(|e| unavailable("lag", e))?;
        Ok(u64::try_from(waiting).unwrap_or(0))
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead_lettered)
    }
}

/// Which pending message a delivery settles.
#[derive(Debug)]
struct Key {
    pool: SqlitePool,
    acks: GroupCommit<Ack, Result<(), BusError>>,
    consumer: Arc<str>,
    seq: i64,
}

impl Key {
    async fn dead_letter(&self, subject: &str, body: &[u8], attempt: u64, reason: &str) -> Result<(), BusError> {
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("dead letter", e))?;
        sqlx::query(
            "INSERT INTO bus_dead_letters (consumer, subject, reason, deliveries, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&*self.consumer)
        .bind(subject)
        .bind(reason)
        .bind(i64::try_from(attempt).unwrap_or(i64::MAX))
        .bind(body)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("dead letter", e))?;
        self.settle_in(&mut tx).await?;
        tx.commit().await.map_err(|e| unavailable("dead letter", e))
    }

    async fn settle_in(&self, tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<(), BusError> {
        sqlx::query("DELETE FROM bus_pending WHERE consumer = ?1 AND seq = ?2")
            .bind(&*self.consumer)
            .bind(self.seq)
            .execute(&mut **tx)
            .await
            .map_err(|e| unavailable("ack", e))?;
        Ok(())
    }
}

#[derive(Debug)]
pub struct SqliteDelivery {
    key: Key,
    envelope: Envelope,
    attempt: u64,
    subject: String,
    body: Vec<u8>,
}

impl Delivery for SqliteDelivery {
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    fn attempt(&self) -> u64 {
        self.attempt
    }

    async fn ack(self) -> Result<(), BusError> {
        let Key {
            acks, consumer, seq, ..
        } = self.key;
        acks.submit((consumer, seq))
            .await
            .unwrap_or_else(|| Err(BusError::Unavailable("the acknowledgement writer stopped".into())))
    }

    async fn retry(self, delay: Duration) -> Result<(), BusError> {
        sqlx::query("UPDATE bus_pending SET visible_at = ?3 WHERE consumer = ?1 AND seq = ?2")
            .bind(&*self.key.consumer)
            .bind(self.key.seq)
            .bind(now_ms().saturating_add(millis(delay)))
            .execute(&self.key.pool)
            .await
            .map_err(|e| unavailable("retry", e))?;
        Ok(())
    }

    async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        self.key
            .dead_letter(&self.subject, &self.body, self.attempt, reason)
            .await
    }
}
