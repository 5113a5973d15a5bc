//! The event catalogue against what the shop writes: golden samples of
//! every event type validate against their published schemas, a message
//! that breaks its schema is caught, and the AsyncAPI document names every
//! subject the shop publishes on. (Every saga test also checks every event
//! it left in the streams when it shuts its shop down.)

use std::path::Path;

use shop_e2e::catalogue::Catalogue;
use shop_streams::{Context, Namespace, Topology, catalogue};

fn topology() -> Topology {
    Topology::new(Namespace::new("shop").expect("a valid namespace"))
}

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../streams/golden/v1")
        .join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_golden_sample_validates_against_its_published_schema() {
    let catalogue = Catalogue::new(&topology());
    let names = catalogue::event_type_names();
    assert_eq!(names.len(), 13);
    for name in names {
        let sample = golden(name);
        assert_eq!(catalogue.check(&sample), Ok(()), "{name}");
    }
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
    for name in catalogue::event_type_names() {
        let channel = &document["channels"][name];
        let context = if name.starts_with("Order") {
            Context::Order
        } else {
            Context::Inventory
        };
        assert_eq!(channel["address"], topology.subject(context, name), "{name}");
        assert_eq!(document["operations"][format!("publish{name}")]["action"], "send");
    }
    for (reader, operation) in [
        (Context::Inventory, "inventoryReadsOrderEvents"),
        (Context::Order, "orderReadsInventoryEvents"),
    ] {
        let description = document["operations"][operation]["description"]
            .as_str()
            .expect("described");
        assert!(
            description.contains(&topology.consumer(reader).durable),
            "{description}"
        );
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
