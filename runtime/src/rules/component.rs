//! One loaded component: its identity, its pre-instantiation, and a pool of
//! ready instances that calls borrow.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use super::bindings::{inventory_world, order_world, policy_world};
use super::error::{FaultKind, LoadError, RuleFault};
use super::imports::{Capabilities, HostState};
use super::release::RuleMode;

/// Which contract a component fulfils, recognised from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    Order,
    Inventory,
    Policy,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 3] = [ComponentKind::Order, ComponentKind::Inventory, ComponentKind::Policy];

    /// The fully qualified interface a component of this kind exports, at
    /// the contract version this host implements.
    pub fn export(self) -> &'static str {
        match self {
            ComponentKind::Order => concat!("shop:rules/order-rules@", contract_version!()),
            ComponentKind::Inventory => concat!("shop:rules/inventory-rules@", contract_version!()),
            ComponentKind::Policy => concat!("shop:rules/order-policy@", contract_version!()),
        }
    }
}

impl ComponentKind {
    /// Whether `export` is this kind's interface at a version this host
    /// runs: the same `0.MAJOR` (any MINOR), as WIT versions are read here.
    pub(crate) fn fulfilled_by(self, export: &str) -> bool {
        let wanted = self.export();
        match (export.split_once('@'), wanted.split_once('@')) {
            (Some((interface, version)), Some((wanted_interface, wanted_version))) => {
                interface == wanted_interface && major(version) == major(wanted_version)
            }
            _ => false,
        }
    }
}

/// The part of a contract version that must match: `0.N` while the
/// contract is at 0 (its `0.MAJOR.MINOR` scheme), else the first number.
pub(crate) fn major(version: &str) -> &str {
    let mut dots = version.match_indices('.').map(|(at, _)| at);
    let cut = match version.starts_with("0.") {
        true => dots.nth(1),
        false => dots.next(),
    };
    cut.map_or(version, |at| &version[..at])
}

/// Whether `version` is a later minor version of the same major as `host`'s.
pub(crate) fn later_minor(version: &str, host: &str) -> bool {
    let minor = |v: &str| v.get(major(v).len() + 1..).and_then(|m| m.parse::<u32>().ok());
    major(version) == major(host) && minor(version) > minor(host)
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ComponentKind::Order => "order",
            ComponentKind::Inventory => "inventory",
            ComponentKind::Policy => "policy",
        })
    }
}

/// Which component decided: stamped on every decision for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleStamp {
    pub name: Arc<str>,
    /// The published version; 0 for a component that was not published
    /// (built in, or read from the rules directory).
    pub version: u32,
    /// Hex SHA-256 of the component's bytes.
    pub hash: Arc<str>,
}

impl fmt::Display for RuleStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = &self.hash[..12.min(self.hash.len())];
        match self.version {
            0 => write!(f, "{}@{hash}", self.name),
            version => write!(f, "{} v{version}@{hash}", self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub stamp: RuleStamp,
    pub role: ComponentKind,
    /// Deciding, or answering beside the active version in shadow.
    pub mode: RuleMode,
    /// Where it came from: `builtin`, `store` or a file path.
    pub origin: String,
    /// Whether its compiled code came from the on-disk cache.
    pub from_cache: bool,
}

/// The world-specific glue between a component and the generic pool.
pub(crate) trait World: 'static {
    type Pre: Send + Sync;
    type Bindings: Send;
    const ROLE: ComponentKind;
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()>;
    fn pre(instance: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings>;
}

pub(crate) struct OrderWorld;
pub(crate) struct InventoryWorld;
pub(crate) struct PolicyWorld;

impl World for OrderWorld {
    type Pre = order_world::OrderPre<HostState>;
    type Bindings = order_world::Order;
    const ROLE: ComponentKind = ComponentKind::Order;
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        order_world::Order::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
    }
    fn pre(instance: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        order_world::OrderPre::new(instance)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
}

impl World for InventoryWorld {
    type Pre = inventory_world::InventoryPre<HostState>;
    type Bindings = inventory_world::Inventory;
    const ROLE: ComponentKind = ComponentKind::Inventory;
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        inventory_world::Inventory::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
    }
    fn pre(instance: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        inventory_world::InventoryPre::new(instance)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
}

impl World for PolicyWorld {
    type Pre = policy_world::PolicyPre<HostState>;
    type Bindings = policy_world::Policy;
    const ROLE: ComponentKind = ComponentKind::Policy;
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        policy_world::Policy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
    }
    fn pre(instance: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        policy_world::PolicyPre::new(instance)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
}

/// Per-call limits, the same for every component of a host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    pub timeout: Duration,
    /// Epoch ticks the timeout spans (the host's ticker advances the epoch).
    pub deadline_ticks: u64,
    pub memory_limit: usize,
    /// Most idle instances kept per component.
    pub pool_size: usize,
}

struct Slot<B> {
    store: Store<HostState>,
    bindings: B,
}

/// A component ready to serve calls.
pub(crate) struct Loaded<W: World> {
    pub info: ComponentInfo,
    engine: Engine,
    pre: W::Pre,
    capabilities: Capabilities,
    config: Arc<BTreeMap<String, String>>,
    limits: CallLimits,
    idle: Mutex<Vec<Slot<W::Bindings>>>,
}

impl<W: World> Loaded<W> {
    /// Links and pre-instantiates `component`; fails if it does not fit the
    /// world's contract (missing or mistyped exports).
    pub fn new(
        engine: &Engine,
        component: &Component,
        info: ComponentInfo,
        capabilities: Capabilities,
        config: Arc<BTreeMap<String, String>>,
        limits: CallLimits,
    ) -> Result<Self, LoadError> {
        let mismatch = |reason: wasmtime::Error| LoadError::ContractMismatch {
            name: info.stamp.name.to_string(),
            contract: W::ROLE.export(),
            reason: format!("{reason:#}"),
        };
        let mut linker = Linker::new(engine);
        W::add_to_linker(&mut linker).map_err(mismatch)?;
        // Std guests import WASI interfaces they never call; rules get none of
        // them, so any such call traps instead of reaching the host system.
        stub_foreign_imports(&mut linker, component, engine).map_err(mismatch)?;
        let instance = linker.instantiate_pre(component).map_err(mismatch)?;
        let pre = W::pre(instance).map_err(mismatch)?;
        let loaded = Self {
            info,
            engine: engine.clone(),
            pre,
            capabilities,
            config,
            limits,
            idle: Mutex::new(Vec::new()),
        };
        // Instantiate once now: a component that cannot start fails the load,
        // not the first call.
        let slot = loaded.fresh().map_err(|fault| LoadError::Start {
            name: loaded.info.stamp.name.to_string(),
            reason: fault.kind.to_string(),
        })?;
        loaded.park(slot);
        Ok(loaded)
    }

    pub fn stamp(&self) -> &RuleStamp {
        &self.info.stamp
    }

    /// Runs `call` on an idle instance (or a new one) under the CPU deadline
    /// and memory cap. An instance that faulted is dropped, never reused.
    pub fn call<R>(
        &self,
        call: impl FnOnce(&W::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, RuleFault> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut slot = match idle {
            Some(slot) => slot,
            None => self.fresh()?,
        };
        slot.store.set_epoch_deadline(self.limits.deadline_ticks);
        match call(&slot.bindings, &mut slot.store) {
            Ok(value) => {
                self.park(slot);
                Ok(value)
            }
            Err(error) => Err(self.fault(&slot.store, error)),
        }
    }

    fn park(&self, slot: Slot<W::Bindings>) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.limits.pool_size
        {
            idle.push(slot);
        }
    }

    fn fresh(&self) -> Result<Slot<W::Bindings>, RuleFault> {
        let state = HostState::new(
            Arc::clone(&self.info.stamp.name),
            &self.capabilities,
            Arc::clone(&self.config),
            self.limits.memory_limit,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(self.limits.deadline_ticks);
        match W::instantiate(&self.pre, &mut store) {
            Ok(bindings) => Ok(Slot { store, bindings }),
            Err(error) => Err(self.fault(&store, error)),
        }
    }

    fn fault(&self, store: &Store<HostState>, error: wasmtime::Error) -> RuleFault {
        let kind = if store.data().memory.hit {
            FaultKind::MemoryLimit(self.limits.memory_limit)
        } else {
            match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => FaultKind::Timeout(self.limits.timeout),
                Some(Trap::StackOverflow) => FaultKind::StackOverflow,
                Some(trap) => FaultKind::Trap(trap.to_string()),
                None => FaultKind::Trap(format!("{error:#}")),
            }
        };
        let fault = RuleFault {
            component: self.info.stamp.to_string(),
            kind,
        };
        tracing::warn!(target: "shop::rules", %fault, "rule call failed; instance discarded");
        fault
    }
}

/// Defines every import of `component` outside the rule contract as
/// functions that trap and resources that hold nothing.
///
/// Wasmtime's `define_unknown_imports_as_traps` would do it, but it looks
/// names up exactly: a component built against an earlier minor version
/// (`shop:rules/log@0.2.0`) would get traps where the host's
/// `shop:rules/log@0.2.1` serves it by semver. The contract's own imports
/// are left to the linker, which matches them by semver, except for what a
/// component of a later minor version imports that this host lacks: that
/// traps when called (a later minor only adds), so the component loads and
/// runs as long as it does not call it. Imports of another major fail the
/// load, naming what is missing.
fn stub_foreign_imports(
    linker: &mut Linker<HostState>,
    component: &Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::{LinkerInstance, ResourceType};

    fn stub(
        linker: &mut LinkerInstance<'_, HostState>,
        name: &str,
        item: &ComponentItem,
        path: &str,
        engine: &Engine,
    ) -> wasmtime::Result<()> {
        match item {
            ComponentItem::ComponentFunc(_) => {
                let qualified = format!("{path}#{name}");
                linker.func_new(name, move |_, _, _, _| {
                    wasmtime::bail!("unknown import: `{qualified}` is not lent to rules")
                })
            }
            ComponentItem::Resource(_) => linker.resource(name, ResourceType::host::<()>(), |_, _| Ok(())),
            ComponentItem::ComponentInstance(instance) => {
                let mut nested = linker.instance(name)?;
                for (export, item) in instance.exports(engine) {
                    stub(&mut nested, export, &item.ty, name, engine)?;
                }
                Ok(())
            }
            ComponentItem::CoreFunc(_)
            | ComponentItem::Module(_)
            | ComponentItem::Component(_)
            | ComponentItem::Type(_) => Ok(()),
        }
    }

    let host = contract_version!();
    let mut root = linker.root();
    for (name, item) in component.component_type().imports(engine) {
        match name.strip_prefix("shop:rules/").and_then(|rest| rest.split_once('@')) {
            None => stub(&mut root, name, &item.ty, name, engine)?,
            Some((interface, version)) if later_minor(version, host) => {
                let ComponentItem::ComponentInstance(imported) = &item.ty else {
                    continue;
                };
                // Into the host's own version of the interface, which the
                // linker serves the later one from.
                let mut ours = root.instance(&format!("shop:rules/{interface}@{host}"))?;
                for (export, item) in imported.exports(engine) {
                    // Fails only for a name the host defines: its own stays.
                    let _ = stub(&mut ours, export, &item.ty, name, engine);
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}
