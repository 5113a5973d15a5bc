//! The order and inventory contexts wired to the adapters a process runs
//! them on: the rules host, the use cases, and the saga roles that connect
//! the contexts over the event bus. This is the one place that builds them:
//! [`crate::App`] puts HTTP in front, `shop orders` and `shop stock` call the
//! use cases once, and the end-to-end tests (testkit) drive them on adapters
//! with fault points of their own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shop_adapter_payment::HttpProvider;
use shop_runtime::audit::{Actor, AuditRecord};
use shop_runtime::customer_data::Keyring;
use shop_runtime::metrics::Metrics;
use shop_runtime::ports::{AuditLog, Clock, EventBus, InventoryStore, KeyValue, Lock, OrderStore, Outbox, SystemClock};
use shop_runtime::rules::{Capabilities, ReloadReport, RuleHost, RuleSettings, RuleSource, WatchHandle};
use shop_runtime::saga::backpressure::Backpressure;
use shop_runtime::saga::consumer::ConsumerSettings;
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::{Expiry, OrderService};
use shop_runtime::saga::payment::{PaymentService, ReplayGuard, WebhookSecret};
use shop_runtime::saga::roles::{RoleSettings, Roles};
use shop_streams::Namespace;

use crate::config::{self, RulesConfig, ServiceConfig, Settings};
use crate::serve_cmd::ProcessRole;

/// What a process's contexts keep their state in, besides the event bus.
pub struct Ports<S, L> {
    pub store: S,
    /// The inventory context's lock; needed only where inventory runs.
    pub lock: Option<L>,
    /// The rules' key-value capability.
    pub kv: Arc<dyn KeyValue>,
    /// Seals and opens customers' delivery details where orders run
    /// ([`crate::secrets::keyring`]); without one, orders take none.
    pub keyring: Option<Arc<Keyring>>,
}

/// The outboxes the saga's relays publish, one per context.
pub struct Outboxes<O> {
    pub order: O,
    pub inventory: O,
}

/// The contexts one process runs, built by [`Contexts::build`]; their saga
/// runs from [`Contexts::start_saga`] until [`Contexts::stop`].
pub struct Contexts<S, L> {
    /// The order context's use cases, where the process runs it.
    pub orders: Option<Arc<OrderService<S>>>,
    /// The inventory context's use cases, where the process runs it.
    pub inventory: Option<Arc<InventoryService<S, L>>>,
    /// Payment through the provider at `SHOP_PAYMENT_URL`, where the
    /// process runs the order context and a provider is configured.
    pub payments: Option<Arc<PaymentService<S, HttpProvider>>>,
    /// What the use cases, the rules and the saga count.
    pub metrics: Metrics,
    /// The rule components this process runs, swapped as their directory changes.
    pub rules: Arc<RuleHost>,
    roles: Roles,
    /// Swaps the rules when their directory changes, for as long as the
    /// contexts live.
    _watch: WatchHandle,
}

impl<S, L> Contexts<S, L>
where
    S: OrderStore + InventoryStore + Clone,
    L: Lock,
{
    /// The use cases of the contexts `role` runs, on `ports`, with the rules
    /// and limits `settings` give. Fails when a rule component does not
    /// load, a setting is malformed, or inventory runs without a lock.
    pub fn build(role: ProcessRole, ports: Ports<S, L>, settings: &Settings) -> anyhow::Result<Self> {
        let Ports {
            store,
            lock,
            kv,
            keyring,
        } = ports;
        let intake_max_pending = config::intake_max_pending(settings)?;
        let namespace = Namespace::new(config::namespace(settings))?;
        let payment = config::payment(settings)?;
        let metrics = Metrics::default();
        let clock = Arc::new(SystemClock);
        let capabilities = Capabilities {
            clock: clock.clone(),
            kv: Arc::clone(&kv),
            namespace: namespace.to_string(),
        };
        let mut rule_settings = rule_settings(RulesConfig::from_settings(settings)?);
        rule_settings.metrics = metrics.clone();
        let rules = Arc::new(RuleHost::start(rule_settings, capabilities).context("loading the rules")?);
        let watch = rules.watch_with(Duration::from_secs(2), audit_reloads(store.clone(), settings)?);
        let orders = match role.runs(ProcessRole::Order) {
            true => {
                let mut service = OrderService::new(store.clone(), rules.clone(), clock.clone())
                    .with_metrics(metrics.clone())
                    .with_backpressure(Backpressure::new(intake_max_pending))
                    .with_price_cache(config::price_cache(settings));
                if let Some(keyring) = keyring {
                    service = service.with_keyring(keyring);
                }
                Some(service.shared())
            }
            false => None,
        };
        let payments = match (&orders, payment) {
            (Some(orders), Some(payment)) => {
                let provider = HttpProvider::new(&payment.url, PROVIDER_TIMEOUT)?;
                let service = PaymentService::new(
                    Arc::clone(orders),
                    provider,
                    WebhookSecret::new(payment.webhook_secret),
                    ReplayGuard::new(kv, format!("{namespace}:")),
                    clock.clone(),
                );
                Some(Arc::new(service.with_metrics(metrics.clone())))
            }
            _ => None,
        };
        let inventory = match (role.runs(ProcessRole::Inventory), lock) {
            (false, _) => None,
            (true, Some(lock)) => Some(Arc::new(
                InventoryService::new(store, lock, rules.clone(), clock, namespace).with_metrics(metrics.clone()),
            )),
            (true, None) => anyhow::bail!("the inventory context needs a lock"),
        };
        Ok(Self {
            orders,
            inventory,
            payments,
            metrics,
            rules,
            roles: Roles::new(),
            _watch: watch,
        })
    }

    /// Starts the saga of the contexts built: each relays its outbox to
    /// `bus` and consumes the other's events; orders also expire their
    /// reservations. `saga` comes from [`saga_settings`].
    pub async fn start_saga<B, O>(&mut self, bus: &B, outboxes: Outboxes<O>, saga: RoleSettings) -> anyhow::Result<()>
    where
        B: EventBus + Clone,
        O: Outbox,
    {
        let saga = RoleSettings {
            metrics: self.metrics.clone(),
            ..saga
        };
        if let Some(orders) = &self.orders {
            self.roles
                .start_order(orders.clone(), outboxes.order, bus, &saga)
                .await
                .context("starting the order saga")?;
        }
        if let Some(payments) = &self.payments {
            self.roles
                .start_payment(payments.clone(), bus, &saga)
                .await
                .context("starting the payment reader")?;
        }
        if let Some(inventory) = &self.inventory {
            self.roles
                .start_inventory(inventory.clone(), outboxes.inventory, bus, &saga)
                .await
                .context("starting the inventory saga")?;
        }
        Ok(())
    }

    /// Stops relays, consumers and expiry, letting the batch in hand finish.
    pub async fn stop(self) {
        self.roles.stop().await;
    }
}

/// What tells the audit log of each rule swap: the watcher's thread hands
/// the reload to a task that appends it as this instance's doing (a swap
/// that cannot be recorded is logged, and stays swapped).
pub(crate) fn audit_reloads<A: AuditLog + Clone>(
    log: A,
    settings: &Settings,
) -> anyhow::Result<impl Fn(&ReloadReport) + Send + Sync + 'static> {
    let actor = Actor::system(&ServiceConfig::from_settings(settings)?.instance_id);
    let (tell, mut told) = tokio::sync::mpsc::unbounded_channel::<Vec<AuditRecord>>();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            while let Some(records) = told.recv().await {
                if let Err(error) = log.append(&records).await {
                    tracing::error!(target: "shop::rules", %error, "a rule swap could not be audited");
                }
            }
        });
    }
    Ok(move |report: &ReloadReport| {
        let _ = tell.send(report.audit(&actor, SystemClock.now_ms()));
    })
}

/// How long one request to the payment provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// How the saga's relays, consumers and expiry run, as `settings` say.
pub fn saga_settings(settings: &Settings) -> anyhow::Result<RoleSettings> {
    let service = ServiceConfig::from_settings(settings)?;
    let rules = RulesConfig::from_settings(settings)?;
    let named = RoleSettings::named(service.instance_id);
    // With a provider, a confirmed order waits for its payment notice;
    // without one, for a completion through the API until its reservation
    // runs out.
    let expiry = match config::payment(settings)? {
        Some(payment) => Expiry::payment(payment.timeout),
        None => Expiry::reservation(rules.reservation_ttl),
    };
    Ok(RoleSettings {
        expiry,
        expiry_every: service.expiry_every,
        outbox_retention: service.outbox_retention,
        relay_wake: service.relay_wake,
        consumer: ConsumerSettings {
            together: service.handle_together,
            ..named.consumer
        },
        ..named
    })
}

/// Settings for the rules host from the typed configuration: the built-in
/// components, then what the rules directory adds.
pub(crate) fn rule_settings(config: RulesConfig) -> RuleSettings {
    let mut component_config = config.component_config;
    component_config
        .entry("order".to_owned())
        .or_default()
        .entry("reservation-ttl-ms".to_owned())
        .or_insert_with(|| config.reservation_ttl.as_millis().to_string());
    RuleSettings {
        builtin: shop_rules_bundle::DEFAULT
            .iter()
            .map(|c| RuleSource::builtin(c.name, c.wasm))
            .collect(),
        dir: config.dir,
        cache_dir: config.cache_dir,
        cache_key: config.cache_key,
        trust: config.trust,
        call_timeout: config.call_timeout,
        shadow_every: config.shadow_every,
        shadow_per_second: config.shadow_per_second,
        memory_limit: config.memory_limit,
        component_config,
        ..RuleSettings::default()
    }
}
