//! The API key store contract.

use crate::audit::{Actor, AuditRecord};
use crate::ports::{ApiKeyRecord, ApiKeyStore, AuditLog, AuditQuery, StoreError};

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

/// `operator`'s `action` on the key `name`.
fn did(action: &str, name: &str) -> AuditRecord {
    Actor::new("cli:ops", "operator", "req-1").did("access", action, format!("api_key:{name}"), 1_000, &"")
}

/// Every check, against a store and the audit log its changes are sealed onto.
pub async fn run(store: &impl ApiKeyStore, log: &impl AuditLog) {
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
    store
        .create_api_key(&partner, &did("api_key.create", "partner"))
        .await
        .expect("created");
    store
        .create_api_key(&admin, &did("api_key.create", "ops-bot"))
        .await
        .expect("created");
    assert_eq!(
        store.api_keys().await.expect("listed"),
        vec![admin.clone(), partner.clone()],
        "by name, as stored"
    );

    for clash in [key("partner", 3), key("another", 1)] {
        let refused = store.create_api_key(&clash, &did("api_key.create", &clash.name)).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    }
    assert_eq!(
        store.api_keys().await.expect("listed").len(),
        2,
        "nothing stored by a refusal"
    );

    let revoke = did("api_key.revoke", "partner");
    assert!(store.revoke_api_key("partner", 5_000, &revoke).await.expect("revoked"));
    assert!(
        store
            .revoke_api_key("partner", 6_000, &revoke)
            .await
            .expect("revoked again")
    );
    let nobody = did("api_key.revoke", "nobody");
    assert!(!store.revoke_api_key("nobody", 5_000, &nobody).await.expect("answered"));
    let listed = store.api_keys().await.expect("listed");
    let revoked = listed.iter().find(|k| k.name == "partner").expect("still listed");
    assert_eq!(revoked.revoked_ms, Some(5_000), "the first revocation counts");
    assert!(!revoked.is_active(4_000));
    let live = listed.iter().find(|k| k.name == "ops-bot").expect("listed");
    assert!(live.is_active(i64::MAX), "no expiry");
    assert!(!key("x", 9).is_active(9_000), "expired at its time");
    assert!(key("x", 9).is_active(8_999));

    // Each change sealed with it; refusals, and a revocation of no key, not.
    let on = |target: &'static str| async move {
        let query = AuditQuery {
            target: Some(target),
            limit: 10,
            ..AuditQuery::default()
        };
        let entries = log.entries(query).await.expect("readable");
        entries.into_iter().map(|e| e.record.action).collect::<Vec<_>>()
    };
    assert_eq!(
        on("api_key:partner").await,
        ["api_key.create", "api_key.revoke", "api_key.revoke"]
    );
    assert_eq!(on("api_key:ops-bot").await, ["api_key.create"]);
    assert_eq!(on("api_key:another").await, Vec::<String>::new());
    assert_eq!(on("api_key:nobody").await, Vec::<String>::new());
}
