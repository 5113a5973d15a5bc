//! The gateway role's side of this crate: forwarding `/api` to the order
//! and inventory instances that run the contexts. It knows requests and
//! instances only, never the services behind them, and the REST API knows
//! nothing of it: [`crate::Gateway::proxy`] is where the two meet.
//!
//! - [`proxy`]: which requests go where, retries with backoff, the answer
//!   when no instance can take one;
//! - [`upstream`]: the instances of each context, health checks and the
//!   rotation;
//! - [`balance`]: the strategies that order the instances for a request;
//! - [`breaker`]: one circuit breaker per instance.

pub(crate) mod balance;
pub(crate) mod breaker;
pub(crate) mod proxy;
pub(crate) mod upstream;

pub use balance::{BadBalance, Balance};
pub use breaker::{BreakerSettings, BreakerState};
pub use proxy::{ProxySettings, Upstreams};
pub use upstream::BadUpstream;
