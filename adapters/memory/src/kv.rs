//! The key-value port in a process-local map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shop_runtime::ports::{KeyValue, KvError};

/// Every this many writes, expired entries are swept so an idle key does not
/// live in memory forever.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    writes: u64,
}

impl Map {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| !e.live(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn wrote(&mut self, now: Instant) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.entries.retain(|_, e| e.live(now));
        }
    }
}

/// A mutex-guarded map with per-key expiry. Nothing survives a restart:
/// what the rules keep here (counters, caches) is allowed to be lost.
#[derive(Debug, Default)]
pub struct MemoryKeyValue {
    map: Mutex<Map>,
}

impl MemoryKeyValue {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Map, Instant) -> T) -> Result<T, KvError> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| KvError::Unavailable("the in-process store was poisoned by a panic".into()))?;
        Ok(f(&mut map, Instant::now()))
    }
}

impl KeyValue for MemoryKeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.with(|map, now| map.live(key, now).map(|e| e.value.clone()))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.with(|map, now| {
            let entry = Entry {
                value: value.to_vec(),
                expires: ttl.map(|ttl| now + ttl),
            };
            map.entries.insert(key.to_owned(), entry);
            map.wrote(now);
        })
    }

    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
        self.with(|map, now| {
            let next = match map.live(key, now) {
                Some(entry) => {
                    let current = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| KvError::NotACounter(key.to_owned()))?;
                    let next = current.saturating_add(delta);
                    entry.value = next.to_string().into_bytes();
                    next
                }
                None => {
                    let entry = Entry {
                        value: delta.to_string().into_bytes(),
                        expires: ttl.map(|ttl| now + ttl),
                    };
                    map.entries.insert(key.to_owned(), entry);
                    delta
                }
            };
            map.wrote(now);
            Ok(next)
        })?
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.with(|map, _| {
            map.entries.remove(key);
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn passes_the_key_value_contract() {
        shop_runtime::ports::kv::contract::run(Arc::new(MemoryKeyValue::new()), "contract:");
    }
}
