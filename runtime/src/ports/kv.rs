//! The key-value port: the store behind the `kv` capability rules import.
//!
//! In-process in the embedded mode (`shop-adapter-memory`), Redis when
//! distributed. Calls are synchronous because rule components call them from
//! inside a synchronous WebAssembly call.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The store could not be reached or did not answer in time.
    #[error("key-value store unavailable: {0}")]
    Unavailable(#[source] super::Cause),
    /// `increment` met a value that is not a decimal integer.
    #[error("value at {0} is not an integer counter")]
    NotACounter(String),
}

pub trait KeyValue: Send + Sync + 'static {
    /// MUST return `Ok(None)` when the key is absent or its time-to-live has passed.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// MUST replace any value; with a `ttl`, the key MUST vanish after it,
    /// without one it MUST persist.
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError>;

    /// MUST add `delta` atomically (no concurrent update lost) and return the
    /// new value, counting a missing key as 0 and storing the value as a
    /// decimal string. `ttl` MUST apply only when this call creates the key.
    /// MUST return [`KvError::NotACounter`] when the value is not an integer.
    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError>;

    /// MUST succeed whether or not the key exists.
    fn delete(&self, key: &str) -> Result<(), KvError>;
}

/// The contract above as a test suite; every adapter runs it.
#[cfg(feature = "testkit")]
pub mod contract {
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use super::{KeyValue, KvError};

    /// Runs every check against `kv`, using keys under `prefix` only.
    pub fn run(kv: Arc<dyn KeyValue>, prefix: &str) {
        missing_keys_read_as_none(&*kv, prefix);
        set_replaces_and_delete_removes(&*kv, prefix);
        ttl_expires_keys(&*kv, prefix);
        increment_counts_from_zero_and_keeps_first_ttl(&*kv, prefix);
        increment_refuses_non_counters(&*kv, prefix);
        concurrent_increments_lose_nothing(kv, prefix);
    }

    fn missing_keys_read_as_none(kv: &dyn KeyValue, p: &str) {
        assert_eq!(kv.get(&format!("{p}absent")), Ok(None));
        assert_eq!(kv.delete(&format!("{p}absent")), Ok(()));
    }

    fn set_replaces_and_delete_removes(kv: &dyn KeyValue, p: &str) {
        let key = format!("{p}plain");
        kv.set(&key, b"one", None).expect("set");
        kv.set(&key, b"two", None).expect("set again");
        assert_eq!(kv.get(&key), Ok(Some(b"two".to_vec())));
        kv.delete(&key).expect("delete");
        assert_eq!(kv.get(&key), Ok(None));
    }

    fn ttl_expires_keys(kv: &dyn KeyValue, p: &str) {
        let key = format!("{p}ttl");
        kv.set(&key, b"v", Some(Duration::from_millis(50))).expect("set");
        assert_eq!(kv.get(&key), Ok(Some(b"v".to_vec())));
        thread::sleep(Duration::from_millis(120));
        assert_eq!(kv.get(&key), Ok(None), "a key outlived its ttl");
    }

    fn increment_counts_from_zero_and_keeps_first_ttl(kv: &dyn KeyValue, p: &str) {
        let key = format!("{p}counter");
        assert_eq!(kv.increment(&key, 5, Some(Duration::from_millis(150))), Ok(5));
        // A later ttl does not extend the first one.
        assert_eq!(kv.increment(&key, -2, Some(Duration::from_secs(60))), Ok(3));
        assert_eq!(kv.get(&key), Ok(Some(b"3".to_vec())));
        thread::sleep(Duration::from_millis(250));
        assert_eq!(kv.increment(&key, 1, None), Ok(1), "the counter outlived its first ttl");
        kv.delete(&key).expect("delete");
    }

    fn increment_refuses_non_counters(kv: &dyn KeyValue, p: &str) {
        let key = format!("{p}text");
        kv.set(&key, b"hello", None).expect("set");
        assert!(matches!(kv.increment(&key, 1, None), Err(KvError::NotACounter(_))));
        kv.delete(&key).expect("delete");
    }

    fn concurrent_increments_lose_nothing(kv: Arc<dyn KeyValue>, p: &str) {
        let key = format!("{p}race");
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let kv = Arc::clone(&kv);
                let key = key.clone();
                thread::spawn(move || {
                    for _ in 0..250 {
                        kv.increment(&key, 1, None).expect("increment");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker");
        }
        assert_eq!(kv.get(&key), Ok(Some(b"1000".to_vec())));
        kv.delete(&key).expect("delete");
    }
}
