//! The shop's settings: one typed [`Settings`] value, read once from an
//! optional TOML file (`--config FILE` or `SHOP_CONFIG`) and the `SHOP_*`
//! environment variables, then passed down to what needs a part of it.
//!
//! The file holds the same settings under their names without the prefix,
//! in lower case (`database_url = "postgres://..."`, `db_pool = 32`), and
//! component settings as tables (`[rules_config.purchase-limit]`). The
//! environment wins over the file, so one file can serve several instances
//! that differ by a variable or two. A name the file does not know is an
//! error; the environment's other `SHOP_*` variables are not settings of
//! this process and are left alone. Each default lives in one place: the
//! accessor or the derived configuration below that reads the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use shop_adapter_jetstream::NatsEndpoint;
use shop_adapter_redis::RedisEndpoint;
use shop_runtime::ports::Quota;
use shop_runtime::rules::{DEFAULT_SHADOW_PER_SECOND, MAX_SHADOW_PER_SECOND, RuleTrust};

use crate::secrets::MissingSecret;

/// `on` or `off` (a TOML file may also say `true` or `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    #[serde(alias = "true")]
    On,
    #[serde(alias = "false")]
    Off,
}

impl Switch {
    fn or(setting: Option<Switch>, default: bool) -> bool {
        setting.map_or(default, |s| s == Switch::On)
    }
}

/// Every setting by its short name (`SHOP_DB_POOL` is `db_pool`), as given:
/// `None` when neither the file nor the environment sets it. Numbers and
/// switches are checked when read; what needs more (URLs, lists, rates,
/// durations with units) is checked by the accessor that reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database_url: Option<String>,
    pub migration_database_url: Option<String>,
    pub migrate_on_start: Option<Switch>,
    pub db_pool: Option<u32>,
    pub group_commit: Option<Switch>,
    pub nats_url: Option<String>,
    pub nats_creds: Option<String>,
    pub nats_tls_ca: Option<String>,
    pub nats_replicas: Option<u64>,
    pub redis_url: Option<String>,
    pub redis_tls_ca: Option<String>,
    pub namespace: Option<String>,
    pub instance_id: Option<String>,
    pub role: Option<String>,
    pub listen: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub expiry_every_ms: Option<u64>,
    pub handle_together: Option<Switch>,
    pub relay_wake: Option<Switch>,
    pub outbox_retention_secs: Option<u64>,
    pub intake_max_pending: Option<String>,
    pub price_cache_ms: Option<u64>,
    pub stream_max_age_secs: Option<u64>,
    pub stream_max_bytes: Option<String>,
    pub request_timeout_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_max_ttl: Option<String>,
    pub data_key: Option<String>,
    /// The data key a rotation replaces, still read until `shop keys rotate` ran.
    pub data_key_previous: Option<String>,
    pub api_keys: Option<String>,
    pub rate_limit_user: Option<String>,
    pub rate_limit_ip: Option<String>,
    pub cors_origins: Option<String>,
    pub trusted_proxies: Option<String>,
    pub rules_dir: Option<String>,
    pub rules_allow: Option<String>,
    pub rules_keys: Option<String>,
    pub rules_cache: Option<String>,
    pub rules_timeout_ms: Option<u64>,
    pub rules_memory_mb: Option<u64>,
    pub rules_shadow_every: Option<u64>,
    pub rules_shadow_per_second: Option<u64>,
    pub reservation_ttl_secs: Option<u64>,
    pub advertise_url: Option<String>,
    pub announce_every_ms: Option<u64>,
    pub announce_key: Option<String>,
    pub instance_weight: Option<u64>,
    pub lb_order: Option<String>,
    pub lb_inventory: Option<String>,
    pub upstream_allow: Option<String>,
    pub order_upstreams: Option<String>,
    pub inventory_upstreams: Option<String>,
    pub discovery: Option<String>,
    pub upstream_connect_timeout_ms: Option<u64>,
    pub upstream_timeout_ms: Option<u64>,
    pub upstream_attempts: Option<u64>,
    pub retry_backoff_ms: Option<u64>,
    pub breaker_window: Option<u64>,
    pub breaker_open_ms: Option<u64>,
    pub health_every_ms: Option<u64>,
    pub forget_after_ms: Option<u64>,
    pub payment_url: Option<String>,
    pub payment_webhook_secret: Option<String>,
    pub payment_timeout: Option<String>,
    /// `SHOP_RULES_CONFIG_<COMPONENT>_<KEY>` and the file's
    /// `[rules_config.<component>]` tables, by component and key.
    #[serde(skip)]
    pub rules_config: BTreeMap<String, BTreeMap<String, String>>,
}

/// Settings that are secrets: each may instead be read from the file that
/// `NAME_FILE` names (a mounted secret), its trailing newline dropped.
const SECRETS: &[&str] = &[
    "jwt_secret",
    "jwt_public_key",
    "data_key",
    "data_key_previous",
    "database_url",
    "migration_database_url",
    "redis_url",
    "nats_creds",
    "announce_key",
    "payment_webhook_secret",
];

const PREFIX: &str = "SHOP_";
const RULES_CONFIG: &str = "rules_config_";

impl Settings {
    /// The settings of this process: the file at `file` (when given) under
    /// the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let file = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        Self::from_sources(file, std::env::vars())
    }

    /// The settings `vars` (`SHOP_*` names) give alone, without a file and
    /// without this process's environment: for a shop embedded in another
    /// program, and for tests that run several shops in one process.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        Self::from_sources(BTreeMap::new(), vars.into_iter())
    }

    /// The settings of `file` (short names) under `env` (`SHOP_*` names).
    fn from_sources(
        file: BTreeMap<String, String>,
        env: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let fields = field_names();
        let mut merged = file;
        let mut secret_files = BTreeMap::new();
        for (name, value) in env {
            let Some(short) = name.strip_prefix(PREFIX).map(str::to_ascii_lowercase) else {
                continue;
            };
            if let Some(secret) = short.strip_suffix("_file").filter(|s| SECRETS.contains(s)) {
                secret_files.insert(secret.to_owned(), (name, value));
            } else if fields.contains(&short.as_str()) || short.starts_with(RULES_CONFIG) {
                merged.insert(short, value);
            }
        }
        // An empty secret is no secret: its file may hold it.
        for (secret, (variable, path)) in secret_files {
            if path.is_empty() || merged.get(&secret).is_some_and(|value| !value.is_empty()) {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|error| MissingSecret(format!("{variable}: cannot read {path}: {error}")))?;
            merged.insert(secret, text.trim_end_matches(['\n', '\r']).to_owned());
        }
        let mut rules_config: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut plain = Vec::with_capacity(merged.len());
        for (name, value) in merged {
            match name.strip_prefix(RULES_CONFIG) {
                Some(rest) => {
                    let (component, key) = split_component_key(&rest.to_ascii_uppercase()).with_context(|| {
                        format!(
                            "SHOP_{}: expected SHOP_RULES_CONFIG_<COMPONENT>_<KEY>",
                            name.to_ascii_uppercase()
                        )
                    })?;
                    rules_config.entry(component).or_default().insert(key, value);
                }
                None => plain.push((name.to_ascii_uppercase(), value)),
            }
        }
        // envy names a value it cannot read by the key it was given: the
        // variable's name without its prefix, which gets it back here.
        let mut settings: Settings = envy::from_iter(plain)
            .map_err(|error| anyhow::anyhow!("{}", error.to_string().replace("provided by ", "provided by SHOP_")))?;
        settings.rules_config = rules_config;
        Ok(settings)
    }
}

/// The names of [`Settings`]' fields, as serde sees them: what the
/// environment may set.
fn field_names() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only the field names are read"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("only the field names are read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = Settings::deserialize(&mut fields);
    fields.0.unwrap_or_default()
}

/// The TOML file at `path` as settings by their short names.
fn read_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut settings = BTreeMap::new();
    flatten(&table, "", &mut settings).with_context(|| format!("in {}", path.display()))?;
    let fields = field_names();
    if let Some(unknown) = settings
        .keys()
        .find(|name| !name.starts_with(RULES_CONFIG) && !fields.contains(&name.as_str()))
    {
        bail!(
            "in {}: unknown setting {unknown:?}; known: {}, and [rules_config.<component>] tables",
            path.display(),
            fields.join(", ")
        );
    }
    Ok(settings)
}

fn flatten(table: &toml::Table, prefix: &str, into: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    for (key, value) in table {
        let name = format!("{prefix}{key}");
        let text = match value {
            toml::Value::Table(inner) if prefix.is_empty() && key == "rules_config" => {
                flatten(inner, RULES_CONFIG, into)?;
                continue;
            }
            toml::Value::Table(inner) if prefix == RULES_CONFIG => {
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
        into.insert(name.replace('-', "_").to_ascii_lowercase(), text);
    }
    Ok(())
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
    /// `SHOP_RULES_SHADOW_EVERY`: a candidate in shadow answers one call in
    /// this many (default 1: every call).
    pub shadow_every: u64,
    /// `SHOP_RULES_SHADOW_PER_SECOND`: and candidates answer at most this
    /// many calls a second in all (default 300; 0 turns shadowing off).
    pub shadow_per_second: u64,
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
pub fn namespace(s: &Settings) -> &str {
    s.namespace.as_deref().unwrap_or("shop")
}

/// `SHOP_JWT_ISSUER` and `SHOP_JWT_AUDIENCE` (checked when set) and
/// `SHOP_JWT_MAX_TTL` (`24h` by default; `90m`, `3600s` or seconds): what a
/// token must say, and how long it may live at most.
pub fn token_checks(s: &Settings) -> anyhow::Result<shop_gateway::TokenChecks> {
    let defaults = shop_gateway::TokenChecks::default();
    let max_ttl = match s.jwt_max_ttl.clone() {
        None => defaults.max_ttl,
        Some(text) => parse_duration(&text).with_context(|| format!("SHOP_JWT_MAX_TTL={text:?}"))?,
    };
    Ok(shop_gateway::TokenChecks {
        issuer: s.jwt_issuer.clone().filter(|s| !s.is_empty()),
        audience: s.jwt_audience.clone().filter(|s| !s.is_empty()),
        max_ttl,
    })
}

/// The payment provider a deployment hands its confirmed orders to.
#[derive(Clone)]
pub struct PaymentConfig {
    /// `SHOP_PAYMENT_URL`: the provider's base URL (`http://host:port`).
    pub url: String,
    /// `SHOP_PAYMENT_WEBHOOK_SECRET` (or `_FILE`), at least 32 bytes: what
    /// the provider signs its notices with.
    pub webhook_secret: String,
    /// `SHOP_PAYMENT_TIMEOUT` (default `15m`): a confirmed order with no
    /// notice by then is cancelled with `PAYMENT_FAILED`.
    pub timeout: Duration,
}

impl std::fmt::Debug for PaymentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Shortest webhook secret accepted.
pub const MIN_WEBHOOK_SECRET: usize = 32;

/// `None` without `SHOP_PAYMENT_URL` (orders are completed through the
/// API); with it, the secret is required (a [`crate::secrets::MissingSecret`]).
pub fn payment(s: &Settings) -> anyhow::Result<Option<PaymentConfig>> {
    let Some(url) = s.payment_url.clone().filter(|url| !url.trim().is_empty()) else {
        return Ok(None);
    };
    let secret = s.payment_webhook_secret.clone().unwrap_or_default();
    if secret.len() < MIN_WEBHOOK_SECRET {
        return Err(crate::secrets::MissingSecret(format!(
            "SHOP_PAYMENT_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET} bytes (it has {}) when SHOP_PAYMENT_URL is set: the provider signs its notices with it",
            secret.len()
        ))
        .into());
    }
    let timeout = match s.payment_timeout.as_deref() {
        None => Duration::from_secs(15 * 60),
        Some(text) => parse_duration(text).with_context(|| format!("SHOP_PAYMENT_TIMEOUT={text:?}"))?,
    };
    Ok(Some(PaymentConfig {
        url: url.trim().to_owned(),
        webhook_secret: secret,
        timeout,
    }))
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
pub fn nats(s: &Settings) -> anyhow::Result<NatsEndpoint> {
    let tls_ca = s.nats_tls_ca.clone().filter(|path| !path.trim().is_empty());
    if let Some(path) = &tls_ca {
        std::fs::metadata(path).with_context(|| format!("SHOP_NATS_TLS_CA: cannot read {path}"))?;
    }
    Ok(NatsEndpoint {
        url: s.nats_url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
        credentials: s.nats_creds.clone().filter(|c| !c.trim().is_empty()),
        tls_ca: tls_ca.map(PathBuf::from),
    })
}

/// `SHOP_REDIS_URL` (default `redis://127.0.0.1:6379`; user and password
/// in it, `rediss://` for TLS) and `SHOP_REDIS_TLS_CA` (a CA certificate
/// file for a server under a private CA).
pub fn redis(s: &Settings) -> anyhow::Result<RedisEndpoint> {
    let tls_ca = match s.redis_tls_ca.clone().filter(|path| !path.trim().is_empty()) {
        Some(path) => Some(std::fs::read(&path).with_context(|| format!("SHOP_REDIS_TLS_CA: cannot read {path}"))?),
        None => None,
    };
    Ok(RedisEndpoint {
        url: s
            .redis_url
            .clone()
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        tls_ca,
    })
}

/// `SHOP_CORS_ORIGINS`: origins whose pages may call the API, separated by
/// commas (default none: no CORS headers).
pub fn cors_origins(s: &Settings) -> anyhow::Result<Vec<axum::http::HeaderValue>> {
    list(&s.cors_origins)
        .into_iter()
        .map(|origin| {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                bail!("SHOP_CORS_ORIGINS: {origin:?} is not an origin like https://shop.example");
            }
            axum::http::HeaderValue::from_str(&origin)
                .with_context(|| format!("SHOP_CORS_ORIGINS: {origin:?} is not a valid header value"))
        })
        .collect()
}

/// `SHOP_API_KEYS`: third-party callers as `name:role:key`, separated by
/// commas (`shipping:admin:0123456789abcdef...`).
pub fn api_keys(s: &Settings) -> anyhow::Result<Vec<(String, shop_gateway::CallerRole, String)>> {
    list(&s.api_keys)
        .into_iter()
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
                bail!("SHOP_API_KEYS: expected name:role:key, found an entry with fewer parts");
            };
            let Some(role) = shop_gateway::CallerRole::parse(role) else {
                bail!("SHOP_API_KEYS: {name} has the unknown role {role:?} (customer, admin or payment)");
            };
            Ok((name.to_owned(), role, key.to_owned()))
        })
        .collect()
}

/// `SHOP_RATE_LIMIT_USER` (default `100/200`) and `SHOP_RATE_LIMIT_IP`
/// (default `1000/2000`): `RATE/BURST` per second, or `off`.
pub fn rate_limits(s: &Settings) -> anyhow::Result<(Option<Quota>, Option<Quota>)> {
    let read = |name: &str, value: &Option<String>, default: &str| {
        let text = value.clone().unwrap_or_else(|| default.to_owned());
        parse_quota(&text).with_context(|| format!("{name}={text:?}: expected RATE/BURST (like 100/200) or off"))
    };
    Ok((
        read("SHOP_RATE_LIMIT_USER", &s.rate_limit_user, "100/200")?,
        read("SHOP_RATE_LIMIT_IP", &s.rate_limit_ip, "1000/2000")?,
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
    /// consumers hand a batch's messages to their handler at once, in
    /// rounds (each order's first message, then each one's second, ...),
    /// and inventory reserves or releases a round in one transaction.
    pub handle_together: bool,
    /// `SHOP_NATS_REPLICAS` (1 to 5, default 1): copies of each stream a
    /// JetStream cluster keeps (3 survives the loss of one node).
    pub nats_replicas: usize,
    /// `SHOP_RELAY_WAKE` (`on`, the default, or `off`): the outbox relays
    /// wait for the commit (PostgreSQL NOTIFY) instead of polling every
    /// 10 ms. On SQLite the serving process writes its events into the bus
    /// itself, and the relays carry only what the command-line tools wrote,
    /// found by the 250 ms poll.
    pub relay_wake: bool,
    /// `SHOP_OUTBOX_RETENTION_SECS` (default 900): how long published events
    /// stay in the outbox, for `shop outbox republish`, before they are pruned.
    pub outbox_retention: Duration,
    /// `SHOP_INTAKE_MAX_PENDING` (default 50000, or `off`): past this many
    /// orders waiting for the saga (PENDING), new orders are refused with
    /// 503 and `Retry-After` until it catches up.
    pub intake_max_pending: Option<u64>,
    /// `SHOP_STREAM_MAX_AGE_SECS` (default a week) and `SHOP_STREAM_MAX_BYTES`
    /// (default 1 GiB, none when intake has no backlog bound; or `off`): how much history each context's event
    /// stream keeps (see [`shop_streams::Retention`]).
    pub stream_retention: shop_streams::Retention,
    /// `SHOP_MIGRATE_ON_START` (`off`, the default, or `on`): whether a
    /// serving role on PostgreSQL migrates the schemas itself instead of
    /// checking that `shop migrate` has.
    pub migrate_on_start: bool,
    /// `SHOP_HEADER_READ_TIMEOUT_MS` (5000), `SHOP_MAX_CONNECTIONS` (10000),
    /// `SHOP_MAX_IN_FLIGHT` (4096): what the HTTP server takes on before it
    /// closes a slow client or answers 503 at once.
    pub server_limits: shop_gateway::ServerLimits,
}

/// `SHOP_INTAKE_MAX_PENDING` (default 50000, or `off`: `None`).
pub fn intake_max_pending(s: &Settings) -> anyhow::Result<Option<u64>> {
    Ok(match s.intake_max_pending.as_deref().map(str::trim) {
        Some("off") => None,
        None => Some(shop_runtime::saga::backpressure::DEFAULT_MAX_PENDING),
        Some(text) => Some(
            text.parse()
                .with_context(|| format!("SHOP_INTAKE_MAX_PENDING={text:?}: expected a whole number or off"))?,
        ),
    })
}

/// `SHOP_PRICE_CACHE_MS` (default 1000; 0 turns it off): how long intake
/// may use a price it read from the order side's catalogue copy (see
/// [`shop_runtime::saga::prices`]). A change another order instance
/// applied is seen within it.
pub fn price_cache(s: &Settings) -> Duration {
    Duration::from_millis(s.price_cache_ms.unwrap_or(1000))
}

/// An instance's id without `SHOP_INSTANCE_ID`: its host and process id.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map_or_else(|_| "shop".to_owned(), |h| h.trim().to_owned());
    format!("{host}-{}", std::process::id())
}

impl ServiceConfig {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let database = database(s)?;
        let intake_max_pending = intake_max_pending(s)?;
        Ok(Self {
            database,
            nats: nats(s)?,
            redis: redis(s)?,
            instance_id: s.instance_id.clone().unwrap_or_else(default_instance_id),
            db_pool: s.db_pool.unwrap_or(16),
            expiry_every: Duration::from_millis(s.expiry_every_ms.unwrap_or(1000)),
            request_timeout: Duration::from_millis(s.request_timeout_ms.unwrap_or(10_000).max(1)),
            group_commit: Switch::or(s.group_commit, true),
            handle_together: Switch::or(s.handle_together, true),
            nats_replicas: match s.nats_replicas.unwrap_or(1) {
                n @ 1..=5 => n as usize,
                other => bail!("SHOP_NATS_REPLICAS={other}: expected 1 to 5"),
            },
            relay_wake: Switch::or(s.relay_wake, true),
            migrate_on_start: Switch::or(s.migrate_on_start, false),
            server_limits: server_limits(s)?,
            stream_retention: stream_retention(s, intake_max_pending)?,
            intake_max_pending,
            outbox_retention: Duration::from_secs(
                s.outbox_retention_secs
                    .unwrap_or(shop_runtime::saga::relay::DEFAULT_KEEP.as_secs()),
            ),
        })
    }
}

/// `SHOP_STREAM_MAX_BYTES` by default: 1 GiB per context's stream (which
/// JetStream reserves on the server when it creates the stream).
const DEFAULT_STREAM_MAX_BYTES: u64 = 1 << 30;

/// Bytes the events of one order waiting for the saga may take in a stream,
/// generously: its creation, cancellation and confirmation envelopes.
const STREAM_BYTES_PER_PENDING_ORDER: u64 = 4 * 1024;

/// The event streams' limits. A byte limit must hold every event intake
/// lets wait for the saga (its backlog bound): below that, a consumer that
/// fell behind could lose events it has not read.
fn stream_retention(s: &Settings, intake_max_pending: Option<u64>) -> anyhow::Result<shop_streams::Retention> {
    let default = shop_streams::Retention::DEFAULT;
    let max_age = match s.stream_max_age_secs {
        Some(0) => bail!("SHOP_STREAM_MAX_AGE_SECS must be at least 1"),
        Some(secs) => Duration::from_secs(secs),
        None => default.max_age,
    };
    let max_bytes = match s.stream_max_bytes.as_deref().map(str::trim) {
        None if intake_max_pending.is_none() => None,
        None => Some(DEFAULT_STREAM_MAX_BYTES),
        Some("off") => None,
        Some(text) => Some(
            text.parse::<u64>()
                .with_context(|| format!("SHOP_STREAM_MAX_BYTES={text:?}: expected a number of bytes or off"))?,
        ),
    };
    match (max_bytes, intake_max_pending) {
        (Some(_), None) => bail!(
            "SHOP_STREAM_MAX_BYTES needs SHOP_INTAKE_MAX_PENDING: without a backlog bound a stream's byte limit could drop events the saga has not read (set SHOP_STREAM_MAX_BYTES=off)"
        ),
        (Some(bytes), Some(pending)) if bytes < pending.saturating_mul(STREAM_BYTES_PER_PENDING_ORDER) => bail!(
            "SHOP_STREAM_MAX_BYTES={bytes} cannot hold the events of SHOP_INTAKE_MAX_PENDING={pending} waiting orders: give it at least {} bytes",
            pending.saturating_mul(STREAM_BYTES_PER_PENDING_ORDER)
        ),
        _ => Ok(shop_streams::Retention { max_age, max_bytes }),
    }
}

fn server_limits(s: &Settings) -> anyhow::Result<shop_gateway::ServerLimits> {
    let defaults = shop_gateway::ServerLimits::default();
    let count = |name: &str, value: Option<u64>, default: usize| -> anyhow::Result<usize> {
        let value = value.unwrap_or(u64::try_from(default).unwrap_or(u64::MAX));
        match usize::try_from(value) {
            Ok(0) | Err(_) => bail!("{name} must be a whole number from 1"),
            Ok(value) => Ok(value),
        }
    };
    let timeout_ms = s
        .header_read_timeout_ms
        .unwrap_or(u64::try_from(defaults.header_read_timeout.as_millis()).unwrap_or(u64::MAX));
    if timeout_ms == 0 {
        bail!("SHOP_HEADER_READ_TIMEOUT_MS must be at least 1");
    }
    Ok(shop_gateway::ServerLimits {
        header_read_timeout: Duration::from_millis(timeout_ms),
        max_connections: count("SHOP_MAX_CONNECTIONS", s.max_connections, defaults.max_connections)?,
        max_in_flight: count("SHOP_MAX_IN_FLIGHT", s.max_in_flight, defaults.max_in_flight)?,
    })
}

/// `SHOP_TRUSTED_PROXIES`: addresses of the gateways in front of this
/// instance, separated by commas; their `X-Forwarded-For` names the caller
/// whose address the rate limit counts (default none).
pub fn trusted_proxies(s: &Settings) -> anyhow::Result<Vec<std::net::IpAddr>> {
    list(&s.trusted_proxies)
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
    /// `SHOP_INSTANCE_WEIGHT`: this instance's share under weighted
    /// balancing, 1 to 1000 (default 1).
    pub weight: u32,
}

impl AnnounceConfig {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let weight = s.instance_weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            bail!("SHOP_INSTANCE_WEIGHT={weight}: expected 1 to 1000");
        }
        Ok(Self {
            url: s.advertise_url.clone().filter(|url| !url.trim().is_empty()),
            every: Duration::from_millis(s.announce_every_ms.unwrap_or(2000).max(10)),
            weight: u32::try_from(weight).unwrap_or(1),
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
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let discovery = match s.discovery.as_deref().map(str::trim) {
            None | Some("nats") => true,
            Some("off") => false,
            Some(other) => bail!("SHOP_DISCOVERY={other:?}: expected nats or off"),
        };
        let millis = |value: Option<u64>, default: u64| Duration::from_millis(value.unwrap_or(default).max(1));
        let defaults = shop_gateway::ProxySettings::default();
        let balance = |value: &Option<String>, name: &str, default| match value.as_deref() {
            None => Ok(default),
            Some(text) => text
                .parse::<shop_gateway::Balance>()
                .with_context(|| format!("SHOP_{name}")),
        };
        let proxy = shop_gateway::ProxySettings {
            order_balance: balance(&s.lb_order, "LB_ORDER", defaults.order_balance)?,
            inventory_balance: balance(&s.lb_inventory, "LB_INVENTORY", defaults.inventory_balance)?,
            connect_timeout: millis(s.upstream_connect_timeout_ms, 3000),
            read_timeout: millis(s.upstream_timeout_ms, 10_000),
            attempts: u32::try_from(s.upstream_attempts.unwrap_or(3).clamp(1, 10)).unwrap_or(3),
            backoff: millis(s.retry_backoff_ms, 50),
            breaker: shop_gateway::BreakerSettings {
                window: usize::try_from(s.breaker_window.unwrap_or(20).clamp(2, 10_000)).unwrap_or(20),
                open_for: millis(s.breaker_open_ms, 30_000),
            },
            health_every: millis(s.health_every_ms, 2000),
            forget_after: millis(s.forget_after_ms, defaults.forget_after.as_millis() as u64),
        };
        Ok(Self {
            order: list(&s.order_upstreams),
            inventory: list(&s.inventory_upstreams),
            discovery,
            allow: list(&s.upstream_allow),
            proxy,
        })
    }
}

/// A comma-separated setting's entries, trimmed, without empty ones.
fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
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
pub fn database(s: &Settings) -> anyhow::Result<Database> {
    let url = s
        .database_url
        .clone()
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

/// `SHOP_MIGRATION_DATABASE_URL` (the role that may change the schemas),
/// else `url`, the serving one.
pub fn migration_url(s: &Settings, url: String) -> String {
    s.migration_database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or(url)
}

/// Runs a command's async work on a runtime of its own thread.
pub fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(work)
}

impl RulesConfig {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let cache_dir = match s.rules_cache.clone() {
            Some(value) if value == "off" => None,
            Some(value) => Some(PathBuf::from(value)),
            None => Some(PathBuf::from("data/rules-cache")),
        };
        let memory_mb = s.rules_memory_mb.unwrap_or(64);
        if memory_mb == 0 {
            bail!("SHOP_RULES_MEMORY_MB must be at least 1");
        }
        let allowed: std::collections::BTreeSet<String> = list(&s.rules_allow)
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
        for key in list(&s.rules_keys) {
            keys.push(
                RuleTrust::key_from_hex(&key).with_context(|| {
                    format!("SHOP_RULES_KEYS: {key:?} is not an Ed25519 public key (64 hex digits)")
                })?,
            );
        }
        let trust = (!allowed.is_empty() || !keys.is_empty()).then_some(RuleTrust { allowed, keys });
        let shadow_every = s.rules_shadow_every.unwrap_or(1);
        if shadow_every == 0 {
            bail!("SHOP_RULES_SHADOW_EVERY must be at least 1 (1: every call)");
        }
        let shadow_per_second = s.rules_shadow_per_second.unwrap_or(DEFAULT_SHADOW_PER_SECOND);
        if shadow_per_second > MAX_SHADOW_PER_SECOND {
            bail!("SHOP_RULES_SHADOW_PER_SECOND must be at most {MAX_SHADOW_PER_SECOND}");
        }
        Ok(Self {
            shadow_every,
            shadow_per_second,
            dir: s.rules_dir.clone().map(PathBuf::from),
            trust,
            cache_dir,
            cache_key: rules_cache_key(s),
            call_timeout: Duration::from_millis(s.rules_timeout_ms.unwrap_or(100)),
            memory_limit: usize::try_from(memory_mb << 20).context("SHOP_RULES_MEMORY_MB is too large")?,
            reservation_ttl: Duration::from_secs(s.reservation_ttl_secs.unwrap_or(30 * 60)),
            component_config: s.rules_config.clone(),
        })
    }
}

/// The rules cache's key: derived from the data key, `SHOP_DATA_KEY` or
/// the one the embedded mode made in its data directory; `None` (the cache
/// then serves this process only) when there is neither yet.
fn rules_cache_key(s: &Settings) -> Option<[u8; 32]> {
    use sha2::Digest;
    let secret = s
        .data_key
        .clone()
        .filter(|key| !key.trim().is_empty())
        .or_else(|| match database(s) {
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

    use super::{Settings, Switch, read_file, split_component_key};

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn file(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("shop.toml");
        std::fs::write(&path, text)?;
        read_file(&path)
    }

    #[test]
    fn a_stream_byte_limit_must_hold_the_backlog_intake_lets_wait() {
        let service = |pairs: &[(&str, &str)]| {
            let settings = Settings::from_vars(env(pairs)).expect("typed");
            super::ServiceConfig::from_settings(&settings)
        };
        let default = service(&[]).expect("the defaults hold together");
        assert_eq!(
            default.stream_retention.max_age,
            shop_streams::Retention::DEFAULT.max_age
        );
        assert_eq!(default.stream_retention.max_bytes, Some(1 << 30));

        let chosen = service(&[
            ("SHOP_STREAM_MAX_AGE_SECS", "3600"),
            ("SHOP_STREAM_MAX_BYTES", "41943040"),
            ("SHOP_INTAKE_MAX_PENDING", "10000"),
        ])
        .expect("40 MiB holds 10,000 waiting orders");
        assert_eq!(chosen.stream_retention.max_age, std::time::Duration::from_secs(3600));
        assert_eq!(chosen.stream_retention.max_bytes, Some(41_943_040));
        let unlimited = service(&[("SHOP_STREAM_MAX_BYTES", "off"), ("SHOP_INTAKE_MAX_PENDING", "off")])
            .expect("no limit needs no bound");
        assert_eq!(unlimited.stream_retention.max_bytes, None);

        let too_small = service(&[("SHOP_STREAM_MAX_BYTES", "1048576")]).expect_err("1 MiB < 50,000 orders");
        assert!(
            too_small.to_string().contains("SHOP_INTAKE_MAX_PENDING=50000"),
            "{too_small}"
        );
        let unbounded = service(&[("SHOP_INTAKE_MAX_PENDING", "off")]).expect("no bound, no byte limit by default");
        assert_eq!(unbounded.stream_retention.max_bytes, None);
        let unbounded = service(&[
            ("SHOP_INTAKE_MAX_PENDING", "off"),
            ("SHOP_STREAM_MAX_BYTES", "1073741824"),
        ])
        .expect_err("a byte limit needs a bound");
        assert!(
            unbounded.to_string().contains("SHOP_STREAM_MAX_BYTES=off"),
            "{unbounded}"
        );
        let malformed = service(&[("SHOP_STREAM_MAX_BYTES", "1G")]).expect_err("bytes are a number");
        assert!(
            malformed.to_string().contains("SHOP_STREAM_MAX_BYTES=\"1G\""),
            "{malformed}"
        );
        assert!(service(&[("SHOP_STREAM_MAX_AGE_SECS", "0")]).is_err());
    }

    #[test]
    fn shadowing_is_budgeted_per_second_by_default_and_within_what_can_be_counted() {
        let rules = |pairs: &[(&str, &str)]| {
            let settings = Settings::from_vars(env(pairs)).expect("typed");
            super::RulesConfig::from_settings(&settings)
        };
        let default = rules(&[]).expect("the defaults hold");
        assert_eq!((default.shadow_every, default.shadow_per_second), (1, 300));
        let off = rules(&[("SHOP_RULES_SHADOW_PER_SECOND", "0")]).expect("0 turns it off");
        assert_eq!(off.shadow_per_second, 0);
        let too_many = rules(&[("SHOP_RULES_SHADOW_PER_SECOND", "16777216")]).expect_err("past the counter");
        assert!(
            too_many.to_string().contains("SHOP_RULES_SHADOW_PER_SECOND"),
            "{too_many}"
        );
        assert!(rules(&[("SHOP_RULES_SHADOW_EVERY", "0")]).is_err());
    }

    #[test]
    fn a_config_file_holds_the_environment_settings_by_their_short_names() {
        let file = file(
            r#"
            database_url = "postgres://db/shop"
            db_pool = 32
            group_commit = false
            [rules_config.purchase-limit]
            max-units-per-day = 5
            "#,
        )
        .expect("valid");
        let settings = Settings::from_sources(file, env(&[])).expect("typed");
        assert_eq!(settings.database_url.as_deref(), Some("postgres://db/shop"));
        assert_eq!(settings.db_pool, Some(32));
        assert_eq!(settings.group_commit, Some(Switch::Off));
        assert_eq!(
            settings.rules_config["purchase-limit"]["max-units-per-day"].as_str(),
            "5"
        );
    }

    #[test]
    fn the_environment_wins_and_its_other_variables_are_left_alone() {
        let file = file("db_pool = 32\nnamespace = \"from-file\"").expect("valid");
        let settings = Settings::from_sources(
            file,
            env(&[
                ("SHOP_DB_POOL", "8"),
                ("SHOP_RELAY_WAKE", "off"),
                ("SHOP_TEST_DATABASE_URL", "postgres://elsewhere"),
                ("SHOP_RULES_CONFIG_PURCHASE_LIMIT_MAX_UNITS_PER_DAY", "3"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("typed");
        assert_eq!(settings.db_pool, Some(8));
        assert_eq!(settings.namespace.as_deref(), Some("from-file"));
        assert_eq!(settings.relay_wake, Some(Switch::Off));
        assert_eq!(settings.rules_config["purchase-limit"]["max-units-per-day"], "3");
        assert_eq!(settings.database_url, None);
    }

    #[test]
    fn a_bad_value_or_an_unknown_name_is_refused_by_name() {
        let number =
            Settings::from_sources(BTreeMap::new(), env(&[("SHOP_DB_POOL", "many")])).expect_err("not a number");
        assert!(format!("{number:#}").contains("SHOP_DB_POOL"), "{number:#}");
        let switch =
            Settings::from_sources(BTreeMap::new(), env(&[("SHOP_RELAY_WAKE", "maybe")])).expect_err("not on/off");
        assert!(format!("{switch:#}").contains("maybe"), "{switch:#}");
        let typo = file("databse_url = \"x\"").expect_err("unknown");
        assert!(typo.to_string().contains("databse_url"), "{typo}");
        let list = file("db_pool = [1, 2]").expect_err("not a scalar");
        assert!(format!("{list:#}").contains("db_pool"), "{list:#}");
    }

    #[test]
    fn a_secret_may_come_from_the_file_its_name_file_variable_names() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("jwt");
        std::fs::write(&path, "s3cret\n").expect("written");
        let path = path.to_string_lossy().into_owned();
        let settings = Settings::from_sources(
            BTreeMap::new(),
            env(&[("SHOP_JWT_SECRET", ""), ("SHOP_JWT_SECRET_FILE", &path)]),
        )
        .expect("read");
        assert_eq!(settings.jwt_secret.as_deref(), Some("s3cret"));
        let missing = Settings::from_sources(BTreeMap::new(), env(&[("SHOP_DATA_KEY_FILE", "/nonexistent/key")]))
            .expect_err("unreadable");
        assert!(
            missing
                .to_string()
                .starts_with("SHOP_DATA_KEY_FILE: cannot read /nonexistent/key"),
            "{missing}"
        );
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
