//! Connections a busy worker keeps from one round to the next.
//!
//! sqlx tests every connection given back to its pool with a round trip to
//! the database (on PostgreSQL a Sync, answered by ReadyForQuery). A worker
//! that runs a batch many times a second (an intake writer, the catalogue
//! look-up, a relay) paid that trip after every batch: at 4,000 orders/s,
//! 4% of the shop's CPU went to giving connections back. Such a worker
//! takes its connection from a [`Kept`] and, when the round went well,
//! hands it back there instead: the next round takes it again, untested, as
//! the pool's own checkout does (the adapters do not test before checkout
//! either).
//!
//! What is kept is given back to the pool once it has lain unused for
//! [`IDLE`], so a quiet worker holds nothing; and nothing is kept while the
//! pool could not hand out another connection at once, so a small pool is
//! never starved by connections lying here. A connection whose round failed
//! (or was cancelled) is not kept: dropped, it goes back through the
//! pool's test, which closes it if it is broken.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

/// How long a kept connection may lie unused before it goes back to the pool.
pub const IDLE: Duration = Duration::from_millis(200);

type Spare<DB> = Mutex<Vec<(PoolConnection<DB>, Instant)>>;

/// Up to `most` connections of a pool, kept for the next round.
#[derive(Debug)]
pub struct Kept<DB: Database> {
    pool: Pool<DB>,
    spare: Arc<Spare<DB>>,
    most: usize,
}

impl<DB: Database> Clone for Kept<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            spare: Arc::clone(&self.spare),
            most: self.most,
        }
    }
}

impl<DB: Database> Kept<DB> {
    /// Keeps up to `most` of `pool`'s connections, each for at most
    /// [`IDLE`] unused.
    pub fn new(pool: Pool<DB>, most: usize) -> Self {
        Self::idle_for(pool, most, IDLE)
    }

    /// [`Kept::new`], giving back what lay unused for `idle`. Inside a Tokio
    /// runtime, a task does that until the last clone is dropped; outside
    /// one, or over a pool of one connection (which never has another to
    /// hand out), nothing is ever kept.
    pub fn idle_for(pool: Pool<DB>, most: usize, idle: Duration) -> Self {
        let spare: Arc<Spare<DB>> = Arc::default();
        let most = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if most > 0 && pool.options().get_max_connections() > 1 => {
                runtime.spawn(give_back_idle(Arc::downgrade(&spare), idle));
                most
            }
            _ => 0,
        };
        Self { pool, spare, most }
    }

    /// The pool the connections come from.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// A kept connection, or else one from the pool.
    pub async fn take(&self) -> Result<PoolConnection<DB>, sqlx::Error> {
        let kept = self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match kept {
            Some((connection, _)) => Ok(connection),
            None => self.pool.acquire().await,
        }
    }

    /// Keeps `connection`, which has just served a round without error, for
    /// the next one; or gives it back to the pool when enough are kept, or
    /// when the pool has no other connection to hand out.
    pub fn keep(&self, connection: PoolConnection<DB>) {
        let pool_has_more = self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections();
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if pool_has_more && spare.len() < self.most {
            spare.push((connection, Instant::now()));
        }
    }
}

async fn give_back_idle<DB: Database>(spare: Weak<Spare<DB>>, idle: Duration) {
    let mut tick = tokio::time::interval(idle / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(spare) = spare.upgrade() else { return };
        let unused: Vec<_> = {
            let mut spare = spare.lock().unwrap_or_else(PoisonError::into_inner);
            let (unused, busy) = spare.drain(..).partition(|(_, since)| since.elapsed() >= idle);
            *spare = busy;
            unused
        };
        // Dropped here, outside the lock: each goes back through the pool.
        drop(unused);
    }
}
