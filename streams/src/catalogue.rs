//! The event catalogue for subscribers: a JSON Schema of the envelope and of
//! every payload, generated from the Rust types that write them, inside an
//! AsyncAPI 3.0 document of a deployment's streams, subjects, consumers and
//! messages.
//!
//! A subscriber validates a message of type `T` against the payload schema
//! of `components.messages.T` in [`asyncapi`]'s document
//! (`#/components/schemas/TEvent`): the envelope with its `event_type`,
//! `context` and `schema_version` fixed and its payload described. Schemas are open (unknown fields allowed), so a producer may
//! add fields within a schema version; the change policy is in
//! docs/events/README.md.

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use shop_rules::inventory::{
    Adjust, InsufficientStock, OrderLines, PriceChanged, RegisterProduct, Restock, StockRestored,
};
use shop_rules::order::{OrderCancelled, OrderCreated, OrderTransition};

use crate::envelope::{Envelope, SCHEMA_VERSION, Voided, message_name};
use crate::later::{OrderCancelledV2, StockRestoredV2};
use crate::topology::{Context, Topology};

/// Where the document keeps its schemas; every `$ref` points here.
const SCHEMAS: &str = "/components/schemas";

/// One event type in one schema version: its name on the wire, its
/// context, what it means, and its payload's schema.
struct EventType {
    name: &'static str,
    version: u32,
    context: Context,
    summary: &'static str,
    payload: Schema,
}

/// Every event type the shop writes, in every version it writes, with its
/// payload type: the same pairs `envelope::decode` reads (a test keeps the
/// two lists equal).
fn event_types(generator: &mut SchemaGenerator) -> Vec<EventType> {
    use Context::{Inventory, Order};
    let event = |name, context, summary, payload| EventType {
        name,
        version: SCHEMA_VERSION,
        context,
        summary,
        payload,
    };
    let later = |name, context, summary, payload| EventType {
        name,
        version: 2,
        context,
        summary,
        payload,
    };
    vec![
        event(
            "OrderCreated",
            Order,
            "An order was accepted; the inventory is asked to reserve its lines.",
            generator.subschema_for::<OrderCreated>(),
        ),
        event(
            "OrderConfirmed",
            Order,
            "The order's stock is reserved: it awaits payment.",
            generator.subschema_for::<OrderTransition>(),
        ),
        event(
            "OrderCompleted",
            Order,
            "The order was paid: its reserved stock is deducted.",
            generator.subschema_for::<OrderTransition>(),
        ),
        event(
            "OrderCancelled",
            Order,
            "The order was cancelled (by the customer, an admin, expiry or missing stock); its reservation is released.",
            generator.subschema_for::<OrderCancelled>(),
        ),
        event(
            "ProductRegistered",
            Inventory,
            "A product entered the catalogue with its initial stock.",
            generator.subschema_for::<RegisterProduct>(),
        ),
        event(
            "StockRestocked",
            Inventory,
            "Delivered units were added to a product's stock.",
            generator.subschema_for::<Restock>(),
        ),
        event(
            "StockAdjusted",
            Inventory,
            "A product's stock was corrected (count, damage, loss).",
            generator.subschema_for::<Adjust>(),
        ),
        event(
            "PriceChanged",
            Inventory,
            "A product's unit price changed; orders keep the price they were placed at.",
            generator.subschema_for::<PriceChanged>(),
        ),
        event(
            "StockReserved",
            Inventory,
            "Every line of an order was reserved.",
            generator.subschema_for::<OrderLines>(),
        ),
        event(
            "InsufficientStock",
            Inventory,
            "An order could not be reserved: nothing was reserved for it.",
            generator.subschema_for::<InsufficientStock>(),
        ),
        event(
            "StockDeducted",
            Inventory,
            "A completed order's reserved units left the stock.",
            generator.subschema_for::<OrderLines>(),
        ),
        event(
            "StockRestored",
            Inventory,
            "A cancelled or expired order's reserved units returned to the stock.",
            generator.subschema_for::<StockRestored>(),
        ),
        event(
            "ReservationVoided",
            Inventory,
            "A reservation for an order already cancelled was undone on arrival.",
            generator.subschema_for::<Voided>(),
        ),
        later(
            "OrderCancelled",
            Order,
            "OrderCancelled in version 2: its reason is always a code (`other` with a `note`), as every version 2 event writes it.",
            generator.subschema_for::<OrderCancelledV2>(),
        ),
        later(
            "StockRestored",
            Inventory,
            "StockRestored in version 2: `order_cancelled` or `reservation_expired`, spelled as the order's cancel reason.",
            generator.subschema_for::<StockRestoredV2>(),
        ),
    ]
}

/// The names of every event type, in the catalogue's order.
pub fn event_type_names() -> Vec<&'static str> {
    event_types(&mut generator())
        .iter()
        .filter(|e| e.version == SCHEMA_VERSION)
        .map(|e| e.name)
        .collect()
}

/// Every message of the catalogue: its name (`components.messages`), event
/// type and schema version; a later version's name ends in `V<n>`.
pub fn messages() -> Vec<(String, &'static str, u32)> {
    event_types(&mut generator())
        .iter()
        .map(|e| (message_name(e.name, e.version), e.name, e.version))
        .collect()
}

fn generator() -> SchemaGenerator {
    SchemaGenerator::new(SchemaSettings::draft2020_12().with(|s| s.definitions_path = SCHEMAS.into()))
}

/// The AsyncAPI 3.0 document of `topology`'s deployment.
pub fn asyncapi(topology: &Topology) -> Value {
    let mut generator = generator();
    let envelope = generator.subschema_for::<Envelope>();
    let events = event_types(&mut generator);
    let mut schemas = generator.take_definitions(true);
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for event in &events {
        let (context, version) = (event.context, event.version);
        let name = &message_name(event.name, version);
        // Apart from the payload types' names (`OrderCancelled` is both).
        let message_schema = format!("{name}Event");
        schemas.insert(
            message_schema.clone(),
            json!({
                "title": name,
                "description": event.summary,
                "allOf": [envelope],
                "properties": {
                    "event_type": {"const": event.name},
                    "context": {"const": context.as_str()},
                    "schema_version": {"const": version},
                    "payload": event.payload,
                },
            }),
        );
        messages.insert(
            name.to_owned(),
            json!({
                "name": name,
                "title": name,
                "summary": event.summary,
                "contentType": "application/json",
                "headers": {
                    "type": "object",
                    "properties": {"Nats-Msg-Id": {"type": "string", "description": "The envelope's event_id (with .v<n> after it past version 1): JetStream drops a duplicate publish"}},
                },
                "payload": {"$ref": format!("#{SCHEMAS}/{message_schema}")},
            }),
        );
        channels.insert(
            name.to_owned(),
            json!({
                "address": topology.versioned_subject(context, event.name, version),
                "title": name,
                "description": format!("Kept in the stream {}.", topology.stream(context).name),
                "messages": {name: {"$ref": format!("#/components/messages/{name}")}},
            }),
        );
        operations.insert(
            format!("publish{name}"),
            json!({
                "action": "send",
                "title": format!("The {context} context publishes {name}"),
                "channel": {"$ref": format!("#/channels/{name}")},
                "messages": [{"$ref": format!("#/channels/{name}/messages/{name}")}],
            }),
        );
    }
    // The shop's own subscriptions, through durable consumers: the order
    // context reads the channel of inventory's whole stream (acting on the
    // events it handles); inventory reads each order event it handles
    // through a consumer of its own, and payment (when the deployment has
    // it) the confirmations: each of those reads one event's channel.
    for reader in topology.readers() {
        let source = reader.source();
        for consumer in topology.consumers(reader) {
            let (operation, title, channel, acts_on) = match consumer.event_type {
                Some(only) => (
                    format!("{reader}Reads{only}"),
                    format!("The {reader} reader reads {only}"),
                    only.to_owned(),
                    format!("It acts on {only}."),
                ),
                None => {
                    let stream_channel = format!("{source}Events");
                    let read: Map<String, Value> = events
                        .iter()
                        .filter(|e| e.context == source)
                        .map(|e| {
                            let name = message_name(e.name, e.version);
                            let reference = json!({"$ref": format!("#/components/messages/{name}")});
                            (name, reference)
                        })
                        .collect();
                    channels.insert(
                        stream_channel.clone(),
                        json!({
                            "address": consumer.filter_subject,
                            "title": format!("Every {source} event"),
                            "description": format!("The whole stream {}.", consumer.stream),
                            "messages": read,
                        }),
                    );
                    (
                        format!("{reader}Reads{}Events", capitalised(source.as_str())),
                        format!("The {reader} context reads the {source} events"),
                        stream_channel,
                        format!(
                            "It acts on version 1 of {} and acknowledges unread the later versions' twins and \
                             any {} the filter lets through.",
                            reader.handles().join(", "),
                            reader.ignores().join(", ")
                        ),
                    )
                }
            };
            operations.insert(
                operation,
                json!({
                    "action": "receive",
                    "title": title,
                    "description": format!(
                        "Durable pull consumer {} on stream {} (filter {}); messages it gives up on go to {}. {acts_on}",
                        consumer.durable, consumer.stream, consumer.filter_subject, consumer.dead_letter_subject,
                    ),
                    "channel": {"$ref": format!("#/channels/{channel}")},
                }),
            );
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Shop events",
            "version": SCHEMA_VERSION.to_string(),
            "description": format!(
                "The domain events of the shop deployment `{}` on NATS JetStream. Every message is an \
                 envelope (event id, type, schema version, aggregate and its version, correlation and \
                 causation ids, the deciding rule) around the event's payload.",
                topology.namespace()
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    })
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reader;

    #[test]
    fn each_reader_handles_or_ignores_every_event_of_its_source() {
        let events = event_types(&mut generator());
        for reader in [Reader::Order, Reader::Inventory, Reader::Payment] {
            let mut published: Vec<&str> = events
                .iter()
                .filter(|e| e.context == reader.source() && e.version == SCHEMA_VERSION)
                .map(|e| e.name)
                .collect();
            let mut decided: Vec<&str> = reader.handles().iter().chain(reader.ignores()).copied().collect();
            published.sort_unstable();
            decided.sort_unstable();
            assert_eq!(decided, published, "{reader}: each event once, handled or ignored");
        }
    }
}
