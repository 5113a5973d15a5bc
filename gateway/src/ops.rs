//! Operations endpoints: `/health/live`, `/health/ready` and `/metrics`.
//!
//! Readiness answers its status to anyone (a load balancer needs no token),
//! but which dependency failed, and how, only to an admin: the details name
//! the infrastructure and carry its error text.

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

use crate::auth::{Auth, Role};

/// The content type of the metrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One dependency's check: `Ok` when it answers.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How long a dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The endpoints every role serves, reading metrics from `registry`.
pub fn ops_router(registry: Arc<Registry>) -> Router {
    ops_router_with(registry, Vec::new())
}

/// [`ops_router`], with `/health/ready` answering 200 only when every check does.
pub fn ops_router_with(registry: Arc<Registry>, checks: Vec<(&'static str, Check)>) -> Router {
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
    State(checks): State<Arc<Vec<(&'static str, Check)>>>,
    auth: Option<Extension<Arc<Auth>>>,
    headers: HeaderMap,
) -> Response {
    let mut report = BTreeMap::new();
    let mut all = true;
    for (name, check) in checks.iter() {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => error,
            Err(_) => format!("no answer within {CHECK_TIMEOUT:?}"),
        };
        all &= outcome == "ok";
        report.insert(*name, outcome);
    }
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let admin = auth
        .and_then(|Extension(auth)| auth.authenticate(&headers))
        .and_then(Result::ok)
        .is_some_and(|caller| caller.role == Role::Admin);
    let word = if all { "ready" } else { "unavailable" };
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
