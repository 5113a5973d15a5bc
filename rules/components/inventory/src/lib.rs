//! The inventory rules of `shop-rules`, exported as the WIT world `inventory`.

wit_bindgen::generate!({ path: "../../wit", world: "inventory" });

use exports::shop::rules::inventory_rules::Guest;
use shop::rules::clock;
use shop::rules::inventory_types as wit;
use shop_rules::inventory;
use shop_rules::mirror::Mirror;

shop_rules::mirror_common!(crate::shop::rules::common);
shop_rules::mirror_inventory_types!(crate::shop::rules::inventory_types);

struct InventoryRules;

impl Guest for InventoryRules {
    fn decide(
        state: wit::InventoryState,
        command: wit::InventoryCommand,
    ) -> Result<wit::Decision, wit::InventoryRejection> {
        inventory::decide(&state.mirror(), &command.mirror(), clock::now_ms())
            .map(Mirror::mirror)
            .map_err(Mirror::mirror)
    }

    fn evolve(state: wit::InventoryState, event: wit::InventoryEvent) -> wit::InventoryState {
        inventory::evolve(state.mirror(), &event.mirror()).mirror()
    }
}

// Exported only from the WebAssembly component: on the host the crate is a
// plain library (its tests, `cargo build --workspace`), and host linkers
// refuse the component model's export names.
#[cfg(target_family = "wasm")]
export!(InventoryRules);
