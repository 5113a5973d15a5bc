//! Shared set-up for the rules host tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shop_rules::spec::T0;
use shop_runtime::ports::{KeyValue, KvError, ManualClock};
use shop_runtime::rules::{Capabilities, RuleHost, RuleSettings};

pub fn default_settings() -> RuleSettings {
    RuleSettings {
        builtin: shop_rules_bundle::DEFAULT
            .iter()
            .map(|c| shop_runtime::rules::RuleSource::builtin(c.name, c.wasm))
            .collect(),
        ..RuleSettings::default()
    }
}

pub struct TestHost {
    pub host: Arc<RuleHost>,
    pub clock: Arc<ManualClock>,
    pub kv: Arc<MapKv>,
}

/// The rules' key-value store as a plain map, for the host's tests: they run
/// on a manual clock, so nothing they store lives long enough to expire (the
/// adapters' own suites check expiry).
#[derive(Debug, Default)]
pub struct MapKv(Mutex<HashMap<String, Vec<u8>>>);

impl MapKv {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyValue for MapKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.map().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], _: Option<Duration>) -> Result<(), KvError> {
        self.map().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn increment(&self, key: &str, delta: i64, _: Option<Duration>) -> Result<i64, KvError> {
        let mut map = self.map();
        let now = match map.get(key) {
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| KvError::NotACounter(key.to_owned()))?,
            None => 0,
        } + delta;
        map.insert(key.to_owned(), now.to_string().into_bytes());
        Ok(now)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.map().remove(key);
        Ok(())
    }
}

pub fn start(settings: RuleSettings) -> TestHost {
    let kv = Arc::new(MapKv::default());
    start_with_kv(settings, kv.clone(), kv)
}

pub fn start_with_kv(settings: RuleSettings, kv: Arc<dyn KeyValue>, memory: Arc<MapKv>) -> TestHost {
    let clock = Arc::new(ManualClock::new(T0));
    let capabilities = Capabilities {
        clock: clock.clone(),
        kv,
        namespace: "test".into(),
    };
    let host = RuleHost::start(settings, capabilities).expect("rules load");
    TestHost {
        host: Arc::new(host),
        clock,
        kv: memory,
    }
}

/// The same component with different bytes (an extra custom section), so it
/// hashes differently but behaves the same.
pub fn with_custom_section(wasm: &[u8], note: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"shop-test";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(note.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// `customer` placing `quantity` of SKU-1 at 1,200 KRW, as order `id`.
pub fn order(id: &str, customer: &str, quantity: i64) -> shop_rules::order::PlaceOrder {
    use shop_rules::order::{CataloguePrice, LineRequest, PlaceOrder};
    PlaceOrder {
        order_id: id.into(),
        customer_id: customer.into(),
        lines: vec![LineRequest {
            product_id: "SKU-1".into(),
            quantity,
        }],
        catalogue: vec![CataloguePrice {
            product_id: "SKU-1".into(),
            unit_price: 1200,
            currency: "KRW".into(),
        }],
    }
}
