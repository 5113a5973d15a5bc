//! PostgreSQL adapters for the runtime's store and outbox ports.
//!
//! Each context lives in its own schema (`orders`, `inventory`), created by
//! the migrations embedded in this crate ([`PgStore::migrate`], run by
//! `shop migrate` with a role that may change the schemas; serving roles
//! only check them with [`PgStore::pending_migrations`]). A write commits state and outbox rows in one
//! transaction; versions fence concurrent writers, and CHECK
//! constraints keep stock non-negative and balanced whatever a caller gets
//! wrong. New orders are committed in groups under load (`intake.rs`).

#![forbid(unsafe_code)]

mod audit;
mod error;
mod intake;
mod inventory;
mod orders;
mod outbox;
mod schema;
mod statements;
#[cfg(feature = "testkit")]
pub mod testing;
mod wake;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use outbox::{PgApiKeys, PgOutbox};
pub use schema::Schema;

/// Pool settings; the defaults suit one process on a small machine.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: String,
    pub max_connections: u32,
    /// How long a caller waits for a connection before the operation fails.
    pub acquire_timeout: Duration,
    /// New orders share transactions under load (see `intake.rs`); off, each
    /// commits alone.
    pub group_commit: bool,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            group_commit: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("cannot read which migrations the database has run")]
    Schema(#[source] sqlx::Error),
}

/// Every session of the pool plans each execution of a prepared statement
/// with its arguments. Left to itself (`plan_cache_mode = auto`), PostgreSQL
/// settles after five executions on one generic plan per statement and
/// connection, costed for a ten-element array and for the table as it was
/// then, and keeps it until the table's statistics change. The saga's
/// batched statements (`= ANY($1)`, `UNNEST`) are first run on a new
/// deployment's near-empty tables: frozen there, a sequential scan went on
/// reading every order for each batch as the table grew, and without an
/// ANALYZE to end it (autovacuum off, or not yet come round) it never did.
/// Planning anew costs a few tens of microseconds per statement, shared by
/// the batch.
pub const CUSTOM_PLANS: (&str, &str) = ("plan_cache_mode", "force_custom_plan");

/// Both contexts' stores over one pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections the saga's batched reads and writes keep between
    /// batches (see `shop_adapter_sql::kept`): one per context's consumer.
    kept: shop_adapter_sql::Kept<sqlx::Postgres>,
    /// New orders, committed in groups (unless switched off).
    intake: Option<intake::Intake>,
    /// What wakes the outboxes' relays, heard from the writers' NOTIFY.
    wake: Arc<wake::Wake>,
}

impl PgStore {
    pub async fn connect(settings: &PgSettings) -> Result<Self, PgError> {
        let options = PgConnectOptions::from_str(&settings.url)
            .map_err(PgError::Connect)?
            .options([CUSTOM_PLANS]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A broken connection shows on first use and is replaced; a ping
            // before every checkout would cost a round trip per operation.
            .test_before_acquire(false)
            // Each acquire's wait as a trace event, which the shop's
            // telemetry turns into a histogram (shop_db_pool_acquire_seconds).
            .acquire_time_level(log::LevelFilter::Trace)
            .connect_with(options)
            .await
            .map_err(PgError::Connect)?;
        Ok(Self {
            intake: settings.group_commit.then(|| intake::Intake::start(pool.clone())),
            kept: shop_adapter_sql::Kept::new(pool.clone(), 2),
            pool,
            wake: Arc::default(),
        })
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), PgError> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(PgError::Migrate)
    }

    /// The versions of this build's migrations the database has not run
    /// (all of them on an empty database).
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, PgError> {
        let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM public._sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
        {
            Ok(applied) => applied,
            // undefined_table: nothing has run yet.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P01") => Vec::new(),
            Err(error) => return Err(PgError::Schema(error)),
        };
        Ok(sqlx::migrate!("./migrations")
            .iter()
            .map(|migration| migration.version)
            .filter(|version| !applied.contains(version))
            .collect())
    }

    /// The outbox of one context, over the same pool.
    pub fn outbox(&self, schema: Schema) -> PgOutbox {
        let committed = wake::Wake::signal(&self.wake, &self.pool, schema.context());
        outbox::outbox(self.pool.clone(), schema, committed)
    }

    /// The API keys, over the same pool.
    pub fn api_keys(&self) -> PgApiKeys {
        outbox::api_keys(self.pool.clone())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool's connections now: (open, idle), for the process metrics.
    pub fn connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}
