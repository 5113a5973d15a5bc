//! Shared set-up for the rules host tests.

use std::sync::Arc;

use shop_adapter_memory::MemoryKeyValue;
use shop_rules::spec::T0;
use shop_runtime::ports::{KeyValue, ManualClock};
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
    pub kv: Arc<MemoryKeyValue>,
}

pub fn start(settings: RuleSettings) -> TestHost {
    let kv = Arc::new(MemoryKeyValue::new());
    start_with_kv(settings, kv.clone(), kv)
}

pub fn start_with_kv(settings: RuleSettings, kv: Arc<dyn KeyValue>, memory: Arc<MemoryKeyValue>) -> TestHost {
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
