//! `shop serve`: runs the chosen roles until SIGINT or SIGTERM.
//!
//! Two modes, one set of roles: with no `SHOP_DATABASE_URL` (or a
//! `sqlite://` one) everything runs on SQLite under `./data` with the
//! in-process bus and local locks; with a `postgres://` URL, on PostgreSQL,
//! JetStream and Redis.
//!
//! The order role relays the order outbox, consumes inventory events and
//! expires reservations; the inventory role relays its outbox and consumes
//! order events. (On SQLite the roles' own changes write their events
//! straight into the bus in the same file, and the relays carry only what
//! the command-line tools wrote to the outboxes.) Any number of instances of a role may run: they share the
//! durable consumers, and outbox leases and aggregate versions keep them
//! apart. Every role serves `/health/live` and `/metrics` on `--listen`,
//! and the REST API of the contexts it runs (`/api/orders`, `/api/products`).
//! In the distributed mode each instance announces itself over NATS so
//! gateways (`--role gateway`, see `gateway_role`) find it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_memory::{MemoryKeyValue, MemoryLock, MemoryRateLimiter};
use shop_adapter_postgres::{PgSettings, PgStore, Schema};
use shop_adapter_redis::{RedisKeyValue, RedisLock, RedisRateLimiter};
use shop_adapter_sqlite::{SqliteBus, SqliteStore};
use shop_gateway::{Auth, Dependency, Gateway, Limits};
use shop_runtime::ports::{
    ApiKeyStore, EventBus, InventoryStore, Lock, OrderStore, Outbox, RateLimiter, RuleStore, WithFallback,
};
use shop_streams::{Announcement, AnnouncementKey, Context, Namespace, Topology};

use crate::app::App;
use crate::config::{self, Database, ServiceConfig, Settings};
use crate::contexts::{Contexts, Outboxes, Ports, saga_settings};
use crate::secrets::{self, JwtKeys};
use crate::telemetry::PoolStats;
use crate::wiring::{Fallback, auth, redis_check, register_fallbacks};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProcessRole {
    Order,
    Inventory,
    All,
    /// Forwards the API to order and inventory instances (distributed mode).
    Gateway,
}

impl ProcessRole {
    pub(crate) fn runs(self, role: ProcessRole) -> bool {
        self == ProcessRole::All || self == role
    }

    fn describe(self) -> &'static str {
        match self {
            ProcessRole::Order => "the order role",
            ProcessRole::Inventory => "the inventory role",
            ProcessRole::All => "every role",
            ProcessRole::Gateway => "the gateway",
        }
    }
}

pub fn run(role: ProcessRole, listen: SocketAddr, settings: &Settings) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let app = App::build(settings, role, listen).await?;
        app.run_until_stopped().await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What the roles run on: the adapters of one mode, wired to the ports.
struct Wiring<S, B, L, O, R, K, RS> {
    /// The deployment's API keys.
    api_keys: K,
    /// The deployment's published rules.
    rule_store: RS,
    bus: B,
    limiter: R,
    /// Requests a shared limiter's local fallback counted (distributed mode).
    limiter_fallbacks: Option<Counter>,
    /// Locks the shared lock's local fallback gave (distributed mode).
    lock_fallbacks: Option<Counter>,
    /// Readiness checks of what only this mode has (Redis).
    checks: Vec<Dependency>,
    /// The lock is made only when the inventory role runs.
    ports: Ports<S, L>,
    /// The database pool's connections, for `/metrics`.
    pool: PoolStats,
    outboxes: Outboxes<O>,
    mode: &'static str,
    /// Where this instance announces itself to gateways, and the key it
    /// seals its announcements with (distributed mode).
    announce_on: Option<(JetStreamBus, Option<AnnouncementKey>)>,
}

/// The order and inventory roles of `role`, on the adapters of the mode
/// `service.database` selects, serving on `listen`.
pub(crate) async fn start(
    role: ProcessRole,
    listen: SocketAddr,
    settings: &Settings,
    service: ServiceConfig,
    keys: &JwtKeys,
) -> anyhow::Result<App> {
    let auth = auth(settings, keys)?;
    let namespace = Namespace::new(config::namespace(settings))?;
    // Bound first: a taken port is reported before any connection is made.
    let listener = shop_gateway::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let mut topology = Topology::new(namespace.clone())
        .replicated(service.nats_replicas)
        .retained(service.stream_retention);
    if config::payment(settings)?.is_some() {
        topology = topology.with_payment();
    }
    if let Database::Embedded(url) = &service.database {
        let mut store = SqliteStore::open(url).await?;
        if !service.group_commit {
            store = store.without_group_commit();
        }
        let bus = SqliteBus::new(&store, topology);
        // The bus is in the same file: each change's events go straight
        // into it, and the relays have only what an earlier release left.
        let store = store.publishing_into(&bus);
        let wiring = Wiring {
            api_keys: store.api_keys(),
            rule_store: store.rules(),
            bus,
            limiter: MemoryRateLimiter::new(),
            limiter_fallbacks: None,
            lock_fallbacks: None,
            checks: Vec::new(),
            outboxes: Outboxes {
                order: store.outbox(Context::Order),
                inventory: store.outbox(Context::Inventory),
            },
            pool: {
                let store = store.clone();
                Arc::new(move || store.connections())
            },
            ports: Ports {
                store,
                lock: Some(MemoryLock::new()),
                kv: Arc::new(MemoryKeyValue::new()),
                keyring: secrets::keyring(settings, &service.database)?.map(Arc::new),
            },
            mode: "embedded",
            announce_on: None,
        };
        run_roles(role, listener, wiring, settings, &service, auth).await
    } else {
        let store = PgStore::connect(&PgSettings {
            max_connections: service.db_pool,
            group_commit: service.group_commit,
            ..PgSettings::new(service.database.url())
        })
        .await?;
        let announce_key = secrets::announcement_key(settings, keys)?;
        if announce_key.is_none() {
            tracing::warn!(target: "shop::serve", "no SHOP_ANNOUNCE_KEY and no JWT secret: announcements go unsealed, and gateways take them in only from addresses on their SHOP_UPSTREAM_ALLOW");
        }
        // Serving roles do not change the schema (they need no right to):
        // `shop migrate` does, once per release, with a role that may.
        if service.migrate_on_start {
            store.migrate().await?;
        } else {
            let pending = store.pending_migrations().await?;
            if !pending.is_empty() {
                anyhow::bail!(
                    "the database lacks migrations {pending:?} of this build: run `shop migrate` (with a role that may change the schemas), or set SHOP_MIGRATE_ON_START=on"
                );
            }
        }
        // Redis and NATS are connected lazily: an instance starts and takes
        // orders while they are away (the outbox holds the events, limits
        // and locks fall back to per instance) and uses them once they answer.
        let lock = match role.runs(ProcessRole::Inventory) {
            true => Some(WithFallback::new(
                RedisLock::connect_lazily(service.redis.clone())?,
                MemoryLock::new(),
            )),
            false => None,
        };
        let lock_fallbacks = lock.as_ref().map(WithFallback::fallbacks);
        // One connection serves the rate limits and the readiness probe.
        let shared_limiter = RedisRateLimiter::connect_lazily(service.redis.clone())?;
        let redis = redis_check(shared_limiter.clone(), format!("{namespace}:ready"));
        let bus = JetStreamBus::connect_lazily(service.nats.clone(), topology).await?;
        let announcer = bus.clone();
        let rule_store = bus.rules();
        let limiter = WithFallback::new(shared_limiter, MemoryRateLimiter::new());
        let wiring = Wiring {
            api_keys: store.api_keys(),
            rule_store,
            bus,
            limiter_fallbacks: Some(limiter.fallbacks()),
            lock_fallbacks,
            limiter,
            checks: vec![Dependency::optional("redis", redis)],
            outboxes: Outboxes {
                order: store.outbox(Schema::Orders),
                inventory: store.outbox(Schema::Inventory),
            },
            pool: {
                let store = store.clone();
                Arc::new(move || store.connections())
            },
            ports: Ports {
                store,
                lock,
                kv: Arc::new(RedisKeyValue::connect_lazily(service.redis.clone())?),
                keyring: secrets::keyring(settings, &service.database)?.map(Arc::new),
            },
            mode: "distributed",
            announce_on: Some((announcer, announce_key)),
        };
        run_roles(role, listener, wiring, settings, &service, auth).await
    }
}

async fn run_roles<S, B, L, O, R, K, RS>(
    role: ProcessRole,
    listener: tokio::net::TcpListener,
    wiring: Wiring<S, B, L, O, R, K, RS>,
    settings: &Settings,
    service: &ServiceConfig,
    auth: Auth,
) -> anyhow::Result<App>
where
    S: OrderStore + InventoryStore + Clone,
    B: EventBus + Clone,
    L: Lock,
    O: Outbox,
    R: RateLimiter,
    K: ApiKeyStore,
    RS: RuleStore,
{
    let listening = listener.local_addr().context("the listening address")?;
    let namespace = config::namespace(settings);
    let api_keys = crate::apikey_cmd::keep_current(wiring.api_keys, auth.stored_api_keys());
    let probe = wiring.ports.store.clone();
    let audit = wiring.ports.store.clone();
    let mut contexts = Contexts::build(role, wiring.ports, settings)?;
    let (fleet, follower) = crate::fleet::join(
        wiring.rule_store,
        audit.clone(),
        Arc::clone(&contexts.rules),
        &service.instance_id,
        crate::contexts::audit_reloads(audit, settings)?,
    )
    .await;
    contexts
        .start_saga(&wiring.bus, wiring.outboxes, saga_settings(settings)?)
        .await?;
    let mut registry = Registry::default();
    let rules = Arc::clone(&contexts.rules);
    let active: crate::telemetry::RuleStamps = Arc::new(move || {
        rules
            .components()
            .into_iter()
            .map(|c| crate::telemetry::RuleLabels {
                name: c.stamp.name.to_string(),
                version: c.stamp.version,
                hash: c.stamp.hash.to_string(),
                mode: c.mode.as_str(),
            })
            .collect()
    });
    crate::telemetry::register(&mut registry, Some(wiring.pool), Some(active));
    contexts.metrics.register(&mut registry);
    if let Some(fallbacks) = wiring.limiter_fallbacks.clone() {
        register_fallbacks(&mut registry, Fallback::RateLimit, fallbacks);
    }
    if let Some(fallbacks) = wiring.lock_fallbacks.clone() {
        register_fallbacks(&mut registry, Fallback::Lock, fallbacks);
    }
    let (user, ip) = config::rate_limits(settings)?;
    let limits = Limits {
        user,
        ip,
        key_prefix: format!("{namespace}:ratelimit:"),
        trusted_proxies: config::trusted_proxies(settings)?,
    };
    // Ready with the database alone: it is what intake writes orders and
    // their events into. The broker and Redis have ways around them.
    let mut checks = wiring.checks;
    // Probed through the context this role runs: a least-privilege role
    // may read its own schema only.
    let orders = role.runs(ProcessRole::Order);
    checks.push(Dependency::required(
        "database",
        Arc::new(move || {
            let probe = probe.clone();
            Box::pin(async move {
                let read = match orders {
                    true => OrderStore::get(&probe, "ready-probe").await.map(drop),
                    false => InventoryStore::product(&probe, "ready-probe").await.map(drop),
                };
                read.map_err(|e| e.to_string())
            })
        }),
    ));
    let probe = wiring.bus.clone();
    checks.push(Dependency::optional(
        "event bus",
        Arc::new(move || {
            let probe = probe.clone();
            Box::pin(async move { probe.dead_letters(1).await.map(drop).map_err(|e| e.to_string()) })
        }),
    ));
    let mut topology = Topology::new(Namespace::new(namespace)?);
    if contexts.payments.is_some() {
        topology = topology.with_payment();
    }
    let events = shop_streams::catalogue::asyncapi(&topology);
    let mut gateway = Gateway::new(auth, registry, checks)
        .asyncapi(events)
        .rules(fleet, service.instance_id.clone())
        .rate_limits(wiring.limiter, limits)
        .request_timeout(service.request_timeout)
        .cors(config::cors_origins(settings)?);
    if let Some(orders) = contexts.orders.clone() {
        gateway = gateway.orders(orders);
    }
    if let Some(inventory) = contexts.inventory.clone() {
        gateway = gateway.products(inventory);
    }
    if let Some(payments) = contexts.payments.clone() {
        gateway = gateway.payments(payments);
    }
    // The audit log is one per database: either context reads it.
    if let Some(inventory) = contexts.inventory.clone() {
        gateway = gateway.audit(inventory);
    } else if let Some(orders) = contexts.orders.clone() {
        gateway = gateway.audit(orders);
    }
    let announcer = match wiring.announce_on {
        Some((bus, key)) => {
            let announce = config::AnnounceConfig::from_settings(settings)?;
            let url = announce.url.unwrap_or_else(|| advertised(listening));
            let contexts = [
                (ProcessRole::Order, Context::Order),
                (ProcessRole::Inventory, Context::Inventory),
            ];
            let announcements = contexts
                .into_iter()
                .filter(|(runs, _)| role.runs(*runs))
                .map(|(_, context)| Announcement {
                    context,
                    url: url.clone(),
                    instance: service.instance_id.clone(),
                    leaving: false,
                    weight: announce.weight,
                })
                .collect();
            Some(bus.announce(announcements, announce.every, key))
        }
        None => None,
    };
    eprintln!(
        "shop: {} running as {} ({} mode, {}, namespace {}), listening on http://{listening}",
        role.describe(),
        service.instance_id,
        wiring.mode,
        redact(service.database.url()),
        namespace
    );
    App::serving(listener, gateway.into_router(), service.server_limits, async move {
        if let Some(announcer) = announcer {
            announcer.leave().await;
        }
        drop(follower);
        contexts.stop().await;
        api_keys.abort();
    })
}

/// `http://` and where this process listens, with the host name in place
/// of an address that means every interface.
fn advertised(listening: SocketAddr) -> String {
    if listening.ip().is_unspecified() {
        let host =
            std::fs::read_to_string("/etc/hostname").map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned());
        format!("http://{host}:{}", listening.port())
    } else {
        format!("http://{listening}")
    }
}

/// The database URL without its password, for the log.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}
