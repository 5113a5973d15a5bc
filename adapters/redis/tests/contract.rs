//! The lock and key-value contracts against the real Redis on 127.0.0.1:6379
//! (`SHOP_TEST_REDIS_URL` overrides it), under a key prefix of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_adapter_memory::{MemoryLock, MemoryRateLimiter};
use shop_adapter_redis::{RedisKeyValue, RedisLock, RedisRateLimiter};
use shop_runtime::ports::kv::contract as kv_contract;
use shop_runtime::ports::{KeyValue as _, Lock, LockError, WithFallback, contracts};

fn url() -> String {
    std::env::var("SHOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("test-{}-{nanos}:", std::process::id())
}

#[tokio::test]
async fn lock_contract() {
    let lock = RedisLock::connect(&url()).await.expect("Redis is reachable");
    contracts::lock::run(&lock, &prefix()).await;
}

#[test]
fn key_value_contract() {
    let kv = RedisKeyValue::connect(&url()).expect("Redis is reachable");
    kv_contract::run(Arc::new(kv), &prefix());
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_with_a_clear_error() {
    let started = Instant::now();
    let error = RedisLock::connect("redis://127.0.0.1:1")
        .await
        .expect_err("nothing on port 1");
    assert!(
        matches!(&error, LockError::Unavailable(m) if m.to_string().contains("cannot connect to Redis")),
        "{error}"
    );
    let error = RedisKeyValue::connect("redis://127.0.0.1:1").expect_err("nothing on port 1");
    assert!(error.to_string().contains("cannot reach Redis"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
}

#[tokio::test]
async fn rate_limit_contract() {
    let limiter = RedisRateLimiter::connect(&url()).await.expect("Redis is reachable");
    contracts::rate_limit::run(&limiter, &prefix()).await;
}

/// A process starts while Redis is away: the lazy adapters only check the
/// URL, and fail (fast) on use, not on start.
#[tokio::test]
async fn lazy_adapters_start_without_redis_and_fail_on_use() {
    let lock = RedisLock::connect_lazily("redis://127.0.0.1:1").expect("a well-formed URL");
    let kv = RedisKeyValue::connect_lazily("redis://127.0.0.1:1").expect("a well-formed URL");
    let limiter = RedisRateLimiter::connect_lazily("redis://127.0.0.1:1").expect("a well-formed URL");
    let started = Instant::now();
    let error = lock
        .acquire(&["k".to_owned()], Duration::from_secs(1), Duration::ZERO)
        .await
        .expect_err("nothing on port 1");
    assert!(matches!(error, LockError::Unavailable(_)), "{error}");
    assert!(kv.get("k").is_err(), "nothing on port 1");
    let plenty = shop_runtime::ports::Quota {
        per_second: 1,
        burst: 1,
    };
    use shop_runtime::ports::RateLimiter as _;
    assert!(limiter.check("k", plenty).await.is_err(), "nothing on port 1");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
    assert!(
        RedisLock::connect_lazily("no scheme").is_err(),
        "a malformed URL is refused at once"
    );
}

/// With Redis away the lock falls back to one per instance, which keeps the
/// whole lock contract; with Redis there it keeps it through Redis.
#[tokio::test]
async fn the_lock_with_a_local_fallback_keeps_the_contract_either_way() {
    let away = WithFallback::new(
        RedisLock::connect_lazily("redis://127.0.0.1:1").expect("a well-formed URL"),
        MemoryLock::new(),
    );
    contracts::lock::run(&away, &prefix()).await;
    assert!(away.fallbacks().get() > 0, "the local lock answered");

    let there = WithFallback::new(
        RedisLock::connect(&url()).await.expect("Redis is reachable"),
        MemoryLock::new(),
    );
    contracts::lock::run(&there, &prefix()).await;
    assert_eq!(there.fallbacks().get(), 0, "Redis answered every call");
    // A lease taken through Redis is held in Redis: another process sees it.
    let key = format!("{}held", prefix());
    let lease = there
        .acquire(std::slice::from_ref(&key), Duration::from_secs(5), Duration::ZERO)
        .await
        .expect("free");
    let other = RedisLock::connect(&url()).await.expect("Redis is reachable");
    let taken = other
        .acquire(std::slice::from_ref(&key), Duration::from_secs(5), Duration::ZERO)
        .await;
    assert!(matches!(taken, Err(LockError::Busy(_))), "{taken:?}");
    there.release(&lease).await.expect("released");
    let free = other
        .acquire(std::slice::from_ref(&key), Duration::from_secs(5), Duration::ZERO)
        .await
        .expect("free again once released through the fallback wrapper");
    other.release(&free).await.expect("released");
}

/// The rate limiter's fallback keeps the rate-limit contract with Redis away.
#[tokio::test]
async fn the_rate_limiter_with_a_local_fallback_keeps_the_contract_with_redis_away() {
    let away = WithFallback::new(
        RedisRateLimiter::connect_lazily("redis://127.0.0.1:1").expect("a well-formed URL"),
        MemoryRateLimiter::new(),
    );
    contracts::rate_limit::run(&away, &prefix()).await;
    assert!(away.fallbacks().get() > 0, "the local limiter answered");
}
