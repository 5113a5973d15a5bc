//! What every request goes through: a request id, a tracing span, a check
//! for control characters, a time limit, a log line with status and
//! duration, and `X-Response-Time`.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;
use uuid::Uuid;

use crate::problem::Problem;

const REQUEST_ID: &str = "x-request-id";

pub async fn edge(State(limit): State<Duration>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
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
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    );
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
        let router = Router::new()
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }),
            )
            .route("/fast", get(|| async { "done" }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(100),
                super::edge,
            ));
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

        let fast = get_path(addr, "/fast").await;
        assert!(fast.starts_with("HTTP/1.1 200"), "{fast}");
        assert!(
            fast.contains("x-request-id: abc-123"),
            "the caller's id comes back: {fast}"
        );
        assert!(fast.contains("x-response-time: "), "{fast}");
    }
}
