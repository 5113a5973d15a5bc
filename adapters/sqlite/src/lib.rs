//! The embedded mode's adapters: everything in one SQLite file.
//!
//! [`SqliteStore`] implements both contexts' stores and outboxes with the
//! same guarantees as PostgreSQL (one transaction per change, version
//! fences, CHECK constraints on stock); [`SqliteBus`] is the event bus in
//! the same file, so the saga survives a restart without a broker:
//! consumers lease, acknowledge, retry and dead-letter messages as they
//! would on JetStream. Both pass the ports' contract suites (the stores
//! writing their events to the outboxes; into the bus, as below, they are
//! held to the same events by `tests/publishing.rs`). The serving
//! process's store writes each change's events straight into the bus, in
//! the change's transaction ([`SqliteStore::publishing_into`]); the relays
//! publish only what other processes left in the outboxes.
//!
//! SQLite has one writer at a time: this process's writes queue for one
//! connection and start with `BEGIN IMMEDIATE`; reads run beside them on
//! their own connections. A database busy with another process's write
//! waits (`busy_timeout`) rather than failing. New orders share commits
//! under load (`intake.rs`).

#![forbid(unsafe_code)]

mod audit;
mod batch;
mod bus;
mod error;
mod events;
mod intake;
mod inventory;
mod orders;
mod outbox;
mod rules;
mod statements;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use events::Events;
use futures::TryFutureExt;
use shop_adapter_sql::OutboxSignals;
use shop_streams::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use bus::{SqliteBus, SqliteDelivery, SqliteSubscription};
pub use outbox::{SqliteApiKeys, SqliteOutbox};
pub use rules::SqliteRuleStore;

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("cannot open the SQLite database {0}")]
    Open(String, #[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Connections that read beside the writer.
const READERS: u32 = 7;

/// Bytes a page of a new database holds.
const PAGE_SIZE: u32 = 16 * 1024;

/// The writer's page cache, in KiB (SQLite's negative `cache_size`): 64 MiB
/// instead of SQLite's 2. The writer reaches into every table's indexes,
/// several keyed by random ids (orders, reservations, audit targets);
/// with the default cache it read most of those pages back from the file
/// at each batch. The readers keep the default: a reader's cache is
/// dropped whenever the writer has committed since its last read.
const WRITER_CACHE: &str = "-65536";

/// Where the writer keeps its statement journals: in memory. A statement
/// inside a transaction journals the pages it changes, so that it alone
/// can be rolled back; past 64 KiB SQLite spilled that journal to a
/// temporary file, and the saga's batches, which change many pages, wrote
/// every page twice (5% of the shop's CPU under load; in memory, 7% less
/// CPU for the same orders: docs/benchmarks.md). The journal is needed
/// only until its statement ends, never after a crash. The same setting
/// keeps the writer's sorts and temporary tables in memory too: its
/// statements sort batches, not tables, but a migration that builds an
/// index on a large table sorts it in memory.
const WRITER_TEMP_STORE: &str = "memory";

/// Both contexts' stores (and the bus's tables) over two pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Every write, on one connection. SQLite has one writer at a time; with
    /// several connections, a writer that finds the database taken sleeps in
    /// the busy handler (milliseconds at a time) and tries again, while
    /// waiting here for the one connection hands it over at once, in turn.
    pool: SqlitePool,
    /// Reads, which WAL lets run beside the writer and each other.
    readers: SqlitePool,
    /// New orders, committed in groups (unless switched off).
    intake: Option<intake::Intake>,
    /// Where changes write their events, and whom a commit wakes.
    events: Events,
    /// The database file.
    file: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `url`
    /// (`sqlite://data/shop.db`), and migrates it.
    pub async fn open(url: &str) -> Result<Self, SqliteError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| SqliteError::Open(url.to_owned(), e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An accepted order survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Takes effect only when the file is created. Each commit writes
            // every page it changed to the log, two system calls a page; the
            // saga's batches fill pages, so larger pages write the same
            // batch in fewer calls (a quarter of them at 3,000 orders/s).
            .page_size(PAGE_SIZE);
        let file = options.get_filename().to_path_buf();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| SqliteError::Open(url.to_owned(), sqlx::Error::Io(e)))?;
        }
        let connect = |connections: u32, options: SqliteConnectOptions| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                // A connection to a file in this process has no peer that
                // could have gone away; testing it costs the writer a trip
                // to its thread before every transaction.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(5))
                // Each acquire's wait as a trace event (shop_db_pool_acquire_seconds).
                .acquire_time_level(log::LevelFilter::Trace)
                .connect_with(options)
                .map_err(|e| SqliteError::Open(url.to_owned(), e))
        };
        let writer = options
            .clone()
            .pragma("cache_size", WRITER_CACHE)
            .pragma("temp_store", WRITER_TEMP_STORE);
        let pool = connect(1, writer).await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(SqliteError::Migrate)?;
        let readers = connect(READERS, options).await?;
        let events = Events::outbox(OutboxSignals::default());
        Ok(Self {
            intake: Some(intake::Intake::start(pool.clone(), readers.clone(), events.clone())),
            pool,
            readers,
            events,
            file,
        })
    }

    /// Writes each change's events straight into `bus`'s stream, in the
    /// change's transaction, instead of into the outboxes (`events.rs`):
    /// for the process that serves on this file. `bus` MUST be a bus over
    /// this store. Events already in the outboxes (left by an earlier
    /// release, or written by a tool that does not publish) are still
    /// theirs to relay.
    pub fn publishing_into(mut self, bus: &SqliteBus) -> Self {
        self.events = self.events.with_bus(bus.routes().clone());
        if self.intake.is_some() {
            self.intake = Some(intake::Intake::start(
                self.pool.clone(),
                self.readers.clone(),
                self.events.clone(),
            ));
        }
        self
    }

    /// Every new order commits alone, as any other write (for comparisons).
    pub fn without_group_commit(mut self) -> Self {
        self.intake = None;
        self
    }

    /// A new database in `dir`, for tests and tools.
    pub async fn open_in(dir: &Path) -> Result<Self, SqliteError> {
        Self::open(&format!("sqlite://{}", dir.join("shop.db").display())).await
    }

    /// The API keys, over the same pool.
    pub fn api_keys(&self) -> SqliteApiKeys {
        outbox::api_keys(self.pool.clone())
    }

    /// The deployment's rule store, over the same pool.
    pub fn rules(&self) -> SqliteRuleStore {
        SqliteRuleStore::new(self.pool.clone())
    }

    /// The outbox of one context, over the same pool.
    pub fn outbox(&self, context: Context) -> SqliteOutbox {
        outbox::outbox(
            self.pool.clone(),
            self.readers.clone(),
            context,
            self.events.signals().of(context).clone(),
        )
    }

    /// The writer's pool: its one connection.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The connections of both pools now: (open, idle), for the process
    /// metrics.
    pub fn connections(&self) -> (u32, usize) {
        (
            self.pool.size() + self.readers.size(),
            self.pool.num_idle() + self.readers.num_idle(),
        )
    }
}

/// Milliseconds since the epoch, the unit of every time column.
pub(crate) use shop_adapter_sql::now_ms;

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
