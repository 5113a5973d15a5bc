//! The rules host with the shipped components and test fixtures: one test
//! binary, so wasmtime links once.

mod capabilities;
mod common;
mod hot_swap;
mod sandbox;
mod shadow;
mod spec_through_wasm;
