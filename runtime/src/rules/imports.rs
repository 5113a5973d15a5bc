//! The capabilities rule components import, implemented by the host.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;

use super::bindings::inventory_types;
use super::bindings::order_world::shop::rules::{clock, common, config, log, order_types};
use super::bindings::policy_world::shop::rules::kv;
use crate::ports::{Clock, KeyValue, KvError};

/// What the host lends to rule components: swap any of them without the
/// components noticing.
#[derive(Clone)]
pub struct Capabilities {
    pub clock: Arc<dyn Clock>,
    pub kv: Arc<dyn KeyValue>,
    /// Prefix of every key a component writes (`{namespace}:rules:{component}:`),
    /// so deployments and components sharing one store never collide.
    pub namespace: String,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The data of one component instance's store.
pub(crate) struct HostState {
    component: Arc<str>,
    clock: Arc<dyn Clock>,
    kv: Arc<dyn KeyValue>,
    kv_prefix: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    pub(crate) memory: MemoryCap,
}

impl HostState {
    pub(crate) fn new(
        component: Arc<str>,
        capabilities: &Capabilities,
        config: Arc<BTreeMap<String, String>>,
        memory_limit: usize,
    ) -> Self {
        Self {
            kv_prefix: format!("{}:rules:{component}:", capabilities.namespace).into(),
            component,
            clock: Arc::clone(&capabilities.clock),
            kv: Arc::clone(&capabilities.kv),
            config,
            memory: MemoryCap {
                limit: memory_limit,
                hit: false,
            },
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.kv_prefix)
    }
}

/// Caps linear memory, and remembers being hit so a fault can say why.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.limit);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> i64 {
        self.clock.now_ms()
    }
}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) {
        let component = &*self.component;
        match level {
            log::Level::Trace => tracing::trace!(target: "shop::rules", component, "{message}"),
            log::Level::Debug => tracing::debug!(target: "shop::rules", component, "{message}"),
            log::Level::Info => tracing::info!(target: "shop::rules", component, "{message}"),
            log::Level::Warn => tracing::warn!(target: "shop::rules", component, "{message}"),
            log::Level::Error => tracing::error!(target: "shop::rules", component, "{message}"),
        }
    }

    fn enabled(&mut self, level: log::Level) -> bool {
        match level {
            log::Level::Trace => tracing::enabled!(target: "shop::rules", tracing::Level::TRACE),
            log::Level::Debug => tracing::enabled!(target: "shop::rules", tracing::Level::DEBUG),
            log::Level::Info => tracing::enabled!(target: "shop::rules", tracing::Level::INFO),
            log::Level::Warn => tracing::enabled!(target: "shop::rules", tracing::Level::WARN),
            log::Level::Error => tracing::enabled!(target: "shop::rules", tracing::Level::ERROR),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

fn kv_error(error: KvError) -> kv::KvError {
    match error {
        KvError::Unavailable(reason) => kv::KvError::Unavailable(reason.to_string()),
        invalid @ KvError::NotACounter(_) => kv::KvError::Invalid(invalid.to_string()),
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        self.kv.get(&self.key(&key)).map_err(kv_error)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), kv::KvError> {
        self.kv.set(&self.key(&key), &value, ttl(ttl_ms)).map_err(kv_error)
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, kv::KvError> {
        self.kv.increment(&self.key(&key), delta, ttl(ttl_ms)).map_err(kv_error)
    }

    fn delete(&mut self, key: String) -> Result<(), kv::KvError> {
        self.kv.delete(&self.key(&key)).map_err(kv_error)
    }
}

// Type-only interfaces: nothing to implement, but the linker asks for them.
impl common::Host for HostState {}
impl order_types::Host for HostState {}
impl inventory_types::Host for HostState {}
