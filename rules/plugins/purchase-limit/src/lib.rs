//! Example policy plugin: a customer may buy at most N units of one product
//! per UTC day.
//!
//! It keeps one counter per customer, product and day in the host's key-value
//! store and raises it atomically, so concurrent orders cannot both slip
//! under the limit. An order that would cross the limit gives back what it
//! took and is refused. Settings (host config for this component):
//! - `max-units-per-day`: the limit (default 10);
//! - `on-store-error`: `allow` (default: intake survives a store outage) or `deny`.
//!
//! Counters are raised before the order is stored, so an order that fails
//! later still counts against the day: the policy errs on the strict side.

wit_bindgen::generate!({ path: "../../wit", world: "policy" });

use exports::shop::rules::order_policy::{Guest, Violation};
use shop::rules::order_types::PlaceOrder;
use shop::rules::{clock, config, kv, log};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const DEFAULT_LIMIT: i64 = 10;

struct PurchaseLimit;

impl Guest for PurchaseLimit {
    fn check(order: PlaceOrder) -> Result<(), Violation> {
        let limit = setting("max-units-per-day").unwrap_or(DEFAULT_LIMIT);
        let day = clock::now_ms().div_euclid(DAY_MS);
        let mut taken: Vec<(String, i64)> = Vec::with_capacity(order.lines.len());
        for line in &order.lines {
            let key = format!("{}/{}/{day}", order.customer_id, line.product_id);
            match kv::increment(&key, line.quantity, Some(2 * DAY_MS as u64)) {
                Ok(total) => {
                    taken.push((key, line.quantity));
                    if total > limit {
                        give_back(&taken);
                        return Err(Violation {
                            code: "purchase-limit".into(),
                            message: format!(
                                "customer {} may buy at most {limit} units of {} per day; this order would make {total}",
                                order.customer_id, line.product_id
                            ),
                        });
                    }
                }
                Err(error) => {
                    give_back(&taken);
                    return on_store_error(error);
                }
            }
        }
        Ok(())
    }
}

fn setting(key: &str) -> Option<i64> {
    let value = config::get(key)?;
    let parsed = value.parse().ok();
    if parsed.is_none() {
        log::write(
            log::Level::Warn,
            &format!("{key}={value:?} is not a number; using the default"),
        );
    }
    parsed
}

fn give_back(taken: &[(String, i64)]) {
    for (key, quantity) in taken {
        if let Err(error) = kv::increment(key, -quantity, None) {
            log::write(
                log::Level::Warn,
                &format!("could not give back {quantity} on {key}: {error:?}"),
            );
        }
    }
}

fn on_store_error(error: kv::KvError) -> Result<(), Violation> {
    let deny = config::get("on-store-error").as_deref() == Some("deny");
    log::write(
        log::Level::Warn,
        &format!(
            "purchase limit not checked, store failed: {error:?}; {}",
            if deny { "denying" } else { "allowing" }
        ),
    );
    if deny {
        Err(Violation {
            code: "policy-unavailable".into(),
            message: "the purchase limit cannot be checked right now".into(),
        })
    } else {
        Ok(())
    }
}

// Exported only from the WebAssembly component: on the host the crate is a
// plain library (its tests, `cargo build --workspace`), and host linkers
// refuse the component model's export names.
#[cfg(target_family = "wasm")]
export!(PurchaseLimit);
