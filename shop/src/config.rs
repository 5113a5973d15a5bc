//! Typed configuration from `SHOP_*` environment variables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// The settings of the rules host.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// `SHOP_RULES_DIR`: components here override or add to the built-in ones.
    pub dir: Option<PathBuf>,
    /// `SHOP_RULES_CACHE`: compiled-code cache (default `./data/rules-cache`; `off` disables).
    pub cache_dir: Option<PathBuf>,
    /// `SHOP_RULES_TIMEOUT_MS`: CPU budget of one rule call (default 100).
    pub call_timeout: Duration,
    /// `SHOP_RULES_MEMORY_MB`: memory cap of one rule instance (default 64).
    pub memory_limit: usize,
    /// `SHOP_RESERVATION_TTL_SECS`: how long a confirmed order holds its stock (default 1800).
    pub reservation_ttl: Duration,
    /// `SHOP_RULES_CONFIG_<COMPONENT>_<KEY>=value`: a setting for one component,
    /// for example `SHOP_RULES_CONFIG_PURCHASE_LIMIT_MAX_UNITS_PER_DAY=5`.
    pub component_config: BTreeMap<String, BTreeMap<String, String>>,
}

/// `SHOP_NAMESPACE`: prefix of every stream, subject and key (default `shop`).
pub fn namespace() -> String {
    std::env::var("SHOP_NAMESPACE").unwrap_or_else(|_| "shop".to_owned())
}

/// Where the distributed mode's services are, and how this instance behaves.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `SHOP_DATABASE_URL` (`postgres://...`).
    pub database_url: String,
    /// `SHOP_NATS_URL` (default `nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// `SHOP_REDIS_URL` (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// `SHOP_INSTANCE_ID` (default `<hostname>-<pid>`): names this process in
    /// outbox leases and logs.
    pub instance_id: String,
    /// `SHOP_DB_POOL` (default 16): connections to PostgreSQL.
    pub db_pool: u32,
    /// `SHOP_EXPIRY_EVERY_MS` (default 1000): how often due reservations are expired.
    pub expiry_every: Duration,
}

impl ServiceConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let Some(database_url) = database_url() else {
            bail!(
                "SHOP_DATABASE_URL is not set. The embedded mode (SQLite, in-process bus) is not built yet; \
                 point SHOP_DATABASE_URL, SHOP_NATS_URL and SHOP_REDIS_URL at PostgreSQL, NATS JetStream and Redis"
            );
        };
        let text = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let host = std::fs::read_to_string("/etc/hostname").map_or_else(|_| "shop".to_owned(), |h| h.trim().to_owned());
        Ok(Self {
            database_url,
            nats_url: text("SHOP_NATS_URL", "nats://127.0.0.1:4222"),
            redis_url: text("SHOP_REDIS_URL", "redis://127.0.0.1:6379"),
            instance_id: text("SHOP_INSTANCE_ID", &format!("{host}-{}", std::process::id())),
            db_pool: u32::try_from(number("SHOP_DB_POOL", 16)?).context("SHOP_DB_POOL is too large")?,
            expiry_every: Duration::from_millis(number("SHOP_EXPIRY_EVERY_MS", 1000)?),
        })
    }
}

/// `SHOP_DATABASE_URL`: `postgres://...` selects PostgreSQL; unset, the embedded store.
pub fn database_url() -> Option<String> {
    std::env::var("SHOP_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

fn number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name}={text:?} is not a whole number")),
    }
}

impl RulesConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let cache_dir = match std::env::var("SHOP_RULES_CACHE") {
            Ok(value) if value == "off" => None,
            Ok(value) => Some(PathBuf::from(value)),
            Err(_) => Some(PathBuf::from("data/rules-cache")),
        };
        let memory_mb = number("SHOP_RULES_MEMORY_MB", 64)?;
        if memory_mb == 0 {
            bail!("SHOP_RULES_MEMORY_MB must be at least 1");
        }
        let mut component_config: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, value) in std::env::vars() {
            if let Some(rest) = name.strip_prefix("SHOP_RULES_CONFIG_") {
                let (component, key) = split_component_key(rest)
                    .with_context(|| format!("{name}: expected SHOP_RULES_CONFIG_<COMPONENT>_<KEY>"))?;
                component_config.entry(component).or_default().insert(key, value);
            }
        }
        Ok(Self {
            dir: std::env::var_os("SHOP_RULES_DIR").map(PathBuf::from),
            cache_dir,
            call_timeout: Duration::from_millis(number("SHOP_RULES_TIMEOUT_MS", 100)?),
            memory_limit: usize::try_from(memory_mb << 20).context("SHOP_RULES_MEMORY_MB is too large")?,
            reservation_ttl: Duration::from_secs(number("SHOP_RESERVATION_TTL_SECS", 30 * 60)?),
            component_config,
        })
    }
}

/// Component names may contain dashes, keys too; environment variables cannot.
/// The known components are matched first (`PURCHASE_LIMIT_MAX_UNITS_PER_DAY` is
/// `purchase-limit` / `max-units-per-day`); otherwise the first word is the component.
fn split_component_key(rest: &str) -> Option<(String, String)> {
    let kebab = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let known = ["PURCHASE_LIMIT", "INVENTORY", "ORDER"];
    let (component, key) = known
        .iter()
        .find_map(|c| rest.strip_prefix(c).and_then(|k| k.strip_prefix('_')).map(|k| (*c, k)))
        .or_else(|| rest.split_once('_'))?;
    (!key.is_empty()).then(|| (kebab(component), kebab(key)))
}

#[cfg(test)]
mod tests {
    use super::split_component_key;

    #[test]
    fn component_settings_split_into_kebab_case_names() {
        assert_eq!(
            split_component_key("PURCHASE_LIMIT_MAX_UNITS_PER_DAY"),
            Some(("purchase-limit".into(), "max-units-per-day".into()))
        );
        assert_eq!(
            split_component_key("MYPOLICY_LEVEL"),
            Some(("mypolicy".into(), "level".into()))
        );
        assert_eq!(split_component_key("ORDER_"), None);
        assert_eq!(split_component_key("NOKEY"), None);
    }
}
