//! Typed configuration from `SHOP_*` environment variables, over an
//! optional TOML file (`--config FILE` or `SHOP_CONFIG`).
//!
//! The file holds the same settings under their names without the prefix,
//! in lower case (`database_url = "postgres://..."`, `db_pool = 32`), and
//! component settings as tables (`[rules_config.purchase-limit]`). The
//! environment wins over the file, so one file can serve several instances
//! that differ by a variable or two.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use shop_adapter_jetstream::NatsEndpoint;
use shop_adapter_redis::RedisEndpoint;
use shop_runtime::ports::Quota;
use shop_runtime::rules::RuleTrust;

/// Settings read from the file, as `SHOP_*` names.
static FILE: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// The settings a file may hold, by their file names.
const KNOWN: &[&str] = &[
    "database_url",
    "nats_url",
    "nats_creds",
    "nats_tls_ca",
    "redis_url",
    "redis_tls_ca",
    "namespace",
    "instance_id",
    "db_pool",
    "expiry_every_ms",
    "listen",
    "role",
    "log",
    "jwt_secret",
    "jwt_public_key",
    "jwt_issuer",
    "jwt_audience",
    "jwt_max_ttl",
    "api_keys",
    "rate_limit_user",
    "cors_origins",
    "request_timeout_ms",
    "rate_limit_ip",
    "rules_dir",
    "rules_allow",
    "rules_keys",
    "rules_cache",
    "rules_timeout_ms",
    "rules_memory_mb",
    "reservation_ttl_secs",
    "trusted_proxies",
    "group_commit",
    "handle_together",
    "nats_replicas",
    "relay_wake",
    "migrate_on_start",
    "migration_database_url",
    "outbox_retention_secs",
    "header_read_timeout_ms",
    "max_connections",
    "max_in_flight",
    "intake_max_pending",
    "advertise_url",
    "announce_every_ms",
    "announce_key",
    "upstream_allow",
    "order_upstreams",
    "inventory_upstreams",
    "discovery",
    "upstream_connect_timeout_ms",
    "upstream_timeout_ms",
    "upstream_attempts",
    "retry_backoff_ms",
    "breaker_window",
    "breaker_open_ms",
    "health_every_ms",
    "forget_after_ms",
];

/// Reads the TOML file at `path` into the settings; call once, before any
/// setting is read.
pub fn load_file(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut settings = BTreeMap::new();
    flatten(&table, "", &mut settings).with_context(|| format!("in {}", path.display()))?;
    let _ = FILE.set(settings);
    Ok(())
}

fn flatten(table: &toml::Table, prefix: &str, into: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    for (key, value) in table {
        let name = format!("{prefix}{key}");
        let text = match value {
            toml::Value::Table(inner) if prefix.is_empty() && key == "rules_config" => {
                flatten(inner, "rules_config_", into)?;
                continue;
            }
            toml::Value::Table(inner) if prefix == "rules_config_" => {
                flatten(inner, &format!("{name}_"), into)?;
                continue;
            }
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => bail!(
                "{name}: expected a string, a whole number or a boolean, found {}",
                other.type_str()
            ),
        };
        if !prefix.starts_with("rules_config_") && !KNOWN.contains(&name.as_str()) {
            bail!(
                "unknown setting {name:?}; known: {}, and [rules_config.<component>] tables",
                KNOWN.join(", ")
            );
        }
        into.insert(format!("SHOP_{}", name.replace('-', "_").to_ascii_uppercase()), text);
    }
    Ok(())
}

/// Settings that are secrets: each may instead be read from the file that
/// `NAME_FILE` names (a mounted secret), its trailing newline dropped.
pub const SECRETS: &[&str] = &[
    "SHOP_JWT_SECRET",
    "SHOP_JWT_PUBLIC_KEY",
    "SHOP_DATA_KEY",
    "SHOP_DATABASE_URL",
    "SHOP_MIGRATION_DATABASE_URL",
    "SHOP_REDIS_URL",
    "SHOP_NATS_CREDS",
    "SHOP_PAYMENT_WEBHOOK_SECRET",
    "SHOP_ANNOUNCE_KEY",
];

/// The setting `name` (`SHOP_...`): the environment's, else the config
/// file's, else (for a secret) the contents of the file `NAME_FILE` names.
pub fn var(name: &str) -> Option<String> {
    let direct = std::env::var(name)
        .ok()
        .or_else(|| FILE.get().and_then(|file| file.get(name).cloned()));
    match direct {
        // An empty secret is no secret: its file may hold it.
        Some(value) if value.is_empty() && SECRETS.contains(&name) => {
            secret_from_file(name).ok().flatten().or(Some(value))
        }
        Some(value) => Some(value),
        None => secret_from_file(name).ok().flatten(),
    }
}

/// Why the file `NAME_FILE` names cannot be read, when it is set and cannot.
pub fn secret_file_error(name: &str) -> Option<String> {
    secret_from_file(name).err()
}

fn secret_from_file(name: &str) -> Result<Option<String>, String> {
    if !SECRETS.contains(&name) {
        return Ok(None);
    }
    let Some(path) = std::env::var(format!("{name}_FILE")).ok().filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned())),
        Err(error) => Err(format!("{name}_FILE: cannot read {path}: {error}")),
    }
}

/// Every `SHOP_*` setting, the environment's over the file's.
fn vars() -> BTreeMap<String, String> {
    let mut all = FILE.get().cloned().unwrap_or_default();
    all.extend(std::env::vars().filter(|(name, _)| name.starts_with("SHOP_")));
    all
}

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
    /// `SHOP_RULES_ALLOW` (SHA-256 digests as hex) and `SHOP_RULES_KEYS`
    /// (Ed25519 public keys as hex), comma-separated: which directory
    /// components may run; `None` when neither is set (any may).
    pub trust: Option<RuleTrust>,
    /// Authenticates the compiled-code cache: derived from the data key
    /// (`SHOP_DATA_KEY`, or the embedded mode's own), which the cache
    /// directory does not hold.
    pub cache_key: Option<[u8; 32]>,
}

/// `SHOP_NAMESPACE`: prefix of every stream, subject and key (default `shop`).
pub fn namespace() -> String {
    var("SHOP_NAMESPACE").unwrap_or_else(|| "shop".to_owned())
}

/// `SHOP_JWT_ISSUER` and `SHOP_JWT_AUDIENCE` (checked when set) and
/// `SHOP_JWT_MAX_TTL` (`24h` by default; `90m`, `3600s` or seconds): what a
/// token must say, and how long it may live at most.
pub fn token_checks() -> anyhow::Result<shop_gateway::TokenChecks> {
    let defaults = shop_gateway::TokenChecks::default();
    let max_ttl = match var("SHOP_JWT_MAX_TTL") {
        None => defaults.max_ttl,
        Some(text) => parse_duration(&text).with_context(|| format!("SHOP_JWT_MAX_TTL={text:?}"))?,
    };
    Ok(shop_gateway::TokenChecks {
        issuer: var("SHOP_JWT_ISSUER").filter(|s| !s.is_empty()),
        audience: var("SHOP_JWT_AUDIENCE").filter(|s| !s.is_empty()),
        max_ttl,
    })
}

/// `24h`, `90m`, `3600s`, `1d`, or a whole number of seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("expected a duration like 24h, 90m or 3600s"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => bail!("unknown unit {other:?} (use s, m, h or d)"),
    };
    match number.checked_mul(seconds) {
        Some(0) | None => bail!("must be between 1 s and centuries"),
        Some(total) => Ok(Duration::from_secs(total)),
    }
}

/// `SHOP_NATS_URL` (default `nats://127.0.0.1:4222`; user and password in
/// it, `tls://` for TLS), `SHOP_NATS_CREDS` (an nkey seed or a `.creds`
/// file's contents; `_FILE` too) and `SHOP_NATS_TLS_CA` (a CA certificate
/// file for a server under a private CA).
pub fn nats() -> anyhow::Result<NatsEndpoint> {
    if let Some(error) = secret_file_error("SHOP_NATS_CREDS") {
        bail!(error);
    }
    let tls_ca = var("SHOP_NATS_TLS_CA").filter(|path| !path.trim().is_empty());
    if let Some(path) = &tls_ca {
        std::fs::metadata(path).with_context(|| format!("SHOP_NATS_TLS_CA: cannot read {path}"))?;
    }
    Ok(NatsEndpoint {
        url: var("SHOP_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
        credentials: var("SHOP_NATS_CREDS").filter(|c| !c.trim().is_empty()),
        tls_ca: tls_ca.map(PathBuf::from),
    })
}

/// `SHOP_REDIS_URL` (default `redis://127.0.0.1:6379`; user and password
/// in it, `rediss://` for TLS) and `SHOP_REDIS_TLS_CA` (a CA certificate
/// file for a server under a private CA).
pub fn redis() -> anyhow::Result<RedisEndpoint> {
    let tls_ca = match var("SHOP_REDIS_TLS_CA").filter(|path| !path.trim().is_empty()) {
        Some(path) => Some(std::fs::read(&path).with_context(|| format!("SHOP_REDIS_TLS_CA: cannot read {path}"))?),
        None => None,
    };
    Ok(RedisEndpoint {
        url: var("SHOP_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        tls_ca,
    })
}

/// `SHOP_CORS_ORIGINS`: origins whose pages may call the API, separated by
/// commas (default none: no CORS headers).
pub fn cors_origins() -> anyhow::Result<Vec<axum::http::HeaderValue>> {
    let Some(text) = var("SHOP_CORS_ORIGINS") else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                bail!("SHOP_CORS_ORIGINS: {origin:?} is not an origin like https://shop.example");
            }
            axum::http::HeaderValue::from_str(origin)
                .with_context(|| format!("SHOP_CORS_ORIGINS: {origin:?} is not a valid header value"))
        })
        .collect()
}

/// `SHOP_API_KEYS`: third-party callers as `name:role:key`, separated by
/// commas (`shipping:admin:0123456789abcdef...`).
pub fn api_keys() -> anyhow::Result<Vec<(String, shop_gateway::CallerRole, String)>> {
    let Some(text) = var("SHOP_API_KEYS") else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
                bail!("SHOP_API_KEYS: expected name:role:key, found an entry with fewer parts");
            };
            let role = match role {
                "customer" => shop_gateway::CallerRole::Customer,
                "admin" => shop_gateway::CallerRole::Admin,
                "payment" => shop_gateway::CallerRole::Payment,
                other => bail!("SHOP_API_KEYS: {name} has the unknown role {other:?} (customer, admin or payment)"),
            };
            Ok((name.to_owned(), role, key.to_owned()))
        })
        .collect()
}

/// `SHOP_RATE_LIMIT_USER` (default `100/200`) and `SHOP_RATE_LIMIT_IP`
/// (default `1000/2000`): `RATE/BURST` per second, or `off`.
pub fn rate_limits() -> anyhow::Result<(Option<Quota>, Option<Quota>)> {
    let read = |name: &str, default: &str| {
        let text = var(name).unwrap_or_else(|| default.to_owned());
        parse_quota(&text).with_context(|| format!("{name}={text:?}: expected RATE/BURST (like 100/200) or off"))
    };
    Ok((
        read("SHOP_RATE_LIMIT_USER", "100/200")?,
        read("SHOP_RATE_LIMIT_IP", "1000/2000")?,
    ))
}

fn parse_quota(text: &str) -> anyhow::Result<Option<Quota>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (rate, burst) = text.split_once('/').context("no /")?;
    let per_second: u32 = rate.trim().parse().context("RATE is not a whole number")?;
    let burst: u32 = burst.trim().parse().context("BURST is not a whole number")?;
    if per_second == 0 || burst == 0 {
        bail!("RATE and BURST must be at least 1");
    }
    Ok(Some(Quota { per_second, burst }))
}

/// Where the distributed mode's services are, and how this instance behaves.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `SHOP_DATABASE_URL`, and with it the mode.
    pub database: Database,
    /// `SHOP_NATS_URL`, `SHOP_NATS_CREDS`, `SHOP_NATS_TLS_CA` (see [`nats`]).
    pub nats: NatsEndpoint,
    /// `SHOP_REDIS_URL`, `SHOP_REDIS_TLS_CA` (see [`redis`]).
    pub redis: RedisEndpoint,
    /// `SHOP_INSTANCE_ID` (default `<hostname>-<pid>`): names this process in
    /// outbox leases and logs.
    pub instance_id: String,
    /// `SHOP_DB_POOL` (default 16): connections to PostgreSQL.
    pub db_pool: u32,
    /// `SHOP_EXPIRY_EVERY_MS` (default 1000): how often due reservations are expired.
    pub expiry_every: Duration,
    /// `SHOP_REQUEST_TIMEOUT_MS` (default 10000): how long one HTTP request may take.
    pub request_timeout: Duration,
    /// `SHOP_GROUP_COMMIT` (`on`, the default, or `off`): new orders arriving
    /// together share one transaction, and their catalogue lookups one query.
    pub group_commit: bool,
    /// `SHOP_HANDLE_TOGETHER` (`on`, the default, or `off`): the saga's
    /// consumers hand the messages of a batch whose order has no other
    /// message in it to their handler at once (inventory reserves them in
    /// one transaction).
    pub handle_together: bool,
    /// `SHOP_NATS_REPLICAS` (1 to 5, default 1): copies of each stream a
    /// JetStream cluster keeps (3 survives the loss of one node).
    pub nats_replicas: usize,
    /// `SHOP_RELAY_WAKE` (`on`, the default, or `off`): the outbox relays
    /// wait for the commit (PostgreSQL NOTIFY; in-process on SQLite) instead
    /// of polling every 10 ms.
    pub relay_wake: bool,
    /// `SHOP_OUTBOX_RETENTION_SECS` (default 900): how long published events
    /// stay in the outbox, for `shop outbox republish`, before they are pruned.
    pub outbox_retention: Duration,
    /// `SHOP_INTAKE_MAX_PENDING` (default 50000, or `off`): past this many
    /// orders waiting for the saga (PENDING), new orders are refused with
    /// 503 and `Retry-After` until it catches up.
    pub intake_max_pending: Option<u64>,
    /// `SHOP_MIGRATE_ON_START` (`off`, the default, or `on`): whether a
    /// serving role on PostgreSQL migrates the schemas itself instead of
    /// checking that `shop migrate` has.
    pub migrate_on_start: bool,
    /// `SHOP_HEADER_READ_TIMEOUT_MS` (5000), `SHOP_MAX_CONNECTIONS` (10000),
    /// `SHOP_MAX_IN_FLIGHT` (4096): what the HTTP server takes on before it
    /// closes a slow client or answers 503 at once.
    pub server_limits: shop_gateway::ServerLimits,
}

impl ServiceConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let database = database()?;
        let text = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_owned());
        let host = std::fs::read_to_string("/etc/hostname").map_or_else(|_| "shop".to_owned(), |h| h.trim().to_owned());
        Ok(Self {
            database,
            nats: nats()?,
            redis: redis()?,
            instance_id: text("SHOP_INSTANCE_ID", &format!("{host}-{}", std::process::id())),
            db_pool: u32::try_from(number("SHOP_DB_POOL", 16)?).context("SHOP_DB_POOL is too large")?,
            expiry_every: Duration::from_millis(number("SHOP_EXPIRY_EVERY_MS", 1000)?),
            request_timeout: Duration::from_millis(number("SHOP_REQUEST_TIMEOUT_MS", 10_000)?.max(1)),
            group_commit: switch("SHOP_GROUP_COMMIT")?,
            handle_together: switch("SHOP_HANDLE_TOGETHER")?,
            nats_replicas: match number("SHOP_NATS_REPLICAS", 1)? {
                n @ 1..=5 => n as usize,
                other => bail!("SHOP_NATS_REPLICAS={other}: expected 1 to 5"),
            },
            relay_wake: switch("SHOP_RELAY_WAKE")?,
            migrate_on_start: switch_or("SHOP_MIGRATE_ON_START", false)?,
            server_limits: server_limits()?,
            intake_max_pending: match var("SHOP_INTAKE_MAX_PENDING").as_deref().map(str::trim) {
                Some("off") => None,
                _ => Some(number(
                    "SHOP_INTAKE_MAX_PENDING",
                    shop_runtime::saga::backpressure::DEFAULT_MAX_PENDING,
                )?),
            },
            outbox_retention: Duration::from_secs(number(
                "SHOP_OUTBOX_RETENTION_SECS",
                shop_runtime::saga::relay::DEFAULT_KEEP.as_secs(),
            )?),
        })
    }
}

fn server_limits() -> anyhow::Result<shop_gateway::ServerLimits> {
    let defaults = shop_gateway::ServerLimits::default();
    let count = |name: &str, default: usize| -> anyhow::Result<usize> {
        let value = number(name, u64::try_from(default).unwrap_or(u64::MAX))?;
        match usize::try_from(value) {
            Ok(0) | Err(_) => bail!("{name} must be a whole number from 1"),
            Ok(value) => Ok(value),
        }
    };
    let timeout_ms = number(
        "SHOP_HEADER_READ_TIMEOUT_MS",
        u64::try_from(defaults.header_read_timeout.as_millis()).unwrap_or(u64::MAX),
    )?;
    if timeout_ms == 0 {
        bail!("SHOP_HEADER_READ_TIMEOUT_MS must be at least 1");
    }
    Ok(shop_gateway::ServerLimits {
        header_read_timeout: Duration::from_millis(timeout_ms),
        max_connections: count("SHOP_MAX_CONNECTIONS", defaults.max_connections)?,
        max_in_flight: count("SHOP_MAX_IN_FLIGHT", defaults.max_in_flight)?,
    })
}

/// An `on` (the default) or `off` setting.
fn switch(name: &str) -> anyhow::Result<bool> {
    switch_or(name, true)
}

/// `on` or `off`, `default` when unset.
fn switch_or(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => bail!("{name}={other:?}: expected on or off"),
    }
}

/// `SHOP_TRUSTED_PROXIES`: addresses of the gateways in front of this
/// instance, separated by commas; their `X-Forwarded-For` names the caller
/// whose address the rate limit counts (default none).
pub fn trusted_proxies() -> anyhow::Result<Vec<std::net::IpAddr>> {
    list("SHOP_TRUSTED_PROXIES")
        .into_iter()
        .map(|entry| {
            entry
                .parse()
                .with_context(|| format!("SHOP_TRUSTED_PROXIES: {entry:?} is not an IP address"))
        })
        .collect()
}

/// How an order or inventory instance of the distributed mode tells
/// gateways where it serves.
#[derive(Debug, Clone)]
pub struct AnnounceConfig {
    /// `SHOP_ADVERTISE_URL`: where gateways reach this instance (default
    /// `http://` and the listening address, with the host name when it
    /// listens on every interface).
    pub url: Option<String>,
    /// `SHOP_ANNOUNCE_EVERY_MS` (default 2000).
    pub every: Duration,
}

impl AnnounceConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            url: var("SHOP_ADVERTISE_URL").filter(|url| !url.trim().is_empty()),
            every: Duration::from_millis(number("SHOP_ANNOUNCE_EVERY_MS", 2000)?.max(10)),
        })
    }
}

/// Where the gateway role finds the instances it forwards to, and how it
/// treats them.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `SHOP_ORDER_UPSTREAMS`: order instances, `http://host:port` separated by commas.
    pub order: Vec<String>,
    /// `SHOP_INVENTORY_UPSTREAMS`: inventory instances, likewise.
    pub inventory: Vec<String>,
    /// `SHOP_DISCOVERY`: `nats` (default) hears the instances announce
    /// themselves on SHOP_NATS_URL; `off` uses the static lists alone.
    pub discovery: bool,
    /// `SHOP_UPSTREAM_ALLOW`: instance addresses (`http://host:port`,
    /// comma-separated) believed without a sealed announcement.
    pub allow: Vec<String>,
    pub proxy: shop_gateway::ProxySettings,
}

impl GatewayConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let discovery = match var("SHOP_DISCOVERY").as_deref().map(str::trim) {
            None | Some("nats") => true,
            Some("off") => false,
            Some(other) => bail!("SHOP_DISCOVERY={other:?}: expected nats or off"),
        };
        let millis = |name: &str, default: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(number(name, default)?.max(1)))
        };
        let defaults = shop_gateway::ProxySettings::default();
        let proxy = shop_gateway::ProxySettings {
            connect_timeout: millis("SHOP_UPSTREAM_CONNECT_TIMEOUT_MS", 3000)?,
            read_timeout: millis("SHOP_UPSTREAM_TIMEOUT_MS", 10_000)?,
            attempts: u32::try_from(number("SHOP_UPSTREAM_ATTEMPTS", 3)?.clamp(1, 10)).unwrap_or(3),
            backoff: millis("SHOP_RETRY_BACKOFF_MS", 50)?,
            breaker: shop_gateway::BreakerSettings {
                window: usize::try_from(number("SHOP_BREAKER_WINDOW", 20)?.clamp(2, 10_000)).unwrap_or(20),
                open_for: millis("SHOP_BREAKER_OPEN_MS", 30_000)?,
            },
            health_every: millis("SHOP_HEALTH_EVERY_MS", 2000)?,
            forget_after: millis("SHOP_FORGET_AFTER_MS", defaults.forget_after.as_millis() as u64)?,
        };
        Ok(Self {
            order: list("SHOP_ORDER_UPSTREAMS"),
            inventory: list("SHOP_INVENTORY_UPSTREAMS"),
            discovery,
            allow: list("SHOP_UPSTREAM_ALLOW"),
            proxy,
        })
    }
}

/// A comma-separated setting's entries, trimmed, without empty ones.
fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Where the embedded mode keeps everything when `SHOP_DATABASE_URL` is unset.
const EMBEDDED_DATABASE: &str = "sqlite://data/shop.db";

/// The mode `SHOP_DATABASE_URL` selects, with the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `sqlite://...`, or nothing set: SQLite, the in-process bus, local locks.
    Embedded(String),
    /// `postgres://...`: PostgreSQL, with JetStream and Redis beside it.
    Postgres(String),
}

impl Database {
    pub fn url(&self) -> &str {
        match self {
            Self::Embedded(url) | Self::Postgres(url) => url,
        }
    }
}

/// `SHOP_DATABASE_URL` (default `sqlite://data/shop.db`).
pub fn database() -> anyhow::Result<Database> {
    let url = var("SHOP_DATABASE_URL")
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| EMBEDDED_DATABASE.to_owned());
    if url.starts_with("sqlite:") {
        Ok(Database::Embedded(url))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Database::Postgres(url))
    } else {
        bail!("SHOP_DATABASE_URL must be a postgres:// or sqlite:// URL")
    }
}

/// Runs a command's async work on a runtime of its own thread.
pub fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(work)
}

fn number(name: &str, default: u64) -> anyhow::Result<u64> {
    match var(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name}={text:?} is not a whole number")),
    }
}

impl RulesConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let cache_dir = match var("SHOP_RULES_CACHE") {
            Some(value) if value == "off" => None,
            Some(value) => Some(PathBuf::from(value)),
            None => Some(PathBuf::from("data/rules-cache")),
        };
        let memory_mb = number("SHOP_RULES_MEMORY_MB", 64)?;
        if memory_mb == 0 {
            bail!("SHOP_RULES_MEMORY_MB must be at least 1");
        }
        let mut component_config: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, value) in vars() {
            if let Some(rest) = name.strip_prefix("SHOP_RULES_CONFIG_") {
                let (component, key) = split_component_key(rest)
                    .with_context(|| format!("{name}: expected SHOP_RULES_CONFIG_<COMPONENT>_<KEY>"))?;
                component_config.entry(component).or_default().insert(key, value);
            }
        }
        let allowed: std::collections::BTreeSet<String> = list("SHOP_RULES_ALLOW")
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        if let Some(bad) = allowed
            .iter()
            .find(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            bail!("SHOP_RULES_ALLOW: {bad:?} is not a SHA-256 digest (64 hex digits)");
        }
        let mut keys = Vec::new();
        for key in list("SHOP_RULES_KEYS") {
            keys.push(
                RuleTrust::key_from_hex(&key).with_context(|| {
                    format!("SHOP_RULES_KEYS: {key:?} is not an Ed25519 public key (64 hex digits)")
                })?,
            );
        }
        let trust = (!allowed.is_empty() || !keys.is_empty()).then_some(RuleTrust { allowed, keys });
        Ok(Self {
            dir: var("SHOP_RULES_DIR").map(PathBuf::from),
            trust,
            cache_dir,
            cache_key: rules_cache_key(),
            call_timeout: Duration::from_millis(number("SHOP_RULES_TIMEOUT_MS", 100)?),
            memory_limit: usize::try_from(memory_mb << 20).context("SHOP_RULES_MEMORY_MB is too large")?,
            reservation_ttl: Duration::from_secs(number("SHOP_RESERVATION_TTL_SECS", 30 * 60)?),
            component_config,
        })
    }
}

/// The rules cache's key: derived from the data key, `SHOP_DATA_KEY` or
/// the one the embedded mode made in its data directory; `None` (the cache
/// then serves this process only) when there is neither yet.
fn rules_cache_key() -> Option<[u8; 32]> {
    use sha2::Digest;
    let secret = var("SHOP_DATA_KEY")
        .filter(|key| !key.trim().is_empty())
        .or_else(|| match database() {
            Ok(Database::Embedded(url)) => {
                std::fs::read_to_string(crate::secrets::data_dir(&url).join("secrets").join("data-key")).ok()
            }
            _ => None,
        })?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"shop rules cache v1\0");
    hasher.update(secret.trim().as_bytes());
    Some(hasher.finalize().into())
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
    use std::collections::BTreeMap;

    use super::{flatten, split_component_key};

    fn settings(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let table: toml::Table = toml::from_str(text)?;
        let mut into = BTreeMap::new();
        flatten(&table, "", &mut into)?;
        Ok(into)
    }

    #[test]
    fn a_config_file_holds_the_environment_settings_by_their_short_names() {
        let file = settings(
            r#"
            database_url = "postgres://db/shop"
            db_pool = 32
            [rules_config.purchase-limit]
            max-units-per-day = 5
            "#,
        )
        .expect("valid");
        assert_eq!(
            file.get("SHOP_DATABASE_URL").map(String::as_str),
            Some("postgres://db/shop")
        );
        assert_eq!(file.get("SHOP_DB_POOL").map(String::as_str), Some("32"));
        let component = file
            .keys()
            .find_map(|name| name.strip_prefix("SHOP_RULES_CONFIG_"))
            .and_then(split_component_key);
        assert_eq!(component, Some(("purchase-limit".into(), "max-units-per-day".into())));
    }

    #[test]
    fn rate_limits_read_as_rate_slash_burst_or_off() {
        use shop_runtime::ports::Quota;
        assert_eq!(
            super::parse_quota("100/200").ok().flatten(),
            Some(Quota {
                per_second: 100,
                burst: 200
            })
        );
        assert_eq!(super::parse_quota("OFF").ok(), Some(None));
        for bad in ["100", "0/5", "5/0", "a/b", "-1/2", ""] {
            assert!(super::parse_quota(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_config_file_with_a_typo_or_a_list_is_refused_by_name() {
        let typo = settings("databse_url = \"x\"").expect_err("unknown");
        assert!(typo.to_string().contains("databse_url"), "{typo}");
        let list = settings("db_pool = [1, 2]").expect_err("not a scalar");
        assert!(list.to_string().contains("db_pool"), "{list}");
    }

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
