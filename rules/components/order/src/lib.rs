//! The order rules of `shop-rules`, exported as the WIT world `order`.
//!
//! A thin shell: convert the bindings to domain types, decide, convert back.
//! The clock and the reservation TTL come from the host's imports, asked only
//! when a rule needs them.

wit_bindgen::generate!({ path: "../../wit", world: "order" });

use exports::shop::rules::order_rules::Guest;
use shop::rules::order_types as wit;
use shop::rules::{clock, config, log};
use shop_rules::mirror::Mirror;
use shop_rules::{DEFAULT_RESERVATION_TTL_MS, order};

shop_rules::mirror_common!(crate::shop::rules::common);
shop_rules::mirror_order_types!(crate::shop::rules::order_types);

/// Config key for the reservation time-to-live, in milliseconds.
const TTL_KEY: &str = "reservation-ttl-ms";

struct HostEnv;

impl shop_rules::Env for HostEnv {
    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }

    fn reservation_ttl_ms(&self) -> i64 {
        match config::get(TTL_KEY).map(|v| v.parse::<i64>()) {
            None => DEFAULT_RESERVATION_TTL_MS,
            Some(Ok(ttl)) if ttl >= 0 => ttl,
            Some(_) => {
                log::write(
                    log::Level::Warn,
                    &format!("{TTL_KEY} is not a non-negative integer; using the default"),
                );
                DEFAULT_RESERVATION_TTL_MS
            }
        }
    }
}

struct OrderRules;

impl Guest for OrderRules {
    fn decide(
        state: Option<wit::Order>,
        command: wit::OrderCommand,
    ) -> Result<Vec<wit::OrderEvent>, wit::OrderRejection> {
        let state: Option<order::Order> = state.mirror();
        order::decide(state.as_ref(), &command.mirror(), &HostEnv)
            .map(Mirror::mirror)
            .map_err(Mirror::mirror)
    }

    fn evolve(state: Option<wit::Order>, event: wit::OrderEvent) -> Option<wit::Order> {
        order::evolve(state.mirror(), &event.mirror()).mirror()
    }
}

// Exported only from the WebAssembly component: on the host the crate is a
// plain library (its tests, `cargo build --workspace`), and host linkers
// refuse the component model's export names.
#[cfg(target_family = "wasm")]
export!(OrderRules);
