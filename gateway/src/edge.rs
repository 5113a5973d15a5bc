//! What every request goes through: a request id, a tracing span, a time
//! limit, a log line with status and duration, and `X-Response-Time`.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
    let mut response = match tokio::time::timeout(limit, next.run(request).instrument(span.clone())).await {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    async fn get_path(addr: std::net::SocketAddr, path: &str) -> String {
        crate::test_get(addr, path, &[("x-request-id", "abc-123")]).await
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
        tokio::spawn(crate::serve(listener, router, std::future::pending()));

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
