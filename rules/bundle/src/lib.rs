//! The rule components that ship inside the `shop` binary.
//!
//! `build.rs` compiles the guest crates under `rules/` for `wasm32-wasip2`
//! (with a nested cargo and its own target directory, so it never waits on
//! the outer build's lock) and this crate embeds the resulting components.
//! The host loads these unless a rules directory overrides them. This crate
//! holds bytes only and depends on nothing: whoever wires the host turns
//! them into sources (`RuleSource::builtin(c.name, c.wasm)`).

/// A component as shipped: a name for humans and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct BundledComponent {
    pub name: &'static str,
    pub wasm: &'static [u8],
}

/// The core order rules (world `order`).
pub const ORDER: BundledComponent = BundledComponent {
    name: "order",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/shop_order_rules.wasm")),
};

/// The core inventory rules (world `inventory`).
pub const INVENTORY: BundledComponent = BundledComponent {
    name: "inventory",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/shop_inventory_rules.wasm")),
};

/// The example policy plugin (world `policy`); not loaded unless asked for.
pub const PURCHASE_LIMIT: BundledComponent = BundledComponent {
    name: "purchase-limit",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/shop_purchase_limit.wasm")),
};

/// The components the host loads by default.
pub const DEFAULT: [BundledComponent; 2] = [ORDER, INVENTORY];

/// Test fixtures, built only with the `fixtures` feature.
#[cfg(feature = "fixtures")]
pub mod fixtures {
    use super::BundledComponent;

    /// Order rules that loop, hog memory, panic or overflow the stack on demand.
    pub const ROGUE_ORDER: BundledComponent = BundledComponent {
        name: "rogue",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/shop_rogue_rules.wasm")),
    };

    /// A policy built against `shop:rules@0.2.0`, the contract's previous
    /// minor version: refuses customer `blocked`.
    pub const PREVIOUS_MINOR_POLICY: BundledComponent = BundledComponent {
        name: "previous-minor",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/shop_previous_minor.wasm")),
    };

    /// A policy built against a future `shop:rules@0.2.2` that adds
    /// `log.flush`: refuses customer `blocked`, calls `log.flush` for
    /// customer `flushes`.
    pub const NEXT_MINOR_POLICY: BundledComponent = BundledComponent {
        name: "next-minor",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/shop_next_minor.wasm")),
    };
}
