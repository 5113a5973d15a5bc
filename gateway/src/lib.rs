//! The driving HTTP side of the shop.
//!
//! Today it serves what operators need from every role: liveness and the
//! Prometheus metrics. The REST API of both contexts and its edge layers
//! (auth, rate limits, CORS, timeouts) join it with the front door. It knows
//! the runtime's metrics only as a Prometheus registry, and nothing of the
//! adapters.

#![forbid(unsafe_code)]

mod ops;

pub use ops::{OPENMETRICS, ops_router};

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

/// Binds `addr` (port 0 picks a free one) and answers the first error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
