//! `Outbox` over any SQL database sqlx speaks: a log of events numbered in
//! commit order, and one cursor row with the relay's lease.
//!
//! The numbering is the writers' business (see each adapter's append): an
//! event that becomes visible has a higher number than every event visible
//! before it, so reading "after the cursor" never skips one. The relay reads
//! without writing while its lease is fresh (one query per poll), and writes
//! the cursor row once per published batch. Times are milliseconds since the
//! epoch from the relays' clocks: a lease is a few seconds, far above the
//! skew of clocks kept by NTP.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shop_runtime::ports::{Outbox, Pending, StoreError};
use shop_streams::{Context, Encoded};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use tokio::sync::Notify;

use crate::Kept;
use crate::rows;

/// One outbox's statements, in the SQL both databases speak (`$N`
/// parameters, integer milliseconds). Built by [`outbox_sql!`].
#[derive(Debug)]
pub struct OutboxSql {
    /// `$1` limit, `$2` relay, `$3` fresh-until: the cursor row (position,
    /// holder, lease_until) and, only while `$2` holds a lease running past
    /// `$3`, up to `$1` events after it (seq, envelope as text).
    pub read: &'static str,
    /// `$1` relay, `$2` lease until, `$3` now: takes a free, expired or own lease.
    pub take: &'static str,
    /// `$1` relay, `$2` from, `$3` to, `$4` lease until.
    pub advance: &'static str,
    pub backlog: &'static str,
    /// When the first event after the cursor was committed (none: NULL).
    pub oldest: &'static str,
    /// `$1` since: the cursor and the first kept event committed since then at or before it.
    pub rewind_plan: &'static str,
    /// `$1` first, `$2` last: how many events lie between.
    pub count_between: &'static str,
    /// `$1` new position, `$2` the position read.
    pub rewind: &'static str,
    /// `$1` before, `$2` limit.
    pub prune: &'static str,
}

/// The [`OutboxSql`] of the outbox table `$outbox` and its cursor table
/// `$cursor`; `$envelope` reads the envelope column of the joined rows `o`
/// as text.
#[macro_export]
macro_rules! outbox_sql {
    ($outbox:literal, $cursor:literal, $envelope:literal) => {
        $crate::OutboxSql {
            read: concat!(
                "SELECT c.position, c.holder, c.lease_until, o.seq, ",
                $envelope,
                " AS envelope FROM ",
                $cursor,
                " c
                 LEFT JOIN (SELECT seq, envelope FROM ",
                $outbox,
                "
                            WHERE seq > (SELECT position FROM ",
                $cursor,
                " WHERE id = 1)
                            ORDER BY seq LIMIT $1) o
                   ON c.holder = $2 AND c.lease_until > $3
                 WHERE c.id = 1 ORDER BY o.seq"
            ),
            take: concat!(
                "UPDATE ",
                $cursor,
                " SET holder = $1, lease_until = $2
                 WHERE id = 1 AND (holder = $1 OR holder IS NULL OR lease_until < $3)"
            ),
            advance: concat!(
                "UPDATE ",
                $cursor,
                " SET position = $3, lease_until = $4
                 WHERE id = 1 AND holder = $1 AND position = $2"
            ),
            backlog: concat!(
                "SELECT count(*) FROM ",
                $outbox,
                " WHERE seq > (SELECT position FROM ",
                $cursor,
                " WHERE id = 1)"
            ),
            oldest: concat!(
                "SELECT (SELECT at FROM ",
                $outbox,
                " WHERE seq > (SELECT position FROM ",
                $cursor,
                " WHERE id = 1) ORDER BY seq LIMIT 1)"
            ),
            rewind_plan: concat!(
                "SELECT c.position, (SELECT min(seq) FROM ",
                $outbox,
                " WHERE at >= $1 AND seq <= c.position) AS first
                 FROM ",
                $cursor,
                " c WHERE c.id = 1"
            ),
            count_between: concat!("SELECT count(*) FROM ", $outbox, " WHERE seq >= $1 AND seq <= $2"),
            rewind: concat!("UPDATE ", $cursor, " SET position = $1 WHERE id = 1 AND position = $2"),
            prune: concat!(
                "DELETE FROM ",
                $outbox,
                " WHERE seq IN (
                     SELECT seq FROM ",
                $outbox,
                " WHERE seq <= (SELECT position FROM ",
                $cursor,
                " WHERE id = 1)
                     ORDER BY seq LIMIT $2)
                 AND at < $1"
            ),
        }
    };
}

/// Milliseconds since the epoch, as the outbox tables keep time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Rung when events were committed to an outbox; what its relay waits on
/// between rounds. A ring with nobody waiting is kept for the next wait, so
/// none is lost between two rounds; rings in between collapse into one.
#[derive(Debug, Clone, Default)]
pub struct CommitSignal(Arc<Notify>);

impl CommitSignal {
    pub fn ring(&self) {
        self.0.notify_one();
    }

    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// The commit signals of both contexts' outboxes in one database.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignals {
    orders: CommitSignal,
    inventory: CommitSignal,
}

impl OutboxSignals {
    pub fn of(&self, context: Context) -> &CommitSignal {
        match context {
            Context::Order => &self.orders,
            Context::Inventory => &self.inventory,
        }
    }

    /// Both: for when what was committed is not known.
    pub fn ring_all(&self) {
        self.orders.ring();
        self.inventory.ring();
    }
}

/// A context's outbox in a database of kind `DB`.
#[derive(Debug)]
pub struct SqlOutbox<DB: Database> {
    /// The writes, and the relay's connection between rounds: it reads and
    /// advances many times a second under load.
    kept: Kept<DB>,
    /// Where the relay reads what is pending and counts the backlog: the
    /// same pool, unless [`SqlOutbox::reading_from`] said otherwise.
    reads: Kept<DB>,
    sql: &'static OutboxSql,
    driver: Driver<DB>,
    committed: CommitSignal,
}

/// What the shared code needs of an adapter that sqlx's traits do not say.
pub struct Driver<DB: Database> {
    /// The adapter's own mapping of driver errors.
    pub db_error: fn(sqlx::Error) -> StoreError,
    /// How many rows a statement changed.
    pub rows_affected: fn(&DB::QueryResult) -> u64,
}

impl<DB: Database> std::fmt::Debug for Driver<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl<DB: Database> Clone for Driver<DB> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<DB: Database> Copy for Driver<DB> {}

impl<DB: Database> Clone for SqlOutbox<DB> {
    fn clone(&self) -> Self {
        Self {
            kept: self.kept.clone(),
            reads: self.reads.clone(),
            sql: self.sql,
            driver: self.driver,
            committed: self.committed.clone(),
        }
    }
}

impl<DB: Database> SqlOutbox<DB> {
    /// `committed` is rung by the adapter when events were committed.
    pub fn new(pool: Pool<DB>, sql: &'static OutboxSql, driver: Driver<DB>, committed: CommitSignal) -> Self {
        let kept = Kept::new(pool, 1);
        Self {
            reads: kept.clone(),
            kept,
            sql,
            driver,
            committed,
        }
    }

    /// Reads on `readers` instead, for a database that takes its writes on
    /// one connection and its reads beside it (SQLite): reading a batch of
    /// events then keeps no writer waiting.
    pub fn reading_from(mut self, readers: Pool<DB>) -> Self {
        self.reads = Kept::new(readers, 1);
        self
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn corrupt(error: impl std::fmt::Display) -> StoreError {
    rows::corrupt("outbox row", error)
}

impl<DB> SqlOutbox<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Whether `relay` holds a lease running past half of `lease` from
    /// now, and what is pending (events only then).
    async fn read(&self, relay: &str, limit: u32, lease: Duration) -> Result<(bool, Pending), StoreError> {
        let fresh_until = now_ms().saturating_add(millis(lease) / 2);
        let mut connection = self.reads.take().await.map_err(self.driver.db_error)?;
        let rows = sqlx::query::<DB>(self.sql.read)
            .bind(i64::from(limit))
            .bind(relay.to_owned())
            .bind(fresh_until)
            .fetch_all(&mut *connection)
            .await
            .map_err(self.driver.db_error)?;
        self.reads.keep(connection);
        let Some(first) = rows.first() else {
            return Err(corrupt("the cursor row is missing"));
        };
        let position: i64 = first.try_get(0).map_err(corrupt)?;
        let holder: Option<String> = first.try_get(1).map_err(corrupt)?;
        let until: Option<i64> = first.try_get(2).map_err(corrupt)?;
        let fresh = holder.as_deref() == Some(relay) && until.is_some_and(|at| at > fresh_until);
        let mut pending = Pending {
            cursor: rows::version(position),
            last: rows::version(position),
            events: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let seq: Option<i64> = row.try_get(3).map_err(corrupt)?;
            let text: Option<String> = row.try_get(4).map_err(corrupt)?;
            if let (Some(seq), Some(text)) = (seq, text) {
                pending.last = rows::version(seq);
                pending.events.push(Encoded::parse(text).map_err(corrupt)?);
            }
        }
        Ok((fresh, pending))
    }

    async fn count(&self, sql: &'static str, binds: &[i64]) -> Result<i64, StoreError> {
        let mut query = sqlx::query::<DB>(sql);
        for &bind in binds {
            query = query.bind(bind);
        }
        let row = query.fetch_one(self.reads.pool()).await.map_err(self.driver.db_error)?;
        row.try_get(0).map_err(corrupt)
    }
}

impl<DB> Outbox for SqlOutbox<DB>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn pending(&self, relay: &str, limit: u32, lease: Duration) -> Result<Option<Pending>, StoreError> {
        let (fresh, pending) = self.read(relay, limit, lease).await?;
        if fresh {
            return Ok(Some(pending));
        }
        let now = now_ms();
        let mut connection = self.kept.take().await.map_err(self.driver.db_error)?;
        let taken = sqlx::query::<DB>(self.sql.take)
            .bind(relay.to_owned())
            .bind(now.saturating_add(millis(lease)))
            .bind(now)
            .execute(&mut *connection)
            .await
            .map_err(self.driver.db_error)?;
        self.kept.keep(connection);
        if (self.driver.rows_affected)(&taken) == 0 {
            return Ok(None);
        }
        // Read again now that the lease is fresh.
        let (_, pending) = self.read(relay, limit, lease).await?;
        Ok(Some(pending))
    }

    async fn advance(&self, relay: &str, from: u64, to: u64, lease: Duration) -> Result<bool, StoreError> {
        let mut connection = self.kept.take().await.map_err(self.driver.db_error)?;
        let moved = sqlx::query::<DB>(self.sql.advance)
            .bind(relay.to_owned())
            .bind(rows::to_sql(from))
            .bind(rows::to_sql(to))
            .bind(now_ms().saturating_add(millis(lease)))
            .execute(&mut *connection)
            .await
            .map_err(self.driver.db_error)?;
        self.kept.keep(connection);
        Ok((self.driver.rows_affected)(&moved) == 1)
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        Ok(rows::version(self.count(self.sql.backlog, &[]).await?))
    }

    async fn oldest_unpublished_at(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query::<DB>(self.sql.oldest)
            .fetch_one(self.reads.pool())
            .await
            .map_err(self.driver.db_error)?;
        row.try_get(0).map_err(corrupt)
    }

    async fn rewind_to(&self, since_ms: i64) -> Result<u64, StoreError> {
        // Compare and set: should the relay advance in between, plan again.
        loop {
            let row = sqlx::query::<DB>(self.sql.rewind_plan)
                .bind(since_ms)
                .fetch_one(self.kept.pool())
                .await
                .map_err(self.driver.db_error)?;
            let position: i64 = row.try_get(0).map_err(corrupt)?;
            let first: Option<i64> = row.try_get(1).map_err(corrupt)?;
            let Some(first) = first else { return Ok(0) };
            let again = self.count(self.sql.count_between, &[first, position]).await?;
            let moved = sqlx::query::<DB>(self.sql.rewind)
                .bind(first - 1)
                .bind(position)
                .execute(self.kept.pool())
                .await
                .map_err(self.driver.db_error)?;
            if (self.driver.rows_affected)(&moved) == 1 {
                return Ok(rows::version(again));
            }
        }
    }

    async fn committed(&self) {
        self.committed.wait().await;
    }

    async fn prune(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        let pruned = sqlx::query::<DB>(self.sql.prune)
            .bind(before_ms)
            .bind(i64::from(limit))
            .execute(self.kept.pool())
            .await
            .map_err(self.driver.db_error)?;
        Ok((self.driver.rows_affected)(&pruned))
    }
}
