//! `shop`: the composition root. The only crate that knows every adapter:
//! [`app::App::build`] wires them to the runtime's ports for the roles a
//! process runs, and [`cli`] is the command line over it. Everything else
//! depends inward (rules <- runtime <- adapters, gateway).

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod contexts;

mod apikey_cmd;
mod audit_cmd;
mod customers_cmd;
mod dead_letters_cmd;
mod events_cmd;
mod fleet;
mod gateway_role;
mod log_lines;
mod migrate_cmd;
mod ops_cmd;
mod otel;
mod outbox_cmd;
mod payment_sim_cmd;
mod rules_cmd;
mod rules_kit;
mod secrets;
pub mod serve_cmd;
mod telemetry;
mod token_cmd;
mod wiring;

pub use app::App;
pub use config::Settings;
pub use contexts::{Contexts, Outboxes, Ports};
pub use secrets::MissingSecret;
pub use serve_cmd::ProcessRole;
