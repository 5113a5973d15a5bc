//! `shop rules ...`: the rules host seen from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use shop_adapter_memory::MemoryKeyValue;
use shop_runtime::ports::SystemClock;
use shop_runtime::rules::{Capabilities, ComponentInfo, RuleHost, RuleSource};

use crate::config::{self, RulesConfig, Settings};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load the rules (built-in, then SHOP_RULES_DIR) and list what is active.
    List,
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
    /// Write the built-in components, and the example plugin, into a directory.
    Export {
        /// Target directory (created if missing).
        dir: PathBuf,
    },
}

pub fn run(command: RulesCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::List => {
            let host = start(RulesConfig::from_settings(settings)?, config::namespace(settings))?;
            print_table(&host.components());
            Ok(ExitCode::SUCCESS)
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
