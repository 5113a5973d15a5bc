//! A circuit breaker for one upstream instance.
//!
//! Closed, it lets calls through and remembers how the last `window` ended;
//! once at least half the window's calls have been made and half of them
//! failed, it opens. Open, it refuses calls until `open_for` has passed,
//! then lets a single probe through (half-open): the probe's success closes
//! it with a clean slate, its failure opens it again. Time is passed in, so
//! the rules are tested without sleeping.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// How many recent calls are weighed.
    pub window: usize,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 20,
            open_for: Duration::from_secs(30),
        }
    }
}

/// What a breaker does with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `shop_gateway_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed {
        outcomes: VecDeque<bool>,
    },
    Open {
        until: Instant,
    },
    /// `probing`: the one call let through has not reported yet.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    phase: Mutex<Phase>,
}

/// Leave to make one call; report how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]. A permit dropped unreported (the caller went away)
/// counts for nothing, and frees the half-open probe for someone else.
#[derive(Debug)]
#[must_use = "report the outcome of the call"]
pub struct Permit {
    breaker: Arc<Breaker>,
    reported: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings: BreakerSettings {
                window: settings.window.max(2),
                ..settings
            },
            phase: Mutex::new(Phase::Closed {
                outcomes: VecDeque::new(),
            }),
        }
    }

    /// A permit when a call may go through at `now`.
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut phase = self.lock();
        match &mut *phase {
            Phase::Closed { .. } => {}
            Phase::Open { until } if now < *until => return None,
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => *phase = Phase::HalfOpen { probing: true },
            Phase::HalfOpen { probing: true } => return None,
        }
        Some(Permit {
            breaker: Arc::clone(self),
            reported: false,
        })
    }

    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// When an open breaker lets its probe through; `None` unless open.
    pub fn opens_again_at(&self) -> Option<Instant> {
        match &*self.lock() {
            Phase::Open { until } => Some(*until),
            _ => None,
        }
    }

    fn record(&self, succeeded: bool, now: Instant) {
        let mut phase = self.lock();
        match &mut *phase {
            Phase::Closed { outcomes } => {
                if outcomes.len() == self.settings.window {
                    outcomes.pop_front();
                }
                outcomes.push_back(succeeded);
                let failures = outcomes.iter().filter(|ok| !**ok).count();
                let enough = outcomes.len() * 2 >= self.settings.window;
                if enough && failures * 2 >= outcomes.len() {
                    *phase = self.open(now);
                }
            }
            Phase::HalfOpen { .. } if succeeded => {
                *phase = Phase::Closed {
                    outcomes: VecDeque::new(),
                };
            }
            Phase::HalfOpen { .. } => *phase = self.open(now),
            // A call let through before it opened: the verdict is in.
            Phase::Open { .. } => {}
        }
    }

    fn abandon(&self) {
        let mut phase = self.lock();
        if let Phase::HalfOpen { probing } = &mut *phase {
            *probing = false;
        }
    }

    fn open(&self, now: Instant) -> Phase {
        Phase::Open {
            until: now + self.settings.open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The phase is consistent after every statement; a panic elsewhere
        // while holding the lock leaves nothing half-done.
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Permit {
    pub fn succeeded(mut self, now: Instant) {
        self.reported = true;
        self.breaker.record(true, now);
    }

    pub fn failed(mut self, now: Instant) {
        self.reported = true;
        self.breaker.record(false, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (Arc<Breaker>, Instant) {
        let settings = BreakerSettings {
            window: 10,
            open_for: Duration::from_secs(30),
        };
        (Arc::new(Breaker::new(settings)), Instant::now())
    }

    fn call(breaker: &Arc<Breaker>, now: Instant, ok: bool) -> bool {
        match breaker.try_acquire(now) {
            Some(permit) if ok => {
                permit.succeeded(now);
                true
            }
            Some(permit) => {
                permit.failed(now);
                true
            }
            None => false,
        }
    }

    #[test]
    fn it_opens_when_half_of_a_full_enough_window_failed() {
        let (breaker, now) = breaker();
        // Four failures out of four: too few calls to judge.
        for _ in 0..4 {
            assert!(call(&breaker, now, false));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        // The fifth call fills half the window; five failures of five.
        assert!(call(&breaker, now, false));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire(now).is_none(), "open refuses calls");
    }

    #[test]
    fn fewer_than_half_failing_keeps_it_closed() {
        let (breaker, now) = breaker();
        for n in 0..40 {
            // Two in five fail, spread out: never half of any stretch.
            assert!(call(&breaker, now, !matches!(n % 5, 1 | 4)));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Old successes slide out of the window as every call now fails.
        let mut failing = 0;
        while breaker.state() == BreakerState::Closed {
            assert!(call(&breaker, now, false));
            failing += 1;
        }
        assert!(failing <= 2, "half the window failed after {failing} more failures");
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn after_the_open_period_one_probe_decides() {
        let (breaker, now) = breaker();
        for _ in 0..5 {
            call(&breaker, now, false);
        }
        assert_eq!(breaker.opens_again_at(), Some(now + Duration::from_secs(30)));
        let later = now + Duration::from_secs(29);
        assert!(breaker.try_acquire(later).is_none());

        let later = now + Duration::from_secs(30);
        let probe = breaker.try_acquire(later).expect("the probe goes through");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.try_acquire(later).is_none(), "one probe at a time");
        probe.failed(later);
        assert_eq!(breaker.state(), BreakerState::Open, "a failed probe opens it again");
        assert!(breaker.try_acquire(later + Duration::from_secs(29)).is_none());

        let again = later + Duration::from_secs(30);
        breaker.try_acquire(again).expect("the next probe").succeeded(again);
        assert_eq!(breaker.state(), BreakerState::Closed, "a good probe closes it");
        // With a clean slate: four failures do not reopen it.
        for _ in 0..4 {
            assert!(call(&breaker, again, false));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let (breaker, now) = breaker();
        for _ in 0..5 {
            call(&breaker, now, false);
        }
        let later = now + Duration::from_secs(31);
        drop(breaker.try_acquire(later).expect("probe"));
        assert!(breaker.try_acquire(later).is_some(), "the probe was given back");
    }
}
