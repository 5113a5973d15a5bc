//! Invariants that must survive any sequence of commands.

use std::collections::BTreeMap;

use proptest::prelude::*;
use shop_rules::FixedEnv;
use shop_rules::inventory::{self, *};
use shop_rules::order::{self, *};

const PRODUCTS: [&str; 3] = ["A", "B", "C"];

#[derive(Debug, Clone)]
enum Op {
    Restock(usize, i64),
    Adjust(usize, i64),
    Reserve(u8, Vec<(usize, i64)>),
    Deduct(u8),
    Release(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, -5..40i64).prop_map(|(p, q)| Op::Restock(p, q)),
        (0..3usize, -30..30i64).prop_map(|(p, d)| Op::Adjust(p, d)),
        (0..8u8, prop::collection::vec((0..3usize, -1..12i64), 0..4)).prop_map(|(o, l)| Op::Reserve(o, l)),
        (0..8u8).prop_map(Op::Deduct),
        (0..8u8, any::<bool>()).prop_map(|(o, expired)| Op::Release(o, expired)),
    ]
}

fn command(op: &Op) -> (Option<String>, InventoryCommand) {
    let order = |o: &u8| format!("o-{o}");
    match op {
        Op::Restock(p, q) => (
            None,
            InventoryCommand::Restock(Restock {
                product_id: PRODUCTS[*p].into(),
                quantity: *q,
            }),
        ),
        Op::Adjust(p, d) => (
            None,
            InventoryCommand::Adjust(Adjust {
                product_id: PRODUCTS[*p].into(),
                delta: *d,
                reason: "count".into(),
            }),
        ),
        Op::Reserve(o, lines) => (
            Some(order(o)),
            InventoryCommand::Reserve(OrderLines {
                order_id: order(o),
                lines: lines
                    .iter()
                    .map(|(p, q)| StockLine {
                        product_id: PRODUCTS[*p].into(),
                        quantity: *q,
                    })
                    .collect(),
            }),
        ),
        Op::Deduct(o) => (Some(order(o)), InventoryCommand::Deduct(order(o))),
        Op::Release(o, expired) => (
            Some(order(o)),
            InventoryCommand::Release(Release {
                order_id: order(o),
                reason: if *expired {
                    ReleaseReason::Expired
                } else {
                    ReleaseReason::Cancelled
                },
            }),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// available >= 0, reserved >= 0, conservation per product, and reserved
    /// units equal to what open reservations hold, after every single step.
    #[test]
    fn stock_stays_non_negative_and_conserved(
        initial in prop::collection::vec(0..20i64, 3),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut products: Vec<ProductStock> = Vec::new();
        for (id, stock) in PRODUCTS.iter().zip(&initial) {
            let state = InventoryState { products: products.clone(), reservation: None };
            let register = InventoryCommand::RegisterProduct(RegisterProduct {
                product_id: (*id).into(), name: "P".into(), unit_price: 100, currency: "KRW".into(), initial_stock: *stock,
            });
            let decision = inventory::decide(&state, &register, 0).expect("register");
            products = decision.events.iter().fold(state, inventory::evolve).products;
        }
        let mut reservations: BTreeMap<String, Reservation> = BTreeMap::new();

        for (step, op) in ops.iter().enumerate() {
            let (order, command) = command(op);
            let state = InventoryState {
                products: products.clone(),
                reservation: order.as_ref().and_then(|o| reservations.get(o).cloned()),
            };
            if let Ok(decision) = inventory::decide(&state, &command, step as i64) {
                let after = decision.events.iter().fold(state, inventory::evolve);
                products = after.products;
                if let Some(r) = after.reservation {
                    reservations.insert(r.order_id.clone(), r);
                }
            }
            for p in &products {
                prop_assert!(p.available >= 0, "step {step} {op:?}: available {p:?}");
                prop_assert!(p.reserved >= 0, "step {step} {op:?}: reserved {p:?}");
                prop_assert!(p.is_conserved(), "step {step} {op:?}: conservation {p:?}");
                let held: i64 = reservations.values()
                    .filter(|r| r.status == ReservationStatus::Reserved)
                    .flat_map(|r| &r.lines)
                    .filter(|l| l.product_id == p.product_id)
                    .map(|l| l.quantity)
                    .sum();
                prop_assert_eq!(p.reserved, held, "step {} {:?}", step, op);
            }
        }
    }

    /// Every status change the rules make is one of the allowed forward moves.
    #[test]
    fn order_status_never_moves_backwards(commands in prop::collection::vec(0..6u8, 1..20), gaps in prop::collection::vec(0..2_000_000i64, 20)) {
        let place = OrderCommand::Place(PlaceOrder {
            order_id: "o-1".into(),
            customer_id: "alice".into(),
            lines: vec![LineRequest { product_id: "A".into(), quantity: 1 }],
            catalogue: vec![CataloguePrice { product_id: "A".into(), unit_price: 10, currency: "KRW".into() }],
        });
        let mut now = 0;
        let events = order::decide(None, &place, &FixedEnv::at(now)).expect("place");
        let mut state = events.iter().fold(None, order::evolve).expect("created");
        for (code, gap) in commands.iter().zip(&gaps) {
            now += gap;
            let command = match code {
                0 => OrderCommand::Confirm,
                1 => OrderCommand::Complete,
                2 => OrderCommand::Cancel(CancelReason::Customer),
                3 => OrderCommand::Cancel(CancelReason::InsufficientStock),
                4 => OrderCommand::Cancel(CancelReason::ReservationExpired),
                _ => OrderCommand::Cancel(CancelReason::Admin),
            };
            let before = state.status;
            if let Ok(events) = order::decide(Some(&state), &command, &FixedEnv::at(now)) {
                state = events.iter().fold(Some(state), order::evolve).expect("exists");
            }
            prop_assert!(
                state.status == before || before.successors().contains(&state.status),
                "{before} -> {} on {command:?}", state.status
            );
            prop_assert_eq!(state.lines.len(), 1, "lines are immutable");
            prop_assert_eq!(state.total(), 10);
        }
    }
}
