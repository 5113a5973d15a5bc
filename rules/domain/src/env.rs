//! What the rules may learn from the world: the time and operator settings.
//!
//! Natively, tests pass a [`FixedEnv`]; inside a component the guest answers
//! from the host's clock and config imports, asked only when a rule needs them.

/// Reservations expire this long after confirmation unless configured otherwise.
pub const DEFAULT_RESERVATION_TTL_MS: i64 = 30 * 60 * 1000;

pub trait Env {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// How long a confirmed order keeps its reservation.
    fn reservation_ttl_ms(&self) -> i64 {
        DEFAULT_RESERVATION_TTL_MS
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedEnv {
    pub now_ms: i64,
    pub reservation_ttl_ms: i64,
}

impl FixedEnv {
    pub fn at(now_ms: i64) -> Self {
        Self {
            now_ms,
            reservation_ttl_ms: DEFAULT_RESERVATION_TTL_MS,
        }
    }
}

impl Env for FixedEnv {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn reservation_ttl_ms(&self) -> i64 {
        self.reservation_ttl_ms
    }
}
