//! `shop serve --role gateway`: the front door of the distributed mode.
//!
//! It holds no data. It verifies callers, counts rate limits, and forwards
//! `/api/orders` and `/api/products` to the order and inventory instances it
//! knows: from `SHOP_ORDER_UPSTREAMS` / `SHOP_INVENTORY_UPSTREAMS`, and from
//! the announcements instances make over NATS (`SHOP_DISCOVERY=nats`, the
//! default), so instances come and go without restarting it. Its own
//! `/health/ready` answers 200 while each context has an instance to take
//! requests; `/metrics` shows each upstream's requests, health and circuit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_memory::MemoryRateLimiter;
use shop_adapter_redis::RedisRateLimiter;
use shop_gateway::{Check, Dependency, Gateway, Limits, Upstreams};
use shop_runtime::ports::WithFallback;
use shop_streams::{Context, Namespace, Topology, Trust};

use shop_adapter_postgres::{PgSettings, PgStore};

use crate::app::App;
use crate::config::{self, Database, GatewayConfig, ServiceConfig, Settings};
use crate::secrets::{self, JwtKeys, MissingSecret};
use crate::wiring::{Fallback, auth, redis_check, register_fallbacks};

pub(crate) async fn start(
    listen: SocketAddr,
    settings: &Settings,
    service: ServiceConfig,
    keys: &JwtKeys,
) -> anyhow::Result<App> {
    let routing = GatewayConfig::from_settings(settings)?;
    if !routing.discovery && (routing.order.is_empty() || routing.inventory.is_empty()) {
        anyhow::bail!(
            "with SHOP_DISCOVERY=off the gateway needs SHOP_ORDER_UPSTREAMS and SHOP_INVENTORY_UPSTREAMS (http://host:port, separated by commas)"
        );
    }
    let namespace = Namespace::new(config::namespace(settings))?;
    let listener = shop_gateway::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let listening = listener.local_addr().context("the listening address")?;

    let mut registry = Registry::default();
    crate::telemetry::register(&mut registry, None, None);
    let upstreams = Upstreams::new(routing.proxy.clone(), &mut registry);
    for (context, urls, name) in [
        (Context::Order, &routing.order, "SHOP_ORDER_UPSTREAMS"),
        (Context::Inventory, &routing.inventory, "SHOP_INVENTORY_UPSTREAMS"),
    ] {
        for url in urls {
            upstreams.add(context, url).context(name)?;
        }
    }
    let listening_to_announcements = match routing.discovery {
        true => {
            // Only sealed announcements (or allowed addresses) are believed:
            // the gateway forwards callers' credentials to what it believes.
            let trust = Trust {
                key: secrets::announcement_key(settings, keys)?,
                allow: routing.allow.clone(),
            };
            if !trust.admits_any() {
                return Err(MissingSecret(
                    "SHOP_DISCOVERY=nats needs SHOP_ANNOUNCE_KEY (or a SHOP_JWT_SECRET to derive it from) to verify instances' announcements, or SHOP_UPSTREAM_ALLOW listing the instances to believe; or set SHOP_DISCOVERY=off".into(),
                )
                .into());
            }
            let bus =
                JetStreamBus::connect_without_streams(service.nats.clone(), Topology::new(namespace.clone())).await?;
            let mut heard = bus.announcements(trust).await?;
            let upstreams = Arc::clone(&upstreams);
            let rejected = Counter::<u64>::default();
            registry.sub_registry_with_prefix("shop_gateway").register(
                "announcements_rejected",
                "Announcements not believed: malformed, unsealed, forged or stale",
                rejected.clone(),
            );
            Some(tokio::spawn(async move {
                // A flood of forgeries must not flood the log: one line a minute.
                let mut logged: Option<Instant> = None;
                while let Some(announcement) = heard.next().await {
                    match announcement {
                        Ok(announcement) => upstreams.heard(&announcement),
                        Err(why) => {
                            rejected.inc();
                            if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                                logged = Some(Instant::now());
                                tracing::warn!(target: "shop::gateway", reason = %why, rejected = rejected.get(), "announcement not believed");
                            }
                        }
                    }
                }
            }))
        }
        false => None,
    };
    let health_checks = upstreams.keep_checking();

    let mut checks: Vec<Dependency> = [
        ("order instances", Context::Order),
        ("inventory instances", Context::Inventory),
    ]
    .into_iter()
    .map(|(name, context)| {
        let upstreams = Arc::clone(&upstreams);
        let check: Check = Arc::new(move || {
            let available = upstreams.pool(context).available(Instant::now());
            Box::pin(async move {
                match available {
                    0 => Err("none available".to_owned()),
                    _ => Ok(()),
                }
            })
        });
        Dependency::required(name, check)
    })
    .collect();
    let (user, ip) = config::rate_limits(settings)?;
    let limits = Limits {
        user,
        ip,
        // Apart from the instances' own counts behind it.
        key_prefix: format!("{namespace}:gateway:ratelimit:"),
        trusted_proxies: config::trusted_proxies(settings)?,
    };
    let limiter = match user.is_some() || ip.is_some() {
        true => Some(RedisRateLimiter::connect_lazily(service.redis.clone())?),
        false => None,
    };
    if let Some(limiter) = &limiter {
        checks.push(Dependency::optional(
            "redis",
            redis_check(limiter.clone(), format!("{namespace}:gateway:ready")),
        ));
    }
    // Redis unreachable: each gateway counts on its own, never no limit.
    let limiter = limiter.map(|redis| WithFallback::new(redis, MemoryRateLimiter::new()));
    if let Some(limiter) = &limiter {
        register_fallbacks(&mut registry, Fallback::RateLimit, limiter.fallbacks());
    }
    let auth = auth(settings, keys)?;
    // Stored API keys are checked at the front door too, when the gateway
    // can read the deployment's database; else only configured ones.
    let api_keys = match &service.database {
        Database::Postgres(url) => {
            let settings = PgSettings {
                max_connections: 1,
                group_commit: false,
                ..PgSettings::new(url.clone())
            };
            match PgStore::connect(&settings).await {
                Ok(store) => Some(crate::apikey_cmd::keep_current(
                    store.api_keys(),
                    auth.stored_api_keys(),
                )),
                Err(error) => {
                    tracing::warn!(target: "shop::gateway", error = %error, "no database: stored API keys are not accepted here");
                    None
                }
            }
        }
        Database::Embedded(_) => None,
    };
    let mut gateway = Gateway::new(auth, registry, checks)
        .asyncapi(shop_streams::catalogue::asyncapi(&Topology::new(namespace.clone())))
        .request_timeout(service.request_timeout)
        .cors(config::cors_origins(settings)?)
        .proxy(&upstreams);
    if let Some(limiter) = limiter {
        gateway = gateway.rate_limits(limiter, limits);
    }
    let router = gateway.into_router();
    eprintln!(
        "shop: the gateway running as {} (namespace {namespace}, {} order and {} inventory instances listed{}), listening on http://{listening}",
        service.instance_id,
        routing.order.len(),
        routing.inventory.len(),
        if routing.discovery {
            ", hearing announcements on NATS"
        } else {
            ""
        },
    );
    App::serving(listener, router, service.server_limits, async move {
        health_checks.abort();
        if let Some(task) = api_keys {
            task.abort();
        }
        if let Some(task) = listening_to_announcements {
            task.abort();
        }
    })
}
