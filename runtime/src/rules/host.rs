//! [`RuleHost`]: the active rule set, its reloads, and the typed calls.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use shop_rules::inventory::{Decision, InventoryCommand, InventoryEvent, InventoryRejection, InventoryState};
use shop_rules::mirror::Mirror;
use shop_rules::order::{Order, OrderCommand, OrderEvent, OrderRejection, PlaceOrder};
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use super::bindings::{inventory_types, inventory_world, order_types, order_world, policy_world};
use super::cache::CodeCache;
use super::component::{
    CallLimits, ComponentInfo, ComponentKind, InventoryWorld, Loaded, OrderWorld, PolicyWorld, RuleStamp,
};
use super::error::{LoadError, PolicyViolation, RuleError, RuleFault};
use super::imports::{Capabilities, HostState};
use super::release::RuleMode;
use super::shadow::{DEFAULT_SHADOW_PER_SECOND, DryRunKv, RecordingClock, ReplayClock, ShadowLog};
use super::source::{self, RuleSource};
use super::trust::RuleTrust;
use crate::audit::{Actor, AuditRecord};
use crate::metrics::{Metrics, Timer};
use crate::ports::Disagreement;

/// How often the epoch advances; call deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct RuleSettings {
    /// Components shipped with the binary; loaded unless the directory overrides them.
    pub builtin: Vec<RuleSource>,
    /// A directory of `.wasm` components: an order or inventory component here
    /// replaces the built-in one, policies here are added.
    pub dir: Option<PathBuf>,
    /// Where compiled code is cached between runs; `None` compiles every start.
    pub cache_dir: Option<PathBuf>,
    /// The key cached code is authenticated with (kept apart from the cache
    /// directory); `None`: a random one of this process, so the cache only
    /// serves reloads and hosts within it.
    pub cache_key: Option<[u8; 32]>,
    /// Which directory components may be loaded; `None` loads any
    /// (development). Built-in components are part of the binary.
    pub trust: Option<RuleTrust>,
    /// CPU budget of one call.
    pub call_timeout: Duration,
    /// Linear memory one instance may use.
    pub memory_limit: usize,
    /// Idle instances kept per component for reuse.
    pub pool_size: usize,
    /// A candidate in shadow answers one call in this many (1: every call),
    /// so that trying a version costs a share of its calls' time.
    pub shadow_every: u64,
    /// And candidates answer at most this many calls a second in all
    /// (at most [`super::MAX_SHADOW_PER_SECOND`]): what bounds their cost under load.
    pub shadow_per_second: u64,
    /// Settings each component reads through its `config` import, by component name.
    pub component_config: BTreeMap<String, BTreeMap<String, String>>,
    /// Where call times are counted.
    pub metrics: Metrics,
}

impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            builtin: Vec::new(),
            dir: None,
            cache_dir: None,
            cache_key: None,
            trust: None,
            call_timeout: Duration::from_millis(100),
            memory_limit: 64 << 20,
            pool_size: 16,
            shadow_every: 1,
            shadow_per_second: DEFAULT_SHADOW_PER_SECOND,
            component_config: BTreeMap::new(),
            metrics: Metrics::default(),
        }
    }
}

/// An answer from the rules, stamped with the component that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<T> {
    pub value: T,
    pub rule: RuleStamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub active: Vec<ComponentInfo>,
    /// Components compiled and installed by this reload (new or changed).
    pub loaded: Vec<RuleStamp>,
    /// Components that were active before and are not any more.
    pub retired: Vec<RuleStamp>,
}

impl ReloadReport {
    /// The audit log's account of the reload, as `actor` did it at `at`:
    /// each component activated and each retired, by name and hash.
    pub fn audit(&self, actor: &Actor, at: i64) -> Vec<AuditRecord> {
        let record = |action: &str, stamp: &RuleStamp| {
            let detail = serde_json::json!({ "hash": &*stamp.hash, "version": stamp.version });
            actor.did("rules", action, format!("rule:{}", stamp.name), at, &detail)
        };
        let retired = self.retired.iter().map(|stamp| record("rule.retire", stamp));
        let loaded = self.loaded.iter().map(|stamp| record("rule.activate", stamp));
        retired.chain(loaded).collect()
    }
}

#[derive(Clone)]
enum AnyLoaded {
    Order(Arc<Loaded<OrderWorld>>),
    Inventory(Arc<Loaded<InventoryWorld>>),
    Policy(Arc<Loaded<PolicyWorld>>),
}

impl AnyLoaded {
    fn info(&self) -> &ComponentInfo {
        match self {
            Self::Order(c) => &c.info,
            Self::Inventory(c) => &c.info,
            Self::Policy(c) => &c.info,
        }
    }
}

struct RuleSet {
    order: Arc<Loaded<OrderWorld>>,
    inventory: Arc<Loaded<InventoryWorld>>,
    policies: Vec<Arc<Loaded<PolicyWorld>>>,
    /// Candidates answering beside the active components, never acted on.
    shadow: Shadows,
    /// The rules directory as it was when this set was read from it.
    fingerprint: source::Fingerprint,
}

#[derive(Default)]
struct Shadows {
    order: Option<Arc<Loaded<OrderWorld>>>,
    inventory: Option<Arc<Loaded<InventoryWorld>>>,
    policies: Vec<Arc<Loaded<PolicyWorld>>>,
}

impl RuleSet {
    /// The active components, then the shadows.
    fn components(&self) -> Vec<AnyLoaded> {
        let mut all = vec![
            AnyLoaded::Order(Arc::clone(&self.order)),
            AnyLoaded::Inventory(Arc::clone(&self.inventory)),
        ];
        all.extend(self.policies.iter().cloned().map(AnyLoaded::Policy));
        all.extend(self.shadow.order.iter().cloned().map(AnyLoaded::Order));
        all.extend(self.shadow.inventory.iter().cloned().map(AnyLoaded::Inventory));
        all.extend(self.shadow.policies.iter().cloned().map(AnyLoaded::Policy));
        all
    }
}

/// Turns sources into loaded components.
struct Loader {
    engine: Engine,
    settings: RuleSettings,
    capabilities: Capabilities,
    /// What candidates in shadow get: the same, read-only, on the active call's clock.
    shadow_capabilities: Capabilities,
    limits: CallLimits,
    cache: Option<CodeCache>,
    /// Compiled code of every source of the last load and of the set it
    /// replaced, active or overridden, by content hash: a reload recompiles
    /// only what changed, and a rollback to the previous set nothing.
    compiled: Mutex<HashMap<String, Component>>,
}

/// Loads rule components and runs calls on them. Share it behind an `Arc`.
pub struct RuleHost {
    loader: Loader,
    current: RwLock<Arc<RuleSet>>,
    /// The versions the deployment's rule store says run, last installed.
    published: Mutex<Vec<RuleSource>>,
    shadow_log: ShadowLog,
    reloading: Mutex<()>,
    _ticker: mpsc::Sender<()>,
}

impl std::fmt::Debug for RuleHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleHost")
            .field("components", &self.components())
            .finish_non_exhaustive()
    }
}

impl RuleHost {
    /// Compiles (or loads from the cache) and pre-instantiates every component.
    pub fn start(settings: RuleSettings, capabilities: Capabilities) -> Result<Self, LoadError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let ticker = spawn_ticker(engine.clone())?;
        let timeout_ticks = settings.call_timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        let limits = CallLimits {
            timeout: settings.call_timeout,
            // +1: the tick in progress when the call starts may be nearly over.
            deadline_ticks: u64::try_from(timeout_ticks).unwrap_or(u64::MAX / 2) + 1,
            memory_limit: settings.memory_limit,
            pool_size: settings.pool_size,
        };
        let cache = settings
            .cache_dir
            .as_deref()
            .and_then(|dir| CodeCache::new(dir, &engine, settings.cache_key));
        let shadow_log = ShadowLog::new(
            settings.metrics.clone(),
            Arc::clone(&capabilities.clock),
            settings.shadow_every,
            settings.shadow_per_second,
        );
        let shadow_capabilities = Capabilities {
            clock: Arc::new(ReplayClock(Arc::clone(&capabilities.clock))),
            kv: Arc::new(DryRunKv(Arc::clone(&capabilities.kv))),
            namespace: capabilities.namespace.clone(),
        };
        let capabilities = Capabilities {
            clock: Arc::new(RecordingClock(capabilities.clock)),
            ..capabilities
        };
        let loader = Loader {
            engine,
            settings,
            capabilities,
            shadow_capabilities,
            limits,
            cache,
            compiled: Mutex::new(HashMap::new()),
        };
        let set = loader.load_set(&[], &[])?;
        Ok(Self {
            loader,
            current: RwLock::new(Arc::new(set)),
            published: Mutex::new(Vec::new()),
            shadow_log,
            reloading: Mutex::new(()),
            _ticker: ticker,
        })
    }

    fn current(&self) -> Arc<RuleSet> {
        match self.current.read() {
            Ok(set) => Arc::clone(&set),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The components that run: order and inventory first, then policies
    /// by name, then the candidates in shadow.
    pub fn components(&self) -> Vec<ComponentInfo> {
        self.current().components().iter().map(|c| c.info().clone()).collect()
    }

    /// Hands every disagreement of a candidate in shadow to `sink`, as seen
    /// by `instance`. Called from the rule call's thread: keep it quick.
    pub fn on_disagreement(&self, instance: &str, sink: impl Fn(Disagreement) + Send + Sync + 'static) {
        self.shadow_log.set_sink(instance, Arc::new(sink));
    }

    /// Re-reads the rules directory and swaps in what changed. Unchanged
    /// components (same name and hash) keep their compiled code and warm
    /// instances. If anything fails to load, nothing is swapped.
    pub fn reload(&self) -> Result<ReloadReport, LoadError> {
        self.swap(None)
    }

    /// Runs `published` (the deployment's rule store's versions: active
    /// ones over the built-in and directory components of their name, and
    /// candidates in shadow) from now on, with the directory re-read. If
    /// anything fails to load, nothing is swapped and the last published
    /// set stays.
    pub fn install(&self, published: Vec<RuleSource>) -> Result<ReloadReport, LoadError> {
        self.swap(Some(published))
    }

    /// Checks that `published` would load, installing nothing.
    pub fn verify(&self, published: &[RuleSource]) -> Result<(), LoadError> {
        self.loader.load_set(&self.current().components(), published).map(drop)
    }

    fn swap(&self, published: Option<Vec<RuleSource>>) -> Result<ReloadReport, LoadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let mut installed = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.current().components();
        let set = self
            .loader
            .load_set(&before, published.as_deref().unwrap_or(&installed))?;
        if let Some(published) = published {
            *installed = published;
        }
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut current) => *current = Arc::clone(&set),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&set),
        }
        let after = set.components();
        let absent = |from: &[AnyLoaded], other: &[AnyLoaded]| -> Vec<RuleStamp> {
            from.iter()
                .map(|c| c.info().stamp.clone())
                .filter(|stamp| !other.iter().any(|c| &c.info().stamp == stamp))
                .collect()
        };
        let loaded = absent(&after, &before);
        let retired = absent(&before, &after);
        let report = ReloadReport {
            active: after.iter().map(|c| c.info().clone()).collect(),
            loaded,
            retired,
        };
        tracing::info!(target: "shop::rules", loaded = ?report.loaded, retired = ?report.retired, "rules reloaded");
        Ok(report)
    }

    /// Loads `source` as it would be loaded into the rule set, without installing it.
    pub fn inspect(&self, source: &RuleSource) -> Result<ComponentInfo, LoadError> {
        self.loader.load(source, &[]).map(|c| c.info().clone())
    }

    /// Reloads whenever the rules directory changes, until the handle is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) -> WatchHandle {
        self.watch_with(every, |_| {})
    }

    /// [`Self::watch`], telling `on_reload` what each reload changed.
    pub fn watch_with(
        self: &Arc<Self>,
        every: Duration,
        on_reload: impl Fn(&ReloadReport) + Send + 'static,
    ) -> WatchHandle {
        let (stop, stopped) = mpsc::channel::<()>();
        let host: Weak<Self> = Arc::downgrade(self);
        let dir = self.loader.settings.dir.clone();
        // Compare against what the active set was read from, so a change made
        // between start and now is not mistaken for the baseline.
        let mut attempted = self.current().fingerprint.clone();
        thread::Builder::new()
            .name("rules-watch".into())
            .spawn(move || {
                let Some(dir) = dir else { return };
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let Some(host) = host.upgrade() else { return };
                    let now = source::fingerprint(&dir);
                    if now == attempted {
                        continue;
                    }
                    attempted = now;
                    match host.reload() {
                        Ok(report) => on_reload(&report),
                        Err(error) => {
                            tracing::error!(target: "shop::rules", %error, "rules not reloaded; the previous set stays active");
                        }
                    }
                }
            })
            .map_or(WatchHandle { _stop: None }, |_| WatchHandle { _stop: Some(stop) })
    }

    pub fn decide_order(
        &self,
        state: Option<&Order>,
        command: &OrderCommand,
    ) -> Result<Decided<Vec<OrderEvent>>, RuleError<OrderRejection>> {
        let set = self.current();
        let wit_state: Option<order_types::Order> = state.cloned().mirror();
        let wit_command: order_types::OrderCommand = command.clone().mirror();
        self.decide(
            &set.order,
            set.shadow.order.as_ref(),
            |rules: &order_world::Order, store: &mut Store<HostState>| {
                rules
                    .shop_rules_order_rules()
                    .call_decide(store, wit_state.as_ref(), &wit_command)
            },
            || serde_json::json!({ "state": state, "command": command }),
        )
    }

    pub fn evolve_order(&self, state: Option<Order>, event: &OrderEvent) -> Result<Option<Order>, RuleFault> {
        let set = self.current();
        let state: Option<order_types::Order> = state.mirror();
        let event: order_types::OrderEvent = event.clone().mirror();
        let _timer = self.timer(set.order.stamp());
        let next = set.order.call(|rules, store| {
            rules
                .shop_rules_order_rules()
                .call_evolve(store, state.as_ref(), &event)
        })?;
        Ok(next.mirror())
    }

    pub fn decide_inventory(
        &self,
        state: &InventoryState,
        command: &InventoryCommand,
    ) -> Result<Decided<Decision>, RuleError<InventoryRejection>> {
        let set = self.current();
        let wit_state: inventory_types::InventoryState = state.clone().mirror();
        let wit_command: inventory_types::InventoryCommand = command.clone().mirror();
        self.decide(
            &set.inventory,
            set.shadow.inventory.as_ref(),
            |rules: &inventory_world::Inventory, store: &mut Store<HostState>| {
                rules
                    .shop_rules_inventory_rules()
                    .call_decide(store, &wit_state, &wit_command)
            },
            || serde_json::json!({ "state": state, "command": command }),
        )
    }

    /// One decision of `active`; with a `candidate` in shadow, its answer
    /// to the same call (on the clock time the decision read) compared
    /// with it. `input` describes the call for a disagreement's record.
    fn decide<W, Wv, Wr, T, R>(
        &self,
        active: &Loaded<W>,
        candidate: Option<&Arc<Loaded<W>>>,
        decide: impl Fn(&W::Bindings, &mut Store<HostState>) -> wasmtime::Result<Result<Wv, Wr>> + Copy,
        input: impl FnOnce() -> serde_json::Value,
    ) -> Result<Decided<T>, RuleError<R>>
    where
        W: super::component::World,
        Wv: Mirror<T>,
        Wr: Mirror<R>,
        T: serde::Serialize + PartialEq + Clone,
        R: serde::Serialize + PartialEq + Clone,
    {
        RecordingClock::forget();
        let outcome = {
            let _timer = self.timer(active.stamp());
            active.call(decide)?
        };
        let decided = stamped(outcome, active.stamp());
        let Some(candidate) = candidate.filter(|_| self.shadow_log.sampled()) else {
            return decided;
        };
        let answer = candidate.call(decide).map(|outcome| {
            outcome
                .map(|value| value.mirror())
                .map_err(|rejection| rejection.mirror())
        });
        // A decision that faulted has nothing to compare with.
        let active = match &decided {
            Ok(decided) => Ok(decided.value.clone()),
            Err(RuleError::Rejected(rejection)) => Err(rejection.clone()),
            Err(RuleError::Fault(_)) => return decided,
        };
        self.shadow_log.compare(candidate.stamp(), input, &active, answer);
        decided
    }

    pub fn evolve_inventory(&self, state: InventoryState, event: &InventoryEvent) -> Result<InventoryState, RuleFault> {
        let set = self.current();
        let state: inventory_types::InventoryState = state.mirror();
        let event: inventory_types::InventoryEvent = event.clone().mirror();
        let _timer = self.timer(set.inventory.stamp());
        let next = set
            .inventory
            .call(|rules, store| rules.shop_rules_inventory_rules().call_evolve(store, &state, &event))?;
        Ok(next.mirror())
    }

    fn timer(&self, stamp: &RuleStamp) -> Timer {
        self.loader.settings.metrics.rule_call(&stamp.name)
    }

    /// Runs every loaded policy, in name order; the first refusal wins.
    /// Answers with the stamps of the policies that allowed the order.
    ///
    /// Candidates in shadow run first, so that they read the state the
    /// active policies read before those change it. Each is compared with
    /// the active policy of its name (a new policy with "allowed"); when an
    /// earlier policy refused and that one never ran, there is nothing to
    /// compare and nothing is counted.
    pub fn check_policies(&self, place: &PlaceOrder) -> Result<Vec<RuleStamp>, RuleError<PolicyViolation>> {
        let set = self.current();
        let order: order_types::PlaceOrder = place.clone().mirror();
        let check = |rules: &policy_world::Policy, store: &mut Store<HostState>| {
            rules.shop_rules_order_policy().call_check(store, &order)
        };
        let sampled = !set.shadow.policies.is_empty() && self.shadow_log.sampled();
        let candidates: Vec<_> = set
            .shadow
            .policies
            .iter()
            .filter(|_| sampled)
            .map(|candidate| {
                (
                    candidate,
                    candidate.call(check).map(|verdict| verdict.map_err(|v| v.code)),
                )
            })
            .collect();
        // The policies run in order until one refuses: `ran` of them answered,
        // all allowing but the last when `refused`.
        let mut ran = 0;
        let mut refused: Option<PolicyViolation> = None;
        for policy in &set.policies {
            let verdict = {
                let _timer = self.timer(policy.stamp());
                policy.call(check)?
            };
            ran += 1;
            if let Err(violation) = verdict {
                refused = Some(PolicyViolation {
                    policy: policy.stamp().name.to_string(),
                    code: violation.code,
                    message: violation.message,
                });
                break;
            }
        }
        for (candidate, answer) in candidates {
            let name = &*candidate.stamp().name;
            let active = match set.policies.iter().position(|p| &*p.stamp().name == name) {
                None => Ok(()),
                Some(at) if at >= ran => continue,
                Some(at) if at + 1 == ran => refused.as_ref().map_or(Ok(()), |v| Err(v.code.clone())),
                Some(_) => Ok(()),
            };
            self.shadow_log
                .compare(candidate.stamp(), || super::shadow::json(place), &active, answer);
        }
        if let Some(violation) = refused {
            return Err(RuleError::Rejected(violation));
        }
        Ok(set.policies.iter().map(|p| p.stamp().clone()).collect())
    }
}

impl Loader {
    /// Builds a full rule set from the built-ins and the directory, reusing
    /// any of `previous` whose name and content are unchanged.
    /// Builds a full rule set from the built-ins, the directory and the
    /// `published` versions (in that order of precedence, lowest first),
    /// reusing any of `previous` whose name, content and mode are unchanged.
    fn load_set(&self, previous: &[AnyLoaded], published: &[RuleSource]) -> Result<RuleSet, LoadError> {
        let mut sources = self.settings.builtin.clone();
        let mut fingerprint = source::Fingerprint::default();
        if let Some(dir) = &self.settings.dir {
            fingerprint = source::fingerprint(dir);
            for path in source::wasm_files(dir)? {
                sources.push(RuleSource::from_file(&path)?);
            }
        }
        sources.extend(published.iter().cloned());
        let mut order: Option<Arc<Loaded<OrderWorld>>> = None;
        let mut inventory: Option<Arc<Loaded<InventoryWorld>>> = None;
        let mut policies: Vec<Arc<Loaded<PolicyWorld>>> = Vec::new();
        let mut shadow = Shadows::default();
        let mut hashes = Vec::with_capacity(sources.len());
        for source in &sources {
            let component = self.load(source, previous)?;
            hashes.push(component.info().stamp.hash.to_string());
            match (source.mode, component) {
                (RuleMode::Active, AnyLoaded::Order(c)) => choose(&mut order, c, ComponentKind::Order)?,
                (RuleMode::Active, AnyLoaded::Inventory(c)) => choose(&mut inventory, c, ComponentKind::Inventory)?,
                (RuleMode::Active, AnyLoaded::Policy(c)) => {
                    policies.retain(|p| p.info.stamp.name != c.info.stamp.name);
                    policies.push(c);
                }
                (RuleMode::Shadow, AnyLoaded::Order(c)) => shadow.order = Some(c),
                (RuleMode::Shadow, AnyLoaded::Inventory(c)) => shadow.inventory = Some(c),
                (RuleMode::Shadow, AnyLoaded::Policy(c)) => shadow.policies.push(c),
            }
        }
        policies.sort_by(|a, b| a.info.stamp.name.cmp(&b.info.stamp.name));
        shadow
            .policies
            .sort_by(|a, b| a.info.stamp.name.cmp(&b.info.stamp.name));
        let set = RuleSet {
            order: order.ok_or(LoadError::Missing(ComponentKind::Order))?,
            inventory: inventory.ok_or(LoadError::Missing(ComponentKind::Inventory))?,
            policies,
            shadow,
            fingerprint,
        };
        // The set before this one stays compiled too: rolling back to it is
        // the lever of an incident, and must not wait for the compiler.
        hashes.extend(previous.iter().map(|c| c.info().stamp.hash.to_string()));
        if let Ok(mut compiled) = self.compiled.lock() {
            compiled.retain(|hash, _| hashes.contains(hash));
        }
        Ok(set)
    }

    fn load(&self, source: &RuleSource, previous: &[AnyLoaded]) -> Result<AnyLoaded, LoadError> {
        let hash = shop_streams::hex::encode(&Sha256::digest(&source.wasm));
        if let Some(trust) = &self.settings.trust
            && !source.builtin
            && !trust.admits(&hash, &source.wasm, source.signature.as_deref())
        {
            return Err(LoadError::Untrusted {
                name: source.origin.clone(),
                hash,
            });
        }
        if let Some(same) = previous.iter().find(|p| {
            let info = p.info();
            *info.stamp.name == *source.name
                && *info.stamp.hash == *hash
                && info.stamp.version == source.version
                && info.mode == source.mode
        }) {
            return Ok(same.clone());
        }
        let (component, from_cache) = self.compile(source, &hash)?;
        let role = self.role_of(&component, &source.name)?;
        let info = ComponentInfo {
            stamp: RuleStamp {
                name: source.name.as_str().into(),
                version: source.version,
                hash: hash.into(),
            },
            role,
            mode: source.mode,
            origin: source.origin.clone(),
            from_cache,
        };
        let config = Arc::new(
            self.settings
                .component_config
                .get(&source.name)
                .cloned()
                .unwrap_or_default(),
        );
        let caps = match source.mode {
            RuleMode::Active => self.capabilities.clone(),
            RuleMode::Shadow => self.shadow_capabilities.clone(),
        };
        // One constructor, generic over the world the role names.
        macro_rules! loaded {
            ($variant:ident) => {
                AnyLoaded::$variant(Arc::new(Loaded::new(
                    &self.engine,
                    &component,
                    info,
                    caps,
                    config,
                    self.limits,
                )?))
            };
        }
        Ok(match role {
            ComponentKind::Order => loaded!(Order),
            ComponentKind::Inventory => loaded!(Inventory),
            ComponentKind::Policy => loaded!(Policy),
        })
    }

    /// Compiled code for `source`: from memory, from the disk cache, or fresh.
    fn compile(&self, source: &RuleSource, hash: &str) -> Result<(Component, bool), LoadError> {
        let in_memory = self.compiled.lock().ok().and_then(|c| c.get(hash).cloned());
        let cached = in_memory.or_else(|| self.cache.as_ref().and_then(|cache| cache.load(&self.engine, hash)));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => {
                let not_a_component = |reason: String| LoadError::NotAComponent {
                    name: source.name.clone(),
                    reason,
                };
                if let Some(reason) = not_component_binary(&source.wasm) {
                    return Err(not_a_component(reason.to_owned()));
                }
                let component =
                    Component::new(&self.engine, &source.wasm).map_err(|e| not_a_component(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.store(hash, &component);
                }
                component
            }
        };
        if let Ok(mut compiled) = self.compiled.lock() {
            compiled.insert(hash.to_owned(), component.clone());
        }
        Ok((component, from_cache))
    }

    fn role_of(&self, component: &Component, name: &str) -> Result<ComponentKind, LoadError> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(export, _)| export.to_owned())
            .collect();
        let roles: Vec<ComponentKind> = ComponentKind::ALL
            .into_iter()
            .filter(|role| exports.iter().any(|e| role.fulfilled_by(e)))
            .collect();
        let ours = exports
            .iter()
            .find_map(|e| e.strip_prefix("shop:rules/").and_then(|e| e.split_once('@')));
        match roles.as_slice() {
            [role] => Ok(*role),
            [] if ours.is_some() => Err(LoadError::OtherVersion {
                name: name.to_owned(),
                found: ours.map(|(_, version)| version.to_owned()).unwrap_or_default(),
                exports: exports.join(", "),
            }),
            [] => Err(LoadError::UnknownContract {
                name: name.to_owned(),
                expected: ComponentKind::ALL.map(ComponentKind::export).join(", "),
                found: if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                },
            }),
            several => Err(LoadError::ContractMismatch {
                name: name.to_owned(),
                contract: several[0].export(),
                reason: "a component may fulfil one rule contract only".to_owned(),
            }),
        }
    }
}

/// Stops the directory watcher when dropped.
#[derive(Debug)]
pub struct WatchHandle {
    _stop: Option<mpsc::Sender<()>>,
}

fn stamped<T, R, W: Mirror<T>, X: Mirror<R>>(
    outcome: Result<W, X>,
    stamp: &RuleStamp,
) -> Result<Decided<T>, RuleError<R>> {
    match outcome {
        Ok(value) => Ok(Decided {
            value: value.mirror(),
            rule: stamp.clone(),
        }),
        Err(rejection) => Err(RuleError::Rejected(rejection.mirror())),
    }
}

fn choose<W: super::component::World>(
    slot: &mut Option<Arc<Loaded<W>>>,
    candidate: Arc<Loaded<W>>,
    role: ComponentKind,
) -> Result<(), LoadError> {
    // Published over directory over built-in; two of one rank is a mistake.
    let rank = |info: &ComponentInfo| match info.origin.as_str() {
        "builtin" => 0,
        "store" => 2,
        _ => 1,
    };
    match slot {
        Some(current) if rank(&current.info) < rank(&candidate.info) => {
            *slot = Some(candidate);
            Ok(())
        }
        Some(current) => Err(LoadError::Ambiguous {
            role,
            first: current.info.origin.clone(),
            second: candidate.info.origin.clone(),
        }),
        None => {
            *slot = Some(candidate);
            Ok(())
        }
    }
}

/// Advances the engine's epoch every tick until the returned sender is dropped.
fn spawn_ticker(engine: Engine) -> Result<mpsc::Sender<()>, LoadError> {
    let (stop, stopped) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("rules-epoch".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                engine.increment_epoch();
            }
        })
        .map_err(|e| LoadError::Engine(format!("cannot start the epoch ticker: {e}")))?;
    Ok(stop)
}

/// Why `wasm` is plainly not a component, judged by its 8-byte preamble.
fn not_component_binary(wasm: &[u8]) -> Option<&'static str> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    if !wasm.starts_with(MAGIC) {
        Some("the file does not start with the WebAssembly magic number")
    } else if wasm.get(4..8) == Some(&CORE_MODULE) {
        Some("it is a core module; build rules with `--target wasm32-wasip2` to get a component")
    } else {
        None
    }
}
