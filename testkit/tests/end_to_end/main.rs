//! The saga end to end on the real services, wired by the test kit: one
//! binary, so the adapters link once.

mod faults;
mod saga;
