//! The payment port over HTTP, and a provider simulator.
//!
//! [`HttpProvider`] asks a provider at `SHOP_PAYMENT_URL` for payment
//! intents: `POST {url}/v1/payment_intents` with the order id as
//! `Idempotency-Key`, answered `{"id": ...}`. The provider's answer comes
//! later, as a signed notice to the shop's webhook (see
//! `shop_runtime::saga::payment`). [`sim`] is such a provider for development
//! and tests (`shop payment-sim`): it approves or declines, is slow or
//! fails, on demand, and calls the webhook like a real one.

#![forbid(unsafe_code)]

pub mod sim;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use shop_runtime::ports::{Cause, PaymentError, PaymentIntent, PaymentProvider};

/// Where intents are asked for, under the provider's base URL.
pub const INTENTS_PATH: &str = "/v1/payment_intents";
/// The most of a provider's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client for plain `http://` peers, with a connect timeout.
pub(crate) fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

#[derive(Debug, thiserror::Error)]
#[error("SHOP_PAYMENT_URL {0:?} is not an http:// URL of a host (https needs a proxy in front)")]
pub struct BadProviderUrl(pub String);

/// The payment provider at a base URL.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    intents: Uri,
    client: HttpClient,
    /// How long one request may take, answer included.
    timeout: Duration,
}

impl HttpProvider {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, BadProviderUrl> {
        let bad = || BadProviderUrl(base.to_owned());
        let intents: Uri = format!("{}{INTENTS_PATH}", base.trim_end_matches('/'))
            .parse()
            .map_err(|_| bad())?;
        if intents.scheme_str() != Some("http") || intents.host().is_none() {
            return Err(bad());
        }
        Ok(Self {
            intents,
            client: client(timeout),
            timeout,
        })
    }
}

#[derive(Deserialize)]
struct IntentAnswer {
    id: String,
}

fn unavailable(what: &str, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PaymentError {
    PaymentError::Unavailable(Cause::context(what, error))
}

impl PaymentProvider for HttpProvider {
    async fn create_intent(&self, intent: &PaymentIntent) -> Result<String, PaymentError> {
        let body = serde_json::json!({
            "order_id": intent.order_id,
            "customer_id": intent.customer_id,
            "amount": intent.amount,
            "currency": intent.currency,
        });
        let request = Request::post(self.intents.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", &intent.order_id)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| PaymentError::Refused(format!("the order id cannot be a header: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unavailable("payment provider", e))?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unavailable("payment provider answer", e))?
                .to_bytes();
            Ok::<_, PaymentError>((status, answer))
        };
        let (status, answer) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unavailable("payment provider", format!("no answer within {:?}", self.timeout)))??;
        match status {
            s if s.is_success() => serde_json::from_slice::<IntentAnswer>(&answer)
                .map(|answer| answer.id)
                .map_err(|e| unavailable("payment provider answer", e)),
            // Busy or failing on its side: worth asking again.
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT => {
                Err(unavailable("payment provider", format!("answered {s}")))
            }
            s => Err(PaymentError::Refused(format!(
                "answered {s}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            ))),
        }
    }
}
