//! The rule author's kit: `shop rules new` scaffolds a policy crate, and
//! `shop rules test` runs a table of cases through the same sandboxed host
//! the shop runs rules in.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use shop_adapter_memory::MemoryKeyValue;
use shop_rules::order::{CataloguePrice, LineRequest, PlaceOrder};
use shop_runtime::ports::{KeyValue, KvError, ManualClock};
use shop_runtime::rules::{Capabilities, ComponentKind, RuleError, RuleHost, RuleMode, RuleSettings, RuleSource};

/// The contract a scaffolded crate builds against: the host's own.
const WIT: &str = include_str!("../../../rules/wit/shop-rules.wit");
const CARGO_TOML: &str = include_str!("template_cargo.toml.txt");
const LIB_RS: &str = include_str!("template_lib.rs.txt");
const CASES: &str = include_str!("template_cases.yaml.txt");
/// The wit-bindgen the shipped components are built with.
const WIT_BINDGEN: &str = "0.61";
/// The time a case runs at unless it says: 2023-11-14, a fixed day.
const DEFAULT_NOW_MS: i64 = 1_700_000_000_000;
/// The namespace the cases' key-value store is under.
const NAMESPACE: &str = "test";

/// Writes a policy crate named `name` into `dir/name`; refuses to write
/// over anything there.
pub fn scaffold(name: &str, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !plain {
        bail!("{name:?}: a rule's name is lowercase letters, digits and '-', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists; not writing over it", root.display());
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{file}}", &name.replace('-', "_"))
            .replace("{{wit_bindgen}}", WIT_BINDGEN)
    };
    for (path, contents) in [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("wit/shop-rules.wit", WIT.to_owned()),
        ("cases.yaml", fill(CASES)),
    ] {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(root)
}

/// A table of cases for one policy component.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// The name the component runs under (its settings' and keys' name);
    /// the file's stem by default.
    component: Option<String>,
    /// Settings every case starts from.
    #[serde(default)]
    config: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    order: CaseOrder,
    /// The key-value store the case meets, by the component's own keys.
    #[serde(default)]
    kv: BTreeMap<String, String>,
    /// Settings over the file's.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// The host's clock during the case (ms since the epoch).
    now_ms: Option<i64>,
    expect: Outcome,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseOrder {
    order_id: Option<String>,
    customer_id: String,
    lines: Vec<LineRequest>,
    #[serde(default)]
    catalogue: Vec<CataloguePrice>,
}

/// What a case expects of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Written")]
pub enum Outcome {
    Allow,
    /// Refused with this violation code.
    Refuse(String),
    /// No answer: the component trapped, ran out of time or memory.
    Fault(String),
}

/// An outcome as a table writes it: `allow`, or `{ refuse: CODE }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Word(String),
    Refuse { refuse: String },
}

impl TryFrom<Written> for Outcome {
    type Error = String;

    fn try_from(written: Written) -> Result<Self, String> {
        match written {
            Written::Word(word) if word == "allow" => Ok(Outcome::Allow),
            Written::Word(word) => Err(format!("expect {word:?}: write `allow` or `{{ refuse: CODE }}`")),
            Written::Refuse { refuse } => Ok(Outcome::Refuse(refuse)),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Allow => f.pad("allow"),
            Outcome::Refuse(code) => f.pad(&format!("refuse {code}")),
            Outcome::Fault(why) => f.pad(&format!("fault: {why}")),
        }
    }
}

/// One case's result.
#[derive(Debug)]
pub struct Checked {
    pub name: String,
    pub expected: Outcome,
    pub got: Outcome,
}

impl Checked {
    pub fn passed(&self) -> bool {
        self.expected == self.got
    }
}

/// Runs every case of `cases` (YAML) through the policy `wasm`, loaded as
/// the shop loads it: sandboxed, with the built-in core rules beside it.
pub fn run_cases(wasm: &[u8], default_name: &str, cases: &str) -> anyhow::Result<Vec<Checked>> {
    let file: CaseFile = serde_norway::from_str(cases).context("the cases are not a case table")?;
    let name = file.component.clone().unwrap_or_else(|| default_name.to_owned());
    let clock = Arc::new(ManualClock::new(DEFAULT_NOW_MS));
    let kv = Arc::new(CaseKv::default());
    // One host per distinct set of settings: a component reads them at load.
    let mut hosts: HashMap<BTreeMap<String, String>, RuleHost> = HashMap::new();
    let mut checked = Vec::with_capacity(file.cases.len());
    for case in file.cases {
        let mut config = file.config.clone();
        config.extend(case.config.clone());
        let host = match hosts.entry(config.clone()) {
            std::collections::hash_map::Entry::Occupied(host) => host.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(policy_host(wasm, &name, config, clock.clone(), kv.clone())?)
            }
        };
        clock.set(case.now_ms.unwrap_or(DEFAULT_NOW_MS));
        kv.reset(&name, &case.kv)?;
        let place = PlaceOrder {
            order_id: case
                .order
                .order_id
                .unwrap_or_else(|| format!("case-{}", checked.len() + 1)),
            customer_id: case.order.customer_id,
            lines: case.order.lines,
            catalogue: case.order.catalogue,
        };
        let got = match host.check_policies(&place) {
            Ok(_) => Outcome::Allow,
            Err(RuleError::Rejected(violation)) => Outcome::Refuse(violation.code),
            Err(RuleError::Fault(fault)) => Outcome::Fault(fault.kind.to_string()),
        };
        checked.push(Checked {
            name: case.name,
            expected: case.expect,
            got,
        });
    }
    Ok(checked)
}

fn policy_host(
    wasm: &[u8],
    name: &str,
    config: BTreeMap<String, String>,
    clock: Arc<ManualClock>,
    kv: Arc<CaseKv>,
) -> anyhow::Result<RuleHost> {
    let settings = RuleSettings {
        builtin: shop_rules_bundle::DEFAULT
            .iter()
            .map(|c| RuleSource::builtin(c.name, c.wasm))
            .collect(),
        component_config: BTreeMap::from([(name.to_owned(), config)]),
        ..RuleSettings::default()
    };
    let capabilities = Capabilities {
        clock,
        kv,
        namespace: NAMESPACE.to_owned(),
    };
    let host = RuleHost::start(settings, capabilities).context("starting the rules host")?;
    let source = RuleSource::published(name, 1, wasm.to_vec(), None, RuleMode::Active);
    let info = host.inspect(&source)?;
    if info.role != ComponentKind::Policy {
        bail!(
            "{name} is {} rules; `shop rules test` runs policy components",
            info.role
        );
    }
    host.install(vec![source])?;
    Ok(host)
}

/// The cases' key-value store: a fresh in-process store per case, filled
/// with what the case says.
#[derive(Debug, Default)]
struct CaseKv(RwLock<Arc<MemoryKeyValue>>);

impl CaseKv {
    fn reset(&self, component: &str, entries: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let fresh = MemoryKeyValue::new();
        for (key, value) in entries {
            // As the host names a component's keys.
            let key = format!("{NAMESPACE}:rules:{component}:{key}");
            fresh
                .set(&key, value.as_bytes(), None)
                .context("filling the case's store")?;
        }
        if let Ok(mut current) = self.0.write() {
            *current = Arc::new(fresh);
        }
        Ok(())
    }

    fn current(&self) -> Arc<MemoryKeyValue> {
        match self.0.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl KeyValue for CaseKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.current().get(key)
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.current().set(key, value, ttl)
    }

    fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
        self.current().increment(key, delta, ttl)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.current().delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, run_cases, scaffold};

    /// The table the purchase-limit plugin ships, run through the plugin.
    #[test]
    fn the_purchase_limit_table_passes() {
        let cases = include_str!("../../../rules/plugins/purchase-limit/cases.yaml");
        let checked = run_cases(shop_rules_bundle::PURCHASE_LIMIT.wasm, "purchase-limit", cases).expect("ran");
        assert!(checked.len() >= 4, "{checked:?}");
        for case in &checked {
            assert!(case.passed(), "{case:?}");
        }
        assert!(checked.iter().any(|c| matches!(c.got, Outcome::Refuse(_))));
        assert!(checked.iter().any(|c| c.got == Outcome::Allow));
    }

    #[test]
    fn a_wrong_expectation_fails_its_case() {
        let cases = "cases:\n  - name: wrong\n    order: { customer_id: a, lines: [{ product_id: P, quantity: 11 }] }\n    expect: allow\n";
        let checked = run_cases(shop_rules_bundle::PURCHASE_LIMIT.wasm, "purchase-limit", cases).expect("ran");
        assert_eq!(checked[0].got, Outcome::Refuse("purchase-limit".into()));
        assert!(!checked[0].passed());
    }

    #[test]
    fn only_policies_are_tested_and_tables_are_checked() {
        let refused = run_cases(shop_rules_bundle::ORDER.wasm, "order", "cases: []\n");
        assert!(refused.is_ok(), "no case, no host");
        let one = "cases:\n  - name: x\n    order: { customer_id: a, lines: [] }\n    expect: allow\n";
        let error = run_cases(shop_rules_bundle::ORDER.wasm, "order", one).expect_err("not a policy");
        assert!(error.to_string().contains("runs policy components"), "{error:#}");
        let error = run_cases(shop_rules_bundle::PURCHASE_LIMIT.wasm, "p", "cases: [{ name: x }]").expect_err("bad");
        assert!(format!("{error:#}").contains("missing field"), "{error:#}");
    }

    #[test]
    fn the_scaffold_is_a_crate_with_its_contract_and_cases() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = scaffold("max-units", dir.path()).expect("scaffolded");
        for file in ["Cargo.toml", "src/lib.rs", "wit/shop-rules.wit", "cases.yaml"] {
            assert!(root.join(file).is_file(), "{file}");
        }
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read");
        assert!(manifest.contains(r#"name = "max-units""#), "{manifest}");
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("read");
        assert!(lib.contains("max_units.wasm") && !lib.contains("{{"), "{lib}");
        assert!(
            scaffold("max-units", dir.path()).is_err(),
            "never over an existing crate"
        );
        assert!(scaffold("Bad Name", dir.path()).is_err());
    }
}
