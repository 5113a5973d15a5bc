//! One order's distributed trace, exported by three real processes
//! (`shop serve --role gateway`, `order` and `inventory`, on PostgreSQL,
//! JetStream and Redis) to an OTLP receiver in this test: the caller's
//! `traceparent` is the root, and every hop (the gateway's request, the
//! order intake, the relay's publish, the inventory's reservation, the
//! order's confirmation) is the child of the one before, across processes.
//! Their log lines name the trace, and `/metrics` the pool's waits.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{RoleProcess, TEST_SECRET, token};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::json;
use shop_streams::hex;

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    span_id: String,
    parent_id: String,
    event_type: Option<String>,
}

/// Spans by trace id (hex), as exporters sent them.
type Spans = Arc<Mutex<HashMap<String, Vec<Received>>>>;

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with protobuf.
async fn receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                let mut kept = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        let event_type = span
                            .attributes
                            .iter()
                            .find(|a| a.key == "event_type")
                            .and_then(|a| text(a.value.as_ref()?.value.as_ref()?));
                        kept.entry(hex::encode(&span.trace_id)).or_default().push(Received {
                            service: service.clone(),
                            name: span.name,
                            span_id: hex::encode(&span.span_id),
                            parent_id: hex::encode(&span.parent_span_id),
                            event_type,
                        });
                    }
                }
                // An empty ExportTraceServiceResponse.
                Vec::<u8>::new()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, spans)
}

fn text(value: &AnyValue) -> Option<String> {
    match value {
        AnyValue::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

/// The span of `service` named `name` in `spans`.
fn find<'a>(spans: &'a [Received], service: &str, name: &str) -> Option<&'a Received> {
    spans.iter().find(|s| s.service == service && s.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_across_the_gateway_and_both_contexts() {
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let (namespace, bus) = common::fresh_bus('t').await;
    let (otlp, spans) = receiver().await;
    let endpoint = format!("http://{otlp}");
    let exporting = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("SHOP_JWT_SECRET", TEST_SECRET),
    ];
    let ns = namespace.as_str();
    let inventory = RoleProcess::start("inventory", &db, ns, &exporting);
    let log = Arc::new(Mutex::new(String::new()));
    let mut logged = exporting.to_vec();
    logged.extend([("SHOP_LOG_FORMAT", "json"), ("SHOP_LOG", "info")]);
    let order = RoleProcess::start_logged("order", &db, ns, &logged, Some(log.clone()));
    let (orders, products) = (format!("http://{}", order.addr), format!("http://{}", inventory.addr));
    let mut gateway_env = exporting.to_vec();
    gateway_env.extend([
        ("SHOP_DISCOVERY", "off"),
        ("SHOP_ORDER_UPSTREAMS", orders.as_str()),
        ("SHOP_INVENTORY_UPSTREAMS", products.as_str()),
    ]);
    let gateway = RoleProcess::start("gateway", &db, ns, &gateway_env);

    let alice = token("alice", "customer");
    let mug = json!({"id": "SKU-T", "name": "Mug", "unit_price": 1200, "currency": "KRW", "stock": 10});
    common::register(gateway.addr, &mug).await;
    // The first order waits until the order side knows the product.
    common::place(gateway.addr, &alice, "SKU-T", "t-0").await;

    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let body = json!({"items": [{"product_id": "SKU-T", "quantity": 1}]}).to_string();
    let headers = [
        ("idempotency-key", "t-1"),
        ("traceparent", traceparent.as_str()),
        ("x-request-id", "trace-test-1"),
    ];
    let placed = common::call(gateway.addr, "POST", "/api/orders", Some(&alice), &headers, &body).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.json()["order_id"].as_str().expect("an order id").to_owned();
    common::confirmed(gateway.addr, &alice, &id).await;

    // The chain, hop by hop: each span's parent is the hop before it.
    let chain = [
        ("shop-gateway", "POST /api/orders"),
        ("shop-order", "POST /api/orders"),
        ("shop-order", "publish OrderCreated"),
        ("shop-inventory", "handle OrderCreated"),
        ("shop-inventory", "publish StockReserved"),
        ("shop-order", "handle StockReserved"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let trace = spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(trace_id)
            .cloned()
            .unwrap_or_default();
        if chain
            .iter()
            .all(|(service, name)| find(&trace, service, name).is_some())
        {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "the trace lacks hops after 20 s; it has: {trace:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut parent = caller_span.to_owned();
    for (service, name) in chain {
        let span = find(&trace, service, name).expect("found above");
        assert_eq!(
            span.parent_id, parent,
            "{service} {name} follows the hop before it: {trace:#?}"
        );
        parent = span.span_id.clone();
    }
    let reserved = find(&trace, "shop-inventory", "handle OrderCreated").expect("found above");
    assert_eq!(reserved.event_type.as_deref(), Some("OrderCreated"));
    // The first order, placed without a traceparent, is a trace of its own.
    let traces = spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
    assert!(
        traces >= 2,
        "the untraced order started its own trace ({traces} traces)"
    );

    // The order process's log lines of that request carry its request id
    // and trace id.
    let lines = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let answered = lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["fields"]["message"] == "answered"
                && line["spans"][0]["request_id"] == "trace-test-1"
                && line["spans"][0]["method"] == "POST"
        })
        .unwrap_or_else(|| panic!("a JSON line for the traced request in:\n{lines}"));
    assert_eq!(answered["spans"][0]["trace_id"], trace_id, "{answered}");
    assert_eq!(answered["role"], "order", "{answered}");

    // The same process counts how long its queries waited for a pooled
    // connection (sqlx's acquire events, through the binary's subscriber).
    let metrics = order.get("/metrics").await;
    let waits = common::sample(&metrics, "shop_db_pool_acquire_seconds_count").unwrap_or(0.0);
    assert!(waits >= 10.0, "every acquire counted: {waits}");
    let _ = bus.delete_streams().await;
}
