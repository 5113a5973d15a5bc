//! The rules host: runs the domain rules as sandboxed WebAssembly components.
//!
//! Components implement one of the worlds of `rules/wit/shop-rules.wit`
//! (`order`, `inventory` or `policy`); the host recognises which from what a
//! component exports. Every call runs on a pre-instantiated, reused instance
//! under a CPU deadline (epoch interruption) and a memory cap; a trap, a
//! timeout or a memory hit becomes a [`RuleFault`] and the instance is
//! thrown away, so a rule can never crash or hang the host. Compiled code is
//! cached on disk by content hash and authenticated; a rules directory's
//! components run only when [`RuleTrust`] admits them. [`RuleHost::reload`] swaps in changed
//! components atomically: calls in flight finish on the version they started.

/// The contract version this host implements: the WIT package's version,
/// as a literal so that export names can be built from it with `concat!`.
macro_rules! contract_version {
    () => {
        "0.2.1"
    };
}

mod bindings;
mod cache;
mod component;
mod error;
mod fleet;
mod host;
mod imports;
mod release;
mod shadow;
mod source;
mod trust;

pub use component::{ComponentInfo, ComponentKind, RuleStamp};
pub use error::{FaultKind, LoadError, PolicyViolation, RuleError, RuleFault};
pub use fleet::{FleetError, Published, RuleFleet};
pub use host::{Decided, ReloadReport, RuleHost, RuleSettings, WatchHandle};
pub use imports::Capabilities;
pub use release::{PublishedVersion, Release, ReleaseError, RuleMode};
pub use shadow::{DEFAULT_SHADOW_PER_SECOND, MAX_SHADOW_PER_SECOND};
pub use source::RuleSource;
pub use trust::RuleTrust;

/// The contract version this host implements (the WIT package version).
pub const CONTRACT_VERSION: &str = contract_version!();

#[cfg(test)]
mod tests {
    use super::{CONTRACT_VERSION, ComponentKind};

    #[test]
    fn versions_match_on_their_major_part() {
        use super::component::major;
        assert_eq!(major("0.2.1"), "0.2");
        assert_eq!(major("0.2"), "0.2");
        assert_eq!(major("1.4.0"), "1");
        assert!(ComponentKind::Policy.fulfilled_by("shop:rules/order-policy@0.2.0"));
        assert!(ComponentKind::Policy.fulfilled_by("shop:rules/order-policy@0.2.9"));
        assert!(!ComponentKind::Policy.fulfilled_by("shop:rules/order-policy@0.3.0"));
        assert!(!ComponentKind::Policy.fulfilled_by("shop:rules/order-rules@0.2.1"));
        assert!(!ComponentKind::Policy.fulfilled_by("shop:rules/order-policy"));
    }

    #[test]
    fn later_minors_are_told_apart_from_earlier_ones_and_other_majors() {
        use super::component::later_minor;
        assert!(later_minor("0.2.2", "0.2.1"));
        assert!(later_minor("0.2.10", "0.2.9"));
        assert!(!later_minor("0.2.0", "0.2.1"));
        assert!(!later_minor("0.2.1", "0.2.1"));
        assert!(!later_minor("0.3.5", "0.2.1"));
        assert!(!later_minor("0.2.x", "0.2.1"));
    }

    #[test]
    fn the_contract_version_is_the_wit_package_version() {
        let wit = include_str!("../../../rules/wit/shop-rules.wit");
        let package = wit
            .lines()
            .find_map(|line| line.trim().strip_prefix("package "))
            .expect("the WIT file declares its package");
        assert_eq!(package, format!("shop:rules@{CONTRACT_VERSION};"));
        for kind in ComponentKind::ALL {
            assert!(
                kind.export().ends_with(&format!("@{CONTRACT_VERSION}")),
                "{}",
                kind.export()
            );
        }
    }
}
