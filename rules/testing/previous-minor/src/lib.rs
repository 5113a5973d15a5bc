//! Test fixture: a policy built against `shop:rules@0.2.0` (its own copy of
//! that contract, in `wit/`), to prove that hosts of later 0.2 versions
//! still run it. It refuses orders of customer `blocked` and logs each check.

wit_bindgen::generate!({ path: "wit", world: "policy" });

use exports::shop::rules::order_policy::{Guest, Violation};
use shop::rules::log;
use shop::rules::order_types::PlaceOrder;

struct PreviousMinor;

impl Guest for PreviousMinor {
    fn check(order: PlaceOrder) -> Result<(), Violation> {
        log::write(log::Level::Debug, &format!("checking {}", order.order_id));
        if order.customer_id == "blocked" {
            return Err(Violation {
                code: "blocked".into(),
                message: "this customer may not order".into(),
            });
        }
        Ok(())
    }
}

#[cfg(target_family = "wasm")]
export!(PreviousMinor);
