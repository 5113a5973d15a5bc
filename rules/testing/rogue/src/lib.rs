//! Order rules that misbehave when the customer id asks them to: `loop`
//! spins forever, `hog` allocates without bound, `panic` panics, `recurse`
//! overflows the stack. Any other order is decided by the real rules, so a
//! test can show the host still serves after each misdeed.

wit_bindgen::generate!({ path: "../../wit", world: "order" });

use exports::shop::rules::order_rules::Guest;
use shop::rules::clock;
use shop::rules::order_types as wit;
use shop_rules::mirror::Mirror;
use shop_rules::order;

shop_rules::mirror_common!(crate::shop::rules::common);
shop_rules::mirror_order_types!(crate::shop::rules::order_types);

struct HostClock;

impl shop_rules::Env for HostClock {
    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

fn misbehave(customer: &str) {
    match customer {
        "loop" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("rogue rules panicked on purpose"),
        "recurse" => {
            std::hint::black_box(recurse(0));
        }
        _ => {}
    }
}

struct RogueRules;

impl Guest for RogueRules {
    fn decide(
        state: Option<wit::Order>,
        command: wit::OrderCommand,
    ) -> Result<Vec<wit::OrderEvent>, wit::OrderRejection> {
        if let wit::OrderCommand::Place(place) = &command {
            misbehave(&place.customer_id);
        }
        let state: Option<order::Order> = state.mirror();
        order::decide(state.as_ref(), &command.mirror(), &HostClock)
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
export!(RogueRules);
