//! `shop serve`: runs the chosen roles until SIGINT or SIGTERM.
//!
//! The order role relays the order outbox, consumes inventory events and
//! expires reservations; the inventory role relays its outbox and consumes
//! order events. Any number of instances of a role may run: they share the
//! durable consumers, and outbox leases and aggregate versions keep them
//! apart. The REST API (and the gateway role) come with the front door.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_postgres::{PgSettings, PgStore, Schema};
use shop_adapter_redis::{RedisKeyValue, RedisLock};
use shop_runtime::ports::{EventBus, SystemClock};
use shop_runtime::rules::{Capabilities, RuleHost};
use shop_runtime::saga::consumer::{ConsumerSettings, run_consumer};
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::{OrderService, run_expiry};
use shop_runtime::saga::relay::{RelaySettings, run_relay};
use shop_streams::{Context, Namespace, Topology};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{self, RulesConfig, ServiceConfig};
use crate::rules_cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Order,
    Inventory,
    All,
}

impl Role {
    fn runs(self, role: Role) -> bool {
        self == Role::All || self == role
    }
}

pub fn run(role: Role) -> anyhow::Result<ExitCode> {
    let service = ServiceConfig::from_env()?;
    let rules = RulesConfig::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(role, service, rules))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(role: Role, service: ServiceConfig, rules_config: RulesConfig) -> anyhow::Result<()> {
    let namespace = Namespace::new(&config::namespace())?;
    let store = PgStore::connect(&PgSettings {
        max_connections: service.db_pool,
        ..PgSettings::new(service.database_url.clone())
    })
    .await?;
    store.migrate().await?;
    let bus = JetStreamBus::connect(&service.nats_url, Topology::new(namespace.clone())).await?;
    let kv = RedisKeyValue::connect(&service.redis_url)?;
    let clock = Arc::new(SystemClock);
    let capabilities = Capabilities {
        clock: clock.clone(),
        kv: Arc::new(kv),
        namespace: namespace.to_string(),
    };
    let reservation_ttl = rules_config.reservation_ttl;
    let rules =
        Arc::new(RuleHost::start(rules_cmd::settings(rules_config), capabilities).context("loading the rules")?);
    let _watch = rules.watch(Duration::from_secs(2));

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let consumer = ConsumerSettings::default();
    let relay = |context: &str| RelaySettings::named(format!("{}-{context}", service.instance_id));
    if role.runs(Role::Order) {
        let orders = Arc::new(OrderService::new(store.clone(), rules.clone(), clock.clone()));
        tasks.spawn(run_relay(
            store.outbox(Schema::Orders),
            bus.clone(),
            relay("order"),
            stopped.clone(),
        ));
        let subscription = bus.subscribe(Context::Order).await?;
        tasks.spawn(run_consumer(subscription, consumer, orders.clone(), stopped.clone()));
        tasks.spawn(run_expiry(
            orders,
            reservation_ttl,
            service.expiry_every,
            stopped.clone(),
        ));
    }
    if role.runs(Role::Inventory) {
        let lock = RedisLock::connect(&service.redis_url).await?;
        let inventory = Arc::new(InventoryService::new(
            store.clone(),
            lock,
            rules.clone(),
            clock,
            namespace,
        ));
        tasks.spawn(run_relay(
            store.outbox(Schema::Inventory),
            bus.clone(),
            relay("inventory"),
            stopped.clone(),
        ));
        let subscription = bus.subscribe(Context::Inventory).await?;
        tasks.spawn(run_consumer(subscription, consumer, inventory, stopped));
    }
    eprintln!(
        "shop: {role:?} role running as {} (namespace {})",
        service.instance_id,
        config::namespace()
    );
    shutdown_signal().await;
    eprintln!("shop: stopping");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
