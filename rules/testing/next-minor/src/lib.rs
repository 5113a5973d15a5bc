//! Test fixture: a policy built against a future `shop:rules@0.2.2` (its
//! own copy of the contract, in `wit/`), which adds `log.flush`, to prove
//! that a host of an earlier 0.2 version still loads it. It refuses orders
//! of customer `blocked`, and calls `log.flush`, which the host lacks, for
//! customer `flushes`.

wit_bindgen::generate!({ path: "wit", world: "policy" });

use exports::shop::rules::order_policy::{Guest, Violation};
use shop::rules::log;
use shop::rules::order_types::PlaceOrder;

struct NextMinor;

impl Guest for NextMinor {
    fn check(order: PlaceOrder) -> Result<(), Violation> {
        if log::enabled(log::Level::Debug) {
            log::write(log::Level::Debug, &format!("checking {}", order.order_id));
        }
        match order.customer_id.as_str() {
            "blocked" => Err(Violation {
                code: "blocked".into(),
                message: "this customer may not order".into(),
            }),
            "flushes" => {
                log::flush();
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(target_family = "wasm")]
export!(NextMinor);
