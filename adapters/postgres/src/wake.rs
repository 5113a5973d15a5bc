//! Relays woken by the commit. Writers NOTIFY the outbox's channel in the
//! transaction that appends to it (`schema::append_outbox`); PostgreSQL
//! delivers it at commit to every session listening on the database, in
//! this process or another. One listener per store rings the outboxes'
//! [`CommitSignal`]s; it starts with the first outbox asked for and stops
//! once the store is gone.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use shop_adapter_sql::{CommitSignal, OutboxSignals};
use shop_streams::Context;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::schema::Schema;

/// How often the listener looks whether its store is still there.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Pause before connecting again after the listener's connection failed.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Wake {
    signals: OutboxSignals,
    listening: OnceLock<()>,
}

impl Wake {
    /// `context`'s signal, with the store's listener started.
    pub(crate) fn signal(wake: &Arc<Self>, pool: &PgPool, context: Context) -> CommitSignal {
        wake.listening.get_or_init(|| {
            tokio::spawn(listen(pool.clone(), Arc::downgrade(wake)));
        });
        wake.signals.of(context).clone()
    }
}

async fn listen(pool: PgPool, wake: Weak<Wake>) {
    let mut listener: Option<PgListener> = None;
    while wake.strong_count() > 0 {
        let Some(connected) = listener.as_mut() else {
            match connect(&pool).await {
                Ok(new) => {
                    listener = Some(new);
                    // Whatever was committed before it listened.
                    ring(&wake, None);
                }
                Err(error) => {
                    tracing::debug!(target: "shop::relay", %error, "outbox listener cannot connect; relays poll meanwhile");
                    tokio::time::sleep(RETRY).await;
                }
            }
            continue;
        };
        match tokio::time::timeout(CHECK_EVERY, connected.try_recv()).await {
            Err(_) => {}
            Ok(Ok(Some(notification))) => ring(&wake, Some(notification.channel())),
            // Reconnected: notifications may have been missed meanwhile.
            Ok(Ok(None)) => ring(&wake, None),
            Ok(Err(error)) => {
                tracing::debug!(target: "shop::relay", %error, "outbox listener lost; relays poll meanwhile");
                listener = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    let channels = [Schema::Orders, Schema::Inventory].map(Schema::outbox_channel);
    listener.listen_all(channels).await?;
    Ok(listener)
}

/// Rings the outbox of `channel`, or both when it is not known.
fn ring(wake: &Weak<Wake>, channel: Option<&str>) {
    let Some(wake) = wake.upgrade() else { return };
    let heard = [Schema::Orders, Schema::Inventory]
        .into_iter()
        .find(|schema| Some(schema.outbox_channel()) == channel);
    match heard {
        Some(schema) => wake.signals.of(schema.context()).ring(),
        None => wake.signals.ring_all(),
    }
}
