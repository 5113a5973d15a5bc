//! What every request goes through: a request id, a tracing span, a log
//! line with status and duration, and `X-Response-Time`.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

const REQUEST_ID: &str = "x-request-id";

pub async fn edge(mut request: Request, next: Next) -> Response {
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
    let mut response = next.run(request).instrument(span.clone()).await;
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
