//! Operations endpoints: `/health/live`, `/health/ready` and `/metrics`.
//!
//! Readiness answers its status to anyone (a load balancer needs no token),
//! but which dependency failed, and how, only to an admin: the details name
//! the infrastructure and carry its error text.
//!
//! Each dependency is checked for what the instance needs it for: without a
//! required one it cannot keep its promise (not ready, 503); without an
//! optional one it still can, by a way around it (an outbox holds events
//! while the broker is away, limits and locks fall back to per instance),
//! so it stays ready and reports itself degraded.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::auth::{Auth, CallerRole};

/// The content type of the metrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One dependency's check: `Ok` when it answers.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A dependency `/health/ready` checks, and whether the instance is ready without it.
#[derive(Clone)]
pub struct Dependency {
    pub name: &'static str,
    /// Without it the instance is not ready; else only degraded.
    pub required: bool,
    pub check: Check,
}

impl Dependency {
    /// The instance is not ready while `check` fails.
    pub fn required(name: &'static str, check: Check) -> Self {
        Self {
            name,
            required: true,
            check,
        }
    }

    /// The instance works around its absence: ready, reported degraded.
    pub fn optional(name: &'static str, check: Check) -> Self {
        Self {
            name,
            required: false,
            check,
        }
    }
}

/// How long a required dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long an optional one may: the instance works without it, so its
/// absence must not make the answer slow enough to read as not ready.
const OPTIONAL_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// The endpoints every role serves, reading metrics from `registry`.
pub fn ops_router(registry: Arc<Registry>) -> Router {
    ops_router_with(registry, Vec::new())
}

/// [`ops_router`], with `/health/ready` answering 200 only when every
/// required dependency answers (`"degraded"` when an optional one does not).
pub fn ops_router_with(registry: Arc<Registry>, checks: Vec<Dependency>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .with_state(registry)
        .merge(
            Router::new()
                .route("/health/ready", get(ready))
                .with_state(Arc::new(checks)),
        )
}

async fn ready(
    State(checks): State<Arc<Vec<Dependency>>>,
    auth: Option<Extension<Arc<Auth>>>,
    headers: HeaderMap,
) -> Response {
    let outcomes = futures::future::join_all(checks.iter().map(|dependency| async move {
        let limit = match dependency.required {
            true => CHECK_TIMEOUT,
            false => OPTIONAL_CHECK_TIMEOUT,
        };
        match tokio::time::timeout(limit, (dependency.check)()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => error,
            Err(_) => format!("no answer within {limit:?}"),
        }
    }))
    .await;
    let mut report = BTreeMap::new();
    let (mut ready, mut whole) = (true, true);
    for (dependency, outcome) in checks.iter().zip(outcomes) {
        let ok = outcome == "ok";
        whole &= ok;
        ready &= ok || !dependency.required;
        report.insert(dependency.name, outcome);
    }
    let (status, word) = match (ready, whole) {
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let admin = auth
        .and_then(|Extension(auth)| auth.authenticate(&headers))
        .and_then(Result::ok)
        .is_some_and(|caller| caller.role == CallerRole::Admin);
    let body = match admin {
        true => serde_json::json!({"status": word, "checks": report}),
        false => serde_json::json!({"status": word}),
    };
    crate::json::reply(status, &body)
}

/// The process answers: it is alive. Readiness (its dependencies answer)
/// is a separate question, `/health/ready`.
async fn live() -> &'static str {
    "ok\n"
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        // Only a failing fmt::Write can fail this; a String does not.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use prometheus_client::metrics::counter::Counter;

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        crate::test_get(addr, path, &[]).await
    }

    #[tokio::test]
    async fn metrics_and_liveness_are_served() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("probes", "Probes seen", counter.clone());
        counter.inc_by(3);
        let listener = crate::bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = ops_router(Arc::new(registry));
        tokio::spawn(crate::serve(
            listener,
            router,
            crate::ServerLimits::default(),
            std::future::pending(),
        ));

        let live = get(addr, "/health/live").await;
        assert!(live.starts_with("HTTP/1.1 200"), "{live}");
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("application/openmetrics-text"), "{metrics}");
        assert!(metrics.contains("probes_total 3"), "{metrics}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
