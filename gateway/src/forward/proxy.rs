//! The gateway role: `/api` requests forwarded to the order and inventory
//! instances.
//!
//! Each request goes to an instance of its context ([`Pool`]), chosen by
//! the context's [`Balance`] among those in the rotation. An attempt that fails (no connection, no answer in time, or a
//! 502/503/504) counts against that instance's circuit breaker and, when the
//! request may be repeated, is tried again on another instance after an
//! exponential backoff with jitter. A request may be repeated when it is
//! idempotent by its method or carries an `Idempotency-Key`, or when it never
//! left the gateway (the connection could not be made). When no instance can
//! take a request, the gateway answers a 503 problem itself.
//!
//! `GET /api/orders/{id}?expand=products` is composed here: the order from
//! an order instance, each line's product from an inventory instance, and
//! the order alone (marked so) when the inventory side cannot answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::registry::Registry;
use shop_streams::{Announcement, Context};

use super::balance::Balance;
use super::breaker::BreakerSettings;
use super::upstream::{BadUpstream, GatewayMetrics, Instance, Outcome, OutcomeLabels, Pool, ServiceLabels};
use crate::auth::Caller;
use crate::conditional;
use crate::expand::{self, Expand, LineProduct, ReadQuery};
use crate::orders::OrderView;
use crate::problem::Problem;

/// How the gateway talks to its upstreams.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// How order instances share the requests (`SHOP_LB_ORDER`).
    pub order_balance: Balance,
    /// How inventory instances share the requests (`SHOP_LB_INVENTORY`).
    pub inventory_balance: Balance,
    /// Time to open a connection to an instance.
    pub connect_timeout: Duration,
    /// Time for an instance to answer a request in full.
    pub read_timeout: Duration,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// The first backoff; each further one doubles, and a random part of it
    /// (up to half) spreads retries of many callers apart.
    pub backoff: Duration,
    pub breaker: BreakerSettings,
    /// How often each instance's `/health/ready` is asked.
    pub health_every: Duration,
    /// How long an announced instance may stay silent before it is forgotten.
    pub forget_after: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            // Intake's cost varies with the order and with the instance's
            // own load: the idlest instance answers soonest.
            order_balance: Balance::LeastRequests,
            inventory_balance: Balance::RoundRobin,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(50),
            breaker: BreakerSettings::default(),
            health_every: Duration::from_secs(2),
            forget_after: super::upstream::FORGET_AFTER,
        }
    }
}

/// Largest upstream answer the gateway passes on.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Headers that belong to one connection, not to the request or answer.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The order and inventory instances behind one gateway, and how to reach them.
#[derive(Debug)]
pub struct Upstreams {
    order: Pool,
    inventory: Pool,
    client: Client<HttpConnector, Full<Bytes>>,
    settings: ProxySettings,
    metrics: GatewayMetrics,
}

impl Upstreams {
    /// No instances yet: add them with [`Self::add`] or [`Self::heard`].
    /// The gateway's metrics go to `registry`.
    pub fn new(settings: ProxySettings, registry: &mut Registry) -> Arc<Self> {
        let metrics = GatewayMetrics::default();
        metrics.register(registry);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Arc::new(Self {
            order: Pool::new(
                Context::Order,
                settings.order_balance,
                settings.breaker,
                metrics.clone(),
            ),
            inventory: Pool::new(
                Context::Inventory,
                settings.inventory_balance,
                settings.breaker,
                metrics.clone(),
            ),
            client,
            settings,
            metrics,
        })
    }

    pub fn pool(&self, context: Context) -> &Pool {
        match context {
            Context::Order => &self.order,
            Context::Inventory => &self.inventory,
        }
    }

    /// Adds an instance of `context` from a static list.
    pub fn add(&self, context: Context, url: &str) -> Result<(), BadUpstream> {
        self.pool(context).add(url)
    }

    /// Takes in an instance's announcement.
    pub fn heard(&self, announcement: &Announcement) {
        let pool = self.pool(announcement.context);
        if announcement.leaving {
            pool.forget(&announcement.url);
            return;
        }
        match pool.heard(&announcement.url, announcement.weight, Instant::now()) {
            Ok(true) => {
                tracing::info!(target: "shop::gateway", instance = %announcement.instance, url = %announcement.url, "instance announced itself")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(target: "shop::gateway", instance = %announcement.instance, %error, "ignoring an announcement")
            }
        }
    }

    /// Asks every instance's `/health/ready` every `health_every` and forgets
    /// announced instances that fell silent, until the returned task is aborted.
    pub fn keep_checking(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let upstreams = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(upstreams.settings.health_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                upstreams.check_health().await;
            }
        })
    }

    /// One round of health checks, all instances at once.
    pub async fn check_health(&self) {
        if let Some(before) = Instant::now().checked_sub(self.settings.forget_after) {
            self.order.forget_silent(before);
            self.inventory.forget_silent(before);
        }
        let checks = [&self.order, &self.inventory]
            .into_iter()
            .flat_map(|pool| pool.instances().into_iter().map(move |instance| (pool, instance)))
            .map(|(pool, instance)| async move {
                let healthy = self.ready(&instance).await;
                pool.checked(&instance, healthy);
            });
        futures::future::join_all(checks).await;
    }

    async fn ready(&self, instance: &Instance) -> bool {
        let Ok(uri) = instance.uri(&axum::http::uri::PathAndQuery::from_static("/health/ready")) else {
            return false;
        };
        let Ok(request) = axum::http::Request::get(uri).body(Full::default()) else {
            return false;
        };
        let limit = self.settings.connect_timeout.min(Duration::from_secs(2));
        matches!(
            tokio::time::timeout(limit, self.client.request(request)).await,
            Ok(Ok(response)) if response.status() == StatusCode::OK
        )
    }

    /// The routes that forward `/api/orders`, `/api/customers`,
    /// `/api/products` and `/api/audit` (which every context appends to;
    /// the inventory instances answer it).
    pub(crate) fn router(self: &Arc<Self>) -> axum::Router {
        let to = |context| any(forward).with_state((Arc::clone(self), context));
        axum::Router::new()
            .route("/api/orders", to(Context::Order))
            .route("/api/orders/{*rest}", to(Context::Order))
            .route("/api/customers/{*rest}", to(Context::Order))
            .route("/api/products", to(Context::Inventory))
            .route("/api/products/{*rest}", to(Context::Inventory))
            .route("/api/audit", to(Context::Inventory))
            // The provider signs its notices instead of bearing a token; the
            // order instance checks the signature.
            .route(
                "/api/payments/webhook",
                post(forward_notice).with_state(Arc::clone(self)),
            )
    }

    fn labels(&self, context: Context) -> ServiceLabels {
        ServiceLabels {
            service: context.as_str().to_owned(),
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Answered(Response),
    /// The connection was never made: nothing reached the instance.
    NotSent(String),
    /// Sent, and then no answer (reset, or too slow).
    Lost {
        detail: String,
        timed_out: bool,
    },
}

// The caller is verified here, before any instance spends work on a request
// it would refuse; instances verify it again.
async fn forward(
    State((upstreams, context)): State<(Arc<Upstreams>, Context)>,
    caller: Caller,
    request: Request,
) -> Response {
    let (parts, body, peer) = match read(request).await {
        Ok(read) => read,
        Err(too_large) => return too_large,
    };
    // The hash strategy's key: the verified caller, else where they call from.
    let key = match (caller.subject.is_empty(), &peer) {
        (true, Some(ip)) => ip.as_str(),
        _ => caller.subject.as_str(),
    };
    if context == Context::Order && expands_products(&parts) {
        return compose_order(&upstreams, parts, key).await;
    }
    relay(&upstreams, context, &parts, body, key).await
}

/// A payment provider's notice, to an order instance.
async fn forward_notice(State(upstreams): State<Arc<Upstreams>>, request: Request) -> Response {
    let (parts, body, peer) = match read(request).await {
        Ok(read) => read,
        Err(too_large) => return too_large,
    };
    relay(
        &upstreams,
        Context::Order,
        &parts,
        body,
        peer.as_deref().unwrap_or_default(),
    )
    .await
}

/// The request's head, its body (refused when over the limit) and where it
/// comes from.
async fn read(request: Request) -> Result<(Parts, Bytes, Option<String>), Response> {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, crate::MAX_BODY).await else {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the request body is over {} bytes", crate::MAX_BODY),
        )
        .into_response());
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_string());
    Ok((parts, body, peer))
}

/// Whether the request is `GET /api/orders/{id}?expand=products`.
fn expands_products(parts: &Parts) -> bool {
    let one_order = parts
        .uri
        .path()
        .strip_prefix("/api/orders/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    let expand = axum::extract::Query::<ReadQuery>::try_from_uri(&parts.uri).ok();
    parts.method == Method::GET && one_order && expand.is_some_and(|q| q.expand == Some(Expand::Products))
}

/// The order from an order instance, its lines' products from inventory
/// instances (or marked unavailable), tagged by the composed whole.
async fn compose_order(upstreams: &Upstreams, parts: Parts, key: &str) -> Response {
    // The order instance answers the plain order in full; the condition
    // applies to the composition.
    let mut plain = parts.clone();
    plain.uri = axum::http::Uri::builder()
        .path_and_query(parts.uri.path())
        .build()
        .unwrap_or_else(|_| parts.uri.clone());
    plain.headers.remove(header::IF_NONE_MATCH);
    let answer = relay(upstreams, Context::Order, &plain, Bytes::new(), key).await;
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let body = match axum::body::to_bytes(answer.into_body(), MAX_ANSWER).await {
        Ok(body) => body,
        Err(error) => {
            return Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-failed",
                format!("the order answer broke off: {error}"),
            )
            .into_response();
        }
    };
    let Ok(mut order) = serde_json::from_slice::<OrderView>(&body) else {
        return Problem::new(
            StatusCode::BAD_GATEWAY,
            "upstream-failed",
            "the order instance answered something that is not an order",
        )
        .into_response();
    };
    let product = |product_id: String| {
        let mut one = plain.clone();
        one.headers.remove(header::IF_MATCH);
        async move {
            let path = format!("/api/products/{product_id}");
            one.uri = path.parse().map_err(|_| expand::Unavailable)?;
            let answer = relay(upstreams, Context::Inventory, &one, Bytes::new(), key).await;
            match answer.status() {
                StatusCode::OK => {
                    let body = axum::body::to_bytes(answer.into_body(), MAX_ANSWER)
                        .await
                        .map_err(|_| expand::Unavailable)?;
                    serde_json::from_slice::<LineProduct>(&body)
                        .map(Some)
                        .map_err(|_| expand::Unavailable)
                }
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(expand::Unavailable),
            }
        }
    };
    // A slow inventory must not hold the order back for a full read timeout.
    let limit = upstreams.settings.read_timeout.min(EXPANSION_TIMEOUT);
    let found = tokio::time::timeout(limit, expand::look_up(&order, product))
        .await
        .unwrap_or(Err(expand::Unavailable));
    expand::compose(&mut order, found);
    conditional::reply_tagged(&parts.headers, None, &order)
}

/// The longest the products of an expanded order are waited for.
const EXPANSION_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends the request to an instance of `context`, and again to another
/// after a failure where that is safe; the answer, or the gateway's own.
async fn relay(upstreams: &Upstreams, context: Context, parts: &Parts, body: Bytes, key: &str) -> Response {
    let repeatable = matches!(parts.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE)
        || parts.headers.contains_key("idempotency-key");
    let pool = upstreams.pool(context);
    let headers = forwarded_headers(parts);
    let mut tried: Vec<Arc<Instance>> = Vec::new();
    let mut last: Option<Attempt> = None;
    for attempt in 0..upstreams.settings.attempts.max(1) {
        if attempt > 0 {
            upstreams
                .metrics
                .retries
                .get_or_create(&upstreams.labels(context))
                .inc();
            tokio::time::sleep(backoff(upstreams.settings.backoff, attempt)).await;
        }
        let Some((instance, permit)) = pool.pick(Instant::now(), &tried, key) else {
            break;
        };
        let sending = instance.sending();
        let outcome = send(upstreams, &instance, parts, &headers, body.clone()).await;
        drop(sending);
        let now = Instant::now();
        let (label, again) = match &outcome {
            Attempt::Answered(response) if retry_status(response.status()) => (Outcome::error, repeatable),
            Attempt::Answered(response) => {
                let label = match response.status().is_server_error() {
                    true => Outcome::error,
                    false => Outcome::ok,
                };
                (label, false)
            }
            Attempt::NotSent(_) => (Outcome::failed, true),
            Attempt::Lost { .. } => (Outcome::failed, repeatable),
        };
        match label {
            Outcome::ok => permit.succeeded(now),
            Outcome::error | Outcome::failed => permit.failed(now),
        }
        pool.show_circuit(&instance);
        upstreams
            .metrics
            .requests
            .get_or_create(&OutcomeLabels {
                service: context.as_str().to_owned(),
                upstream: instance.url().to_owned(),
                outcome: label,
            })
            .inc();
        if let Attempt::NotSent(detail) | Attempt::Lost { detail, .. } = &outcome {
            tracing::warn!(target: "shop::gateway", upstream = %instance.url(), attempt, %detail, "attempt failed");
        }
        tried.push(instance);
        last = Some(outcome);
        if !again {
            break;
        }
    }
    match last {
        Some(Attempt::Answered(response)) => response,
        Some(Attempt::Lost { timed_out: true, .. }) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            format!(
                "the {} service did not answer within {:?}; the request may have taken effect (retry with the same Idempotency-Key)",
                context.as_str(),
                upstreams.settings.read_timeout
            ),
        )
        .into_response(),
        Some(Attempt::Lost { detail, .. }) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "upstream-failed",
            format!(
                "the {} service dropped the request ({detail}); it may have taken effect (retry with the same Idempotency-Key)",
                context.as_str()
            ),
        )
        .into_response(),
        Some(Attempt::NotSent(detail)) => {
            unavailable(upstreams, context, format!("no {} instance could be reached ({detail})", context.as_str()))
        }
        None => unavailable(
            upstreams,
            context,
            format!(
                "no {} instance is available (none known, failing health checks, or circuits open)",
                context.as_str()
            ),
        ),
    }
}

/// The gateway's own answer when no instance could take the request.
fn unavailable(upstreams: &Upstreams, context: Context, detail: String) -> Response {
    upstreams
        .metrics
        .unavailable
        .get_or_create(&upstreams.labels(context))
        .inc();
    let wait = upstreams
        .pool(context)
        .next_probe()
        .map_or(1, |at| at.saturating_duration_since(Instant::now()).as_secs().max(1));
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "upstream-unavailable", detail)
        .retry_after(wait)
        .into_response()
}

async fn send(upstreams: &Upstreams, instance: &Instance, parts: &Parts, headers: &HeaderMap, body: Bytes) -> Attempt {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| axum::http::uri::PathAndQuery::from_static("/"));
    let Ok(uri) = instance.uri(&path) else {
        return Attempt::NotSent(format!("cannot address {path} on {}", instance.url()));
    };
    let mut request = axum::http::Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers.clone();
    let exchange = async {
        let response = upstreams.client.request(request).await.map_err(|error| {
            use std::error::Error as _;
            let detail = match error.source() {
                Some(source) => format!("{error}: {source}"),
                None => error.to_string(),
            };
            match error.is_connect() {
                true => Attempt::NotSent(detail),
                false => Attempt::Lost {
                    detail,
                    timed_out: false,
                },
            }
        })?;
        let (mut head, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|error| Attempt::Lost {
                detail: format!("the answer broke off: {error}"),
                timed_out: false,
            })?
            .to_bytes();
        for name in &HOP_BY_HOP {
            head.headers.remove(name);
        }
        Ok::<_, Attempt>(Response::from_parts(head, Body::from(body)))
    };
    match tokio::time::timeout(upstreams.settings.read_timeout, exchange).await {
        Ok(Ok(response)) => Attempt::Answered(response),
        Ok(Err(failed)) => failed,
        Err(_) => Attempt::Lost {
            detail: format!("no answer within {:?}", upstreams.settings.read_timeout),
            timed_out: true,
        },
    }
}

/// The request's headers as the instance gets them: without the
/// connection's own, with the caller's address added to `X-Forwarded-For`.
fn forwarded_headers(parts: &Parts) -> HeaderMap {
    let mut headers = parts.headers.clone();
    for name in HOP_BY_HOP.iter().chain([&header::HOST, &header::CONTENT_LENGTH]) {
        headers.remove(name);
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let forwarded = match parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            headers.insert("x-forwarded-for", value);
        }
    }
    headers
}

/// Answers that say "this instance cannot serve now", worth another instance.
fn retry_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Before attempt `attempt` (1, 2, ...): `base * 2^(attempt-1)`, of which a
/// random part up to half is taken off.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1 << (attempt - 1).min(16));
    full.mul_f64(1.0 - fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_of_up_to_half() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            let waits: Vec<Duration> = (0..200).map(|_| backoff(base, attempt)).collect();
            assert!(
                waits.iter().all(|w| *w <= full && *w >= full / 2),
                "attempt {attempt}: {waits:?}"
            );
            let distinct: std::collections::HashSet<_> = waits.iter().collect();
            assert!(distinct.len() > 100, "jittered, not fixed");
        }
    }
}
