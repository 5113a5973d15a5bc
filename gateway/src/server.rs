//! The HTTP server every role runs: hyper under the router, with the limits
//! a public endpoint needs against slow and greedy clients.
//!
//! - a client must send a request's whole head within the header read
//!   timeout, or its connection is closed (a slowloris holds nothing long);
//! - at most `max_connections` connections are open: one more is answered a
//!   503 problem at once and closed;
//! - at most `max_in_flight` requests are handled at once: one more is
//!   answered a 503 problem with `Retry-After` at once, never queued (health
//!   and metrics are exempt, so probes see the truth under overload).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

use crate::problem::Problem;

/// How much a server takes on; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            max_in_flight: 4_096,
        }
    }
}

/// How long connections may finish their requests once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` within `limits` until `shutdown` completes,
/// then lets open connections finish (for at most a few seconds).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let router = router.layer(axum::middleware::from_fn_with_state(in_flight, shed));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, not spin.
                    tracing::warn!(target: "shop::http", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would add: the
            // per-address rate limit reads it.
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { Ok::<_, Infallible>(router.call(request).await.into_response()) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(target: "shop::http", %peer, %error, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!(target: "shop::http", "connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// A connection over the limit: a 503 problem, and closed.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"type":"https://shop.example/problems/unavailable","title":"Service Unavailable","status":503,"detail":"the server is at its limit of open connections; retry","retry_after":1}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Answers at once when `max_in_flight` requests are being handled.
async fn shed(State(in_flight): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    if is_operations(request.uri().path()) {
        return next.run(request).await;
    }
    match in_flight.try_acquire() {
        Ok(_handling) => next.run(request).await,
        Err(_) => Problem::unavailable("the server is at its limit of requests in flight; retry")
            .retry_after(1)
            .into_response(),
    }
}

fn is_operations(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::ServerLimits;

    async fn start(limits: ServerLimits) -> std::net::SocketAddr {
        let router = Router::new()
            .route("/fast", get(|| async { "done" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "slept"
                }),
            )
            .route("/health/live", get(|| async { "live" }));
        let listener = crate::bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(crate::serve(listener, router, limits, std::future::pending()));
        addr
    }

    async fn status_of(addr: std::net::SocketAddr, path: &str) -> String {
        let answer = crate::test_get(addr, path, &[]).await;
        answer.lines().next().unwrap_or_default().to_owned()
    }

    /// A thousand clients that never finish their request head hold nothing
    /// for long and keep nobody else out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_are_cut_off_and_others_are_still_served() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            ..ServerLimits::default()
        };
        let addr = start(limits).await;
        let mut slow = Vec::new();
        for _ in 0..1_000 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /fast HTTP/1.1\r\nhost: test\r\nx-slow: ")
                .await
                .expect("half a head");
            slow.push(stream);
        }
        let mut took = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            assert_eq!(status_of(addr, "/fast").await, "HTTP/1.1 200 OK");
            took.push(started.elapsed());
        }
        took.sort();
        // Served, not starved: a liveness bound, not a performance target
        // (the benchmarks measure that).
        assert!(took[took.len() - 1] < Duration::from_secs(2), "{:?}", took.last());
        eprintln!("with 1,000 slow clients open: p99 {:?}", took[took.len() * 99 / 100]);

        // Past the header read timeout, every slow connection was closed.
        tokio::time::sleep(Duration::from_millis(700)).await;
        for stream in &mut slow {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "a slow client's connection is still open");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_over_the_limit_get_a_503_at_once() {
        let limits = ServerLimits {
            max_connections: 3,
            ..ServerLimits::default()
        };
        let addr = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = crate::test_get(addr, "/fast", &[]).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 1"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            status_of(addr, "/fast").await,
            "HTTP/1.1 200 OK",
            "served again once they close"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_over_the_in_flight_limit_are_shed_but_probes_answer() {
        let limits = ServerLimits {
            max_in_flight: 2,
            ..ServerLimits::default()
        };
        let addr = start(limits).await;
        let busy: Vec<_> = (0..2).map(|_| tokio::spawn(status_of(addr, "/slow"))).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let shed = crate::test_get(addr, "/fast", &[]).await;
        assert!(shed.starts_with("HTTP/1.1 503"), "{shed}");
        assert!(shed.contains("retry-after: 1"), "{shed}");
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "answered before the slow ones end"
        );
        assert_eq!(status_of(addr, "/health/live").await, "HTTP/1.1 200 OK");
        for request in busy {
            assert_eq!(request.await.expect("joined"), "HTTP/1.1 200 OK");
        }
        assert_eq!(status_of(addr, "/fast").await, "HTTP/1.1 200 OK");
    }
}
