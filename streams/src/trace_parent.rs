//! The W3C trace context an event carries: which distributed trace it
//! belongs to and which span (an HTTP request, a relay's publish, a
//! consumer's handling) caused it. It travels in the `traceparent` header of
//! HTTP requests and NATS messages, and in the envelope so that the outbox
//! keeps it between the commit and the publish.
//!
//! Only the `traceparent` value is carried (W3C Trace Context, level 1);
//! vendor `tracestate` is not.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hex;

/// The header (HTTP and NATS) that carries a [`TraceParent`].
pub const HEADER: &str = "traceparent";

/// `00-<trace id>-<parent span id>-<flags>`, as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Bit 0: the caller sampled this trace.
    pub flags: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)")]
pub struct InvalidTraceParent;

impl TraceParent {
    /// The trace id as 32 lowercase hex digits, as log lines and trace
    /// viewers show it.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(&self.trace_id)
    }
}

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    /// Version `00` exactly; a later version is read by its first four
    /// fields, as the recommendation asks, and `ff` is refused.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let mut fields = text.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(InvalidTraceParent);
        };
        let lower_hex = |field: &str, len: usize| {
            field.len() == len && field.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2) || version == "ff" || (version == "00" && fields.next().is_some()) {
            return Err(InvalidTraceParent);
        }
        if !(lower_hex(trace, 32) && lower_hex(span, 16) && lower_hex(flags, 2)) {
            return Err(InvalidTraceParent);
        }
        let bytes = |field: &str| hex::decode(field).ok_or(InvalidTraceParent);
        let trace_id: [u8; 16] = bytes(trace)?.try_into().map_err(|_| InvalidTraceParent)?;
        let span_id: [u8; 8] = bytes(span)?.try_into().map_err(|_| InvalidTraceParent)?;
        let flags = bytes(flags)?.first().copied().ok_or(InvalidTraceParent)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(InvalidTraceParent);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(&self.trace_id),
            hex::encode(&self.span_id),
            self.flags
        )
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TraceParent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TraceParent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "W3C trace context of the span that caused the event (also in the message's traceparent header)",
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_w3c_form() {
        let parent: TraceParent = SAMPLE.parse().expect("the specification's example");
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.to_string(), SAMPLE);
        let json = serde_json::to_string(&parent).expect("serializes");
        assert_eq!(json, format!("\"{SAMPLE}\""));
        assert_eq!(serde_json::from_str::<TraceParent>(&json).expect("round trip"), parent);
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(
            later.parse::<TraceParent>().map(|p| p.to_string()),
            Ok(SAMPLE.to_owned())
        );
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        ] {
            assert_eq!(bad.parse::<TraceParent>(), Err(InvalidTraceParent), "{bad:?}");
        }
    }
}
