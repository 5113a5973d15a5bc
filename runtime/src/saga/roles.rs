//! The background work of each role, started together and stopped together.
//!
//! The order role relays the order outbox, consumes inventory events and
//! expires reservations; the inventory role relays its outbox and consumes
//! order events. `shop serve` and the end-to-end tests start roles through
//! here, so what runs in tests is what runs in production.

use std::sync::Arc;
use std::time::Duration;

use shop_streams::{Context, Reader};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Handler;
use super::backpressure::{SAMPLE_EVERY, run_sampler};
use super::consumer::{Consumer, ConsumerSettings, run_consumer};
use super::inventory::InventoryService;
use super::orders::{Expiry, OrderService, run_expiry, run_price_refresh};
use super::relay::{RelaySettings, run_relay};
use crate::metrics::Metrics;
use crate::ports::{BusError, EventBus, InventoryStore, Lock, OrderStore, Outbox};

/// How long [`Roles::stop`] waits for the rounds in flight. Longer than one
/// publish attempt behind a silent broker (its ack timeout is 5 s), shorter
/// than the 30 s an orchestrator gives a process between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RoleSettings {
    /// Names this process in outbox leases and logs.
    pub instance: String,
    pub consumer: ConsumerSettings,
    /// How long a confirmed order holds its stock before the expiry cancels
    /// it, and why: its reservation ran out, or (with a payment provider)
    /// its payment timed out.
    pub expiry: Expiry,
    /// How often due reservations are looked for.
    pub expiry_every: Duration,
    /// How long published events stay in the outboxes.
    pub outbox_retention: Duration,
    /// Relays wait for their outbox's commit signal (off: they poll).
    pub relay_wake: bool,
    pub metrics: Metrics,
}

impl RoleSettings {
    pub fn named(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            consumer: ConsumerSettings::default(),
            expiry: Expiry::reservation(Duration::from_secs(30 * 60)),
            expiry_every: Duration::from_secs(1),
            outbox_retention: super::relay::DEFAULT_KEEP,
            relay_wake: true,
            metrics: Metrics::default(),
        }
    }
}

/// Running roles of this process.
#[derive(Debug)]
pub struct Roles {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Default for Roles {
    fn default() -> Self {
        Self::new()
    }
}

impl Roles {
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
        }
    }

    /// Starts the order role's relay, consumer and expiry, the backlog
    /// count its intake sheds by (when it has a bound), and the rounds that
    /// refresh the prices it keeps (when it keeps any).
    pub async fn start_order<S: OrderStore, B: EventBus + Clone>(
        &mut self,
        orders: Arc<OrderService<S>>,
        outbox: impl Outbox,
        bus: &B,
        settings: &RoleSettings,
    ) -> Result<(), BusError> {
        self.relay_and_consume(Context::Order, orders.clone(), outbox, bus, settings)
            .await?;
        if orders.backpressure().is_on() {
            self.tasks
                .spawn(run_sampler(orders.clone(), SAMPLE_EVERY, self.stop.subscribe()));
        }
        if let Some(every) = orders.price_refresh_every() {
            self.tasks
                .spawn(run_price_refresh(orders.clone(), every, self.stop.subscribe()));
        }
        self.tasks.spawn(run_expiry(
            orders,
            settings.expiry.clone(),
            settings.expiry_every,
            self.stop.subscribe(),
        ));
        Ok(())
    }

    /// Starts the inventory role's relay and consumer. Call it again with
    /// another service to run several handlers sharing the consumer.
    pub async fn start_inventory<S: InventoryStore, L: Lock, B: EventBus + Clone>(
        &mut self,
        inventory: Arc<InventoryService<S, L>>,
        outbox: impl Outbox,
        bus: &B,
        settings: &RoleSettings,
    ) -> Result<(), BusError> {
        self.relay_and_consume(Context::Inventory, inventory, outbox, bus, settings)
            .await
    }

    /// Starts the payment reader: `payments` gets every confirmed order.
    pub async fn start_payment<H: Handler, B: EventBus + Clone>(
        &mut self,
        payments: Arc<H>,
        bus: &B,
        settings: &RoleSettings,
    ) -> Result<(), BusError> {
        self.consume(Reader::Payment, payments, bus, settings).await
    }

    async fn relay_and_consume<H: Handler, B: EventBus + Clone>(
        &mut self,
        context: Context,
        handler: Arc<H>,
        outbox: impl Outbox,
        bus: &B,
        settings: &RoleSettings,
    ) -> Result<(), BusError> {
        self.consume(Reader::from(context), handler, bus, settings).await?;
        let relay = RelaySettings::named(format!("{}-{}", settings.instance, context.as_str()))
            .keeping(settings.outbox_retention);
        let relay = if settings.relay_wake { relay } else { relay.polling() };
        self.tasks.spawn(run_relay(
            context,
            outbox,
            bus.clone(),
            relay,
            settings.metrics.clone(),
            self.stop.subscribe(),
        ));
        Ok(())
    }

    async fn consume<H: Handler, B: EventBus + Clone>(
        &mut self,
        reader: Reader,
        handler: Arc<H>,
        bus: &B,
        settings: &RoleSettings,
    ) -> Result<(), BusError> {
        // The broker away at start is an outage like any later one: the
        // outbox keeps what intake writes, and the consumer starts once the
        // broker answers. A refusal is a misconfiguration: it stops the start.
        let subscription = match bus.subscribe(reader).await {
            Ok(subscription) => Some(subscription),
            Err(BusError::Unavailable(error)) => {
                tracing::warn!(target: "shop::consumer", reader = reader.as_str(), %error, "event bus unreachable; consuming once it answers");
                None
            }
            Err(refused) => return Err(refused),
        };
        let (consumer_settings, metrics, stop) = (settings.consumer, settings.metrics.clone(), self.stop.subscribe());
        let bus = bus.clone();
        self.tasks.spawn(async move {
            let subscription = match subscription {
                Some(subscription) => subscription,
                None => match subscribe_when_up(&bus, reader, consumer_settings, stop.clone()).await {
                    Some(subscription) => subscription,
                    None => return,
                },
            };
            let consumer = Consumer {
                reader,
                subscription,
                handler,
                settings: consumer_settings,
                metrics,
            };
            run_consumer(consumer, stop).await;
        });
        Ok(())
    }

    /// Asks every task to stop after its current round and waits for them,
    /// at most [`STOP_GRACE`]: a round stuck on a broker or database that
    /// does not answer is then dropped. Dropping one loses nothing: a relay
    /// advances its cursor only after the broker confirmed, so the events
    /// stay in the outbox for the next relay; a consumer acks only what it
    /// handled, so the broker delivers the rest again.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let joined = tokio::time::timeout(STOP_GRACE, async { while self.tasks.join_next().await.is_some() {} }).await;
        if joined.is_err() {
            tracing::warn!(
                target: "shop::roles",
                unfinished = self.tasks.len(),
                grace_s = STOP_GRACE.as_secs(),
                "background work did not stop in time; dropping it (unpublished events stay in the outbox, unacked messages are delivered again)"
            );
            self.tasks.shutdown().await;
        }
    }
}

/// Subscribes once the bus answers, trying again with a growing pause;
/// `None` when asked to stop first (or when the bus refuses: logged).
async fn subscribe_when_up<B: EventBus>(
    bus: &B,
    reader: Reader,
    settings: ConsumerSettings,
    mut stop: watch::Receiver<bool>,
) -> Option<B::Subscription> {
    let mut pause = settings.backoff;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return None,
            () = tokio::time::sleep(pause) => {}
        }
        match bus.subscribe(reader).await {
            Ok(subscription) => {
                tracing::info!(target: "shop::consumer", reader = reader.as_str(), "event bus answers; consuming");
                return Some(subscription);
            }
            Err(BusError::Unavailable(error)) => {
                tracing::debug!(target: "shop::consumer", reader = reader.as_str(), %error, "event bus still unreachable");
                pause = (pause * 2).min(settings.max_backoff.min(Duration::from_secs(5)));
            }
            Err(refused) => {
                tracing::error!(target: "shop::consumer", reader = reader.as_str(), error = %refused, "the event bus refused the subscription; not consuming");
                return None;
            }
        }
    }
}
