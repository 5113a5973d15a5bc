//! The API key store contract.

use crate::ports::{ApiKeyRecord, ApiKeyStore, StoreError};

fn key(name: &str, fill: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        name: name.to_owned(),
        role: "customer".into(),
        digest: [fill; 32],
        created_ms: 1_000,
        expires_ms: Some(9_000),
        revoked_ms: None,
    }
}

pub async fn run(store: &impl ApiKeyStore) {
    assert!(
        store.api_keys().await.expect("listed").is_empty(),
        "a fresh store has no keys"
    );

    let partner = key("partner", 1);
    let admin = ApiKeyRecord {
        role: "admin".into(),
        expires_ms: None,
        ..key("ops-bot", 2)
    };
    store.create_api_key(&partner).await.expect("created");
    store.create_api_key(&admin).await.expect("created");
    assert_eq!(
        store.api_keys().await.expect("listed"),
        vec![admin.clone(), partner.clone()],
        "by name, as stored"
    );

    for clash in [key("partner", 3), key("another", 1)] {
        let refused = store.create_api_key(&clash).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    }
    assert_eq!(
        store.api_keys().await.expect("listed").len(),
        2,
        "nothing stored by a refusal"
    );

    assert!(store.revoke_api_key("partner", 5_000).await.expect("revoked"));
    assert!(store.revoke_api_key("partner", 6_000).await.expect("revoked again"));
    assert!(!store.revoke_api_key("nobody", 5_000).await.expect("answered"));
    let listed = store.api_keys().await.expect("listed");
    let revoked = listed.iter().find(|k| k.name == "partner").expect("still listed");
    assert_eq!(revoked.revoked_ms, Some(5_000), "the first revocation counts");
    assert!(!revoked.is_active(4_000));
    let live = listed.iter().find(|k| k.name == "ops-bot").expect("listed");
    assert!(live.is_active(i64::MAX), "no expiry");
    assert!(!key("x", 9).is_active(9_000), "expired at its time");
    assert!(key("x", 9).is_active(8_999));
}
