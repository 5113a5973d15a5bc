//! An envelope on its way to the broker: the JSON text it is stored and
//! sent as, and the few fields a bus routes it by.
//!
//! The outbox stores each envelope as text, and the broker is sent that
//! text. Read whole on the way, every event built its strings and its
//! rules' stamps only for the relay to write them out again: the relay's
//! read and its encoding were about 7% of the distributed shop's CPU.
//! Read from the stored text, an `Encoded` keeps it as it is and parses only
//! its head; the whole envelope is decoded only where one is needed (an
//! event also written in a later version, or one whose trace parent the
//! relay replaces).

use serde::Deserialize;
use uuid::Uuid;

use crate::envelope::{DecodeError, Envelope, message_id, twin_version};
use crate::topology::Context;
use crate::trace_parent::TraceParent;

/// An envelope's text and its head. Made from an [`Envelope`]
/// ([`Encoded::of`]) or from text an envelope was written as
/// ([`Encoded::parse`]); either way the text is the envelope's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    context: Context,
    traceparent: Option<TraceParent>,
    text: String,
}

/// What [`Encoded::parse`] reads of the text; the rest is skipped unread.
#[derive(Deserialize)]
struct Head {
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    context: Context,
    #[serde(default)]
    traceparent: Option<TraceParent>,
}

impl Encoded {
    /// `envelope` written as JSON.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            event_id: envelope.event_id,
            event_type: envelope.event_type.clone(),
            schema_version: envelope.schema_version,
            context: envelope.context,
            traceparent: envelope.traceparent,
            // Serialising plain data with string keys cannot fail.
            text: serde_json::to_string(envelope).unwrap_or_default(),
        }
    }

    /// The envelope written as `text`, its head checked and read.
    pub fn parse(text: String) -> Result<Self, DecodeError> {
        let head: Head = serde_json::from_str(&text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        Ok(Self {
            event_id: head.event_id,
            event_type: head.event_type,
            schema_version: head.schema_version,
            context: head.context,
            traceparent: head.traceparent,
            text,
        })
    }

    /// The whole envelope, decoded from the text.
    pub fn envelope(&self) -> Result<Envelope, DecodeError> {
        Envelope::from_bytes(self.text.as_bytes())
    }

    /// Makes `traceparent` the event's trace parent: decoded and written
    /// again (the relay does so only while it exports spans).
    pub fn set_traceparent(&mut self, traceparent: TraceParent) -> Result<(), DecodeError> {
        let mut envelope = self.envelope()?;
        envelope.traceparent = Some(traceparent);
        *self = Self::of(&envelope);
        Ok(())
    }

    /// The same event in each later version it is also written in
    /// ([`Envelope::twins`]); none, without decoding, for most events. As
    /// with an envelope whose payload cannot be read, text that does not
    /// decode has none: the event itself still goes out, for its readers
    /// to set aside.
    pub fn twins(&self) -> Vec<Encoded> {
        if twin_version(&self.event_type, self.schema_version).is_none() {
            return Vec::new();
        }
        self.envelope()
            .map(|envelope| envelope.twins().iter().map(Self::of).collect())
            .unwrap_or_default()
    }

    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    pub fn context(&self) -> Context {
        self.context
    }

    pub fn traceparent(&self) -> Option<TraceParent> {
        self.traceparent
    }

    /// The envelope's JSON.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The broker's de-duplication id ([`Envelope::message_id`]).
    pub fn message_id(&self) -> String {
        message_id(self.event_id, self.schema_version)
    }
}

#[cfg(test)]
mod tests {
    use shop_rules::inventory::{InventoryEvent, ReleaseReason, StockLine, StockRestored};
    use shop_rules::order::{OrderEvent, OrderTransition};

    use super::*;
    use crate::envelope::{DomainEvent, RuleRef, Trace};

    fn rule() -> RuleRef {
        RuleRef {
            name: "order".into(),
            version: 3,
            hash: "ab12".into(),
        }
    }

    fn confirmed() -> Envelope {
        let event = DomainEvent::Order(OrderEvent::Confirmed(OrderTransition {
            order_id: "o-1".into(),
            at: 7,
        }));
        Envelope::new(&event, 2, 7, rule(), Trace::root(Uuid::now_v7()))
    }

    #[test]
    fn the_parsed_head_is_the_envelopes_and_the_text_is_kept_as_it_is() {
        let envelope = confirmed();
        let text = String::from_utf8(envelope.to_bytes()).expect("utf-8");
        let encoded = Encoded::parse(text.clone()).expect("parsed");
        assert_eq!(encoded, Encoded::of(&envelope));
        assert_eq!(encoded.text(), text);
        assert_eq!(encoded.event_id(), envelope.event_id);
        assert_eq!(encoded.event_type(), "OrderConfirmed");
        assert_eq!(encoded.context(), Context::Order);
        assert_eq!(encoded.message_id(), envelope.message_id());
        assert_eq!(encoded.envelope().expect("decoded"), envelope);
    }

    #[test]
    fn text_that_is_not_an_envelope_is_refused() {
        for text in [
            "{not json",
            "{}",
            r#"{"event_id":"x","event_type":"A","schema_version":1,"context":"order"}"#,
        ] {
            assert!(
                matches!(Encoded::parse(text.into()), Err(DecodeError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn a_new_trace_parent_is_written_into_the_text() {
        let parent: TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .expect("trace parent");
        let mut encoded = Encoded::of(&confirmed());
        encoded.set_traceparent(parent).expect("rewritten");
        assert_eq!(encoded.traceparent(), Some(parent));
        assert_eq!(encoded.envelope().expect("decoded").traceparent, Some(parent));
    }

    #[test]
    fn only_events_written_in_a_later_version_have_twins() {
        assert!(Encoded::of(&confirmed()).twins().is_empty());
        let restored = DomainEvent::Inventory(InventoryEvent::StockRestored(StockRestored {
            order_id: "o-1".into(),
            lines: vec![StockLine {
                product_id: "SKU-1".into(),
                quantity: 1,
            }],
            reason: ReleaseReason::Cancelled,
        }));
        let envelope = Envelope::new(&restored, 3, 7, rule(), Trace::root(Uuid::now_v7()));
        let twins = Encoded::of(&envelope).twins();
        let expected: Vec<Encoded> = envelope.twins().iter().map(Encoded::of).collect();
        assert_eq!(twins.len(), 1);
        assert_eq!(twins, expected);
        assert_eq!(twins[0].schema_version(), 2);
    }
}
