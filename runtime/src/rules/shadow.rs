//! Shadow runs: a candidate version answers beside the active one on live
//! traffic. Its answer is compared with the active one's, counted, and kept
//! when it differs (for `shop rules diff`); it is never acted on.
//!
//! A candidate must see what the active version saw and change nothing:
//! - its key-value writes go nowhere ([`DryRunKv`]): it reads the shared
//!   state and answers as if it had written;
//! - a policy candidate runs before the active policies, so it reads the
//!   state they read (the active ones may write);
//! - an order or inventory candidate runs after the active call and reads
//!   the same clock: [`RecordingClock`] notes the time the active call
//!   read on this thread, [`ReplayClock`] answers it again, so timestamps
//!   in the decisions never make a disagreement.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::component::RuleStamp;
use super::error::RuleFault;
use crate::metrics::Metrics;
use crate::ports::{Clock, Disagreement, KeyValue, KvError};

thread_local! {
    /// The time the last active rule call on this thread read, if it read one.
    static ACTIVE_NOW: Cell<Option<i64>> = const { Cell::new(None) };
}

/// The active components' clock: answers the time and notes it for a
/// candidate that runs next on this thread.
pub(crate) struct RecordingClock(pub Arc<dyn Clock>);

impl RecordingClock {
    /// Forgets the time noted by an earlier call, before a new active call.
    pub(crate) fn forget() {
        ACTIVE_NOW.set(None);
    }
}

impl Clock for RecordingClock {
    fn now_ms(&self) -> i64 {
        let now = self.0.now_ms();
        ACTIVE_NOW.set(Some(now));
        now
    }
}

/// A candidate's clock: the time the active call just read, else the time.
pub(crate) struct ReplayClock(pub Arc<dyn Clock>);

impl Clock for ReplayClock {
    fn now_ms(&self) -> i64 {
        ACTIVE_NOW.get().unwrap_or_else(|| self.0.now_ms())
    }
}

/// The shared key-value store, read-only: writes are answered as if done.
pub(crate) struct DryRunKv(pub Arc<dyn KeyValue>);

impl KeyValue for DryRunKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.0.get(key)
    }

    fn set(&self, _key: &str, _value: &[u8], _ttl: Option<Duration>) -> Result<(), KvError> {
        Ok(())
    }

    fn increment(&self, key: &str, delta: i64, _ttl: Option<Duration>) -> Result<i64, KvError> {
        let current = match self.0.get(key)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| KvError::NotACounter(key.to_owned()))?,
        };
        Ok(current.saturating_add(delta))
    }

    fn delete(&self, _key: &str) -> Result<(), KvError> {
        Ok(())
    }
}

type Sink = Arc<dyn Fn(Disagreement) + Send + Sync>;

/// Where comparisons end: counted in `shop_rule_shadow_total`, and each
/// disagreement handed to the sink the composition root set.
pub(crate) struct ShadowLog {
    metrics: Metrics,
    sink: RwLock<Option<(String, Sink)>>,
    clock: Arc<dyn Clock>,
    /// Candidates answer one call in this many.
    every: u64,
    calls: AtomicU64,
    /// And at most this many calls a second, all candidates together.
    per_second: u64,
    /// The second being counted (high bits) and the calls answered in it
    /// (low [`COUNT_BITS`]), in one word so that a new second starts once.
    this_second: AtomicU64,
}

const COUNT_BITS: u32 = 24;

/// The most [`ShadowLog`] can count in a second.
pub const MAX_SHADOW_PER_SECOND: u64 = (1 << COUNT_BITS) - 1;

/// Candidates' calls a second by default: at 4,000 orders/s on two cores
/// (three candidate calls an order) this stays inside the 10% that shadow
/// evaluation may add to intake (docs/benchmarks.md, "Shadow evaluation").
pub const DEFAULT_SHADOW_PER_SECOND: u64 = 300;

impl ShadowLog {
    pub(crate) fn new(metrics: Metrics, clock: Arc<dyn Clock>, every: u64, per_second: u64) -> Self {
        Self {
            metrics,
            sink: RwLock::new(None),
            clock,
            every: every.max(1),
            calls: AtomicU64::new(0),
            per_second: per_second.min(MAX_SHADOW_PER_SECOND),
            this_second: AtomicU64::new(0),
        }
    }

    /// Whether candidates answer this call: one in `every`, while this
    /// second's budget lasts. Light traffic is compared call for call;
    /// under load the budget bounds what shadowing costs.
    pub(crate) fn sampled(&self) -> bool {
        if self.every > 1 && !self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.every) {
            return false;
        }
        let second = u64::try_from(self.clock.now_ms() / 1000).unwrap_or(0);
        let mut seen = self.this_second.load(Ordering::Relaxed);
        loop {
            let next = if seen >> COUNT_BITS != second {
                (second << COUNT_BITS) | 1
            } else if seen & MAX_SHADOW_PER_SECOND < self.per_second {
                seen + 1
            } else {
                return false;
            };
            match self
                .this_second
                .compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return self.per_second > 0,
                Err(now) => seen = now,
            }
        }
    }

    pub(crate) fn set_sink(&self, instance: &str, sink: Sink) {
        if let Ok(mut slot) = self.sink.write() {
            *slot = Some((instance.to_owned(), sink));
        }
    }

    /// Compares `candidate`'s answer with the active one's; `input` is what
    /// both were asked, built only when they differ.
    pub(crate) fn compare<T: Serialize + PartialEq>(
        &self,
        candidate: &RuleStamp,
        input: impl FnOnce() -> serde_json::Value,
        active: &T,
        answer: Result<T, RuleFault>,
    ) {
        let outcome = match &answer {
            Ok(answer) if answer == active => "agree",
            Ok(_) => "disagree",
            Err(_) => "fault",
        };
        self.metrics.shadow_outcome(&candidate.name, candidate.version, outcome);
        if outcome == "agree" {
            return;
        }
        let shadow = match answer {
            Ok(answer) => json(&answer),
            Err(fault) => serde_json::json!({ "fault": fault.kind.to_string() }),
        };
        let sink = self.sink.read().ok().and_then(|slot| slot.clone());
        if let Some((instance, sink)) = sink {
            sink(Disagreement {
                name: candidate.name.to_string(),
                candidate: candidate.version,
                instance,
                at: self.clock.now_ms(),
                input: input(),
                active: json(active),
                shadow,
            });
        }
    }
}

pub(crate) fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|error| serde_json::Value::String(error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{DryRunKv, RecordingClock, ReplayClock};
    use crate::ports::{Clock, KeyValue, KvError, ManualClock};

    #[derive(Default)]
    struct Counters(std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>);

    impl KeyValue for Counters {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            Ok(self.0.lock().expect("lock").get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8], _: Option<std::time::Duration>) -> Result<(), KvError> {
            self.0.lock().expect("lock").insert(key.to_owned(), value.to_vec());
            Ok(())
        }
        fn increment(&self, _: &str, _: i64, _: Option<std::time::Duration>) -> Result<i64, KvError> {
            unreachable!("a dry run never increments")
        }
        fn delete(&self, _: &str) -> Result<(), KvError> {
            unreachable!("a dry run never deletes")
        }
    }

    #[test]
    fn candidates_answer_one_call_in_every() {
        let clock = Arc::new(ManualClock::new(0));
        let every_third = super::ShadowLog::new(crate::metrics::Metrics::default(), clock.clone(), 3, 100);
        let answered: Vec<bool> = (0..7).map(|_| every_third.sampled()).collect();
        assert_eq!(answered, [true, false, false, true, false, false, true]);
        let every = super::ShadowLog::new(crate::metrics::Metrics::default(), clock, 1, 100);
        assert!((0..5).all(|_| every.sampled()));
    }

    #[test]
    fn candidates_answer_at_most_their_budget_a_second() {
        let clock = Arc::new(ManualClock::new(5_000));
        let log = super::ShadowLog::new(crate::metrics::Metrics::default(), clock.clone(), 2, 3);
        let answered = |n| (0..n).filter(|_| log.sampled()).count();
        // One in two of 10 calls would be 5; the budget stops it at 3.
        assert_eq!(answered(10), 3);
        clock.advance(999);
        assert_eq!(answered(10), 0, "the same second");
        clock.advance(1);
        assert_eq!(answered(4), 2, "a new second, one in two again");
        let none = super::ShadowLog::new(crate::metrics::Metrics::default(), clock, 1, 0);
        assert_eq!((0..5).filter(|_| none.sampled()).count(), 0);
    }

    #[test]
    fn a_dry_run_reads_and_never_writes() {
        let shared = Arc::new(Counters::default());
        shared.set("n", b"5", None).expect("set");
        let dry = DryRunKv(shared.clone());
        assert_eq!(dry.increment("n", 3, None), Ok(8));
        assert_eq!(dry.increment("absent", 2, None), Ok(2));
        dry.set("n", b"0", None).expect("answered");
        dry.delete("n").expect("answered");
        assert_eq!(shared.get("n"), Ok(Some(b"5".to_vec())));
        shared.set("text", b"abc", None).expect("set");
        assert_eq!(dry.increment("text", 1, None), Err(KvError::NotACounter("text".into())));
    }

    #[test]
    fn a_candidate_reads_the_time_the_active_call_read() {
        let clock = Arc::new(ManualClock::new(1_000));
        let active = RecordingClock(clock.clone());
        let candidate = ReplayClock(clock.clone());
        RecordingClock::forget();
        assert_eq!(candidate.now_ms(), 1_000, "nothing noted: the time");
        assert_eq!(active.now_ms(), 1_000);
        clock.advance(7);
        assert_eq!(candidate.now_ms(), 1_000, "the time the active call read");
        RecordingClock::forget();
        assert_eq!(candidate.now_ms(), 1_007);
    }
}
