//! Events held to the catalogue subscribers read
//! ([`shop_streams::catalogue`]): every message a test's shop left in its
//! streams must validate against the schema of its type, and every golden
//! sample too, so the published schemas cannot drift from what the shop
//! writes.

use std::collections::HashMap;

use serde_json::Value;
use shop_streams::envelope::message_name;
use shop_streams::{Context, Topology, catalogue};

/// A validator per message (event type and version), compiled from the
/// AsyncAPI document.
pub struct Catalogue {
    validators: HashMap<String, jsonschema::Validator>,
}

impl Catalogue {
    pub fn new(topology: &Topology) -> Self {
        let document = catalogue::asyncapi(topology);
        let validators = catalogue::messages()
            .into_iter()
            .map(|(name, _, _)| {
                // The whole document is the root, so that every `$ref` into
                // its components resolves; its own keys are not keywords.
                let mut schema = document.clone();
                schema["$ref"] = document["components"]["messages"][&name]["payload"]["$ref"].clone();
                let validator = jsonschema::draft202012::new(&schema)
                    .unwrap_or_else(|e| panic!("the schema of {name} compiles: {e}"));
                (name, validator)
            })
            .collect();
        Self { validators }
    }

    /// `Ok` when `message` is an envelope of a known type and version that
    /// validates against their schema; else what is wrong.
    pub fn check(&self, message: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(message).map_err(|e| format!("not JSON: {e}"))?;
        let event_type = value["event_type"].as_str().ok_or("no event_type")?;
        let version = value["schema_version"].as_u64().ok_or("no schema_version")?;
        let name = message_name(event_type, u32::try_from(version).map_err(|e| e.to_string())?);
        let validator = self
            .validators
            .get(&name)
            .ok_or_else(|| format!("{name} is in no schema"))?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        match errors.is_empty() {
            true => Ok(()),
            false => Err(format!("{name}: {}", errors.join("; "))),
        }
    }
}

impl crate::Shop {
    /// Every message in this shop's two event streams, with its subject.
    pub async fn stored_events(&self) -> Vec<(String, Vec<u8>)> {
        let js = self.bus.jetstream();
        let mut messages = Vec::new();
        for context in [Context::Order, Context::Inventory] {
            let name = self.bus.topology().stream(context).name;
            let stream = js.get_stream(&name).await.expect("the stream exists");
            let info = stream.get_info().await.expect("stream info");
            if info.state.messages == 0 {
                continue;
            }
            // Test streams have no limits and nothing deletes from them: no gaps.
            for sequence in info.state.first_sequence..=info.state.last_sequence {
                let message = stream.get_raw_message(sequence).await.expect("a stored message");
                messages.push((message.subject.to_string(), message.payload.to_vec()));
            }
        }
        messages
    }

    /// Panics naming every stored event that breaks its published schema.
    pub async fn assert_events_conform(&self) {
        let catalogue = Catalogue::new(self.bus.topology());
        let stored = self.stored_events().await;
        let broken: Vec<String> = stored
            .iter()
            .filter_map(|(subject, message)| catalogue.check(message).err().map(|e| format!("{subject}: {e}")))
            .collect();
        assert!(
            broken.is_empty(),
            "events against the catalogue:\n{}",
            broken.join("\n")
        );
    }
}
