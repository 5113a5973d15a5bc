//! Fault injection for the shop's tests, against the real services.
//!
//! - [`TcpProxy`]: stands between a client and PostgreSQL, Redis or NATS on
//!   loopback; [`TcpProxy::cut`] makes the service unreachable (live
//!   connections dropped, new ones refused) and [`TcpProxy::restore`] brings
//!   it back, without touching the shared server other tests use.
//! - [`NatsServer`]: a private `nats-server` with JetStream on a free
//!   loopback port and its own store, which a test may kill and restart.
//! - [`shop::Shop`]: every role of the shop in the test's process, wired to
//!   the real services (or to a proxy or private server in front of them),
//!   for the end-to-end tests and the Gherkin features.
//!
//! Test support only: nothing in the product depends on this crate.

#![forbid(unsafe_code)]

mod nats;
mod proxy;
pub mod shop;

pub use nats::NatsServer;
pub use proxy::TcpProxy;
