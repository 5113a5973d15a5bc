//! Refused payment notices, summed for the audit log.
//!
//! Anyone can post to the webhook, so an entry per refusal would let a
//! flood of forged notices grow the audit log without bound. Refusals are
//! summed instead, by reason, over a window that the first one opens; the
//! window becomes one entry when it closes: at most one entry per window,
//! however many arrive. Every refusal is also counted in the metrics at
//! once.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::audit::{Actor, AuditRecord};

/// How long refusals are summed before they become one entry.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(5);

/// The refusals of the window that is open, if one is.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<Option<Window>>);

#[derive(Debug)]
struct Window {
    from: i64,
    /// The request that opened the window.
    request_id: String,
    counts: BTreeMap<&'static str, u64>,
}

impl Refusals {
    /// Counts a refusal for `reason` at `at` (ms since the epoch). Returns
    /// whether it opened a window, which its caller closes with
    /// [`Self::close`] after [`REFUSAL_WINDOW`].
    pub fn count(&self, reason: &'static str, request_id: &str, at: i64) -> bool {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match open.as_mut() {
            Some(window) => {
                *window.counts.entry(reason).or_default() += 1;
                false
            }
            None => {
                *open = Some(Window {
                    from: at,
                    request_id: request_id.to_owned(),
                    counts: BTreeMap::from([(reason, 1)]),
                });
                true
            }
        }
    }

    /// Closes the open window at `at` and returns its entry:
    /// `payment.webhook.refuse` on `payments:webhook`, by the anonymous
    /// caller, with the count of each reason and the window's span.
    pub fn close(&self, at: i64) -> Option<AuditRecord> {
        let window = self.0.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        let caller = Actor::new("webhook", "anonymous", window.request_id);
        let detail = serde_json::json!({ "refused": window.counts, "from": window.from, "to": at });
        Some(caller.did(
            "order",
            "payment.webhook.refuse",
            "payments:webhook".into(),
            at,
            &detail,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_refusals_is_one_entry_with_each_reason_counted() {
        let refusals = Refusals::default();
        assert!(
            refusals.count("bad_signature", "req-1", 1_000),
            "the first opens a window"
        );
        for (reason, at) in [("bad_signature", 1_100), ("stale", 1_200), ("bad_signature", 1_300)] {
            assert!(!refusals.count(reason, "req-n", at));
        }
        let record = refusals.close(6_000).expect("a window was open");
        assert_eq!(
            (
                record.action.as_str(),
                record.target.as_str(),
                record.actor.as_str(),
                record.role.as_str()
            ),
            ("payment.webhook.refuse", "payments:webhook", "webhook", "anonymous")
        );
        assert_eq!(record.request_id, "req-1");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&record.detail).expect("JSON"),
            serde_json::json!({"refused": {"bad_signature": 3, "stale": 1}, "from": 1_000, "to": 6_000})
        );
        assert_eq!(refusals.close(7_000), None, "closed once");
        assert!(
            refusals.count("replayed", "req-9", 8_000),
            "the next refusal opens a new window"
        );
    }
}
