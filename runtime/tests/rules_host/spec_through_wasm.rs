//! The rule book's cases again, this time through the WebAssembly components
//! and the host: the same table `shop-rules` runs natively.

use crate::common;

use shop_rules::inventory::InventoryState;
use shop_rules::spec::{inventory_cases, order_cases};
use shop_runtime::rules::RuleError;

#[test]
fn every_order_case_holds_through_wasm() {
    let t = common::start(common::default_settings());
    for case in order_cases() {
        let mut state = None;
        for event in &case.given {
            state = t.host.evolve_order(state, event).expect("evolve");
        }
        t.clock.set(case.now_ms);
        let outcome = match t.host.decide_order(state.as_ref(), &case.when) {
            Ok(decided) => {
                assert_eq!(&*decided.rule.name, "order", "stamped with the deciding component");
                Ok(decided.value)
            }
            Err(RuleError::Rejected(rejection)) => Err(rejection),
            Err(RuleError::Fault(fault)) => panic!("{}: {fault}", case.name),
        };
        assert_eq!(outcome, case.then, "order case: {}", case.name);
    }
}

#[test]
fn every_inventory_case_holds_through_wasm() {
    let t = common::start(common::default_settings());
    for case in inventory_cases() {
        let mut state = InventoryState::default();
        for event in &case.given {
            state = t.host.evolve_inventory(state, event).expect("evolve");
        }
        t.clock.set(case.now_ms);
        let outcome = match t.host.decide_inventory(&state, &case.when) {
            Ok(decided) => Ok(decided.value),
            Err(RuleError::Rejected(rejection)) => Err(rejection),
            Err(RuleError::Fault(fault)) => panic!("{}: {fault}", case.name),
        };
        assert_eq!(outcome, case.then, "inventory case: {}", case.name);
    }
}
