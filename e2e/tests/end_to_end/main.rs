//! The saga end to end on the real services, the shop wired in-process by
//! its composition root: one binary, so the adapters link once.

mod events;
mod faults;
mod layout;
mod saga;
