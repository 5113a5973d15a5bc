//! The driving HTTP side of the shop: the REST API of both contexts and
//! the operations endpoints every role serves.
//!
//! Handlers are thin: they check the caller's role, turn JSON into a use
//! case's input, call the runtime's services and turn the outcome into JSON
//! or an RFC 9457 problem. They know the services' ports only as generic
//! parameters, so the same API runs on PostgreSQL or on the embedded store.
//! The `shop` binary builds a [`Gateway`] with the contexts its role runs.

#![forbid(unsafe_code)]

pub mod auth;
mod edge;
mod json;
mod ops;
mod orders;
mod problem;
mod products;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use prometheus_client::registry::Registry;
use shop_runtime::ports::{InventoryStore, Lock, OrderStore};
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::OrderService;
use tokio::net::TcpListener;

pub use auth::{Auth, Caller, DEVELOPMENT_SECRET, Role};
pub use ops::{OPENMETRICS, ops_router};
pub use problem::{PROBLEM_JSON, Problem};

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// The HTTP surface of one process, assembled from the contexts it runs.
#[derive(Debug)]
pub struct Gateway {
    router: Router,
    auth: Arc<Auth>,
}

impl Gateway {
    /// Health and metrics only; add the contexts with [`Self::orders`] and [`Self::products`].
    pub fn new(auth: Auth, registry: Arc<Registry>) -> Self {
        Self {
            router: ops_router(registry),
            auth: Arc::new(auth),
        }
    }

    /// Serves `/api/orders`.
    pub fn orders<S: OrderStore>(mut self, orders: Arc<OrderService<S>>) -> Self {
        self.router = self.router.merge(orders::router(orders));
        self
    }

    /// Serves `/api/products`.
    pub fn products<S: InventoryStore, L: Lock>(mut self, inventory: Arc<InventoryService<S, L>>) -> Self {
        self.router = self.router.merge(products::router(inventory));
        self
    }

    pub fn into_router(self) -> Router {
        self.router
            .fallback(|| async { Problem::not_found("no such endpoint") })
            .method_not_allowed_fallback(|| async {
                Problem::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "this endpoint does not answer that method",
                )
            })
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(Extension(self.auth))
            .layer(axum::middleware::from_fn(edge::edge))
    }
}

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
