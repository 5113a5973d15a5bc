//! A payment provider simulator (`shop payment-sim`).
//!
//! It takes intents at [`INTENTS_PATH`](crate::INTENTS_PATH) as a real
//! provider would (idempotent by `Idempotency-Key`) and, after a latency,
//! calls the webhook with a signed notice, delivering it again while the
//! shop answers 5xx or not at all. What happens to an order is decided by a
//! hash of its id, so a run is reproducible: a share `approve` succeeds,
//! the rest fail, and a share `silent` is never answered (the shop's
//! payment timeout cancels those). A share `fail` of intent requests is
//! answered 503 to exercise the shop's retries, and `duplicates` sends
//! every notice that many times, each freshly signed. `GET /v1/stats`
//! tells what it did.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shop_runtime::ports::payment::{SIGNATURE_HEADER, sign};
use shop_streams::hex;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::{HttpClient, INTENTS_PATH, client};

/// Deliveries of one notice before the simulator gives up on it.
const DELIVERY_ATTEMPTS: u32 = 10;

#[derive(Clone)]
pub struct SimSettings {
    /// The shop's `POST /api/payments/webhook`.
    pub webhook: Uri,
    pub secret: Vec<u8>,
    /// Share of orders whose payment succeeds (0..=1).
    pub approve: f64,
    /// Share of orders never answered (0..=1).
    pub silent: f64,
    /// Share of intent requests answered 503 (0..=1).
    pub fail: f64,
    /// Wait before a notice is sent.
    pub latency: Duration,
    /// Times each notice is sent (at least 1).
    pub duplicates: u32,
}

impl SimSettings {
    /// The notice an order gets, `None` for silence.
    fn outcome(&self, order_id: &str) -> Option<&'static str> {
        if share("silent", order_id) < self.silent {
            None
        } else if share("approve", order_id) < self.approve {
            Some("succeeded")
        } else {
            Some("failed")
        }
    }
}

impl std::fmt::Debug for SimSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSettings")
            .field("webhook", &self.webhook)
            .field("approve", &self.approve)
            .field("silent", &self.silent)
            .field("fail", &self.fail)
            .field("latency", &self.latency)
            .field("duplicates", &self.duplicates)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failed: AtomicU64,
    intents: AtomicU64,
    notices_sent: AtomicU64,
    notices_refused: AtomicU64,
    notices_lost: AtomicU64,
}

struct Sim {
    settings: SimSettings,
    intents: Mutex<HashMap<String, String>>,
    counters: Counters,
    client: HttpClient,
}

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    settings: SimSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(settings))
        .with_graceful_shutdown(shutdown)
        .await
}

pub fn router(settings: SimSettings) -> axum::Router {
    let sim = Arc::new(Sim {
        settings,
        intents: Mutex::new(HashMap::new()),
        counters: Counters::default(),
        client: client(Duration::from_secs(2)),
    });
    axum::Router::new()
        .route(INTENTS_PATH, post(create_intent))
        .route(&format!("{INTENTS_PATH}/{{order_id}}"), get(intent_of))
        .route("/v1/stats", get(stats))
        .with_state(sim)
}

#[derive(Deserialize)]
struct IntentBody {
    order_id: String,
    amount: i64,
    currency: String,
}

async fn create_intent(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let seen = sim.counters.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(intent) = serde_json::from_slice::<IntentBody>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected {order_id, amount, currency}").into_response();
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if key != Some(intent.order_id.as_str()) {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key must be the order id").into_response();
    }
    if intent.amount <= 0 || intent.currency.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "amount must be positive").into_response();
    }
    // Every n-th request fails, n = 1 / fail: an even, reproducible spread.
    if injected(seen, sim.settings.fail) {
        sim.counters.failed.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "injected failure").into_response();
    }
    let (intent_id, new) = {
        let mut intents = sim.intents.lock().await;
        match intents.get(&intent.order_id) {
            Some(id) => (id.clone(), false),
            None => {
                let id = format!("pi_{}", &hex_digest("intent", &intent.order_id)[..24]);
                intents.insert(intent.order_id.clone(), id.clone());
                (id, true)
            }
        }
    };
    if new {
        sim.counters.intents.fetch_add(1, Ordering::Relaxed);
        if let Some(status) = sim.settings.outcome(&intent.order_id) {
            tokio::spawn(notify(Arc::clone(&sim), intent.order_id, intent_id.clone(), status));
        }
    }
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    (status, as_json(&json!({"id": intent_id, "status": "processing"}))).into_response()
}

/// The intent of an order and what the simulator answers for it:
/// `succeeded`, `failed` or `silent`.
async fn intent_of(State(sim): State<Arc<Sim>>, Path(order_id): Path<String>) -> Response {
    let Some(id) = sim.intents.lock().await.get(&order_id).cloned() else {
        return (StatusCode::NOT_FOUND, "no intent for this order").into_response();
    };
    let outcome = sim.settings.outcome(&order_id).unwrap_or("silent");
    as_json(&json!({"id": id, "order_id": order_id, "outcome": outcome})).into_response()
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let c = &sim.counters;
    let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
    as_json(&json!({
        "requests": read(&c.requests),
        "failed": read(&c.failed),
        "intents": read(&c.intents),
        "notices_sent": read(&c.notices_sent),
        "notices_refused": read(&c.notices_refused),
        "notices_lost": read(&c.notices_lost),
    }))
    .into_response()
}

fn as_json(value: &serde_json::Value) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string())
}

/// Sends the notice `duplicates` times, each delivered until the shop
/// answers it (2xx or a refusal) or the attempts run out.
async fn notify(sim: Arc<Sim>, order_id: String, intent_id: String, status: &'static str) {
    tokio::time::sleep(sim.settings.latency).await;
    let body = json!({
        "id": format!("evt_{}", &hex_digest("event", &order_id)[..24]),
        "intent_id": intent_id,
        "order_id": order_id,
        "status": status,
    })
    .to_string();
    for n in 0..sim.settings.duplicates.max(1) {
        if n > 0 {
            // A second apart, as a provider's redelivery would be: the same
            // second would sign the same bytes, and the shop refuses that
            // as a replay.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        deliver(&sim, &body).await;
    }
}

async fn deliver(sim: &Sim, body: &str) {
    let mut pause = Duration::from_millis(200);
    for _ in 0..DELIVERY_ATTEMPTS {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let request = Request::post(sim.settings.webhook.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&sim.settings.secret, unix, body.as_bytes()))
            .body(Full::new(Bytes::from(body.to_owned())));
        let Ok(request) = request else { return };
        match tokio::time::timeout(Duration::from_secs(5), sim.client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {
                sim.counters.notices_sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Ok(response)) if response.status().is_client_error() => {
                sim.counters.notices_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "shop::payment_sim", status = %response.status(), "the shop refused a notice");
                return;
            }
            Ok(Ok(response)) => {
                tracing::info!(target: "shop::payment_sim", status = %response.status(), "notice not taken; delivering again");
            }
            Ok(Err(error)) => tracing::info!(target: "shop::payment_sim", %error, "notice not delivered; again"),
            Err(_) => tracing::info!(target: "shop::payment_sim", "notice unanswered; delivering again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    sim.counters.notices_lost.fetch_add(1, Ordering::Relaxed);
}

/// SHA-256 of `salt`, a NUL and `text`: one decision per salt and order.
fn digest(salt: &str, text: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(b"\0")
        .chain_update(text)
        .finalize()
        .into()
}

fn hex_digest(salt: &str, text: &str) -> String {
    hex::encode(&digest(salt, text))
}

/// Where `text` falls in [0, 1), the same on every run.
fn share(salt: &str, text: &str) -> f64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest(salt, text)[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether request number `seen` (from 0) is one of the share `ratio` that fail.
fn injected(seen: u64, ratio: f64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    let before = (seen as f64 * ratio).floor();
    let after = ((seen + 1) as f64 * ratio).floor();
    after > before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_spread_evenly_and_repeat() {
        let approved = (0..10_000)
            .filter(|i| share("approve", &format!("o-{i}")) < 0.9)
            .count();
        assert!((8_800..=9_200).contains(&approved), "{approved}");
        assert_eq!(share("approve", "o-1"), share("approve", "o-1"));
        assert_ne!(share("approve", "o-1"), share("silent", "o-1"));
    }

    #[test]
    fn injected_failures_hit_the_share_asked_for() {
        assert_eq!((0..1000).filter(|&n| injected(n, 0.25)).count(), 250);
        assert_eq!((0..1000).filter(|&n| injected(n, 0.0)).count(), 0);
        assert_eq!((0..1000).filter(|&n| injected(n, 1.0)).count(), 1000);
    }
}
