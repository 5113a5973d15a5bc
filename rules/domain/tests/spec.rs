//! The rule book's cases, executed natively (the runtime runs them through WASM).

use shop_rules::spec::{inventory_cases, order_cases};

#[test]
fn every_order_case_holds_natively() {
    for case in order_cases() {
        assert_eq!(case.run_natively(), case.then, "order case: {}", case.name);
    }
}

#[test]
fn every_inventory_case_holds_natively() {
    for case in inventory_cases() {
        assert_eq!(case.run_natively(), case.then, "inventory case: {}", case.name);
    }
}
