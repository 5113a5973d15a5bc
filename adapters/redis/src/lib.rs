//! Redis adapters: [`RedisLock`] for the lock port, [`RedisRateLimiter`] for
//! the gateway's rate limits, and [`RedisKeyValue`] for the key-value
//! capability the rule components import.
//!
//! Keys are used as given: callers put the deployment namespace in front
//! (`{ns}:lock:...`, `{ns}:rules:{component}:...`), so several deployments
//! share one Redis.
//!
//! Redis is reached as a [`RedisEndpoint`] says: AUTH by the URL's user
//! and password, TLS by a `rediss://` URL (with a private CA's
//! certificates when the server's is not publicly trusted).

#![forbid(unsafe_code)]

mod kv;
mod lock;
mod rate_limit;

pub use kv::RedisKeyValue;
pub use lock::RedisLock;
pub use rate_limit::RedisRateLimiter;

use shop_runtime::ports::Cause;

/// Connect and command timeouts: Redis answers in well under a millisecond
/// on a healthy network, so waiting longer only delays the error.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Where Redis is, and how to trust it.
#[derive(Clone, Default)]
pub struct RedisEndpoint {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// PEM certificates of the CA a `rediss://` server's certificate is
    /// checked against, instead of the system's roots.
    pub tls_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("url", &self.redacted())
            .field("tls_ca", &self.tls_ca.is_some())
            .finish()
    }
}

impl RedisEndpoint {
    /// The URL without its password, for messages and logs.
    pub fn redacted(&self) -> String {
        match (self.url.split_once("://"), self.url.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
            _ => self.url.clone(),
        }
    }
}

impl From<&str> for RedisEndpoint {
    fn from(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            tls_ca: None,
        }
    }
}

impl From<&String> for RedisEndpoint {
    fn from(url: &String) -> Self {
        Self::from(url.as_str())
    }
}

/// The shared, self-reconnecting connection the async adapters use; its
/// commands are tried `retries` more times after a failure.
fn manager_config(retries: usize) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(retries)
}

/// Connected now: fails when Redis does not answer.
async fn connected(endpoint: &RedisEndpoint, retries: usize) -> Result<redis::aio::ConnectionManager, Cause> {
    redis::aio::ConnectionManager::new_with_config(client(endpoint)?, manager_config(retries))
        .await
        .map_err(|e| Cause::context(format!("cannot connect to Redis at {}", endpoint.redacted()), e))
}

/// Connected on first use (and again after every failure).
fn connected_lazily(endpoint: &RedisEndpoint, retries: usize) -> Result<redis::aio::ConnectionManager, Cause> {
    redis::aio::ConnectionManager::new_lazy_with_config(client(endpoint)?, manager_config(retries))
        .map_err(|e| Cause::context(format!("Redis at {}", endpoint.redacted()), e))
}

fn client(endpoint: &RedisEndpoint) -> Result<redis::Client, Cause> {
    let client = match &endpoint.tls_ca {
        Some(ca) => redis::Client::build_with_tls(
            endpoint.url.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        None => redis::Client::open(endpoint.url.as_str()),
    };
    client.map_err(|e| Cause::context(format!("invalid Redis URL {}", endpoint.redacted()), e))
}
