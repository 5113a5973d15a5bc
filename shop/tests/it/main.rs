//! The shop's integration tests against the real services, in one binary
//! so the whole shop links once. The Gherkin scenarios (`features.rs`) run
//! under cucumber's own harness beside it.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod audit;
mod cli;
mod customers;
mod embedded;
mod fleet;
mod gateway;
mod kill;
mod least_privilege;
mod payment;
mod secured;
mod serve;
mod traces;
