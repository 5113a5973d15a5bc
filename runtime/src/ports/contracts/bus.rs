//! The [`EventBus`] contract. Run it against a bus of its own (a fresh
//! namespace) whose topology has the payment reader: it expects no earlier
//! messages.

use std::collections::BTreeSet;
use std::time::Duration;

use shop_rules::order::{OrderEvent, OrderTransition};
use shop_streams::{Envelope, Reader, Trace};
use uuid::Uuid;

use super::encoded;
use crate::ports::{BusError, Delivery, EventBus, Subscription};

const WAIT: Duration = Duration::from_millis(500);
const QUIET: Duration = Duration::from_millis(200);

/// An order event the inventory reader handles.
fn completed(order_id: &str) -> Envelope {
    let event = OrderEvent::Completed(OrderTransition {
        order_id: order_id.to_owned(),
        at: 1,
    });
    super::order_envelope(event, 3, Trace::root(Uuid::now_v7()))
}

fn confirmed(order_id: &str) -> Envelope {
    let event = OrderEvent::Confirmed(OrderTransition {
        order_id: order_id.to_owned(),
        at: 1,
    });
    super::order_envelope(event, 2, Trace::root(Uuid::now_v7()))
}

/// Every check; `max_deliver` is the consumer's delivery limit.
pub async fn run<B: EventBus>(bus: &B, max_deliver: u64) {
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    events_reach_the_other_context_once(bus, &mut inventory).await;
    a_retried_message_comes_back(bus, &mut inventory).await;
    subscriptions_of_one_context_share_the_work(bus, &mut inventory).await;
    the_inventory_reader_is_not_given_the_confirmations(bus, &mut inventory).await;
    dead_letters_are_kept_listed_and_replayed(bus, &mut inventory).await;
    a_message_that_keeps_failing_becomes_a_dead_letter(bus, &mut inventory, max_deliver).await;
    the_payment_reader_gets_the_confirmations_only(bus).await;
}

/// Everything available now, acked.
async fn drain<S: Subscription>(subscription: &mut S) -> Vec<Envelope> {
    let mut seen = Vec::new();
    loop {
        let batch = subscription.next_batch(50, QUIET).await.expect("pull");
        if batch.is_empty() {
            return seen;
        }
        for delivery in batch {
            seen.push(delivery.envelope().clone());
            delivery.ack().await.expect("ack");
        }
    }
}

/// Last: the payment reader, subscribed after every check above, is given
/// the confirmation and none of the order events before or beside it.
async fn the_payment_reader_gets_the_confirmations_only<B: EventBus>(bus: &B) {
    let mut payment = bus.subscribe(Reader::Payment).await.expect("subscribe");
    let created = super::created(&super::order("o-paid"));
    let confirmed = confirmed("o-paid");
    bus.publish(&encoded(&[created.clone(), confirmed.clone()]))
        .await
        .expect("published");
    let seen = drain(&mut payment).await;
    assert!(seen.contains(&confirmed), "payment reads the confirmation");
    assert!(
        seen.iter().all(|event| event.event_type == "OrderConfirmed"),
        "payment reads confirmations and nothing else: {:?}",
        seen.iter().map(|e| &e.event_type).collect::<Vec<_>>()
    );
}

async fn events_reach_the_other_context_once<B: EventBus>(bus: &B, inventory: &mut B::Subscription) {
    let event = completed("o-1");
    bus.publish(&encoded(std::slice::from_ref(&event)))
        .await
        .expect("published");
    // The same event again (a relay that crashed before marking it sent).
    bus.publish(&encoded(std::slice::from_ref(&event)))
        .await
        .expect("published again");
    assert_eq!(inventory.lag().await.expect("lag"), 1, "one message waits, stored once");
    let batch = inventory.next_batch(10, WAIT).await.expect("pull");
    assert_eq!(batch.len(), 1, "delivered once");
    assert_eq!(batch[0].envelope(), &event, "the envelope arrives whole");
    assert_eq!(batch[0].attempt(), 1);
    for delivery in batch {
        delivery.ack().await.expect("ack");
    }
    assert!(drain(inventory).await.is_empty(), "acked means gone");
    // Several at once, one of them twice: each stored once, in the order given.
    let (first, second) = (completed("o-2"), completed("o-3"));
    bus.publish(&encoded(&[first.clone(), second.clone(), first.clone()]))
        .await
        .expect("published together");
    assert_eq!(drain(inventory).await, [first, second], "in order, each once");
}

async fn a_retried_message_comes_back<B: EventBus>(bus: &B, inventory: &mut B::Subscription) {
    let event = completed("o-2");
    bus.publish(&encoded(std::slice::from_ref(&event)))
        .await
        .expect("published");
    let mut batch = inventory.next_batch(10, WAIT).await.expect("pull");
    let first = batch.pop().expect("delivered");
    first.retry(Duration::ZERO).await.expect("nak");
    let batch = inventory.next_batch(10, WAIT).await.expect("pull");
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].envelope(), batch[0].attempt()), (&event, 2));
    for delivery in batch {
        delivery.ack().await.expect("ack");
    }
}

async fn subscriptions_of_one_context_share_the_work<B: EventBus>(bus: &B, inventory: &mut B::Subscription) {
    let mut second = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let events: Vec<Envelope> = (0..20).map(|n| completed(&format!("s-{n}"))).collect();
    bus.publish(&encoded(&events)).await.expect("published");
    let mut ids = BTreeSet::new();
    let mut total = 0;
    // Alternate, taking a few at a time: each message goes to one of them.
    for _ in 0..20 {
        for subscription in [&mut *inventory, &mut second] {
            for delivery in subscription.next_batch(3, QUIET).await.expect("pull") {
                total += 1;
                ids.insert(delivery.envelope().event_id);
                delivery.ack().await.expect("ack");
            }
        }
        if total >= 20 {
            break;
        }
    }
    assert_eq!((total, ids.len()), (20, 20), "every event once, none twice");
    // The other context's consumer saw none of this: order events are not for it.
    let mut order_side = bus.subscribe(Reader::Order).await.expect("subscribe");
    assert!(order_side.next_batch(10, QUIET).await.expect("pull").is_empty());
}

/// Every order is confirmed, and inventory has nothing to do then: a bus
/// that delivered it the confirmations would make it acknowledge one
/// message per order for nothing.
async fn the_inventory_reader_is_not_given_the_confirmations<B: EventBus>(bus: &B, inventory: &mut B::Subscription) {
    let (confirmation, completion) = (confirmed("o-c"), completed("o-c"));
    bus.publish(&encoded(&[confirmation, completion.clone()]))
        .await
        .expect("published");
    assert_eq!(drain(inventory).await, [completion], "the completion alone");
}

async fn dead_letters_are_kept_listed_and_replayed<B: EventBus>(bus: &B, inventory: &mut B::Subscription) {
    let poison = completed("o-poison");
    let after = completed("o-after");
    bus.publish(&encoded(&[poison.clone(), after.clone()]))
        .await
        .expect("published");
    let batch = inventory.next_batch(10, WAIT).await.expect("pull");
    assert_eq!(batch.len(), 2);
    for delivery in batch {
        if delivery.envelope() == &poison {
            delivery
                .dead_letter("no handler for this test")
                .await
                .expect("dead-lettered");
        } else {
            delivery.ack().await.expect("ack");
        }
    }
    assert!(drain(inventory).await.is_empty(), "a dead letter is not redelivered");
    let letters = bus.dead_letters(100).await.expect("listed");
    let letter = letters
        .iter()
        .find(|l| l.reason == "no handler for this test")
        .expect("kept with its reason");
    assert_eq!(
        Envelope::from_bytes(&letter.body).ok().as_ref(),
        Some(&poison),
        "kept byte for byte"
    );
    assert!(letter.subject.ends_with(".order.OrderCompleted"), "{}", letter.subject);
    assert!(letter.consumer.contains("inventory"), "{}", letter.consumer);

    bus.replay_dead_letter(letter.id).await.expect("replayed");
    let again = drain(inventory).await;
    assert_eq!(again, vec![poison], "the replay is delivered again");
    assert!(
        bus.dead_letters(100)
            .await
            .expect("listed")
            .iter()
            .all(|l| l.id != letter.id),
        "a replayed letter leaves the list"
    );
    assert!(matches!(
        bus.replay_dead_letter(letter.id).await,
        Err(BusError::Refused(_))
    ));
}

async fn a_message_that_keeps_failing_becomes_a_dead_letter<B: EventBus>(
    bus: &B,
    inventory: &mut B::Subscription,
    max_deliver: u64,
) {
    inventory.take_dead_lettered();
    let doomed = completed("o-doomed");
    bus.publish(&encoded(std::slice::from_ref(&doomed)))
        .await
        .expect("published");
    let mut attempts = 0;
    loop {
        let batch = inventory.next_batch(10, WAIT).await.expect("pull");
        let Some(delivery) = batch.into_iter().next() else {
            break;
        };
        attempts = delivery.attempt();
        assert!(
            attempts <= max_deliver,
            "delivered {attempts} times, the limit is {max_deliver}"
        );
        delivery.retry(Duration::ZERO).await.expect("nak");
    }
    assert_eq!(attempts, max_deliver, "every allowed delivery happened");
    let letters = bus.dead_letters(100).await.expect("listed");
    let letter = letters
        .iter()
        .find(|l| Envelope::from_bytes(&l.body).ok().as_ref() == Some(&doomed))
        .expect("dead-lettered");
    assert!(letter.reason.contains("deliveries"), "{}", letter.reason);
    assert_eq!(
        inventory.take_dead_lettered(),
        1,
        "the subscription counts what it dead-lettered"
    );
    assert_eq!(inventory.take_dead_lettered(), 0, "and counts it once");
    assert_eq!(inventory.lag().await.expect("lag"), 0, "nothing left waiting");
}
