//! The shop's domain layer: the order and inventory rules as pure functions.
//!
//! Everything here is `decide(state, command) -> events | rejection` and
//! `evolve(state, event) -> state`, with no I/O, no clock and no randomness
//! beyond what the caller passes in through [`Env`]. The same code is built
//! natively (for fast unit and property tests) and into the WebAssembly
//! components under `rules/components`, which the host runtime executes.
//!
//! The types mirror `rules/wit/shop-rules.wit` field for field; the
//! [`mirror`] macros convert between them and the bindings of either side.

#![forbid(unsafe_code)]

pub mod common;
pub mod env;
pub mod inventory;
pub mod mirror;
pub mod order;
pub mod spec;

pub use common::{FieldError, LineError};
pub use env::{DEFAULT_RESERVATION_TTL_MS, Env, FixedEnv};
