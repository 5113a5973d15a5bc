//! Results as JSON files, and those files as the Markdown tables of
//! `docs/benchmarks.md`.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::check::Invariants;
use crate::record::KindSummary;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    /// `shop-load` and its arguments.
    pub command: String,
    pub target_rate: Option<f64>,
    pub elapsed_s: f64,
    pub sent: u64,
    pub not_sent: u64,
    pub accepted_per_second: f64,
    pub kinds: Vec<KindSummary>,
    pub invariants: Option<Invariants>,
    pub baselines: Vec<Baseline>,
}

impl Report {
    pub fn new(name: String, command: String) -> Self {
        Self {
            name,
            command: format!("shop-load {command}"),
            ..Self::default()
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The reports in `dir` (by file name) as Markdown: the baselines, then one
/// row per request kind of each run, then the invariants of each run.
pub fn markdown(dir: &Path) -> anyhow::Result<String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut reports = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        reports.push(
            serde_json::from_str::<Report>(&text).with_context(|| format!("{} is not a report", path.display()))?,
        );
    }
    let mut out = String::new();
    let baselines: Vec<&Baseline> = reports.iter().flat_map(|r| &r.baselines).collect();
    if !baselines.is_empty() {
        out.push_str("| baseline | per second |\n|---|---:|\n");
        for b in baselines {
            out.push_str(&format!("| {} | {:.0} {} |\n", b.name, b.per_second, b.unit));
        }
        out.push('\n');
    }
    let runs: Vec<&Report> = reports.iter().filter(|r| !r.kinds.is_empty()).collect();
    if !runs.is_empty() {
        out.push_str("| run | request | target/s | done/s | ok | failed | p50 ms | p95 ms | p99 ms | max ms |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for run in &runs {
            for k in &run.kinds {
                let failed: u64 = k.errors.values().sum();
                out.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                    run.name,
                    k.kind,
                    run.target_rate.map_or("-".to_owned(), |r| format!("{r:.0}")),
                    k.per_second,
                    k.ok,
                    failed,
                    k.p50_ms,
                    k.p95_ms,
                    k.p99_ms,
                    k.max_ms
                ));
            }
        }
        out.push('\n');
        out.push_str("| run | accepted | lost | duplicated | CONFIRMED | CANCELLED | COMPLETED | still PENDING | accepted→CONFIRMED p50 / p99 ms | confirmed/s | invariants |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for run in &runs {
            let Some(i) = &run.invariants else { continue };
            let verdict = match (i.violations.is_empty(), i.settled) {
                (true, true) => "hold".to_owned(),
                (true, false) => "hold so far (saga not at rest when checked)".to_owned(),
                (false, _) => format!("VIOLATED: {}", i.violations.join("; ")),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} / {:.0} | {:.0} | {} |\n",
                run.name,
                i.accepted,
                i.lost,
                i.duplicated,
                i.confirmed,
                i.cancelled,
                i.completed,
                i.pending,
                i.confirm_p50_ms,
                i.confirm_p99_ms,
                i.confirmations_per_second,
                verdict
            ));
        }
        out.push('\n');
        out.push_str("Commands:\n\n");
        for run in &runs {
            out.push_str(&format!("- {}: `{}`\n", run.name, run.command));
        }
    }
    Ok(out)
}
