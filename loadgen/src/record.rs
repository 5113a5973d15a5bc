//! Latencies and outcomes per request kind, progress while running, and the
//! summary at the end.
//!
//! Latency is recorded in microseconds in an HDR histogram (three
//! significant digits) from the moment a request was *meant* to be sent, so
//! a system that falls behind a fixed rate shows it in its percentiles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
struct Stats {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> Self {
        Self {
            // 1 µs to 10 minutes, to three significant digits.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
pub struct Recorder {
    kinds: Mutex<BTreeMap<&'static str, Stats>>,
    started: Instant,
}

/// One request kind's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindSummary {
    pub kind: String,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Answered requests (ok or not) per second over the run.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            kinds: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        }
    }
}

impl Recorder {
    pub fn record(&self, kind: &'static str, latency: Duration, outcome: Result<(), String>) {
        let mut kinds = self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = kinds.entry(kind).or_insert_with(Stats::new);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        stats.latency.saturating_record(micros);
        match outcome {
            Ok(()) => stats.ok += 1,
            Err(error) => *stats.errors.entry(error).or_default() += 1,
        }
    }

    /// Starts over (after a warm-up), keeping nothing.
    pub fn reset(&self) -> Instant {
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        Instant::now()
    }

    pub fn summary(&self, elapsed: Duration) -> Vec<KindSummary> {
        let kinds = self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seconds = elapsed.as_secs_f64().max(1e-9);
        kinds
            .iter()
            .map(|(kind, stats)| {
                let ms = |q: f64| stats.latency.value_at_quantile(q) as f64 / 1000.0;
                let errors: u64 = stats.errors.values().sum();
                KindSummary {
                    kind: (*kind).to_owned(),
                    ok: stats.ok,
                    errors: stats.errors.clone(),
                    per_second: (stats.ok + errors) as f64 / seconds,
                    p50_ms: ms(0.50),
                    p95_ms: ms(0.95),
                    p99_ms: ms(0.99),
                    max_ms: stats.latency.max() as f64 / 1000.0,
                }
            })
            .collect()
    }

    /// Prints a progress line every `every` until the task is aborted.
    pub fn progress(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let recorder = Arc::clone(self);
        tokio::spawn(async move {
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let elapsed = recorder.started.elapsed();
                let mut line = format!("[{:>5.0}s]", elapsed.as_secs_f64());
                for kind in recorder.summary(elapsed) {
                    let errors: u64 = kind.errors.values().sum();
                    let done = kind.ok + errors;
                    let before = last.insert(kind.kind.clone(), done).unwrap_or(0);
                    line.push_str(&format!(
                        " {}: {} ok, {} failed, {:.0}/s now, p99 {:.1} ms so far;",
                        kind.kind,
                        kind.ok,
                        errors,
                        (done - before) as f64 / every.as_secs_f64(),
                        kind.p99_ms
                    ));
                }
                eprintln!("{}", line.trim_end_matches(';'));
            }
        })
    }
}

/// Prints `kinds` as a table.
pub fn print(kinds: &[KindSummary]) {
    println!(
        "{:<10} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "request", "ok", "failed", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for k in kinds {
        let failed: u64 = k.errors.values().sum();
        println!(
            "{:<10} {:>10} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            k.kind, k.ok, failed, k.per_second, k.p50_ms, k.p95_ms, k.p99_ms, k.max_ms
        );
        for (error, count) in &k.errors {
            println!("{:<10}   {count} x {error}", "");
        }
    }
}
