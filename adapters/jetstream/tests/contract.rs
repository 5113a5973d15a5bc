//! The event bus contract against the real NATS JetStream on 127.0.0.1:4222
//! (`SHOP_TEST_NATS_URL` overrides it). Each test uses a namespace of its own
//! and deletes its streams at the end.

use std::time::Duration;

use shop_adapter_jetstream::JetStreamBus;
use shop_rules::order::{OrderEvent, OrderTransition};
use shop_runtime::ports::contracts;
use shop_runtime::ports::{EventBus, Subscription};
use shop_streams::{Context, Envelope, Namespace, Reader, Topology, Trace};
use uuid::Uuid;

/// An `OrderCompleted` of `order_id` in the chain `trace`.
fn completed(order_id: &str, trace: Trace) -> Envelope {
    let event = OrderEvent::Completed(OrderTransition {
        order_id: order_id.into(),
        at: 1,
    });
    contracts::order_envelope(event, 3, trace)
}

async fn fresh_bus() -> JetStreamBus {
    let url = std::env::var("SHOP_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let simple = Uuid::now_v7().simple().to_string();
    let namespace = Namespace::new(&format!("t{}", &simple[simple.len() - 12..])).expect("valid namespace");
    JetStreamBus::connect(&url, Topology::new(namespace).with_payment())
        .await
        .expect("NATS is reachable")
}

#[tokio::test]
async fn event_bus_contract() {
    let bus = fresh_bus().await;
    let max_deliver = bus.topology().consumer(Context::Inventory).max_deliver;
    contracts::bus::run(&bus, u64::try_from(max_deliver).expect("positive")).await;
    bus.delete_streams().await.expect("cleaned up");
}

#[tokio::test]
async fn rule_store_contract() {
    let bus = fresh_bus().await;
    let store = bus.rules();
    contracts::rule_store::run(&store).await;
    store.delete().await.expect("rule buckets deleted");
    bus.delete_streams().await.expect("streams deleted");
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_without_blocking_the_next() {
    let bus = fresh_bus().await;
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let subject = format!("{}.order.OrderCreated", bus.topology().namespace());
    for body in ["not json at all", "{\"event_id\": 5}"] {
        bus.jetstream()
            .publish(subject.clone(), body.into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    }
    let good = completed("o-1", Trace::root(Uuid::now_v7()));
    bus.publish(&contracts::encoded(std::slice::from_ref(&good)))
        .await
        .expect("published");

    let batch = inventory
        .next_batch(10, Duration::from_millis(500))
        .await
        .expect("pull");
    let delivered: Vec<_> = batch
        .iter()
        .map(|d| shop_runtime::ports::Delivery::envelope(d).clone())
        .collect();
    assert_eq!(delivered, vec![good], "only the readable message is handed over");

    let letters = bus.dead_letters(10).await.expect("listed");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].body, b"not json at all");
    assert!(
        letters[0].reason.starts_with("not an event envelope"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].subject, subject);
    assert_eq!(letters[0].deliveries, 1);
    bus.delete_streams().await.expect("cleaned up");
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_with_a_clear_error() {
    let started = std::time::Instant::now();
    let namespace = Namespace::new("unreachable").expect("valid");
    let error = JetStreamBus::connect("nats://127.0.0.1:1", Topology::new(namespace))
        .await
        .expect_err("nothing listens on port 1");
    assert!(error.to_string().contains("cannot connect to NATS"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
}

#[tokio::test]
async fn a_cluster_is_given_as_a_comma_separated_list_of_servers() {
    let url = std::env::var("SHOP_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    // A server that is down and one that is up: the client tries the list.
    let servers = format!("nats://127.0.0.1:1, {url}");
    let simple = Uuid::now_v7().simple().to_string();
    let namespace = Namespace::new(&format!("t{}", &simple[simple.len() - 12..])).expect("valid namespace");
    let bus = JetStreamBus::connect(servers.as_str(), Topology::new(namespace).replicated(1))
        .await
        .expect("one of the listed servers answers");
    bus.delete_streams().await.expect("cleaned up");
}

#[tokio::test]
async fn instances_announce_themselves_until_they_leave() {
    use shop_streams::{Announcement, AnnouncementKey, Rejected, Trust};

    let bus = fresh_bus().await;
    let key = AnnouncementKey::new(&[3; 32]).expect("32 bytes");
    let trust = Trust {
        key: Some(key.clone()),
        allow: Vec::new(),
    };
    let mut heard = bus.announcements(trust).await.expect("listening");
    let order = Announcement {
        context: Context::Order,
        url: "http://127.0.0.1:18081".into(),
        instance: "order-1".into(),
        leaving: false,
        weight: 1,
    };
    // Another namespace's instances are not heard here.
    let other = fresh_bus().await;
    let _elsewhere = other.announce(vec![order.clone()], Duration::from_millis(20), Some(key.clone()));
    let announcer = bus.announce(vec![order.clone()], Duration::from_millis(50), Some(key));

    assert_eq!(next_heard(&mut heard).await, Some(Ok(order.clone())), "heard at once");
    assert_eq!(next_heard(&mut heard).await, Some(Ok(order.clone())), "and again");
    // A malformed or unsealed announcement is rejected, not the end of the stream.
    for forged in [
        "nonsense".to_owned(),
        String::from_utf8(order.to_bytes()).expect("JSON"),
    ] {
        bus.jetstream()
            .client()
            .publish(bus.topology().announcements(), forged.into())
            .await
            .expect("sent");
    }
    announcer.leave().await;
    let (mut last, mut rejected) = (None, Vec::new());
    while let Some(announcement) = next_heard(&mut heard).await {
        match announcement {
            Ok(announcement) if announcement.leaving => {
                last = Some(announcement);
                break;
            }
            Ok(_) => {}
            Err(why) => rejected.push(why),
        }
    }
    assert_eq!(
        last,
        Some(Announcement { leaving: true, ..order }),
        "a leaving instance says so"
    );
    assert!(
        matches!(rejected[..], [Rejected::Malformed(_), Rejected::Unverified { .. }]),
        "{rejected:?}"
    );
    bus.delete_streams().await.expect("cleaned up");
    other.delete_streams().await.expect("cleaned up");
}

type Heard = Result<shop_streams::Announcement, shop_streams::Rejected>;

/// The next announcement heard within five seconds.
async fn next_heard<S>(heard: &mut S) -> Option<Heard>
where
    S: futures::Stream<Item = Heard> + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), heard.next())
        .await
        .ok()
        .flatten()
}

/// A context's stream keeps the history its retention allows: past the byte
/// limit the oldest messages go; a start with other limits changes them.
#[tokio::test]
async fn a_stream_keeps_the_history_its_retention_allows() {
    use shop_rules::order::{OrderEvent, OrderTransition};
    use shop_streams::{DomainEvent, Envelope, Retention, RuleRef, Trace};

    let url = std::env::var("SHOP_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let simple = Uuid::now_v7().simple().to_string();
    let namespace = Namespace::new(&format!("t{}", &simple[simple.len() - 12..])).expect("valid namespace");
    let small = Retention {
        max_age: Duration::from_secs(3600),
        max_bytes: Some(16 * 1024),
    };
    let bus = JetStreamBus::connect(&url, Topology::new(namespace.clone()).retained(small))
        .await
        .expect("NATS is reachable");
    let events: Vec<_> = (0..200)
        .map(|n| {
            let event = DomainEvent::Order(OrderEvent::Completed(OrderTransition {
                order_id: format!("o-{n}"),
                at: n,
            }));
            let rule = RuleRef {
                version: 0,
                name: "order".into(),
                hash: "0".repeat(64),
            };
            Envelope::new(&event, 3, 1, rule, Trace::root(Uuid::now_v7()))
        })
        .collect();
    bus.publish(&contracts::encoded(&events)).await.expect("published");

    let stream_info = |bus: &JetStreamBus| {
        let js = bus.jetstream().clone();
        let name = bus.topology().stream(Context::Order).name;
        async move {
            let mut stream = js.get_stream(&name).await.expect("the stream");
            stream.info().await.expect("its state").clone()
        }
    };
    let info = stream_info(&bus).await;
    assert_eq!(info.state.last_sequence, 200, "every event was stored");
    assert!(info.state.bytes <= 16 * 1024, "{} bytes kept", info.state.bytes);
    assert!(info.state.first_sequence > 1, "the oldest went first");
    assert_eq!(info.config.max_age, Duration::from_secs(3600));

    // Another start with other limits brings the stream to them.
    let wider = Retention {
        max_age: Duration::from_secs(7200),
        max_bytes: None,
    };
    let again = JetStreamBus::connect(&url, Topology::new(namespace).retained(wider))
        .await
        .expect("NATS is reachable");
    again
        .publish(&contracts::encoded(&events[..1]))
        .await
        .expect("published");
    let config = stream_info(&again).await.config;
    assert_eq!((config.max_age, config.max_bytes), (Duration::from_secs(7200), -1));
    bus.delete_streams().await.expect("cleaned up");
}

#[tokio::test]
async fn the_trace_parent_travels_in_the_traceparent_header() {
    use futures::StreamExt as _;
    use shop_runtime::ports::Delivery;
    use shop_streams::trace_parent::TraceParent;
    let bus = fresh_bus().await;
    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let subject = format!("{}.order.OrderCompleted", bus.topology().namespace());
    let mut raw = bus
        .jetstream()
        .client()
        .subscribe(subject.clone())
        .await
        .expect("core subscription");
    let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("valid");

    // The shop's publish sets the header from the envelope.
    let traced = completed("o-1", Trace::root(Uuid::now_v7()).within(Some(parent)));
    bus.publish(&contracts::encoded(std::slice::from_ref(&traced)))
        .await
        .expect("published");
    let message = tokio::time::timeout(Duration::from_secs(5), raw.next())
        .await
        .expect("heard in time")
        .expect("a message");
    let header = message
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_owned());
    assert_eq!(header, Some(parent.to_string()));

    // A publisher outside the shop may set only the header: it is the parent.
    let untraced = completed("o-2", Trace::root(Uuid::now_v7()));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", parent.to_string().as_str());
    bus.jetstream()
        .publish_with_headers(subject, headers, untraced.to_bytes().into())
        .await
        .expect("sent")
        .await
        .expect("stored");

    let mut delivered = Vec::new();
    for _ in 0..20 {
        if delivered.len() >= 2 {
            break;
        }
        let batch = inventory
            .next_batch(10, Duration::from_millis(500))
            .await
            .expect("pull");
        delivered.extend(batch.iter().map(|d| d.envelope().clone()));
    }
    assert_eq!(delivered.len(), 2, "both delivered: {delivered:?}");
    assert_eq!(delivered[0], traced);
    assert_eq!(delivered[1].event_id, untraced.event_id);
    assert_eq!(delivered[1].traceparent, Some(parent), "the header's trace parent");
    bus.delete_streams().await.expect("cleaned up");
}

#[tokio::test]
async fn consumers_made_by_type_start_after_what_the_consumer_they_replace_acknowledged() {
    use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
    use futures::StreamExt;
    use shop_runtime::ports::Delivery;

    let bus = fresh_bus().await;
    // What an earlier release made: one consumer for the whole order stream.
    let replaced = bus.topology().consumer(Reader::Inventory);
    assert_eq!(
        replaced.filter_subject,
        format!("{}.order.>", bus.topology().namespace())
    );
    let stream = bus
        .jetstream()
        .get_stream(&replaced.stream)
        .await
        .expect("the order stream");
    let earlier: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(replaced.durable.clone()),
            filter_subject: replaced.filter_subject.clone(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("the earlier release's consumer");
    let trace = Trace::root(Uuid::now_v7());
    let (handled, waiting) = (completed("o-handled", trace), completed("o-waiting", trace));
    bus.publish(&contracts::encoded(std::slice::from_ref(&handled)))
        .await
        .expect("published");
    // The earlier release handled the first event and acknowledged it.
    let mut fetched = earlier.fetch().max_messages(1).messages().await.expect("fetched");
    let message = fetched.next().await.expect("one").expect("a message");
    message.double_ack().await.expect("acknowledged");
    bus.publish(&contracts::encoded(std::slice::from_ref(&waiting)))
        .await
        .expect("published");

    let mut inventory = bus.subscribe(Reader::Inventory).await.expect("subscribe");
    let batch = inventory
        .next_batch(10, Duration::from_millis(500))
        .await
        .expect("pull");
    let seen: Vec<Envelope> = batch.iter().map(|d| d.envelope().clone()).collect();
    assert_eq!(
        seen,
        [waiting],
        "what the replaced consumer acknowledged is not read again"
    );
    bus.delete_streams().await.expect("cleaned up");
}
