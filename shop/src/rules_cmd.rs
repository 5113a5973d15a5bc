//! `shop rules ...`: the deployment's rules from the command line.
//!
//! `publish`, `promote`, `rollback`, `list` and `diff` act on the rule
//! store every instance follows (the SQLite database when embedded,
//! JetStream when distributed): a change reaches every running instance
//! within a second. `validate`, `load` and `export` work on files and
//! `SHOP_RULES_DIR`, for local development.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use shop_adapter_jetstream::JetStreamBus;
use shop_adapter_memory::MemoryKeyValue;
use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;
use shop_runtime::ports::{AuditLog, RuleStore, SystemClock};
use shop_runtime::rules::{Capabilities, ComponentInfo, Release, RuleFleet, RuleHost, RuleMode, RuleSource};
use shop_streams::{Namespace, Topology};

use crate::config::{self, Database, RulesConfig, Settings};
use crate::rules_kit;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List the deployment's published rules (every version, and which run
    /// active or in shadow), then the components not published (built in
    /// or in SHOP_RULES_DIR).
    List,
    /// Publish a component as the next version of its rule, for every
    /// instance: active at once, or in shadow beside the active version.
    Publish {
        /// The component file (a FILE.sig beside it is its signature).
        file: PathBuf,
        /// Run it in shadow: its answers are compared, never acted on.
        #[arg(long)]
        shadow: bool,
        /// The rule's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// Make the version in shadow the active one.
    Promote { name: String },
    /// Return to the version active before (or to --to VERSION).
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u32>,
    },
    /// Show the newest disagreements of the version of NAME in shadow:
    /// what was asked, what the active version and the candidate answered.
    Diff { name: String },
    /// Check that .wasm files are rule components this host can run.
    Validate {
        /// Component files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate a component and put it into SHOP_RULES_DIR, where running
    /// shops pick it up within two seconds (a policy is added; an order or
    /// inventory component replaces the active one).
    Load {
        /// The component file.
        file: PathBuf,
    },
    /// Scaffold a policy crate NAME: Cargo.toml, src/lib.rs on the WIT
    /// contract (wit/), and a table of cases (cases.yaml).
    New {
        name: String,
        /// Where to make it (default: here).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run a table of cases (order, key-value state, settings -> allow or
    /// refuse) through a policy component in the sandboxed host; exits 1
    /// when a case fails.
    Test {
        /// The policy component.
        file: PathBuf,
        /// The cases (YAML; see `shop rules new`'s cases.yaml).
        cases: PathBuf,
    },
    /// Write the built-in components, and the example plugin, into a directory.
    Export {
        /// Target directory (created if missing).
        dir: PathBuf,
    },
}

pub fn run(command: RulesCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::List
        | RulesCommand::Publish { .. }
        | RulesCommand::Promote { .. }
        | RulesCommand::Rollback { .. }
        | RulesCommand::Diff { .. } => {
            let host = start(RulesConfig::from_settings(settings)?, config::namespace(settings))?;
            let database = config::database(settings)?;
            config::block_on(async move {
                match database {
                    Database::Embedded(url) => {
                        let store = SqliteStore::open(&url).await?;
                        deployment(
                            RuleFleet::new(store.rules(), store, host, Arc::new(SystemClock)),
                            command,
                        )
                        .await
                    }
                    Database::Postgres(url) => {
                        let audit = PgStore::connect(&PgSettings {
                            max_connections: 1,
                            ..PgSettings::new(config::migration_url(settings, url))
                        })
                        .await?;
                        let namespace = Namespace::new(config::namespace(settings))?;
                        let bus = JetStreamBus::connect(config::nats(settings)?, Topology::new(namespace))
                            .await
                            .context("the rule store is on NATS")?;
                        deployment(RuleFleet::new(bus.rules(), audit, host, Arc::new(SystemClock)), command).await
                    }
                }
            })
        }
        RulesCommand::Validate { files } => {
            let host = start(RulesConfig::from_settings(settings)?, config::namespace(settings))?;
            let mut failed = false;
            for file in files {
                match RuleSource::from_file(&file).and_then(|source| host.inspect(&source)) {
                    Ok(info) => println!("ok    {}: {} rules, {}", file.display(), info.role, info.stamp),
                    Err(error) => {
                        failed = true;
                        println!("FAIL  {error}");
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        RulesCommand::Load { file } => {
            let config = RulesConfig::from_settings(settings)?;
            let Some(dir) = config.dir.clone() else {
                anyhow::bail!("SHOP_RULES_DIR is not set: there is no directory the running shops watch");
            };
            let host = start(config, config::namespace(settings))?;
            let source = RuleSource::from_file(&file)?;
            let info = host.inspect(&source).context("not loaded")?;
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            // Written aside, then renamed: a watching shop never reads half a file.
            let target = dir.join(format!("{}.wasm", info.stamp.name));
            let partial = dir.join(format!(".{}.wasm.partial", info.stamp.name));
            std::fs::copy(&file, &partial).with_context(|| format!("write {}", partial.display()))?;
            std::fs::rename(&partial, &target).with_context(|| format!("write {}", target.display()))?;
            println!(
                "loaded {} ({} rules, {}) as {}; running shops switch to it within 2 s",
                file.display(),
                info.role,
                info.stamp,
                target.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::New { name, dir } => {
            let root = rules_kit::scaffold(&name, &dir)?;
            println!(
                "made {}: build it with `cargo build --release --target wasm32-wasip2` there, then\n  shop rules test {}/target/wasm32-wasip2/release/{}.wasm {}/cases.yaml",
                root.display(),
                root.display(),
                name.replace('-', "_"),
                root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Test { file, cases } => {
            let source = RuleSource::from_file(&file)?;
            let table = std::fs::read_to_string(&cases).with_context(|| format!("read {}", cases.display()))?;
            let checked = rules_kit::run_cases(&source.wasm, &source.name, &table)
                .with_context(|| format!("{} on {}", cases.display(), file.display()))?;
            println!("{:<4}  {:<56} {:<28} got", "", "case", "expected");
            for case in &checked {
                let verdict = if case.passed() { "ok" } else { "FAIL" };
                println!("{verdict:<4}  {:<56} {:<28} {}", case.name, case.expected, case.got);
            }
            let failed = checked.iter().filter(|c| !c.passed()).count();
            println!("{} passed, {failed} failed", checked.len() - failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RulesCommand::Export { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            for component in [
                shop_rules_bundle::ORDER,
                shop_rules_bundle::INVENTORY,
                shop_rules_bundle::PURCHASE_LIMIT,
            ] {
                let path = dir.join(format!("{}.wasm", component.name));
                std::fs::write(&path, component.wasm).with_context(|| format!("write {}", path.display()))?;
                println!("wrote {} ({} bytes)", path.display(), component.wasm.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The commands that act on the deployment's rule store.
async fn deployment(
    fleet: RuleFleet<impl RuleStore, impl AuditLog>,
    command: RulesCommand,
) -> anyhow::Result<ExitCode> {
    let operator = crate::audit_cmd::operator(uuid::Uuid::now_v7());
    match command {
        RulesCommand::Publish { file, shadow, name } => {
            let source = RuleSource::from_file(&file)?;
            let name = name.unwrap_or(source.name);
            let mode = if shadow { RuleMode::Shadow } else { RuleMode::Active };
            let published = fleet
                .publish(&name, source.wasm.into_owned(), source.signature, mode, &operator)
                .await?;
            println!(
                "published {} v{} ({} rules, sha256 {}) {}; running instances switch within 1 s",
                published.name,
                published.version,
                published.role,
                &published.hash[..12],
                match mode {
                    RuleMode::Active => "as the active version",
                    RuleMode::Shadow => "in shadow beside the active version",
                }
            );
        }
        RulesCommand::Promote { name } => {
            let release = fleet.promote(&name, &operator).await?;
            println!("{name}: {}", describe(&release));
        }
        RulesCommand::Rollback { name, to } => {
            let release = fleet.rollback(&name, to, &operator).await?;
            println!("{name}: {}", describe(&release));
        }
        RulesCommand::List => {
            let releases = fleet.releases().await?;
            println!(
                "{:<16} {:>7} {:<7} {:<14} published_ms",
                "name", "version", "mode", "sha256"
            );
            for release in &releases {
                for version in &release.versions {
                    let mode = match Some(version.version) {
                        v if v == release.active => "active",
                        v if v == release.shadow => "shadow",
                        _ => "-",
                    };
                    println!(
                        "{:<16} {:>7} {:<7} {:<14} {}",
                        release.name,
                        version.version,
                        mode,
                        &version.hash[..12.min(version.hash.len())],
                        version.published_at
                    );
                }
            }
            let unpublished: Vec<ComponentInfo> = fleet
                .host()
                .components()
                .into_iter()
                .filter(|c| !releases.iter().any(|r| r.name == *c.stamp.name && r.active.is_some()))
                .collect();
            println!("\nnot published (built in, or in SHOP_RULES_DIR), run where no version is active:");
            print_table(&unpublished);
        }
        RulesCommand::Diff { name } => {
            let kept = fleet.disagreements(&name).await?;
            if kept.is_empty() {
                println!("{name}: no disagreements kept");
            }
            for d in &kept {
                println!(
                    "at_ms {} {} v{} on {}\n  input:  {}\n  active: {}\n  shadow: {}",
                    d.at, d.name, d.candidate, d.instance, d.input, d.active, d.shadow
                );
            }
        }
        RulesCommand::Validate { .. }
        | RulesCommand::Load { .. }
        | RulesCommand::Export { .. }
        | RulesCommand::New { .. }
        | RulesCommand::Test { .. } => {
            unreachable!("file commands are run by `run`")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(release: &Release) -> String {
    let active = release.active.map_or_else(
        || "no published version active (the built-in one, if any, decides)".to_owned(),
        |v| format!("v{v} active"),
    );
    match release.shadow {
        Some(v) => format!("{active}, v{v} in shadow"),
        None => active,
    }
}

fn start(config: RulesConfig, namespace: &str) -> anyhow::Result<Arc<RuleHost>> {
    let capabilities = Capabilities {
        clock: Arc::new(SystemClock),
        kv: Arc::new(MemoryKeyValue::new()),
        namespace: namespace.to_owned(),
    };
    let host = RuleHost::start(crate::contexts::rule_settings(config), capabilities).context("loading the rules")?;
    Ok(Arc::new(host))
}

fn print_table(components: &[ComponentInfo]) {
    println!("{:<10} {:<16} {:<14} {:<7} origin", "role", "name", "sha256", "cached");
    for c in components {
        println!(
            "{:<10} {:<16} {:<14} {:<7} {}",
            c.role,
            c.stamp.name,
            &c.stamp.hash[..12],
            if c.from_cache { "yes" } else { "no" },
            c.origin
        );
    }
}
