//! The HTTP provider against the simulator, over real loopback HTTP: the
//! port's contract, outages, and the notices the simulator signs.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use shop_adapter_payment::HttpProvider;
use shop_adapter_payment::sim::{self, SimSettings};
use shop_runtime::ports::payment::{SIGNATURE_HEADER, verify};
use shop_runtime::ports::{PaymentError, PaymentIntent, PaymentProvider, contracts};
use tokio::sync::mpsc;

const SECRET: &[u8] = b"payment-sim-test-secret-0123456789abcdef";

/// A webhook that records what it is sent and answers 200.
async fn webhook() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let (sent, received) = mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/api/payments/webhook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sent = sent.clone();
            async move {
                let signature = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let _ = sent.send((signature, body));
                "ok"
            }
        }),
    );
    (serve(router).await, received)
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn simulator(webhook: SocketAddr, approve: f64, fail: f64) -> SocketAddr {
    let settings = SimSettings {
        webhook: format!("http://{webhook}/api/payments/webhook").parse().expect("uri"),
        secret: SECRET.to_vec(),
        approve,
        silent: 0.0,
        fail,
        latency: Duration::from_millis(10),
        duplicates: 1,
    };
    serve(sim::router(settings)).await
}

fn provider(addr: SocketAddr) -> HttpProvider {
    HttpProvider::new(&format!("http://{addr}"), Duration::from_secs(2)).expect("a valid URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_provider_keeps_the_payment_contract_against_the_simulator() {
    let (hook, _) = webhook().await;
    let sim = simulator(hook, 1.0, 0.0).await;
    contracts::payment::run(&provider(sim), "contract").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_signs_each_notice_and_decides_by_the_share_asked() {
    let (hook, mut received) = webhook().await;
    let sim = simulator(hook, 0.5, 0.0).await;
    let provider = provider(sim);
    for n in 0..20 {
        let intent = PaymentIntent {
            order_id: format!("o-{n}"),
            customer_id: "alice".into(),
            amount: 1000,
            currency: "KRW".into(),
        };
        provider.create_intent(&intent).await.expect("accepted");
    }
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (signature, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("a notice in time")
            .expect("the webhook runs");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        verify(SECRET, &signature, &body, i64::try_from(now).expect("fits"), 300).expect("signed with the secret");
        let notice: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        statuses.push(notice["status"].as_str().expect("a status").to_owned());
    }
    let succeeded = statuses.iter().filter(|s| *s == "succeeded").count();
    assert!((4..=16).contains(&succeeded), "about half of 20 approved: {statuses:?}");
    assert!(
        statuses.iter().all(|s| s == "succeeded" || s == "failed"),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_failing_provider_is_unavailable_and_a_refusal_is_final() {
    let intent = PaymentIntent {
        order_id: "o-1".into(),
        customer_id: "alice".into(),
        amount: 1000,
        currency: "KRW".into(),
    };
    // Nothing listens on port 1.
    let nobody = HttpProvider::new("http://127.0.0.1:1", Duration::from_secs(1)).expect("valid");
    assert!(matches!(
        nobody.create_intent(&intent).await,
        Err(PaymentError::Unavailable(_))
    ));
    let (hook, _) = webhook().await;
    let failing = provider(simulator(hook, 1.0, 1.0).await);
    assert!(matches!(
        failing.create_intent(&intent).await,
        Err(PaymentError::Unavailable(_))
    ));
    let working = provider(simulator(hook, 1.0, 0.0).await);
    let free = PaymentIntent { amount: 0, ..intent };
    assert!(matches!(
        working.create_intent(&free).await,
        Err(PaymentError::Refused(_))
    ));
    assert!(HttpProvider::new("https://psp.example", Duration::from_secs(1)).is_err());
    assert!(HttpProvider::new("not a url", Duration::from_secs(1)).is_err());
}
