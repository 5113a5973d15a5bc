//! A shared adapter with a local one behind it, for the ports whose promise
//! an instance can keep on its own for a while: rate limits (each instance
//! counts alone) and locks (each instance excludes alone; the stores'
//! versions are the guarantee either way). An outage of the shared service
//! loosens them to per instance but never lifts them.
//!
//! The outage is logged when it starts and when it ends, not once per call,
//! and every call the local adapter answered is counted. While the shared
//! service is away it is tried again once per [`RETRY_EVERY`], not on every
//! call, so calls do not each wait out its connection timeout.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// How often a shared service that failed is tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct WithFallback<P, F> {
    pub(crate) primary: P,
    pub(crate) fallback: F,
    /// Whether the shared service is away: read on every call, so a
    /// working one costs no lock.
    away: AtomicBool,
    /// While it is away: when it was last tried.
    outage: Mutex<Option<Instant>>,
    fallbacks: Counter,
}

impl<P, F> WithFallback<P, F> {
    pub fn new(primary: P, fallback: F) -> Self {
        Self {
            primary,
            fallback,
            away: AtomicBool::new(false),
            outage: Mutex::new(None),
            fallbacks: Counter::default(),
        }
    }

    /// Calls the local adapter answered because the shared one failed.
    pub fn fallbacks(&self) -> Counter {
        self.fallbacks.clone()
    }

    /// Whether to try the shared service: always while it works, once per
    /// [`RETRY_EVERY`] while it is away.
    pub(crate) fn try_primary(&self) -> bool {
        if !self.away.load(Ordering::Relaxed) {
            return true;
        }
        let Ok(mut outage) = self.outage.lock() else {
            return true;
        };
        match *outage {
            Some(tried) if tried.elapsed() < RETRY_EVERY => false,
            Some(_) => {
                *outage = Some(Instant::now());
                true
            }
            None => true,
        }
    }

    /// The shared service answered: an outage, if any, is over.
    pub(crate) fn answered(&self, target: &'static str) {
        if !self.away.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut outage) = self.outage.lock()
            && outage.take().is_some()
        {
            self.away.store(false, Ordering::Relaxed);
            tracing::warn!(target: "shop::fallback", service = target, "the shared service answers again");
        }
    }

    /// The shared service failed (or is skipped while away): the local
    /// adapter answers this call.
    pub(crate) fn falling_back(&self, target: &'static str, error: Option<&dyn std::fmt::Display>) {
        self.fallbacks.inc();
        if let (Some(error), Ok(mut outage)) = (error, self.outage.lock())
            && outage.replace(Instant::now()).is_none()
        {
            self.away.store(true, Ordering::Relaxed);
            tracing::warn!(
                target: "shop::fallback",
                service = target,
                %error,
                "shared service unreachable; each instance on its own until it returns"
            );
        }
    }
}
