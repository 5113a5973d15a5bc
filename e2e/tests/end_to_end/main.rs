//! The saga end to end on the real services, the shop wired in-process by
//! its composition root: one binary, so the adapters link once.

mod faults;
mod layout;
mod saga;
