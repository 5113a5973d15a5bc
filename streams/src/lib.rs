//! The event contract shared by the Order and Inventory contexts.
//!
//! What crosses the broker between the contexts, and what subscribers outside
//! the shop (shipping, payment, analytics) may rely on:
//! - [`envelope`]: every event travels in an [`Envelope`]: a UUIDv7 id (also
//!   the broker's deduplication id), type and schema version, the aggregate and
//!   its version, causation and correlation ids, and the stamp of the rule
//!   component that decided it; the payload is the domain event as JSON.
//! - [`encoded`]: an envelope on its way to the broker, as the text it is
//!   stored and sent as, with the fields a bus routes it by.
//! - [`later`]: the event types also written in a later schema version,
//!   beside version 1, and their payloads in it.
//! - [`catalogue`]: the JSON Schemas of the envelope and every payload, in
//!   an AsyncAPI 3.0 document of a deployment's subjects and consumers.
//! - [`announcement`]: how instances tell gateways where they serve.
//! - [`hex`]: how bytes (digests, seals, signatures) are written as text.
//! - [`trace_parent`]: the W3C trace context an event carries.
//! - [`topology`]: subject names per context, and the streams and durable
//!   consumers (with their dead-letter path) as plain data that the JetStream
//!   adapter applies.
//!
//! It depends only on the domain (`shop-rules`); the runtime and the adapters
//! depend on it.

#![forbid(unsafe_code)]

pub mod announcement;
pub mod catalogue;
pub mod encoded;
pub mod envelope;
pub mod hex;
pub mod later;
pub mod topology;
pub mod trace_parent;

pub use announcement::{Announcement, AnnouncementKey, Rejected, Trust};
pub use encoded::Encoded;
pub use envelope::{DecodeError, DomainEvent, Envelope, LATER_VERSIONS, Payload, RuleRef, SCHEMA_VERSION, Trace};
pub use topology::{ConsumerSpec, Context, Namespace, NamespaceError, Reader, Retention, StreamSpec, Topology};
