//! Building blocks both kinds of process wire with: the order and
//! inventory roles (`roles`) and the gateway (`gateway_role`).

use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use shop_adapter_redis::RedisRateLimiter;
use shop_gateway::{Auth, Check};
use shop_runtime::ports::{Quota, RateLimiter};

use crate::config::{self, Settings};
use crate::secrets::JwtKeys;

/// Readiness of Redis: a rate-limit check on `key` that can never be refused.
pub(crate) fn redis_check(probe: RedisRateLimiter, key: String) -> Check {
    Arc::new(move || {
        let (probe, key) = (probe.clone(), key.clone());
        let plenty = Quota {
            per_second: u32::MAX,
            burst: u32::MAX,
        };
        Box::pin(async move { probe.check(&key, plenty).await.map(drop).map_err(|e| e.to_string()) })
    })
}

/// The credential verifier: the HS256 secret (with a warning when it is the
/// development one), an RS256 public key and API keys when configured.
/// Who the API accepts: HS256 tokens under the shared secret (when there
/// is one), RS256 tokens under the public key (when there is one), API keys.
pub(crate) fn auth(settings: &Settings, keys: &JwtKeys) -> anyhow::Result<Auth> {
    let mut auth = match (&keys.secret, &keys.public_key_pem) {
        (Some(secret), pem) => {
            let auth = Auth::hs256(secret.as_bytes());
            match pem {
                Some(pem) => auth.with_rs256_public_key(pem).context("SHOP_JWT_PUBLIC_KEY")?,
                None => auth,
            }
        }
        (None, Some(pem)) => Auth::rs256_only(pem).context("SHOP_JWT_PUBLIC_KEY")?,
        (None, None) => anyhow::bail!("no JWT secret and no SHOP_JWT_PUBLIC_KEY"),
    }
    .with_token_checks(config::token_checks(settings)?);
    for (name, role, key) in config::api_keys(settings)? {
        auth = auth.with_api_key(&name, role, &key).context("SHOP_API_KEYS")?;
    }
    Ok(auth)
}

/// `shop_rate_limit_fallbacks` / `shop_lock_fallbacks`: calls answered by
/// this instance alone while the shared service was unreachable.
pub(crate) fn register_fallbacks(registry: &mut Registry, of: Fallback, fallbacks: Counter) {
    let (name, help) = match of {
        Fallback::RateLimit => (
            "rate_limit_fallbacks",
            "Requests counted by this instance alone while the shared rate limiter was unreachable",
        ),
        Fallback::Lock => (
            "lock_fallbacks",
            "Locks this instance took on its own while the shared lock service was unreachable",
        ),
    };
    registry
        .sub_registry_with_prefix("shop")
        .register(name, help, fallbacks);
}

/// The shared services an instance does without, on its own, while they are away.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fallback {
    RateLimit,
    Lock,
}

pub(crate) async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
