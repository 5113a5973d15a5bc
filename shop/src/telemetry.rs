//! What every process tells `/metrics` about itself, read at each scrape:
//! its CPU time, memory and open files (the standard `process_*` names, so
//! stock dashboards read them), the build it runs and the rule components
//! active in it (they swap at run time), and its database pool:
//! its connections, and how long each acquire waited for one (sqlx reports
//! every acquire's wait as a trace event; [`pool_waits`] counts them).

use std::sync::{Arc, LazyLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Connections of a database pool: (open, idle).
pub(crate) type PoolStats = Arc<dyn Fn() -> (u32, usize) + Send + Sync>;

/// The rule components a process runs now: (name, hash).
pub(crate) type RuleStamps = Arc<dyn Fn() -> Vec<RuleLabels> + Send + Sync>;

/// One running rule component, as `shop_rule_info` labels it.
#[derive(Debug, Clone)]
pub(crate) struct RuleLabels {
    pub name: String,
    /// The published version; 0 for one that was not published.
    pub version: u32,
    pub hash: String,
    /// `active` or `shadow`.
    pub mode: &'static str,
}

/// Registers the process, build and (when given) rule and pool metrics.
pub(crate) fn register(registry: &mut Registry, pool: Option<PoolStats>, rules: Option<RuleStamps>) {
    registry.register_collector(Box::new(ProcessCollector));
    let info = Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]);
    registry.register("shop_build", "The build this process runs", info);
    if let Some(rules) = rules {
        registry.register_collector(Box::new(RuleCollector(rules)));
    }
    if let Some(pool) = pool {
        registry.register_collector(Box::new(PoolCollector(pool)));
        registry.register(
            "shop_db_pool_acquire_seconds",
            "How long each query or transaction waited for a database connection from the pool",
            POOL_WAITS.clone(),
        );
    }
}

/// Every acquire of this process's database pools: one process-wide
/// histogram, since the layer that fills it is installed before any pool
/// or registry exists. Buckets from 0.1 ms to 1.6 s.
static POOL_WAITS: LazyLock<Histogram> = LazyLock::new(|| Histogram::new(exponential_buckets(0.0001, 4.0, 8)));

/// The tracing layer that counts sqlx's `sqlx::pool::acquire` events
/// (their `acquired_after_secs`) into `shop_db_pool_acquire_seconds`.
pub(crate) fn pool_waits<S: Subscriber + for<'span> LookupSpan<'span>>() -> impl Layer<S> {
    PoolWaits.with_filter(Targets::new().with_target("sqlx::pool::acquire", LevelFilter::TRACE))
}

struct PoolWaits;

impl<S: Subscriber> Layer<S> for PoolWaits {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut waited = Waited(None);
        event.record(&mut waited);
        if let Some(seconds) = waited.0 {
            POOL_WAITS.observe(seconds);
        }
    }
}

/// The `acquired_after_secs` field of an acquire event.
struct Waited(Option<f64>);

impl Visit for Waited {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "acquired_after_secs" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

#[derive(Debug)]
struct ProcessCollector;

/// Linux reports CPU time in clock ticks of USER_HZ, which is 100 on every
/// architecture the shop builds for.
const TICKS_PER_SECOND: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Off Linux (or without /proc) there is nothing to say.
        if let Some(ticks) = cpu_ticks() {
            let cpu = ConstCounter::new(ticks as f64 / TICKS_PER_SECOND);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "CPU time this process used, user and system",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Some(bytes) = resident_bytes() {
            let rss = ConstGauge::new(bytes);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Memory this process holds in RAM",
                None,
                rss.metric_type(),
            )?)?;
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            let fds = ConstGauge::new(entries.count() as i64);
            fds.encode(encoder.encode_descriptor(
                "process_open_fds",
                "File descriptors this process has open (sockets included)",
                None,
                fds.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// utime + stime from /proc/self/stat (fields 14 and 15; the command name,
/// field 2, may hold spaces, so count from its closing parenthesis).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `shop_rule_info{name,version,hash,mode} 1` for each component, read at each
/// scrape, so a swap shows at the next one.
struct RuleCollector(RuleStamps);

impl std::fmt::Debug for RuleCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleCollector")
    }
}

impl Collector for RuleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "shop_rule_info",
            "The rule components this process runs now: name, published version (0: not published), SHA-256 and mode (active or shadow) of each",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for rule in (self.0)() {
            let version = rule.version.to_string();
            let labels = [
                ("name", rule.name.as_str()),
                ("version", version.as_str()),
                ("hash", rule.hash.as_str()),
                ("mode", rule.mode),
            ];
            ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

struct PoolCollector(PoolStats);

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolCollector")
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (open, idle) = (self.0)();
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let mut family = encoder.encode_descriptor(
            "shop_db_pool_connections",
            "The database pool's connections: in use by a query or transaction, or idle",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, count) in [("in_use", i64::from(open) - idle), ("idle", idle)] {
            let labels = [("state", state)];
            ConstGauge::new(count.max(0)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_and_its_pool_are_read_at_each_scrape() {
        // Work until the kernel has counted a tick of CPU time.
        let mut spin = 0u64;
        while cpu_ticks().is_some_and(|ticks| ticks == 0) {
            spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(7));
        }
        let mut registry = Registry::default();
        let pool: PoolStats = Arc::new(|| (5, 2));
        let swapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&swapped);
        let rules: RuleStamps = Arc::new(move || {
            let hash = match seen.load(std::sync::atomic::Ordering::Relaxed) {
                false => "aa",
                true => "bb",
            };
            vec![RuleLabels {
                name: "order".to_owned(),
                version: 3,
                hash: hash.to_owned(),
                mode: "active",
            }]
        });
        register(&mut registry, Some(pool), Some(rules));
        let mut exposition = String::new();
        prometheus_client::encoding::text::encode(&mut exposition, &registry).expect("encodes");
        let value = |prefix: &str| {
            exposition
                .lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{prefix} in {exposition}"))
        };
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert_eq!(value("shop_db_pool_connections{state=\"in_use\"}"), 3.0);
        assert_eq!(value("shop_db_pool_connections{state=\"idle\"}"), 2.0);
        assert_eq!(value("shop_build_info{version="), 1.0);
        assert_eq!(
            value("shop_rule_info{name=\"order\",version=\"3\",hash=\"aa\",mode=\"active\"}"),
            1.0
        );
        swapped.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut exposition = String::new();
        prometheus_client::encoding::text::encode(&mut exposition, &registry).expect("encodes");
        assert!(
            exposition.contains("shop_rule_info{name=\"order\",version=\"3\",hash=\"bb\",mode=\"active\"} 1"),
            "{exposition}"
        );
        assert!(
            !exposition.contains("hash=\"aa\""),
            "the swapped-out hash is gone: {exposition}"
        );
    }

    #[test]
    fn each_acquire_sqlx_reports_is_a_wait_in_the_histogram() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(pool_waits());
        let counted = || {
            let mut registry = Registry::default();
            register(&mut registry, Some(Arc::new(|| (1, 1))), None);
            let mut exposition = String::new();
            prometheus_client::encoding::text::encode(&mut exposition, &registry).expect("encodes");
            let sample = |name: &str| {
                exposition
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{name} in {exposition}"))
            };
            // The widest bucket under 1 s; only this test waits longer.
            let under_a_second = exposition
                .lines()
                .filter_map(|l| l.strip_prefix("shop_db_pool_acquire_seconds_bucket{le=\""))
                .filter_map(|l| {
                    let (le, count) = l.split_once("\"} ")?;
                    Some((le.parse::<f64>().ok()?, count.parse::<f64>().ok()?))
                })
                .filter(|(le, _)| *le < 1.0)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, count)| count)
                .unwrap_or_else(|| panic!("buckets in {exposition}"));
            let count = sample("shop_db_pool_acquire_seconds_count");
            (count, count - under_a_second)
        };
        let (before, slow_before) = counted();
        tracing::subscriber::with_default(subscriber, || {
            // As sqlx reports a wait, at the levels it uses.
            tracing::trace!(target: "sqlx::pool::acquire", acquired_after_secs = 1.2_f64, "acquired connection");
            tracing::warn!(target: "sqlx::pool::acquire", acquired_after_secs = 1.5_f64, slow_acquire_threshold_secs = 1.0_f64, "acquired connection, but time to acquire exceeded slow threshold");
            // Not an acquire: not counted.
            tracing::trace!(target: "sqlx::query", acquired_after_secs = 9.0_f64, "something else");
        });
        let (after, slow_after) = counted();
        assert!(after - before >= 2.0, "{before} -> {after}");
        assert_eq!(
            slow_after - slow_before,
            2.0,
            "the two slow waits, in a bucket above 0.41 s"
        );
    }
}
