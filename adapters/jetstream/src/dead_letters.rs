//! Listing and replaying the dead-letter stream.

use async_nats::jetstream::context::Context as JsContext;
use async_nats::jetstream::message::StreamMessage;
use shop_runtime::ports::{BusError, DeadLetter};
use shop_streams::Topology;
use shop_streams::topology::dead_letter_header as header;

use crate::unavailable;

pub(crate) async fn list(js: &JsContext, topology: &Topology, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
    let name = topology.dead_letter_stream().name;
    let mut stream = js
        .get_stream(&name)
        .await
        .map_err(|e| unavailable(format!("stream {name}"), e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| unavailable(format!("stream {name}"), e))?
        .state
        .clone();
    let mut letters = Vec::new();
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if letters.len() >= limit {
            break;
        }
        // Replayed letters leave gaps in the sequence.
        if let Ok(message) = stream.get_raw_message(sequence).await {
            letters.push(letter(message));
        }
    }
    Ok(letters)
}

pub(crate) async fn replay(js: &JsContext, topology: &Topology, id: u64) -> Result<(), BusError> {
    let name = topology.dead_letter_stream().name;
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| unavailable(format!("stream {name}"), e))?;
    let message = stream
        .get_raw_message(id)
        .await
        .map_err(|_| BusError::Refused(format!("no dead letter {id}")))?;
    let letter = letter(message);
    if letter.subject.is_empty() {
        return Err(BusError::Refused(format!(
            "dead letter {id} does not say where it came from"
        )));
    }
    // A fresh dedup id: the original may still be inside the duplicate window.
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(letter.body.into())
        .message_id(format!("replay-{name}-{id}"));
    js.send_publish(letter.subject.clone(), publish)
        .await
        .map_err(|e| unavailable("replay".into(), e))?
        .await
        .map_err(|e| unavailable("replay ack".into(), e))?;
    stream
        .delete_message(id)
        .await
        .map_err(|e| unavailable(format!("remove dead letter {id}"), e))?;
    Ok(())
}

fn letter(message: StreamMessage) -> DeadLetter {
    let text = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default()
    };
    DeadLetter {
        id: message.sequence,
        consumer: text(header::CONSUMER),
        subject: text(header::SUBJECT),
        reason: text(header::REASON),
        deliveries: text(header::DELIVERIES).parse().unwrap_or(0),
        body: message.payload.to_vec(),
    }
}
