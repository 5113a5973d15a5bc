//! The instances behind a gateway, per context, and which one gets the next
//! request.
//!
//! An instance is in the rotation while its last health check passed and its
//! circuit breaker lets calls through. Instances come from a static list
//! (kept for good) or from announcements (forgotten when they leave or fall
//! silent). The pool's [`Balance`] orders them for each request; the first
//! in that order that is in the rotation takes it, and the ones a request
//! already tried come last.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::uri::{Authority, Scheme};
use axum::http::{Uri, uri::PathAndQuery};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use shop_streams::Context;

use super::balance::{self, Balance, Candidate};
use super::breaker::{Breaker, BreakerSettings, BreakerState, Permit};

/// `http://host:port`, the only form an upstream address takes.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an upstream address like http://10.0.0.7:8080")]
pub struct BadUpstream(pub String);

/// One instance serving one context's API.
#[derive(Debug)]
pub struct Instance {
    url: String,
    authority: Authority,
    breaker: Arc<Breaker>,
    healthy: AtomicBool,
    /// From a static list: never forgotten.
    fixed: bool,
    heard: Mutex<Instant>,
    /// As last announced (1 for listed instances).
    weight: AtomicU32,
    /// This gateway's requests to it still unanswered.
    in_flight: AtomicUsize,
}

impl Instance {
    fn new(url: &str, breaker: BreakerSettings, fixed: bool, now: Instant) -> Result<Self, BadUpstream> {
        let url = url.trim().trim_end_matches('/');
        let bad = || BadUpstream(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let plain_root = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        if uri.scheme() != Some(&Scheme::HTTP) || !plain_root {
            return Err(bad());
        }
        Ok(Self {
            url: url.to_owned(),
            authority: uri.authority().ok_or_else(bad)?.clone(),
            breaker: Arc::new(Breaker::new(breaker)),
            // Until the first check says otherwise: it was just listed or heard.
            healthy: AtomicBool::new(true),
            fixed,
            heard: Mutex::new(now),
            weight: AtomicU32::new(1),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Counts a request in flight to this instance until the guard drops.
    pub fn sending(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address of `path` on this instance.
    pub fn uri(&self, path: &PathAndQuery) -> Result<Uri, axum::http::Error> {
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path.clone())
            .build()
    }

    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    fn in_rotation(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// A request on its way to an instance; see [`Instance::sending`].
#[derive(Debug)]
pub struct InFlight<'a>(&'a Instance);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Answered, with anything but a 5xx.
    ok,
    /// Answered with a 5xx.
    error,
    /// No answer: refused, reset or too slow.
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub service: String,
    pub upstream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub service: String,
    pub upstream: String,
    pub outcome: Outcome,
}

/// What the gateway counts about its upstreams.
#[derive(Debug, Clone, Default)]
pub struct GatewayMetrics {
    pub requests: Family<OutcomeLabels, Counter>,
    pub retries: Family<ServiceLabels, Counter>,
    /// Requests answered by the gateway itself because no instance could take them.
    pub unavailable: Family<ServiceLabels, Counter>,
    pub circuit: Family<UpstreamLabels, Gauge>,
    pub healthy: Family<UpstreamLabels, Gauge>,
}

impl GatewayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let gateway = registry.sub_registry_with_prefix("shop_gateway");
        gateway.register(
            "upstream_requests",
            "Requests sent to upstream instances, by how they ended",
            self.requests.clone(),
        );
        gateway.register(
            "retries",
            "Requests sent again after a failed attempt",
            self.retries.clone(),
        );
        gateway.register(
            "unavailable",
            "Requests answered with a problem because no instance could take them",
            self.unavailable.clone(),
        );
        gateway.register(
            "circuit_state",
            "Each upstream's circuit breaker: 0 closed, 1 open, 2 half-open",
            self.circuit.clone(),
        );
        gateway.register(
            "upstream_healthy",
            "1 while an upstream passes its health checks",
            self.healthy.clone(),
        );
    }
}

/// The instances of one context.
#[derive(Debug)]
pub struct Pool {
    context: Context,
    balance: Balance,
    breaker: BreakerSettings,
    instances: RwLock<Vec<Arc<Instance>>>,
    next: AtomicUsize,
    metrics: GatewayMetrics,
}

impl Pool {
    pub fn new(context: Context, balance: Balance, breaker: BreakerSettings, metrics: GatewayMetrics) -> Self {
        Self {
            context,
            balance,
            breaker,
            instances: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn context(&self) -> Context {
        self.context
    }

    /// Adds an instance from a static list.
    pub fn add(&self, url: &str) -> Result<(), BadUpstream> {
        self.insert(Instance::new(url, self.breaker, true, Instant::now())?);
        Ok(())
    }

    /// An announcement from the instance at `url` with `weight`: added
    /// when new, kept alive (and reweighed) otherwise. `true` when it was new.
    pub fn heard(&self, url: &str, weight: u32, now: Instant) -> Result<bool, BadUpstream> {
        let url = url.trim().trim_end_matches('/');
        let weight = weight.max(1);
        if let Some(known) = self.read().iter().find(|i| i.url == url) {
            *known.heard.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
            known.weight.store(weight, Ordering::Relaxed);
            return Ok(false);
        }
        let instance = Instance::new(url, self.breaker, false, now)?;
        instance.weight.store(weight, Ordering::Relaxed);
        self.insert(instance);
        Ok(true)
    }

    /// Forgets an announced instance (it left); static ones stay.
    pub fn forget(&self, url: &str) -> bool {
        let url = url.trim().trim_end_matches('/');
        self.forget_where(|i| !i.fixed && i.url == url)
    }

    /// Forgets announced instances not heard from since `before`.
    pub fn forget_silent(&self, before: Instant) -> bool {
        self.forget_where(|i| !i.fixed && *i.heard.lock().unwrap_or_else(std::sync::PoisonError::into_inner) < before)
    }

    fn forget_where(&self, gone: impl Fn(&Instance) -> bool) -> bool {
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = instances.len();
        instances.retain(|instance| {
            let keep = !gone(instance);
            if !keep {
                tracing::info!(target: "shop::gateway", context = %self.context.as_str(), upstream = %instance.url, "upstream forgotten");
                self.metrics.circuit.remove(&self.labels(instance));
                self.metrics.healthy.remove(&self.labels(instance));
            }
            keep
        });
        instances.len() != before
    }

    fn insert(&self, instance: Instance) {
        tracing::info!(target: "shop::gateway", context = %self.context.as_str(), upstream = %instance.url, "upstream added");
        let labels = self.labels(&instance);
        self.metrics.circuit.get_or_create(&labels).set(0);
        self.metrics.healthy.get_or_create(&labels).set(1);
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !instances.iter().any(|i| i.url == instance.url) {
            instances.push(Arc::new(instance));
        }
    }

    /// Every known instance.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        self.read().clone()
    }

    /// How many instances could take a request now.
    pub fn available(&self, now: Instant) -> usize {
        self.read()
            .iter()
            .filter(|i| i.in_rotation() && i.breaker.opens_again_at().is_none_or(|at| at <= now))
            .count()
    }

    /// When the first open breaker lets a probe through; `None` when none is open.
    pub fn next_probe(&self) -> Option<Instant> {
        self.read().iter().filter_map(|i| i.breaker.opens_again_at()).min()
    }

    /// The first instance in the balance's order for `caller` that is in
    /// the rotation and whose breaker gives a permit, preferring those not
    /// in `tried`.
    pub fn pick(&self, now: Instant, tried: &[Arc<Instance>], caller: &str) -> Option<(Arc<Instance>, Permit)> {
        let instances = self.instances();
        if instances.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates: Vec<Candidate<'_>> = instances
            .iter()
            .map(|i| Candidate {
                url: &i.url,
                in_flight: i.in_flight.load(Ordering::Relaxed),
                weight: i.weight.load(Ordering::Relaxed),
            })
            .collect();
        let order = balance::order(self.balance, &candidates, turn, caller);
        let in_order = || order.iter().map(|&n| &instances[n]);
        let fresh = in_order().filter(|i| !tried.iter().any(|t| Arc::ptr_eq(t, i)));
        let again = in_order().filter(|i| tried.iter().any(|t| Arc::ptr_eq(t, i)));
        fresh.chain(again).filter(|i| i.in_rotation()).find_map(|instance| {
            let permit = instance.breaker.try_acquire(now)?;
            self.show_circuit(instance);
            Some((Arc::clone(instance), permit))
        })
    }

    /// Records a health check of `instance`.
    pub fn checked(&self, instance: &Instance, healthy: bool) {
        let was = instance.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            tracing::warn!(target: "shop::gateway", context = %self.context.as_str(), upstream = %instance.url, healthy, "upstream health changed");
        }
        self.metrics
            .healthy
            .get_or_create(&self.labels(instance))
            .set(i64::from(healthy));
    }

    /// Publishes `instance`'s breaker state after a call.
    pub fn show_circuit(&self, instance: &Instance) {
        let state = instance.breaker.state();
        let gauge = self.metrics.circuit.get_or_create(&self.labels(instance));
        if gauge.set(state.gauge()) != state.gauge() && state == BreakerState::Open {
            tracing::warn!(target: "shop::gateway", context = %self.context.as_str(), upstream = %instance.url, "circuit opened");
        }
    }

    pub fn labels(&self, instance: &Instance) -> UpstreamLabels {
        UpstreamLabels {
            service: self.context.as_str().to_owned(),
            upstream: instance.url.clone(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Instance>>> {
        self.instances.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long an announced instance may stay silent before it is forgotten,
/// unless configured otherwise: three missed announcements at the default
/// pace of one every two seconds, with slack.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        let breaker = BreakerSettings {
            window: 4,
            open_for: Duration::from_secs(30),
        };
        Pool::new(Context::Order, Balance::RoundRobin, breaker, GatewayMetrics::default())
    }

    fn urls(picked: &[Arc<Instance>]) -> Vec<&str> {
        picked.iter().map(|i| i.url()).collect()
    }

    #[test]
    fn instances_take_turns_and_a_retry_prefers_another() {
        let pool = pool();
        for url in ["http://a:1", "http://b:1/", "http://c:1"] {
            pool.add(url).expect("valid");
        }
        let now = Instant::now();
        let picked: Vec<_> = (0..6).map(|_| pool.pick(now, &[], "").expect("one").0).collect();
        assert_eq!(
            urls(&picked),
            [
                "http://a:1",
                "http://b:1",
                "http://c:1",
                "http://a:1",
                "http://b:1",
                "http://c:1"
            ]
        );
        let first = pool.pick(now, &[], "").expect("one").0;
        let second = pool.pick(now, std::slice::from_ref(&first), "").expect("one").0;
        assert_ne!(first.url(), second.url());
        // Only one instance: a retry goes back to it.
        let lonely = self::pool();
        lonely.add("http://a:1").expect("valid");
        let only = lonely.pick(now, &[], "").expect("one").0;
        assert_eq!(lonely.pick(now, &[only], "").expect("again").0.url(), "http://a:1");
    }

    #[test]
    fn unhealthy_and_open_instances_leave_the_rotation() {
        let pool = pool();
        pool.add("http://a:1").expect("valid");
        pool.add("http://b:1").expect("valid");
        let now = Instant::now();
        let [a, b] = [0, 1].map(|n| pool.instances()[n].clone());
        pool.checked(&a, false);
        assert!((0..4).all(|_| pool.pick(now, &[], "").expect("b").0.url() == "http://b:1"));
        assert_eq!(pool.available(now), 1);
        for _ in 0..2 {
            let (instance, permit) = pool.pick(now, &[], "").expect("b");
            assert!(Arc::ptr_eq(&instance, &b));
            permit.failed(now);
        }
        assert!(pool.pick(now, &[], "").is_none(), "a is unhealthy, b's circuit is open");
        assert_eq!(pool.available(now), 0);
        assert_eq!(pool.next_probe(), Some(now + Duration::from_secs(30)));
        pool.checked(&a, true);
        assert_eq!(pool.pick(now, &[], "").expect("a is back").0.url(), "http://a:1");
    }

    #[test]
    fn announced_instances_are_forgotten_when_silent_or_gone_and_listed_ones_stay() {
        let pool = pool();
        pool.add("http://fixed:1").expect("valid");
        let start = Instant::now();
        assert_eq!(pool.heard("http://x:1", 1, start).ok(), Some(true));
        assert_eq!(pool.heard("http://y:1", 1, start).ok(), Some(true));
        let later = start + Duration::from_secs(8);
        assert_eq!(pool.heard("http://x:1", 1, later).ok(), Some(false), "known already");
        assert!(pool.forget_silent(start + Duration::from_secs(5)));
        let left: Vec<_> = pool.instances();
        assert_eq!(urls(&left), ["http://fixed:1", "http://x:1"]);
        assert!(pool.forget("http://x:1"));
        assert!(!pool.forget("http://fixed:1"), "listed instances stay");
        assert_eq!(urls(&pool.instances()), ["http://fixed:1"]);
    }

    #[test]
    fn only_plain_http_roots_are_upstreams() {
        let pool = pool();
        for bad in ["", "10.0.0.7:8080", "https://a:1", "http://a:1/api", "http://"] {
            assert!(pool.add(bad).is_err(), "{bad:?}");
        }
        let instance = Instance::new("http://a:8080", BreakerSettings::default(), true, Instant::now()).expect("valid");
        let path = PathAndQuery::from_static("/api/orders?limit=5");
        assert_eq!(
            instance.uri(&path).map(|u| u.to_string()).ok().as_deref(),
            Some("http://a:8080/api/orders?limit=5")
        );
    }
}
