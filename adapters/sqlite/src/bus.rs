//! The event bus in the SQLite file: a durable, in-process JetStream.
//!
//! `bus_messages` is the stream (deduplicated by event id) of the messages
//! some consumer reads, each naming the consumers it is for;
//! `bus_dead_letters` keeps what was given up on. A consumer reads the
//! stream in order from a cursor, as a JetStream consumer does. What it was
//! handed and has not settled is leased, in this process's memory, for the
//! ack wait: a message never settled comes back, one handed back comes back
//! after its delay. `bus_cursors` keeps, per consumer, how far it has read,
//! what it holds unsettled (with how often each was delivered) and its ack
//! floor (every message at or below it is settled), written with each group
//! of acknowledgements, and before a redelivery is handed out (so that a
//! message that brings the process down is still given up on after
//! `max_deliver` tries). Publishing wakes the waiting subscriptions of this
//! process at once.
//!
//! Why a cursor: a queue row per message and consumer cost the one writer
//! an insert as the message was stored, an update to lease it and a delete
//! to acknowledge it, three of the five row writes each message took. Now
//! handing messages out is a read beside the writer, and a batch of
//! acknowledgements writes one row per consumer.
//!
//! What it asks: one process consumes a file's events (the embedded mode
//! runs one; `SqliteBus::consume_alone` refuses a second), since the
//! leases live in its memory. The next process to open the file
//! delivers at once what the stopped one held unsettled, as redeliveries,
//! then reads on from where it had read. What was read after the last
//! acknowledgement was stored comes again as a first delivery: an
//! acknowledgement lost on its way.
//!
//! Acknowledgements share commits, as new orders do (`intake.rs`): with
//! `synchronous = FULL` every commit flushes the log, and a consumer settles
//! a whole batch at once. The same writer keeps the stream bounded: a
//! message older than the duplicate window is pruned once every consumer it
//! names has it below its floor.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// How often a waiting subscription looks for messages whose lease or retry delay ran out.
const POLL: Duration = Duration::from_millis(25);
/// Most acknowledgements one commit carries.
const ACK_BATCH: usize = 1024;
/// How often the stream is pruned, and how many messages at most each time.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
const PRUNE_LIMIT: i64 = 20_000;

#[derive(Debug, Clone)]
pub struct SqliteBus {
    pool: SqlitePool,
    /// Reads that change nothing (the stream, counts, dead letters), beside the writer.
    readers: SqlitePool,
    routes: Routes,
    /// Each consumer's cursor, by durable name, made at its first subscription.
    cursors: Arc<Mutex<HashMap<String, Arc<Cursor>>>>,
    /// The database file, whose consumers this bus serves alone once it
    /// subscribes (`SqliteBus::consume_alone`).
    file: PathBuf,
    consuming: Arc<Mutex<Option<File>>>,
    acks: GroupCommit<Arc<Cursor>, Result<(), BusError>>,
}

fn unavailable(what: &str, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BusError {
    BusError::Unavailable(Cause::context(what, error))
}

/// A lock whose holder panicked still guards consistent state: each
/// critical section below changes it in one step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One consumer's progress through the stream, shared by its subscriptions
/// in this process.
#[derive(Debug)]
struct Cursor {
    durable: Arc<str>,
    /// The durable name as it appears in a message's list of consumers (a
    /// JSON array of names): `instr` finds it there without parsing the
    /// list, and the quotes keep one name from matching inside another.
    quoted: String,
    /// One pull at a time: a pull reads past the cursor, then moves it.
    pulling: tokio::sync::Mutex<()>,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// Read from `bus_cursors`; until then the fields below mean nothing.
    loaded: bool,
    /// Every message at or below it was handed out, or is not for this consumer.
    read: i64,
    /// Handed out and not settled yet, by sequence.
    leases: BTreeMap<i64, Lease>,
}

/// Where a consumer stands, as `bus_cursors` keeps it.
#[derive(Debug)]
struct Stand {
    floor: i64,
    read: i64,
    /// The leases as a JSON array of `[sequence, deliveries]`.
    held: String,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    deliveries: i64,
    /// When it may be handed out again: the lease's end, or a retry's delay.
    visible_at: i64,
}

impl Progress {
    fn stand(&self) -> Stand {
        let held: Vec<(i64, i64)> = self
            .leases
            .iter()
            .map(|(seq, lease)| (*seq, lease.deliveries))
            .collect();
        Stand {
            // Every message at or below it is settled.
            floor: held.first().map_or(self.read, |(first, _)| first - 1),
            read: self.read,
            held: json_list(&held),
        }
    }
}

impl Cursor {
    fn new(durable: &str) -> Self {
        Self {
            durable: Arc::from(durable),
            quoted: json_list(&[durable]).trim_matches(['[', ']']).to_owned(),
            pulling: tokio::sync::Mutex::new(()),
            progress: Mutex::new(Progress::default()),
        }
    }

    /// Reads where this consumer stands, unless already read. Call it on
    /// the pulling turn.
    async fn load(&self, readers: &SqlitePool) -> Result<(), BusError> {
        if lock(&self.progress).loaded {
            return Ok(());
        }
        let stored: Option<(i64, String)> =
            sqlx::query_as("SELECT delivered, held FROM bus_cursors WHERE consumer = ?1")
                .bind(&*self.durable)
                .fetch_optional(readers)
                .await
                .map_err(|e| unavailable("cursor", e))?;
        let (read, held) = stored.unwrap_or_else(|| (0, "[]".to_owned()));
        let held: Vec<(i64, i64)> = serde_json::from_str(&held).map_err(|e| unavailable("cursor", e))?;
        let mut progress = lock(&self.progress);
        progress.read = read;
        // Held by a process that stopped: deliverable now.
        progress.leases = held
            .into_iter()
            .map(|(seq, deliveries)| {
                let lease = Lease {
                    deliveries,
                    visible_at: 0,
                };
                (seq, lease)
            })
            .collect();
        progress.loaded = true;
        Ok(())
    }

    /// Settled: not to be handed out again.
    fn settle(&self, seq: i64) {
        lock(&self.progress).leases.remove(&seq);
    }

    /// Writes where this consumer stands, in `tx`.
    async fn store(&self, tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, stand: Stand) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO bus_cursors (consumer, acked, delivered, held) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (consumer) DO UPDATE
             SET acked = excluded.acked, delivered = excluded.delivered, held = excluded.held",
        )
        .bind(&*self.durable)
        .bind(stand.floor)
        .bind(stand.read)
        .bind(stand.held)
        .execute(&mut **tx)
        .await
        .map_err(|e| unavailable("cursor", e))?;
        Ok(())
    }

    /// Hands `seq` out again once `delay` has passed.
    fn hand_back(&self, seq: i64, delay: Duration) {
        if let Some(lease) = lock(&self.progress).leases.get_mut(&seq) {
            lease.visible_at = now_ms().saturating_add(millis(delay));
        }
    }
}

impl SqliteBus {
    /// Needs a Tokio runtime: the acknowledgement writer is a task of its own.
    pub fn new(store: &SqliteStore, topology: Topology) -> Self {
        let pool = store.pool().clone();
        let routes = Routes::new(topology);
        let acks = AckWriter {
            pool: pool.clone(),
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
            cursors: Arc::default(),
            file: store.file.clone(),
            consuming: Arc::default(),
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
        let pruned = prune_in(&mut tx, before_ms, limit).await?;
        tx.commit().await.map_err(|e| unavailable("prune", e))?;
        Ok(pruned)
    }

    pub fn topology(&self) -> &Topology {
        self.routes.topology()
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

    /// Makes sure no other process consumes from this file: the leases live
    /// in one process's memory, and a second would deliver what the first
    /// holds, and store its own floor over the first's. Held by an advisory
    /// lock on `<file>-consumers` until this bus and its clones are dropped
    /// (or the process ends); the command-line tools, which do not
    /// subscribe, do not take it.
    fn consume_alone(&self) -> Result<(), BusError> {
        let mut consuming = lock(&self.consuming);
        if consuming.is_some() {
            return Ok(());
        }
        let mut name = self.file.clone().into_os_string();
        name.push("-consumers");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .map_err(|e| unavailable("the consumers' lock", e))?;
        match file.try_lock() {
            Ok(()) => {
                *consuming = Some(file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(BusError::Refused(format!(
                "another process consumes the events of {}: one process serves an embedded database",
                self.file.display()
            ))),
            Err(TryLockError::Error(e)) => Err(unavailable("the consumers' lock", e)),
        }
    }

    /// The cursor of `durable`, the same for every subscription of it.
    fn cursor(&self, durable: &str) -> Arc<Cursor> {
        let mut cursors = lock(&self.cursors);
        Arc::clone(
            cursors
                .entry(durable.to_owned())
                .or_insert_with(|| Arc::new(Cursor::new(durable))),
        )
    }
}

/// A message to store, with the consumers it is for.
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
/// the number of messages.
async fn insert(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, messages: &Rows) -> Result<(), BusError> {
    // Seen before: stored once, delivered once (the conflict stores nothing).
    write(tx, to_bus!("1", hex), messages)
        .await
        .map_err(|e| unavailable("publish", e))
}

/// Commits the floors of consumers that settled messages, in groups, and
/// prunes the stream now and then.
#[derive(Debug, Clone)]
struct AckWriter {
    pool: SqlitePool,
    /// Messages are kept this long after publishing, so a republished event
    /// id is still recognised as a duplicate; beyond it, the handlers
    /// (idempotent by the state they change) make a duplicate harmless, as
    /// with JetStream's duplicate window.
    keep: Duration,
    pruned_at: Arc<AtomicI64>,
}

impl AckWriter {
    async fn commit(&self, settled: Vec<Arc<Cursor>>) -> Vec<Result<(), BusError>> {
        let outcome = self.write(&settled).await;
        vec![outcome; settled.len()]
    }

    async fn write(&self, settled: &[Arc<Cursor>]) -> Result<(), BusError> {
        let mut cursors: Vec<&Arc<Cursor>> = Vec::new();
        for cursor in settled {
            if !cursors.iter().any(|c| Arc::ptr_eq(c, cursor)) {
                cursors.push(cursor);
            }
        }
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("ack", e))?;
        for cursor in cursors {
            // Taken now, so it covers every settling before this commit;
            // one writer task commits them in turn, so none overtakes a newer.
            let stand = lock(&cursor.progress).stand();
            cursor.store(&mut tx, stand).await?;
        }
        let now = now_ms();
        let due = now.saturating_sub(self.pruned_at.load(Ordering::Relaxed)) >= millis(PRUNE_EVERY);
        if due {
            let pruned = prune_in(&mut tx, now.saturating_sub(millis(self.keep)), PRUNE_LIMIT).await?;
            tracing::debug!(target: "shop::bus", pruned, "stream pruned");
        }
        tx.commit().await.map_err(|e| unavailable("ack", e))?;
        if due {
            self.pruned_at.store(now, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Deletes up to `limit` messages published before `before_ms` that every
/// consumer they name has settled: at or below its floor. A consumer that
/// has settled nothing yet has its floor at 0, and keeps what is for it.
async fn prune_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    before_ms: i64,
    limit: i64,
) -> Result<u64, BusError> {
    let pruned = sqlx::query(
        "DELETE FROM bus_messages WHERE seq IN (
             SELECT seq FROM bus_messages AS m WHERE published_at < ?1 AND NOT EXISTS (
                 SELECT 1 FROM json_each(m.consumers) AS named
                 LEFT JOIN bus_cursors AS cursor ON cursor.consumer = named.value
                 WHERE m.seq > coalesce(cursor.acked, 0))
             ORDER BY seq LIMIT ?2)",
    )
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
        self.consume_alone()?;
        let spec = self.topology().consumer(reader);
        let cursor = self.cursor(&spec.durable);
        {
            let _turn = cursor.pulling.lock().await;
            cursor.load(&self.readers).await?;
        }
        Ok(SqliteSubscription {
            pool: self.pool.clone(),
            readers: self.readers.clone(),
            acks: self.acks.clone(),
            published: Arc::clone(self.routes.published()),
            cursor,
            spec,
            dead_lettered: 0,
            _consuming: Arc::clone(&self.consuming),
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
    acks: GroupCommit<Arc<Cursor>, Result<(), BusError>>,
    published: Arc<Notify>,
    cursor: Arc<Cursor>,
    spec: ConsumerSpec,
    dead_lettered: u64,
    /// The consumers' lock (`SqliteBus::consume_alone`), held as long as
    /// a subscription consumes, even past the bus that made it.
    _consuming: Arc<Mutex<Option<File>>>,
}

struct Pulled {
    seq: i64,
    deliveries: i64,
    subject: String,
    body: Vec<u8>,
}

/// A message as a pull reads it: sequence, subject, body.
type Stored = (i64, String, Vec<u8>);

impl SqliteSubscription {
    /// Leases up to `max` messages: first those whose lease or retry delay
    /// ran out, then the next ones past the cursor. Only reads: the cursor
    /// and the leases move in memory.
    async fn pull(&self, max: usize) -> Result<Vec<Pulled>, BusError> {
        let cursor = &self.cursor;
        let _turn = cursor.pulling.lock().await;
        let now = now_ms();
        let (again, from) = {
            let progress = lock(&cursor.progress);
            let again: Vec<i64> = progress
                .leases
                .iter()
                .filter(|(_, lease)| lease.visible_at <= now)
                .map(|(seq, _)| *seq)
                .take(max)
                .collect();
            (again, progress.read)
        };
        let fresh = max - again.len();
        // One snapshot: the head read with the messages, so that moving the
        // cursor to it skips nothing stored since.
        let read = |e| unavailable("pull", e);
        let mut tx = self.readers.begin().await.map_err(read)?;
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM bus_messages")
            .fetch_one(&mut *tx)
            .await
            .map_err(read)?;
        let mut held: Vec<Stored> = Vec::new();
        if !again.is_empty() {
            held = sqlx::query_as(
                "SELECT seq, subject, body FROM bus_messages WHERE seq IN (SELECT value FROM json_each(?1)) ORDER BY seq",
            )
            .bind(json_list(&again))
            .fetch_all(&mut *tx)
            .await
            .map_err(read)?;
        }
        let mut new: Vec<Stored> = Vec::new();
        let mut reached = from;
        if fresh > 0 {
            new = sqlx::query_as(
                "SELECT seq, subject, body FROM bus_messages
                 WHERE seq > ?1 AND seq <= ?2 AND instr(consumers, ?3) > 0 ORDER BY seq LIMIT ?4",
            )
            .bind(from)
            .bind(head)
            .bind(&cursor.quoted)
            .bind(i64::try_from(fresh).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(read)?;
            // Fewer than asked: nothing else of ours up to the head.
            reached = match new.last() {
                Some((last, _, _)) if new.len() == fresh => *last,
                _ => head,
            };
        }
        tx.commit().await.map_err(read)?;

        let until = now.saturating_add(millis(self.spec.ack_wait));
        let mut pulled = Vec::with_capacity(held.len() + new.len());
        {
            let mut progress = lock(&cursor.progress);
            progress.read = progress.read.max(reached);
            // Pruning keeps what any consumer holds, so a held message is
            // missing only if something else deleted it. Given up on with
            // an error rather than asked for on every pull.
            // `again` and `held` are both in sequence order.
            let found = |seq: &&i64| held.binary_search_by_key(*seq, |(s, _, _)| *s).is_ok();
            for seq in again.iter().filter(|seq| !found(seq)) {
                tracing::error!(target: "shop::bus", consumer = %cursor.durable, seq, "a held message is no longer in the stream");
                progress.leases.remove(seq);
            }
            for (seq, subject, body) in held {
                // Settled since it was found due (by its earlier delivery):
                // it stays settled.
                let Some(lease) = progress.leases.get_mut(&seq) else {
                    continue;
                };
                lease.deliveries += 1;
                lease.visible_at = until;
                pulled.push(Pulled {
                    seq,
                    deliveries: lease.deliveries,
                    subject,
                    body,
                });
            }
            for (seq, subject, body) in new {
                let lease = Lease {
                    deliveries: 1,
                    visible_at: until,
                };
                progress.leases.insert(seq, lease);
                pulled.push(Pulled {
                    seq,
                    deliveries: 1,
                    subject,
                    body,
                });
            }
        }
        // A redelivery's count is stored before it is handed out, so that a
        // message that brings the process down is still given up on after
        // `max_deliver` restarts.
        if pulled.iter().any(|message| message.deliveries > 1) {
            let stored = self.acks.submit(Arc::clone(cursor)).await;
            if let Some(Err(error)) = stored {
                tracing::warn!(target: "shop::bus", consumer = %cursor.durable, %error, "delivery counts not stored");
            }
        }
        Ok(pulled)
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
            for message in self.pull(max).await? {
                let attempt = u64::try_from(message.deliveries).unwrap_or(1);
                let key = Key {
                    pool: self.pool.clone(),
                    acks: self.acks.clone(),
                    cursor: Arc::clone(&self.cursor),
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
        let (read, held) = {
            let progress = lock(&self.cursor.progress);
            let never_delivered = progress.leases.values().filter(|lease| lease.deliveries == 0).count();
            (progress.read, u64::try_from(never_delivered).unwrap_or(0))
        };
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM bus_messages WHERE seq > ?1 AND instr(consumers, ?2) > 0")
                .bind(read)
                .bind(&self.cursor.quoted)
                .fetch_one(&self.readers)
                .await
                .map_err(|e| unavailable("lag", e))?;
        // Held but never delivered: queued before migration 0010.
        Ok(u64::try_from(waiting).unwrap_or(0) + held)
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead_lettered)
    }
}

/// Which leased message a delivery settles.
#[derive(Debug)]
struct Key {
    pool: SqlitePool,
    acks: GroupCommit<Arc<Cursor>, Result<(), BusError>>,
    cursor: Arc<Cursor>,
    seq: i64,
}

impl Key {
    /// Settles the message and waits until its consumer's floor is stored.
    async fn settle(self) -> Result<(), BusError> {
        self.cursor.settle(self.seq);
        self.acks
            .submit(self.cursor)
            .await
            .unwrap_or_else(|| Err(BusError::Unavailable("the acknowledgement writer stopped".into())))
    }

    /// Keeps the message as a dead letter and settles it, in one commit:
    /// a stop in between neither loses it nor keeps it twice.
    async fn dead_letter(self, subject: &str, body: &[u8], attempt: u64, reason: &str) -> Result<(), BusError> {
        let mut tx = begin(&self.pool).await.map_err(|e| unavailable("dead letter", e))?;
        // Settled while this transaction holds the one writer connection,
        // so no group of acknowledgements stores it as held in between;
        // handed back at once if the letter is not kept.
        let lease = lock(&self.cursor.progress).leases.remove(&self.seq);
        let kept = match self.keep(&mut tx, subject, body, attempt, reason).await {
            Ok(()) => tx.commit().await.map_err(|e| unavailable("dead letter", e)),
            Err(error) => Err(error),
        };
        if let (Err(_), Some(lease)) = (&kept, lease) {
            let lease = Lease { visible_at: 0, ..lease };
            lock(&self.cursor.progress).leases.insert(self.seq, lease);
        }
        kept
    }

    async fn keep(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        subject: &str,
        body: &[u8],
        attempt: u64,
        reason: &str,
    ) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO bus_dead_letters (consumer, subject, reason, deliveries, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&*self.cursor.durable)
        .bind(subject)
        .bind(reason)
        .bind(i64::try_from(attempt).unwrap_or(i64::MAX))
        .bind(body)
        .execute(&mut **tx)
        .await
        .map_err(|e| unavailable("dead letter", e))?;
        let stand = lock(&self.cursor.progress).stand();
        self.cursor.store(tx, stand).await
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
        self.key.settle().await
    }

    async fn retry(self, delay: Duration) -> Result<(), BusError> {
        self.key.cursor.hand_back(self.key.seq, delay);
        Ok(())
    }

    async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        self.key
            .dead_letter(&self.subject, &self.body, self.attempt, reason)
            .await
    }
}
