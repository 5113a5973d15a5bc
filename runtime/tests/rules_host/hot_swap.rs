//! Loading from a rules directory: hot swaps under load, refusals that keep
//! the old rules, the directory watcher, and the compiled-code cache.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shop_rules::order::{CataloguePrice, LineRequest, OrderCommand, PlaceOrder};
use shop_runtime::rules::{ComponentKind, RuleSettings};

fn place() -> OrderCommand {
    OrderCommand::Place(PlaceOrder {
        order_id: "o-1".into(),
        customer_id: "alice".into(),
        lines: vec![LineRequest {
            product_id: "SKU-1".into(),
            quantity: 2,
        }],
        catalogue: vec![CataloguePrice {
            product_id: "SKU-1".into(),
            unit_price: 1200,
            currency: "KRW".into(),
        }],
    })
}

fn order_version(note: &str) -> Vec<u8> {
    common::with_custom_section(shop_rules_bundle::ORDER.wasm, note)
}

fn with_dir(dir: &Path) -> RuleSettings {
    RuleSettings {
        dir: Some(dir.to_path_buf()),
        ..common::default_settings()
    }
}

fn order_hash(t: &common::TestHost) -> String {
    t.host
        .components()
        .into_iter()
        .find(|c| c.role == ComponentKind::Order)
        .map(|c| c.stamp.hash.to_string())
        .expect("order rules")
}

#[test]
fn a_changed_component_is_swapped_in_without_failing_calls_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("order.wasm");
    std::fs::write(&file, order_version("v1")).expect("write v1");
    let t = common::start(with_dir(dir.path()));
    let v1 = order_hash(&t);
    assert_eq!(
        t.host
            .components()
            .iter()
            .find(|c| c.role == ComponentKind::Order)
            .map(|c| c.origin.clone()),
        Some(file.display().to_string()),
        "the directory's order rules replace the built-in ones"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let host = Arc::clone(&t.host);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut hashes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let decided = host.decide_order(None, &place()).expect("no call fails during a swap");
                    if hashes.last() != Some(&decided.rule.hash) {
                        hashes.push(decided.rule.hash.clone());
                    }
                }
                hashes
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(100));
    std::fs::write(&file, order_version("v2")).expect("write v2");
    let report = t.host.reload().expect("reload");
    let v2 = order_hash(&t);
    assert_ne!(v1, v2);
    assert_eq!(
        report.loaded.len(),
        1,
        "only the changed component is compiled: {report:?}"
    );
    assert_eq!(&*report.retired[0].hash, v1);
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);

    for caller in callers {
        let hashes = caller.join().expect("caller");
        let hashes: Vec<&str> = hashes.iter().map(|h| &**h).collect();
        assert_eq!(hashes, [v1.as_str(), v2.as_str()], "each caller saw v1, then only v2");
    }
}

#[test]
fn a_broken_replacement_is_refused_and_the_old_rules_keep_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("order.wasm");
    std::fs::write(&file, order_version("good")).expect("write");
    let t = common::start(with_dir(dir.path()));
    let before = t.host.components();

    std::fs::write(&file, b"\0asm garbage").expect("write garbage");
    let error = t.host.reload().expect_err("garbage is refused");
    assert!(
        error.to_string().starts_with("order: not a WebAssembly component"),
        "{error}"
    );
    assert_eq!(t.host.components(), before);
    t.host.decide_order(None, &place()).expect("old rules still serve");
}

#[test]
fn removing_a_directory_component_brings_the_builtin_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("order.wasm");
    std::fs::write(&file, order_version("custom")).expect("write");
    let t = common::start(with_dir(dir.path()));
    std::fs::remove_file(&file).expect("remove");
    let report = t.host.reload().expect("reload");
    let order = report
        .active
        .iter()
        .find(|c| c.role == ComponentKind::Order)
        .expect("order rules");
    assert_eq!(order.origin, "builtin");
}

#[test]
fn an_unchanged_directory_reloads_without_compiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("order.wasm"), order_version("same")).expect("write");
    let t = common::start(with_dir(dir.path()));
    let report = t.host.reload().expect("reload");
    assert!(report.loaded.is_empty(), "{report:?}");
    assert!(report.retired.is_empty(), "{report:?}");
}

#[test]
fn the_watcher_loads_a_policy_dropped_into_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = common::start(with_dir(dir.path()));
    let _watch = t.host.watch(Duration::from_millis(20));
    assert!(t.host.components().iter().all(|c| c.role != ComponentKind::Policy));

    std::fs::write(
        dir.path().join("purchase-limit.wasm"),
        shop_rules_bundle::PURCHASE_LIMIT.wasm,
    )
    .expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.host.components().iter().all(|c| c.role != ComponentKind::Policy) {
        assert!(Instant::now() < deadline, "the watcher never loaded the policy");
        thread::sleep(Duration::from_millis(20));
    }
    let policy = t
        .host
        .components()
        .into_iter()
        .find(|c| c.role == ComponentKind::Policy)
        .expect("policy");
    assert_eq!(&*policy.stamp.name, "purchase-limit");
}

#[test]
fn compiled_code_is_cached_across_starts() {
    let cache = tempfile::tempdir().expect("tempdir");
    let settings = RuleSettings {
        cache_dir: Some(cache.path().to_path_buf()),
        ..common::default_settings()
    };
    let first = common::start(settings.clone());
    assert!(first.host.components().iter().all(|c| !c.from_cache));
    let cached = std::fs::read_dir(cache.path()).expect("cache dir").count();
    assert_eq!(cached, 2, "one compiled file per component");

    let second = common::start(settings.clone());
    assert!(second.host.components().iter().all(|c| c.from_cache));
    second.host.decide_order(None, &place()).expect("cached code runs");

    // A corrupt cache entry is discarded and recompiled, never trusted.
    for entry in std::fs::read_dir(cache.path()).expect("cache dir") {
        std::fs::write(entry.expect("entry").path(), b"corrupt").expect("corrupt");
    }
    let third = common::start(settings.clone());
    assert!(third.host.components().iter().all(|c| !c.from_cache));
    third.host.decide_order(None, &place()).expect("recompiled code runs");

    // Altered code of the same length, or the files of another key: their
    // tags do not verify, so they are compiled afresh, never loaded.
    for entry in std::fs::read_dir(cache.path()).expect("cache dir") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("cached code");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, bytes).expect("altered");
    }
    let fourth = common::start(settings.clone());
    assert!(
        fourth.host.components().iter().all(|c| !c.from_cache),
        "altered code never loads"
    );
    let fifth = common::start(settings.clone());
    assert!(
        fifth.host.components().iter().all(|c| c.from_cache),
        "rewritten by the fourth"
    );
    let other_key = RuleSettings {
        cache_key: Some([42; 32]),
        ..settings
    };
    let sixth = common::start(other_key);
    assert!(
        sixth.host.components().iter().all(|c| !c.from_cache),
        "another key's files never load"
    );
}

/// With a trust policy, a directory component runs only when its digest is
/// allowed or a trusted key signed it: a tampered one is refused with a
/// clear error, and the previous rules keep serving.
#[test]
fn only_trusted_components_from_the_directory_run() {
    use ed25519_dalek::{Signer, SigningKey};
    use shop_runtime::rules::RuleTrust;

    let signer = SigningKey::from_bytes(&[5; 32]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("order.wasm");
    let v1 = order_version("signed v1");
    std::fs::write(&file, &v1).expect("write v1");
    std::fs::write(dir.path().join("order.wasm.sig"), signer.sign(&v1).to_bytes()).expect("signature");
    let settings = RuleSettings {
        trust: Some(RuleTrust {
            keys: vec![signer.verifying_key()],
            ..RuleTrust::default()
        }),
        ..with_dir(dir.path())
    };
    let t = common::start(settings.clone());
    let signed = order_hash(&t);

    // Tampered: the bytes change, the signature does not.
    std::fs::write(&file, order_version("tampered")).expect("tamper");
    let error = t.host.reload().expect_err("a tampered component is refused");
    let message = error.to_string();
    assert!(
        message.contains("order.wasm") && message.contains("refused"),
        "{message}"
    );
    assert_eq!(order_hash(&t), signed, "the signed version keeps serving");
    t.host.decide_order(None, &place()).expect("and answers");

    // Allowed by digest instead: admitted without a signature.
    let v2 = order_version("allowed v2");
    let digest: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&v2))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&file, &v2).expect("write v2");
    std::fs::remove_file(dir.path().join("order.wasm.sig")).expect("unsigned");
    let allowing = RuleSettings {
        trust: Some(RuleTrust {
            allowed: [digest.clone()].into(),
            ..RuleTrust::default()
        }),
        ..with_dir(dir.path())
    };
    let allowed = common::start(allowing);
    assert_eq!(order_hash(&allowed), digest);
    // The same unsigned file under the signing policy alone is refused at start.
    let capabilities = shop_runtime::rules::Capabilities {
        clock: std::sync::Arc::new(shop_runtime::ports::SystemClock),
        kv: std::sync::Arc::new(common::MapKv::default()),
        namespace: "test".into(),
    };
    let refused = shop_runtime::rules::RuleHost::start(settings, capabilities).map(drop);
    assert!(
        matches!(refused, Err(shop_runtime::rules::LoadError::Untrusted { .. })),
        "unsigned and not allowed: {refused:?}"
    );
}
