//! The whole shop in a test's process, for the end-to-end tests and the
//! Gherkin features: every role on the real services:
//! PostgreSQL, NATS JetStream and Redis on 127.0.0.1 (or a proxy or private
//! server in front of them), each shop with its own database, namespace and keys.
//! The contexts are wired by the shop's own composition root
//! ([`shop::Contexts`]); only the adapters, with their fault points, are the
//! test's choice.

pub mod catalogue;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop::{Contexts, Outboxes, Ports, ProcessRole};
use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_postgres::{PgSettings, PgStore, Schema};
use shop_adapter_redis::RedisLock;
use shop_rules::inventory::{InventoryCommand, RegisterProduct};
use shop_rules::order::{LineRequest, Order, OrderStatus};
use shop_runtime::ports::{InventoryStore, KeyValue, Lease, Lock, LockError};
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::{NewOrder, OrderError, OrderService};
use shop_streams::{Topology, Trace};
pub use shop_testkit::{eventually, eventually_within, fresh_namespace};
use uuid::Uuid;

pub struct Shop {
    /// The store the services use (through a proxy when the test asked for one).
    pub store: PgStore,
    /// A direct connection to the same database, for the test's own reads.
    pub observer: PgStore,
    pub orders: Arc<OrderService<PgStore>>,
    pub inventory: Arc<InventoryService<PgStore, TestLock>>,
    pub bus: JetStreamBus,
    running: Vec<Contexts<PgStore, TestLock>>,
}

/// Every role in this process, on its own database, namespace and keys,
/// with `inventory_instances` inventory handlers sharing one consumer.
pub async fn start() -> Shop {
    start_with(Options::default()).await
}

#[derive(Default)]
pub struct Options {
    /// Inventory handlers sharing the consumer (1 when 0).
    pub inventory_instances: usize,
    pub reservation_ttl: Option<Duration>,
    /// Every lock acquisition succeeds at once: a lock that is switched off,
    /// or whose lease expires mid-operation.
    pub lock_off: bool,
    /// Where the services reach each server, when not the standard port
    /// (a proxy, a private server).
    pub postgres: Option<SocketAddr>,
    pub nats_url: Option<String>,
    pub redis: Option<SocketAddr>,
}

/// The Redis lock, or none at all.
pub enum TestLock {
    Redis(RedisLock),
    Off,
}

impl Lock for TestLock {
    async fn acquire(&self, keys: &[String], ttl: Duration, wait: Duration) -> Result<Lease, LockError> {
        match self {
            Self::Redis(lock) => lock.acquire(keys, ttl, wait).await,
            Self::Off => Ok(Lease {
                keys: keys.to_vec(),
                token: String::new(),
            }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        match self {
            Self::Redis(lock) => lock.release(lease).await,
            Self::Off => Ok(()),
        }
    }
}

pub async fn start_with(options: Options) -> Shop {
    let Options {
        inventory_instances,
        reservation_ttl,
        lock_off,
        postgres,
        nats_url,
        redis,
    } = options;
    let (observer, url) = shop_adapter_postgres::testing::fresh_database().await;
    let store = match postgres {
        None => observer.clone(),
        Some(addr) => {
            let url = url.replace("127.0.0.1:5432", &addr.to_string());
            let settings = PgSettings {
                acquire_timeout: Duration::from_secs(1),
                ..PgSettings::new(url)
            };
            PgStore::connect(&settings).await.expect("PostgreSQL through the proxy")
        }
    };
    let redis_url = format!("redis://{}", redis.unwrap_or_else(|| ([127, 0, 0, 1], 6379).into()));
    let nats_url = nats_url.unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let namespace = fresh_namespace('t');
    let bus = JetStreamBus::connect(&nats_url, Topology::new(namespace.clone()))
        .await
        .expect("NATS is reachable");
    let mut settings = shop::Settings {
        namespace: Some(namespace.to_string()),
        ..shop::Settings::default()
    };
    if let Some(ttl) = reservation_ttl {
        let config = settings.rules_config.entry("order".into()).or_default();
        config.insert("reservation-ttl-ms".into(), ttl.as_millis().to_string());
    }
    let mut saga = shop::contexts::saga_settings(&settings).expect("the saga's settings");
    saga.instance = namespace.to_string();
    saga.consumer.wait = Duration::from_millis(200);
    let ports = |lock| Ports {
        store: store.clone(),
        lock,
        kv: Arc::new(shop_adapter_memory::MemoryKeyValue::new()) as Arc<dyn KeyValue>,
        keyring: None,
    };
    let outboxes = || Outboxes {
        order: store.outbox(Schema::Orders),
        inventory: store.outbox(Schema::Inventory),
    };
    // One process with every role, and more inventory instances beside it
    // on the same consumer, as separate processes would be.
    let mut running = Vec::new();
    for instance in 0..inventory_instances.max(1) {
        let lock = if lock_off {
            TestLock::Off
        } else {
            TestLock::Redis(RedisLock::connect(&redis_url).await.expect("Redis is reachable"))
        };
        let role = if instance == 0 {
            ProcessRole::All
        } else {
            ProcessRole::Inventory
        };
        let mut contexts = Contexts::build(role, ports(Some(lock)), &settings).expect("the contexts build");
        contexts
            .start_saga(&bus, outboxes(), saga.clone())
            .await
            .expect("the saga starts");
        running.push(contexts);
    }
    let orders = running[0].orders.clone().expect("the order context");
    let inventory = running[0].inventory.clone().expect("the inventory context");
    Shop {
        store,
        observer,
        orders,
        inventory,
        bus,
        running,
    }
}

impl Shop {
    pub async fn register(&self, product_id: &str, stock: i64) {
        let command = InventoryCommand::RegisterProduct(RegisterProduct {
            product_id: product_id.into(),
            name: "Mug".into(),
            unit_price: 1200,
            currency: "KRW".into(),
            initial_stock: stock,
        });
        self.inventory
            .admin(
                command,
                None,
                Trace::root(Uuid::now_v7()),
                &shop_runtime::audit::Actor::new("e2e", "admin", "e2e-register"),
            )
            .await
            .expect("registered");
        // The order side learns the price through the saga.
        let ids = [product_id.to_owned()];
        eventually("the catalogue copy", || async {
            use shop_runtime::ports::OrderStore;
            self.orders
                .store()
                .catalogue(&ids)
                .await
                .map(|c| c.len() == 1)
                .unwrap_or(false)
        })
        .await;
    }

    pub async fn place(&self, lines: &[(&str, i64)]) -> Order {
        self.try_place(lines).await.expect("accepted")
    }

    pub async fn try_place(&self, lines: &[(&str, i64)]) -> Result<Order, OrderError> {
        let new = NewOrder {
            order_id: Uuid::now_v7().to_string(),
            customer_id: "alice".into(),
            lines: lines
                .iter()
                .map(|(product_id, quantity)| LineRequest {
                    product_id: (*product_id).into(),
                    quantity: *quantity,
                })
                .collect(),
            delivery: None,
        };
        self.orders.place(new, Trace::root(Uuid::now_v7())).await
    }

    pub async fn settles_at(&self, order_id: &str, status: OrderStatus) -> Order {
        eventually(&format!("order {order_id} {status:?}"), || async {
            self.orders
                .get(order_id)
                .await
                .ok()
                .flatten()
                .is_some_and(|o| o.status == status)
        })
        .await;
        self.orders.get(order_id).await.expect("readable").expect("stored")
    }

    pub async fn stock(&self, product_id: &str) -> (i64, i64, i64) {
        let p = self
            .observer
            .product(product_id)
            .await
            .expect("readable")
            .expect("exists");
        assert!(p.is_conserved(), "{p:?}");
        (p.available, p.reserved, p.deducted)
    }

    /// Stops every role, checks that every event left in the streams
    /// validates against the published catalogue, and deletes the streams.
    pub async fn shutdown(self) {
        self.assert_events_conform().await;
        self.shutdown_unchecked().await;
    }

    /// Stops every role and deletes the streams, for a test that put
    /// malformed messages there on purpose.
    pub async fn shutdown_unchecked(self) {
        for contexts in self.running {
            contexts.stop().await;
        }
        let _ = self.bus.delete_streams().await;
    }
}
