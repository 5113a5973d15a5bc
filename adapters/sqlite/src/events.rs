//! Where a change's events are written, in the change's own transaction.
//!
//! By default into the context's outbox, for its relay to publish. A store
//! that publishes into the bus of its own file ([`SqliteStore::publishing_into`])
//! writes them straight into the bus's stream instead, for the consumers
//! that read them: the commit that makes a change makes its events
//! deliverable, and nothing is left for a relay to do. Through the outbox,
//! each event cost the one writer an outbox row to write and later prune,
//! and each relay's batch two more turns (its publish and its cursor's
//! move) besides the read.
//!
//! [`SqliteStore::publishing_into`]: crate::SqliteStore::publishing_into

use std::sync::Arc;

use shop_adapter_sql::OutboxSignals;
use shop_runtime::ports::StoreError;
use shop_streams::{Context, Envelope, Reader, Topology};
use sqlx::{Sqlite, Transaction};
use tokio::sync::Notify;

use crate::batch::{Rows, write};
use crate::error::corrupt;
use crate::now_ms;

/// The statement that appends events to an outbox table from the JSON array
/// in parameter `?$p`. `json_each` yields the array's elements in order, and
/// the rows are numbered in the order they are inserted.
macro_rules! to_outbox {
    ($table:literal, $p:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (envelope, at) SELECT value ->> 0, value ->> 1 FROM json_each(?",
            $p,
            ")"
        )
    };
}

/// The statement that stores messages in the bus's stream from the JSON
/// array in parameter `?$p`, once per id (the conflict stores nothing);
/// each names the consumers it is for, who read it from their cursors
/// (`bus.rs`). A body travels as text, or as `hex` where it need not
/// be text (`SqliteBus::publish_raw`).
macro_rules! to_bus {
    ($p:literal) => {
        $crate::events::to_bus!(@ $p, "CAST(value ->> 2 AS BLOB)")
    };
    ($p:literal, hex) => {
        $crate::events::to_bus!(@ $p, "unhex(value ->> 2)")
    };
    (@ $p:literal, $body:literal) => {
        concat!(
            "INSERT INTO bus_messages (msg_id, subject, body, consumers, published_at)
             SELECT value ->> 0, value ->> 1, ",
            $body,
            ", value -> 3, value ->> 4 FROM json_each(?",
            $p,
            ") WHERE true ON CONFLICT (msg_id) DO NOTHING"
        )
    };
}

pub(crate) use {to_bus, to_outbox};

/// Who reads what on the bus of this file, and how its subscriptions are
/// woken: what both the bus and a store publishing into it need.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    topology: Topology,
    /// Every consumer of the deployment with the reader it serves, named
    /// once: each published event asks which of them read it.
    consumers: Arc<[(Reader, String)]>,
    /// Woken when messages were stored.
    published: Arc<Notify>,
}

impl Routes {
    pub(crate) fn new(topology: Topology) -> Self {
        let consumers = topology
            .readers()
            .into_iter()
            .map(|reader| (reader, topology.consumer(reader).durable))
            .collect();
        Self {
            topology,
            consumers,
            published: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    pub(crate) fn published(&self) -> &Arc<Notify> {
        &self.published
    }

    /// The consumers that read an event of `context` and `event_type`.
    pub(crate) fn readers_of(&self, context: Context, event_type: &str) -> Vec<String> {
        self.consumers
            .iter()
            .filter(|(reader, _)| reader.reads(context, event_type))
            .map(|(_, durable)| durable.clone())
            .collect()
    }

    /// Where an event of `context` and `event_type` is stored: its subject
    /// and the consumers it is for; `None` when no consumer reads
    /// it. Such a message could never be delivered (its consumers are
    /// named as it is stored), so storing it would cost the one writer a row, its
    /// index entry and its pruning, for nothing. Not stored, it is no
    /// duplicate either: should a deployment that turned payment on
    /// republish a confirmation, payment is given it, and payment ignores
    /// an order that is no longer confirmed.
    pub(crate) fn route(&self, context: Context, event_type: &str) -> Option<(String, Vec<String>)> {
        let consumers = self.readers_of(context, event_type);
        (!consumers.is_empty()).then(|| (self.topology.subject(context, event_type), consumers))
    }
}

/// Where this store's changes write their events.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    /// Rung after a commit that appended to an outbox, for its relay.
    signals: OutboxSignals,
    /// Set: into this bus instead.
    bus: Option<Routes>,
}

/// A batch's events of one context as the rows of where they go, encoded
/// before the transaction begins (`batch.rs`).
#[derive(Debug, Clone)]
pub(crate) struct EventRows {
    rows: Rows,
    context: Context,
    on_bus: bool,
}

impl Events {
    pub(crate) fn outbox(signals: OutboxSignals) -> Self {
        Self { signals, bus: None }
    }

    pub(crate) fn with_bus(self, routes: Routes) -> Self {
        Self {
            bus: Some(routes),
            ..self
        }
    }

    /// `context`'s `events` as rows; on the bus, only those some consumer
    /// reads ([`Routes::route`]), each as `SqliteBus::publish` stores it.
    pub(crate) fn rows<'e>(
        &self,
        context: Context,
        events: impl IntoIterator<Item = &'e Envelope>,
    ) -> Result<EventRows, StoreError> {
        let at = now_ms();
        let text = |event: &Envelope| serde_json::to_string(event).map_err(|e| corrupt("event", e));
        let rows = match &self.bus {
            None => {
                let rows = events
                    .into_iter()
                    .map(|event| Ok((text(event)?, at)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Rows::of(&rows)?
            }
            Some(routes) => {
                let mut rows = Vec::new();
                for event in events {
                    // Routed by the event's own context, as the relay did.
                    if let Some((subject, consumers)) = routes.route(event.context, &event.event_type) {
                        rows.push((event.event_id.to_string(), subject, text(event)?, consumers, at));
                    }
                }
                Rows::of(&rows)?
            }
        };
        Ok(EventRows {
            rows,
            context,
            on_bus: self.bus.is_some(),
        })
    }

    /// After the commit that wrote `written`: wakes whoever takes them,
    /// unless nothing was written (a woken subscription leases at the one
    /// writer, a woken relay reads).
    pub(crate) fn committed(&self, written: &EventRows) {
        if written.is_empty() {
            return;
        }
        match &self.bus {
            Some(routes) => routes.published.notify_waiters(),
            None => self.signals.of(written.context).ring(),
        }
    }

    pub(crate) fn signals(&self) -> &OutboxSignals {
        &self.signals
    }
}

impl EventRows {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }

    pub(crate) fn json(&self) -> &str {
        self.rows.json()
    }

    pub(crate) fn on_bus(&self) -> bool {
        self.on_bus
    }

    /// Writes them, in order, in one statement.
    pub(crate) async fn append(&self, tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        let statement = match (self.on_bus, self.context) {
            (true, _) => to_bus!("1"),
            (false, Context::Order) => to_outbox!("orders_outbox", "1"),
            (false, Context::Inventory) => to_outbox!("inventory_outbox", "1"),
        };
        write(tx, statement, &self.rows).await
    }
}
