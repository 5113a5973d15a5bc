//! What sealing an order's delivery details costs the CPU: a new data key
//! (a customer's first order), sealing under an existing one (every order
//! after), and opening (every read), beside a plain JSON encoding of the
//! same details as the baseline measured in the same run.
//!
//! cargo bench -p shop-runtime --bench customer_data

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shop_runtime::customer_data::{Delivery, Keyring};

fn delivery() -> Delivery {
    Delivery {
        name: "Customer 4711".into(),
        phone: "+82 10 0000 4711".into(),
        address: "4711 Sejong-daero, Jongno-gu, Seoul 03154".into(),
    }
}

fn customer_data(c: &mut Criterion) {
    let keyring = Keyring::new(&[7; 32], &[]);
    let key = keyring.new_key("customer-4711", 0).expect("a key");
    let details = delivery();
    let sealed = keyring
        .seal(&key, "0190a5f2-7c1e-7b3a-9d4e-1f2a3b4c5d6e", &details)
        .expect("sealed");
    let mut group = c.benchmark_group("customer_data");
    group.bench_function("json baseline", |b| {
        b.iter(|| serde_json::to_vec(black_box(&details)).expect("encoded"))
    });
    group.bench_function("new data key", |b| {
        b.iter(|| keyring.new_key(black_box("customer-4711"), 0).expect("a key"))
    });
    group.bench_function("seal", |b| {
        b.iter(|| {
            keyring
                .seal(
                    black_box(&key),
                    "0190a5f2-7c1e-7b3a-9d4e-1f2a3b4c5d6e",
                    black_box(&details),
                )
                .expect("sealed")
        })
    });
    group.bench_function("open", |b| {
        b.iter(|| keyring.open(black_box(&key), black_box(&sealed)).expect("opened"))
    });
    group.finish();
}

criterion_group!(benches, customer_data);
criterion_main!(benches);
