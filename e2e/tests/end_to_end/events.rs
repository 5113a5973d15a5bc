//! The event catalogue against what the shop writes: golden samples of
//! every event type validate against their published schemas, a message
//! that breaks its schema is caught, and the AsyncAPI document names every
//! subject the shop publishes on. (Every saga test also checks every event
//! it left in the streams when it shuts its shop down.)

use std::path::Path;

use shop_e2e::catalogue::Catalogue;
use shop_streams::{Context, Namespace, Reader, Topology, catalogue};

fn topology() -> Topology {
    Topology::new(Namespace::new("shop").expect("a valid namespace"))
}

fn golden_of(name: &str, version: u32) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../streams/golden/v{version}"))
        .join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden(name: &str) -> Vec<u8> {
    golden_of(name, 1)
}

#[test]
fn every_golden_sample_validates_against_its_published_schema() {
    let catalogue = Catalogue::new(&topology());
    assert_eq!(catalogue::event_type_names().len(), 13);
    let messages = catalogue::messages();
    assert_eq!(messages.len(), 15, "13 types, 2 of them in version 2 too");
    for (name, event_type, version) in messages {
        let sample = golden_of(event_type, version);
        assert_eq!(catalogue.check(&sample), Ok(()), "{name}");
    }
    // A version 1 sample is not a version 2 message.
    let mut relabelled: serde_json::Value = serde_json::from_slice(&golden("OrderCancelled")).expect("JSON");
    relabelled["schema_version"] = serde_json::json!(2);
    let check = catalogue.check(&serde_json::to_vec(&relabelled).expect("JSON"));
    assert!(
        check.as_ref().is_err_and(|e| e.contains("OrderCancelledV2")),
        "{check:?}"
    );
}

#[test]
fn a_message_that_breaks_its_schema_is_caught() {
    let catalogue = Catalogue::new(&topology());
    let mut created: serde_json::Value = serde_json::from_slice(&golden("OrderCreated")).expect("JSON");
    let fine = created.clone();
    created["payload"]["lines"][0]["quantity"] = serde_json::json!("two");
    let broken = catalogue.check(&serde_json::to_vec(&created).expect("JSON"));
    assert!(broken.as_ref().is_err_and(|e| e.contains("quantity")), "{broken:?}");
    let mut mislabelled = fine.clone();
    mislabelled["context"] = serde_json::json!("inventory");
    assert!(
        catalogue
            .check(&serde_json::to_vec(&mislabelled).expect("JSON"))
            .is_err()
    );
    let mut unknown = fine;
    unknown["event_type"] = serde_json::json!("OrderTeleported");
    assert!(catalogue.check(&serde_json::to_vec(&unknown).expect("JSON")).is_err());
}

#[test]
fn the_asyncapi_document_names_every_subject_and_consumer() {
    let topology = topology();
    let document = catalogue::asyncapi(&topology);
    assert_eq!(document["asyncapi"], "3.0.0");
    for (name, event_type, version) in catalogue::messages() {
        let channel = &document["channels"][&name];
        let context = if name.starts_with("Order") {
            Context::Order
        } else {
            Context::Inventory
        };
        assert_eq!(
            channel["address"],
            topology.versioned_subject(context, event_type, version),
            "{name}"
        );
        assert_eq!(document["operations"][format!("publish{name}")]["action"], "send");
    }
    assert_eq!(
        document["channels"]["OrderCancelledV2"]["address"],
        "shop.order.OrderCancelled.v2"
    );
    // Inventory reads each order event it acts on through a consumer of
    // its own; the order side reads inventory's whole stream through one.
    let mut readers: Vec<(String, String)> = topology
        .consumers(Reader::Inventory)
        .into_iter()
        .map(|consumer| {
            let event_type = consumer.event_type.expect("one type each");
            (format!("inventoryReads{event_type}"), consumer.durable)
        })
        .collect();
    assert_eq!(readers.len(), 3);
    readers.push((
        "orderReadsInventoryEvents".into(),
        topology.consumer(Context::Order).durable,
    ));
    for (operation, durable) in readers {
        let description = document["operations"][&operation]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{operation} described"));
        assert!(description.contains(&durable), "{description}");
    }
}

#[test]
fn the_published_document_in_docs_is_what_the_code_generates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events/asyncapi.json");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("docs/events/asyncapi.json"))
        .expect("the stored document is JSON");
    assert!(
        stored == catalogue::asyncapi(&topology()),
        "docs/events/asyncapi.json is stale: `cargo run -- events write` writes it anew"
    );
}
