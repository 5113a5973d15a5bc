//! The driving HTTP side of the shop: the REST API of both contexts and
//! the operations endpoints every role serves.
//!
//! Handlers are thin: they check the caller's role, turn JSON into a use
//! case's input, call the context's use cases (`OrderUseCases`,
//! `InventoryUseCases`) and turn the outcome into JSON or an RFC 9457
//! problem. They know neither the services' stores nor their locks, so the
//! same API runs on PostgreSQL or on the embedded store. The gateway role's
//! forwarding (`forward`: proxy, upstreams, breakers) is a module of its
//! own that the REST API does not depend on.
//! The `shop` binary builds a [`Gateway`] with the contexts its role runs,
//! or, for the gateway role, with [`Upstreams`] that forward `/api` to the
//! instances that run them.

#![forbid(unsafe_code)]

mod audit;
pub mod auth;
mod conditional;
mod customers;
mod edge;
mod expand;
mod forward;
mod json;
mod limits;
mod openapi;
mod ops;
mod orders;
mod payments;
mod problem;
mod products;
mod rules;
mod server;
mod verified_tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::{Extension, Router};
use prometheus_client::registry::Registry;
use shop_runtime::ports::RateLimiter;
use shop_runtime::saga::use_cases::{AuditUseCases, InventoryUseCases, OrderUseCases, PaymentUseCases, RuleUseCases};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::{ApiKey, Auth, Caller, CallerRole, StoredApiKeys, TokenChecks, api_key_digest};
pub use expand::{LineProduct, ProductsPart};
pub use forward::{BadBalance, BadUpstream, Balance, BreakerSettings, BreakerState, ProxySettings, Upstreams};
pub use limits::Limits;
pub use openapi::ApiDoc;
pub use ops::{Check, Dependency, OPENMETRICS, ops_router, ops_router_with};
pub use orders::{ItemView, OrderView};
pub use problem::{PROBLEM_JSON, Problem};
pub use products::ProductView;
pub use server::ServerLimits;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// The HTTP surface of one process, assembled from the contexts it runs.
pub struct Gateway {
    ops: Router,
    api: Router,
    /// Where expanded orders find their products: the inventory context
    /// when this process runs it.
    catalog: Option<expand::Catalog>,
    auth: Arc<Auth>,
    limits: Option<limits::LimitState>,
    http: edge::HttpMetrics,
    timeout: Duration,
    cors: Option<CorsLayer>,
}

/// How long a request may take before it is answered with a 503, unless
/// [`Gateway::request_timeout`] says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// Health and metrics only; add the contexts with [`Self::orders`] and
    /// [`Self::products`]. `/health/ready` runs `checks`; `/metrics` shows
    /// `registry` with the HTTP metrics added.
    pub fn new(auth: Auth, mut registry: Registry, checks: Vec<Dependency>) -> Self {
        let http = edge::HttpMetrics::register(&mut registry);
        Self {
            ops: ops_router_with(Arc::new(registry), checks).merge(openapi::router()),
            http,
            api: Router::new(),
            catalog: None,
            auth: Arc::new(auth),
            limits: None,
            timeout: REQUEST_TIMEOUT,
            cors: None,
        }
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Lets browsers on `origins` call the API; without it, no CORS headers.
    pub fn cors(mut self, origins: Vec<HeaderValue>) -> Self {
        if !origins.is_empty() {
            let layer = CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                ])
                .expose_headers([
                    header::LOCATION,
                    header::RETRY_AFTER,
                    HeaderName::from_static("x-request-id"),
                ])
                .max_age(Duration::from_secs(600));
            self.cors = Some(layer);
        }
        self
    }

    /// Counts `/api` requests against `limits` with `limiter`.
    pub fn rate_limits(mut self, limiter: impl RateLimiter, limits: Limits) -> Self {
        self.limits = Some(limits::LimitState::new(limiter, limits, self.auth.clone()));
        self
    }

    /// Serves `document`, the deployment's event catalogue (AsyncAPI), at
    /// `/asyncapi.json`, to anyone: like `/openapi.json`, it describes the
    /// contract, not data.
    pub fn asyncapi(mut self, document: serde_json::Value) -> Self {
        let body = axum::body::Bytes::from(serde_json::to_vec(&document).unwrap_or_default());
        let serve = move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        };
        self.ops = self.ops.route("/asyncapi.json", axum::routing::get(serve));
        self
    }

    /// Serves `/api/orders` and `/api/customers`.
    pub fn orders<O: OrderUseCases>(mut self, orders: Arc<O>) -> Self {
        self.api = self.api.merge(customers::router(Arc::clone(&orders)));
        self.api = self.api.merge(orders::router(orders));
        self
    }

    /// Serves `/api/audit`, the audit log every context appends to.
    pub fn audit<A: AuditUseCases>(mut self, audit: Arc<A>) -> Self {
        self.api = self.api.merge(audit::router(audit));
        self
    }

    /// Serves `/api/rules`: what this instance, `instance`, runs, and
    /// publishing for the whole deployment.
    pub fn rules<R: RuleUseCases>(mut self, rules: Arc<R>, instance: String) -> Self {
        self.api = self.api.merge(rules::router(rules, instance));
        self
    }

    /// Serves `/api/payments/webhook`, the payment provider's notices.
    pub fn payments<P: PaymentUseCases>(mut self, payments: Arc<P>) -> Self {
        self.api = self.api.merge(payments::router(payments));
        self
    }

    /// Serves `/api/products`.
    pub fn products<I: InventoryUseCases>(mut self, inventory: Arc<I>) -> Self {
        self.catalog = Some(expand::Catalog::of(Arc::clone(&inventory)));
        self.api = self.api.merge(products::router(inventory));
        self
    }

    /// Forwards `/api/orders` and `/api/products` to `upstreams`.
    pub fn proxy(mut self, upstreams: &Arc<Upstreams>) -> Self {
        self.api = self.api.merge(upstreams.router());
        self
    }

    pub fn into_router(self) -> Router {
        let api = match self.catalog {
            Some(catalog) => self.api.layer(Extension(catalog)),
            None => self.api,
        };
        let api = match self.limits {
            Some(state) => api.layer(axum::middleware::from_fn_with_state(state, limits::limit)),
            None => api,
        };
        let router = self
            .ops
            .merge(api)
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
            .layer(axum::middleware::from_fn_with_state(
                edge::EdgeState {
                    limit: self.timeout,
                    metrics: self.http,
                },
                edge::edge,
            ));
        // Outermost: a preflight is answered before any auth or limit sees it.
        match self.cors {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }
}

/// Binds `addr` (port 0 picks a free one) and answers the first error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes (see [`ServerLimits`]: slow clients, connections, requests in
/// flight).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, limits, shutdown).await
}

/// A bare HTTP/1.1 client for this crate's tests: sends one request, reads
/// the whole answer as text.
#[cfg(test)]
pub(crate) async fn test_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}
