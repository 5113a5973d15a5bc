//! The lock and key-value contracts against the real Redis on 127.0.0.1:6379
//! (`SHOP_TEST_REDIS_URL` overrides it), under a key prefix of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_adapter_redis::{RedisKeyValue, RedisLock, RedisRateLimiter};
use shop_runtime::ports::kv::contract as kv_contract;
use shop_runtime::ports::{LockError, contracts};

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
        matches!(&error, LockError::Unavailable(m) if m.contains("cannot connect to Redis")),
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
