//! What running the rules in WebAssembly costs: one `decide` for a 3-line
//! order, natively, through the host on a reused instance, and through the
//! host on a fresh instance per call (a pool of size 0).
//!
//! cargo bench -p shop-runtime --bench decide

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shop_rules::env::FixedEnv;
use shop_rules::order::{self, CataloguePrice, LineRequest, OrderCommand, PlaceOrder};
use shop_rules::spec::T0;
use shop_runtime::ports::{KeyValue, KvError, ManualClock};
use shop_runtime::rules::{Capabilities, RuleHost, RuleSettings};

fn three_line_order() -> OrderCommand {
    let products = [("sku-apple", 1_200), ("sku-pear", 900), ("sku-plum", 450)];
    OrderCommand::Place(PlaceOrder {
        order_id: "0190a5f2-7c1e-7b3a-9d4e-1f2a3b4c5d6e".into(),
        customer_id: "customer-42".into(),
        lines: products
            .iter()
            .map(|(id, _)| LineRequest {
                product_id: (*id).into(),
                quantity: 2,
            })
            .collect(),
        catalogue: products
            .iter()
            .map(|(id, price)| CataloguePrice {
                product_id: (*id).into(),
                unit_price: *price,
                currency: "KRW".into(),
            })
            .collect(),
    })
}

/// The bundled order and inventory rules never call the key-value store
/// (only policy plugins do), so the bench gives them none.
struct NoStore;

impl KeyValue for NoStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Err(NoStore::refused(key))
    }
    fn set(&self, key: &str, _: &[u8], _: Option<Duration>) -> Result<(), KvError> {
        Err(NoStore::refused(key))
    }
    fn increment(&self, key: &str, _: i64, _: Option<Duration>) -> Result<i64, KvError> {
        Err(NoStore::refused(key))
    }
    fn delete(&self, key: &str) -> Result<(), KvError> {
        Err(NoStore::refused(key))
    }
}

impl NoStore {
    fn refused(key: &str) -> KvError {
        KvError::Unavailable(format!("no store in the bench: {key}").into())
    }
}

fn host(pool_size: usize) -> RuleHost {
    let settings = RuleSettings {
        builtin: shop_rules_bundle::DEFAULT
            .iter()
            .map(|c| shop_runtime::rules::RuleSource::builtin(c.name, c.wasm))
            .collect(),
        pool_size,
        ..RuleSettings::default()
    };
    let capabilities = Capabilities {
        clock: Arc::new(ManualClock::new(T0)),
        kv: Arc::new(NoStore),
        namespace: "bench".into(),
    };
    RuleHost::start(settings, capabilities).expect("the bundled rules load")
}

fn decide(c: &mut Criterion) {
    let command = three_line_order();
    let env = FixedEnv::at(T0);
    let reused = host(16);
    let fresh = host(0);

    // The three must agree, or the comparison means nothing.
    let native = order::decide(None, &command, &env).expect("a valid order");
    let wasm = reused.decide_order(None, &command).expect("a valid order");
    assert_eq!(native, wasm.value);

    let mut group = c.benchmark_group("decide_place_order_3_lines");
    group.bench_function("native", |b| {
        b.iter(|| order::decide(black_box(None), black_box(&command), &env))
    });
    group.bench_function("wasm_reused_instance", |b| {
        b.iter(|| reused.decide_order(black_box(None), black_box(&command)))
    });
    group.bench_function("wasm_fresh_instance", |b| {
        b.iter(|| fresh.decide_order(black_box(None), black_box(&command)))
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
