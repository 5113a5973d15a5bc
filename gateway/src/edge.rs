//! What every request goes through: a request id, a tracing span, a check
//! for control characters, a time limit, a log line with status and
//! duration, `X-Response-Time`, and the RED metrics (requests, errors and
//! latency by route template, method and status).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use shop_runtime::trace_context;
use shop_streams::Trace;
use shop_streams::trace_parent::{self, TraceParent};
use tracing::Instrument;
use uuid::Uuid;

use crate::problem::Problem;

const REQUEST_ID: &str = "x-request-id";

/// Correlation ids of requests whose id is not a UUID are UUIDv5 in this namespace.
const REQUEST_NAMESPACE: Uuid = Uuid::from_u128(0x3c1d_52a0_6f1e_4b7e_8a2d_91c4_0e5f_7b13);

/// What the edge needs: the time limit, and where it counts requests.
#[derive(Debug, Clone)]
pub(crate) struct EdgeState {
    pub limit: Duration,
    pub metrics: HttpMetrics,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    method: String,
    /// The route template (`/api/orders/{id}`), never the raw path, so the
    /// label set stays bounded; `unmatched` for any path no route serves.
    route: String,
    status: u16,
}

/// Latency by route, method and status: its count is the request rate, the
/// counts of 5xx statuses the error rate.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        // 1 ms to 10 s: the SLA's 100 and 200 ms sit between buckets' edges.
        fn histogram() -> Histogram {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        }
        let metrics = Self {
            duration: Family::new_with_constructor(histogram),
        };
        registry.register(
            "shop_http_request_duration_seconds",
            "HTTP requests by route template, method and status, and how long each took to answer",
            metrics.duration.clone(),
        );
        metrics
    }
}

/// The trace an API request starts: its correlation id is the request's id
/// when that is a UUID (the edge makes a UUIDv7 when the caller sends no
/// id), else a UUIDv5 of it. Every event the request causes carries it, so
/// a request id finds its events and an event its request. Its trace parent
/// is the request's span (see [`edge`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestTrace(pub Trace);

impl<S: Send + Sync> FromRequestParts<S> for RequestTrace {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok());
        let trace = Trace::root(id.map_or_else(Uuid::now_v7, correlation_id));
        Ok(Self(trace.within(traceparent(&parts.headers))))
    }
}

/// The request's id: the caller's `X-Request-Id` when sane, else the one
/// the edge made (see [`edge`]), as audit entries record it.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok());
        Ok(Self(id.unwrap_or_default().to_owned()))
    }
}

/// The W3C trace context in `headers`, when it holds a valid one (an
/// invalid one is ignored, as the specification asks: a new trace starts).
fn traceparent(headers: &axum::http::HeaderMap) -> Option<TraceParent> {
    headers.get(trace_parent::HEADER)?.to_str().ok()?.parse().ok()
}

/// The correlation id of the request with id `request_id`.
pub(crate) fn correlation_id(request_id: &str) -> Uuid {
    Uuid::parse_str(request_id).unwrap_or_else(|_| Uuid::new_v5(&REQUEST_NAMESPACE, request_id.as_bytes()))
}

pub(crate) async fn edge(State(edge): State<EdgeState>, mut request: Request, next: Next) -> Response {
    let limit = edge.limit;
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // A caller's id is kept (so logs join up across services) when it is sane.
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
        trace_id = tracing::field::Empty,
    );
    // The caller's span is this request's parent; what the request passes
    // on (to the events it causes, to the instance it forwards to) is this
    // request's span, or the caller's context as it came when spans are not
    // exported: the header is rewritten to say so.
    let given = traceparent(request.headers());
    trace_context::adopt(&span, given);
    let passed_on = trace_context::of(&span).or(given);
    request.headers_mut().remove(trace_parent::HEADER);
    if let Some(parent) = passed_on {
        span.record("trace_id", parent.trace_id_hex().as_str());
        if let Ok(value) = HeaderValue::from_str(&parent.to_string()) {
            request.headers_mut().insert(trace_parent::HEADER, value);
        }
    }
    let answer = match hostile(&request) {
        // Refused before any handler or store sees it: a NUL byte reaching
        // PostgreSQL is an error of the database, not of the caller.
        Some(place) => {
            std::future::ready(Problem::bad_request(format!("the {place} holds a control character")).into_response())
                .left_future()
        }
        None => next.run(request).instrument(span.clone()).right_future(),
    };
    let mut response = match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        // Whatever was under way is dropped: an uncommitted write rolls back;
        // an intake that did commit is found again by its Idempotency-Key.
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("no answer within {limit:?}; retry (an order with the same Idempotency-Key)"),
        )
        .retry_after(1)
        .into_response(),
    };
    let took = started.elapsed();
    edge.metrics
        .duration
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(took.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(target: "shop::http", status = response.status().as_u16(), micros = took.as_micros() as u64, "answered");
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{:.3}ms", took.as_secs_f64() * 1000.0)) {
        headers.insert("x-response-time", value);
    }
    response
}

/// Where the request carries a control character (NUL and the rest of
/// C0, and DEL), raw or percent-encoded, in its path or query, or in a
/// header value (where only a tab is fine).
fn hostile(request: &Request) -> Option<&'static str> {
    let uri = request.uri();
    if has_control(uri.path()) {
        return Some("path");
    }
    if uri.query().is_some_and(has_control) {
        return Some("query");
    }
    let header = |v: &HeaderValue| v.as_bytes().iter().any(|&b| b != b'\t' && is_control(b));
    request.headers().values().any(header).then_some("header")
}

fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f
}

/// Raw control bytes, or `%XX` escapes of them.
fn has_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(at, &b)| {
        is_control(b)
            || (b == b'%'
                && bytes
                    .get(at + 1..at + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .is_some_and(is_control))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    async fn get_path(addr: std::net::SocketAddr, path: &str) -> String {
        crate::test_get(addr, path, &[("x-request-id", "abc-123")]).await
    }

    #[test]
    fn control_characters_are_found_raw_or_escaped() {
        use super::has_control;
        for hostile in ["/api/orders/%00", "/a%1Bb", "/a%7f", "after=1_%00", "a\u{1}b"] {
            assert!(has_control(hostile), "{hostile}");
        }
        for fine in ["/api/orders/o-1", "/a%20b", "q=caf%C3%A9", "%", "%0", "%zz", "100%"] {
            assert!(!has_control(fine), "{fine}");
        }
    }

    #[tokio::test]
    async fn a_slow_request_is_answered_with_a_problem_in_time_and_ids_are_echoed() {
        let mut registry = prometheus_client::registry::Registry::default();
        let state = super::EdgeState {
            limit: Duration::from_millis(100),
            metrics: super::HttpMetrics::register(&mut registry),
        };
        let router = Router::new()
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }),
            )
            .route("/fast/{n}", get(|| async { "done" }))
            .layer(axum::middleware::from_fn_with_state(state, super::edge));
        let listener = crate::bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(crate::serve(
            listener,
            router,
            crate::ServerLimits::default(),
            std::future::pending(),
        ));

        let started = std::time::Instant::now();
        let slow = get_path(addr, "/slow").await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered at the limit, not after the handler"
        );
        assert!(slow.starts_with("HTTP/1.1 503"), "{slow}");
        assert!(slow.contains("application/problem+json"), "{slow}");
        assert!(
            slow.contains("\"type\":\"https://shop.example/problems/timeout\""),
            "{slow}"
        );

        let fast = get_path(addr, "/fast/1").await;
        assert!(fast.starts_with("HTTP/1.1 200"), "{fast}");
        get_path(addr, "/fast/2").await;
        assert!(
            fast.contains("x-request-id: abc-123"),
            "the caller's id comes back: {fast}"
        );
        assert!(fast.contains("x-response-time: "), "{fast}");

        // Counted by route template, not raw path; the timeout as a 503.
        let mut exposition = String::new();
        prometheus_client::encoding::text::encode(&mut exposition, &registry).expect("encodes");
        let count = |labels: &str| {
            exposition
                .lines()
                .find(|l| l.starts_with("shop_http_request_duration_seconds_count") && l.contains(labels))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        };
        assert_eq!(count(r#"route="/fast/{n}",status="200""#), Some(2), "{exposition}");
        assert_eq!(count(r#"route="/slow",status="503""#), Some(1), "{exposition}");
        assert!(!exposition.contains("/fast/1"), "no raw paths as labels");
    }

    #[test]
    fn a_request_id_is_its_events_correlation_id() {
        let generated = uuid::Uuid::now_v7();
        assert_eq!(super::correlation_id(&generated.to_string()), generated);
        let chosen = super::correlation_id("checkout-42");
        assert_eq!(
            chosen,
            super::correlation_id("checkout-42"),
            "the same id, the same correlation"
        );
        assert_ne!(chosen, super::correlation_id("checkout-43"));
    }
}
