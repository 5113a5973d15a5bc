//! Host-side bindings for the three worlds, sharing one set of types.
//!
//! Each world gets its own `bindgen!`; `with` makes the inventory and policy
//! worlds reuse the order world's modules for the interfaces they share, so
//! the capability traits are implemented once and the types are one.

pub mod order_world {
    wasmtime::component::bindgen!({
        path: "../rules/wit",
        world: "order",
    });
}

pub mod inventory_world {
    wasmtime::component::bindgen!({
        path: "../rules/wit",
        world: "inventory",
        with: {
            "shop:rules/clock": super::order_world::shop::rules::clock,
            "shop:rules/log": super::order_world::shop::rules::log,
            "shop:rules/common": super::order_world::shop::rules::common,
        },
    });
}

pub mod policy_world {
    wasmtime::component::bindgen!({
        path: "../rules/wit",
        world: "policy",
        with: {
            "shop:rules/clock": super::order_world::shop::rules::clock,
            "shop:rules/log": super::order_world::shop::rules::log,
            "shop:rules/config": super::order_world::shop::rules::config,
            "shop:rules/common": super::order_world::shop::rules::common,
            "shop:rules/order-types": super::order_world::shop::rules::order_types,
        },
    });
}

pub use inventory_world::shop::rules::inventory_types;
pub use order_world::shop::rules::{common, order_types};

shop_rules::mirror_common!(crate::rules::bindings::common);
shop_rules::mirror_order_types!(crate::rules::bindings::order_types);
shop_rules::mirror_inventory_types!(crate::rules::bindings::inventory_types);
