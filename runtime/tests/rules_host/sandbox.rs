//! A rule can never crash or hang the host: runaway loops, memory hogs,
//! panics and stack overflows become clean faults, bad components are refused
//! with a clear error, and the host keeps serving after each.

use crate::common;

use std::time::{Duration, Instant};

use shop_rules::order::{CataloguePrice, LineRequest, OrderCommand, PlaceOrder};
use shop_rules_bundle::BundledComponent;
use shop_rules_bundle::fixtures::{NEXT_MINOR_POLICY, PREVIOUS_MINOR_POLICY, ROGUE_ORDER};
use shop_runtime::rules::{ComponentKind, FaultKind, LoadError, RuleError, RuleMode, RuleSettings, RuleSource};

fn place(customer: &str) -> OrderCommand {
    OrderCommand::Place(PlaceOrder {
        order_id: "o-1".into(),
        customer_id: customer.into(),
        lines: vec![LineRequest {
            product_id: "SKU-1".into(),
            quantity: 1,
        }],
        catalogue: vec![CataloguePrice {
            product_id: "SKU-1".into(),
            unit_price: 1200,
            currency: "KRW".into(),
        }],
    })
}

/// A host whose order rules are the rogue component.
fn rogue_host(timeout: Duration, memory_limit: usize) -> common::TestHost {
    common::start(RuleSettings {
        builtin: vec![
            RuleSource::builtin(ROGUE_ORDER.name, ROGUE_ORDER.wasm),
            RuleSource::builtin(shop_rules_bundle::INVENTORY.name, shop_rules_bundle::INVENTORY.wasm),
        ],
        call_timeout: timeout,
        memory_limit,
        ..RuleSettings::default()
    })
}

fn fault_of(t: &common::TestHost, customer: &str) -> FaultKind {
    match t.host.decide_order(None, &place(customer)) {
        Err(RuleError::Fault(fault)) => {
            assert!(
                fault.component.starts_with("rogue@"),
                "fault names the component: {fault}"
            );
            fault.kind
        }
        other => panic!("{customer}: expected a fault, got {other:?}"),
    }
}

fn still_serves(t: &common::TestHost) {
    let decided = t
        .host
        .decide_order(None, &place("alice"))
        .expect("a well-behaved call still works");
    assert_eq!(decided.value.len(), 1);
}

#[test]
fn an_endless_loop_is_stopped_within_its_budget() {
    let t = rogue_host(Duration::from_millis(50), 64 << 20);
    let started = Instant::now();
    assert_eq!(fault_of(&t, "loop"), FaultKind::Timeout(Duration::from_millis(50)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    still_serves(&t);
    // Again, on a fresh instance: the trapped one was thrown away.
    assert!(matches!(fault_of(&t, "loop"), FaultKind::Timeout(_)));
    still_serves(&t);
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let t = rogue_host(Duration::from_secs(5), 16 << 20);
    assert_eq!(fault_of(&t, "hog"), FaultKind::MemoryLimit(16 << 20));
    still_serves(&t);
}

#[test]
fn a_panic_and_a_stack_overflow_are_faults_not_crashes() {
    let t = rogue_host(Duration::from_secs(5), 64 << 20);
    assert!(matches!(fault_of(&t, "panic"), FaultKind::Trap(_)));
    still_serves(&t);
    // Rust keeps big frames on a shadow stack in linear memory: overflowing
    // it is an out-of-bounds access rather than a wasm stack overflow.
    assert!(matches!(
        fault_of(&t, "recurse"),
        FaultKind::StackOverflow | FaultKind::Trap(_)
    ));
    still_serves(&t);
}

fn inspect(bytes: Vec<u8>) -> LoadError {
    let t = common::start(common::default_settings());
    let source = RuleSource {
        name: "candidate".into(),
        wasm: bytes.into(),
        origin: "test".into(),
        builtin: false,
        signature: None,
        version: 0,
        mode: shop_runtime::rules::RuleMode::Active,
    };
    let error = t.host.inspect(&source).expect_err("must be refused");
    // The refusal leaves the active rules untouched.
    assert_eq!(t.host.components().len(), 2);
    error
}

#[test]
fn garbage_is_not_a_component() {
    let error = inspect(b"definitely not wasm".to_vec());
    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
    assert!(
        error.to_string().starts_with("candidate: not a WebAssembly component"),
        "{error}"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let module = wat::parse_str("(module (func (export \"decide\")))").expect("wat");
    let error = inspect(module);
    assert!(matches!(error, LoadError::NotAComponent { .. }), "{error}");
}

#[test]
fn a_component_of_another_major_version_is_refused_naming_both_versions() {
    // 0.1.0 lacked the `payment-failed` cancel reason: a major change, so a
    // component built against it is refused like any other major.
    for version in ["9.0.0", "0.1.0", "0.3.0"] {
        let other = wat::parse_str(format!(
            r#"(component
            (core module $m (func (export "f") (result i32) i32.const 7))
            (core instance $i (instantiate $m))
            (func $f (result u32) (canon lift (core func $i "f")))
            (instance $api (export "f" (func $f)))
            (export "shop:rules/order-rules@{version}" (instance $api)))"#
        ))
        .expect("wat");
        let error = inspect(other);
        assert!(matches!(error, LoadError::OtherVersion { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains(&format!("built against shop:rules@{version}")),
            "{message}"
        );
        assert!(
            message.contains("implements shop:rules@0.2.1 and runs components built against any 0.2.x"),
            "{message}"
        );
    }
}

#[test]
fn a_component_of_no_rule_contract_is_refused_naming_what_it_exports() {
    let other = wat::parse_str(
        r#"(component
        (core module $m (func (export "f") (result i32) i32.const 7))
        (core instance $i (instantiate $m))
        (func $f (result u32) (canon lift (core func $i "f")))
        (instance $api (export "f" (func $f)))
        (export "acme:pricing/rules@1.0.0" (instance $api)))"#,
    )
    .expect("wat");
    let error = inspect(other);
    assert!(matches!(error, LoadError::UnknownContract { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("acme:pricing/rules@1.0.0"), "{message}");
    assert!(message.contains("shop:rules/order-rules@0.2.1"), "{message}");
}

/// A host running `policy`, a policy built against another 0.2 minor of
/// the contract, published and active; its load checked first.
fn running_other_minor(policy: &BundledComponent) -> common::TestHost {
    let t = common::start(common::default_settings());
    let info = t
        .host
        .inspect(&RuleSource::builtin(policy.name, policy.wasm))
        .unwrap_or_else(|error| panic!("{} loads on a 0.2.1 host: {error}", policy.name));
    assert_eq!(info.role, ComponentKind::Policy);
    t.host
        .install(vec![RuleSource::published(
            policy.name,
            1,
            policy.wasm.to_vec(),
            None,
            RuleMode::Active,
        )])
        .expect("installed");
    // It decides: what it shares with the host works.
    let allowed = t.host.check_policies(&common::order("o-1", "alice", 1));
    assert!(allowed.is_ok(), "{allowed:?}");
    let refused = t
        .host
        .check_policies(&common::order("o-2", "blocked", 1))
        .expect_err("refused");
    assert!(refused.to_string().contains("blocked"), "{refused}");
    t
}

#[test]
fn a_policy_built_against_the_previous_minor_version_runs() {
    running_other_minor(&PREVIOUS_MINOR_POLICY);
}

#[test]
fn a_policy_built_against_a_later_minor_version_loads_and_what_the_host_lacks_traps() {
    // It calls `log.enabled` and `log.write`, which the host has.
    let t = running_other_minor(&NEXT_MINOR_POLICY);
    let order = |customer: &str| common::order("o-3", customer, 1);
    // `log.flush` is 0.2.2's: calling it is a fault that names it.
    let fault = t.host.check_policies(&order("flushes")).expect_err("a fault");
    assert!(matches!(fault, RuleError::Fault(_)), "{fault:?}");
    assert!(fault.to_string().contains("flush"), "{fault}");
    // And the component keeps serving after it.
    assert!(t.host.check_policies(&order("alice")).is_ok());
}

#[test]
fn a_component_with_the_right_name_but_wrong_types_is_refused() {
    let impostor = wat::parse_str(
        r#"(component
            (core module $m (func (export "decide") (result i32) i32.const 7))
            (core instance $i (instantiate $m))
            (func $decide (result u32) (canon lift (core func $i "decide")))
            (instance $api (export "decide" (func $decide)))
            (export "shop:rules/order-rules@0.2.0" (instance $api)))"#,
    )
    .expect("wat");
    let error = inspect(impostor);
    assert!(matches!(error, LoadError::ContractMismatch { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("does not fit the shop:rules/order-rules@0.2.1 contract"),
        "{error}"
    );
}

#[test]
fn two_order_components_in_one_directory_are_ambiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.wasm"), shop_rules_bundle::ORDER.wasm).expect("write");
    std::fs::write(dir.path().join("b.wasm"), ROGUE_ORDER.wasm).expect("write");
    let settings = RuleSettings {
        dir: Some(dir.path().to_path_buf()),
        ..common::default_settings()
    };
    let capabilities = shop_runtime::rules::Capabilities {
        clock: std::sync::Arc::new(shop_runtime::ports::SystemClock),
        kv: std::sync::Arc::new(common::MapKv::default()),
        namespace: "test".into(),
    };
    let error = shop_runtime::rules::RuleHost::start(settings, capabilities).expect_err("ambiguous");
    assert!(matches!(error, LoadError::Ambiguous { .. }), "{error}");
}
