//! The [`PaymentProvider`] contract. Run it against a provider that accepts
//! intents (a simulator, a sandbox account); `prefix` keeps its order ids
//! apart from other runs'.

use crate::ports::{PaymentIntent, PaymentProvider};

fn intent(order_id: String) -> PaymentIntent {
    PaymentIntent {
        order_id,
        customer_id: "alice".into(),
        amount: 2400,
        currency: "KRW".into(),
    }
}

/// Every check.
pub async fn run<P: PaymentProvider>(provider: &P, prefix: &str) {
    asking_again_for_an_order_answers_the_same_intent(provider, prefix).await;
    two_orders_get_two_intents(provider, prefix).await;
}

async fn asking_again_for_an_order_answers_the_same_intent<P: PaymentProvider>(provider: &P, prefix: &str) {
    let asked = intent(format!("{prefix}-once"));
    let first = provider.create_intent(&asked).await.expect("accepted");
    assert!(!first.is_empty(), "an intent id");
    let again = provider.create_intent(&asked).await.expect("accepted again");
    assert_eq!(first, again, "one order, one intent");
}

async fn two_orders_get_two_intents<P: PaymentProvider>(provider: &P, prefix: &str) {
    let a = provider
        .create_intent(&intent(format!("{prefix}-a")))
        .await
        .expect("accepted");
    let b = provider
        .create_intent(&intent(format!("{prefix}-b")))
        .await
        .expect("accepted");
    assert_ne!(a, b);
}
