//! NATS and Redis behind credentials and TLS, as a deployment runs them:
//! private servers under a CA made by the test, an nkey user and a
//! password on NATS, a password on Redis. The adapters get in with the
//! right credentials and CA and are kept out without them; `shop serve`
//! takes them from its settings and runs the whole saga through them.

use crate::common;

use std::time::{Duration, Instant};

use common::{InProcess, token};
use serde_json::json;
use shop_adapter_jetstream::{JetStreamBus, NatsEndpoint};
use shop_adapter_redis::{RedisEndpoint, RedisKeyValue, RedisLock, RedisRateLimiter};
use shop_runtime::ports::{EventBus, contracts};
use shop_streams::Topology;
use shop_testkit::{NatsServer, RedisServer, TestCertificates};

const PASSWORD: &str = "s3cret-of-the-test";

/// A nats-server requiring TLS, that admits the nkey user `seed`'s and
/// user `app` with [`PASSWORD`]; and its port.
fn secured_nats(certificates: &TestCertificates, dir: &std::path::Path, public_key: &str) -> (NatsServer, u16) {
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "authorization {{ users = [ {{ nkey: \"{public_key}\" }}, {{ user: \"app\", password: \"{PASSWORD}\" }} ] }}\n\
             tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            certificates.cert().display(),
            certificates.key().display()
        ),
    )
    .expect("config written");
    let server = NatsServer::start_with(&["-c", &config.to_string_lossy()]).expect("a private nats-server");
    let port = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    (server, port)
}

fn secured_redis(certificates: &TestCertificates) -> RedisServer {
    let (cert, key, ca) = (certificates.cert(), certificates.key(), certificates.ca());
    RedisServer::start_with(&[
        "--tls-port",
        "--tls-cert-file",
        &cert.to_string_lossy(),
        "--tls-key-file",
        &key.to_string_lossy(),
        "--tls-ca-cert-file",
        &ca.to_string_lossy(),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        PASSWORD,
    ])
    .expect("a private redis-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_gets_into_a_secured_nats_only_with_credentials_and_the_ca() {
    let certificates = TestCertificates::generate().expect("openssl makes certificates");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().expect("a seed");
    let (_nats, port) = secured_nats(&certificates, dir.path(), &user.public_key());
    let topology = || Topology::new(shop_testkit::fresh_namespace('t'));
    let endpoint = |url: String, credentials: Option<&str>, ca: bool| NatsEndpoint {
        url,
        credentials: credentials.map(str::to_owned),
        tls_ca: ca.then(|| certificates.ca()),
    };
    let tls = format!("tls://127.0.0.1:{port}");

    // The nkey user, over TLS under the test's CA: streams made, read back.
    let bus = JetStreamBus::connect(endpoint(tls.clone(), Some(&seed), true), topology())
        .await
        .expect("admitted with the nkey");
    assert!(bus.dead_letters(1).await.expect("streams answer").is_empty());
    bus.delete_streams().await.expect("cleaned up");
    // A user and password in the URL.
    let with_password = format!("tls://app:{PASSWORD}@127.0.0.1:{port}");
    let bus = JetStreamBus::connect(endpoint(with_password, None, true), topology())
        .await
        .expect("admitted with the password");
    bus.delete_streams().await.expect("cleaned up");

    // Kept out: no credentials, a wrong password, another nkey, no CA.
    let refusals = [
        endpoint(tls.clone(), None, true),
        endpoint(format!("tls://app:wrong@127.0.0.1:{port}"), None, true),
        endpoint(
            tls.clone(),
            Some(&nkeys::KeyPair::new_user().seed().expect("a seed")),
            true,
        ),
        endpoint(tls.clone(), Some(&seed), false),
    ];
    for refused in refusals {
        let described = format!("{refused:?}");
        let error = JetStreamBus::connect(refused, topology()).await.expect_err(&described);
        assert!(!error.to_string().contains(PASSWORD), "no password in {error}");
    }
    let error = JetStreamBus::connect(endpoint(tls, Some("neither a seed nor creds"), true), topology())
        .await
        .expect_err("malformed credentials");
    assert!(
        error.to_string().contains("neither an nkey seed nor a .creds file"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_adapters_get_into_a_secured_redis_only_with_the_password_and_the_ca() {
    let certificates = TestCertificates::generate().expect("openssl makes certificates");
    let redis = secured_redis(&certificates);
    let ca = std::fs::read(certificates.ca()).expect("the CA");
    let endpoint = |password: &str, ca: Option<&Vec<u8>>| RedisEndpoint {
        url: format!("rediss://:{password}@127.0.0.1:{}", redis.port()),
        tls_ca: ca.cloned(),
    };
    let prefix = format!("secured-{}:", std::process::id());
    let lock = RedisLock::connect(endpoint(PASSWORD, Some(&ca)))
        .await
        .expect("admitted");
    contracts::lock::run(&lock, &prefix).await;
    let limiter = RedisRateLimiter::connect(endpoint(PASSWORD, Some(&ca)))
        .await
        .expect("admitted");
    contracts::rate_limit::run(&limiter, &prefix).await;
    let kv = RedisKeyValue::connect(endpoint(PASSWORD, Some(&ca))).expect("admitted");
    shop_runtime::ports::kv::contract::run(std::sync::Arc::new(kv), &prefix);

    for (why, refused) in [
        ("a wrong password", endpoint("wrong", Some(&ca))),
        ("no CA", endpoint(PASSWORD, None)),
    ] {
        let error = RedisLock::connect(refused).await.expect_err(why);
        assert!(!error.to_string().contains(PASSWORD), "no password in {error}");
    }
    let plain = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port());
    assert!(RedisLock::connect(plain.as_str()).await.is_err(), "TLS is required");
}

/// `shop serve` on secured NATS and Redis, from its settings (the nkey
/// seed from a file): ready with every dependency, and an order confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_runs_its_saga_over_secured_nats_and_redis() {
    let certificates = TestCertificates::generate().expect("openssl makes certificates");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let user = nkeys::KeyPair::new_user();
    let seed_file = dir.path().join("nats.seed");
    std::fs::write(&seed_file, format!("{}\n", user.seed().expect("a seed"))).expect("written");
    let (_nats, port) = secured_nats(&certificates, dir.path(), &user.public_key());
    let redis = secured_redis(&certificates);
    let (_store, db) = shop_adapter_postgres::testing::fresh_database().await;
    let namespace = shop_testkit::fresh_namespace('s');
    let (nats_url, redis_url) = (
        format!("tls://127.0.0.1:{port}"),
        format!("rediss://:{PASSWORD}@127.0.0.1:{}", redis.port()),
    );
    let (seed_file, ca) = (seed_file.to_string_lossy(), certificates.ca());
    let ca = ca.to_string_lossy();
    let shop = InProcess::start(
        shop::ProcessRole::All,
        &db,
        namespace.as_str(),
        &[
            ("SHOP_NATS_URL", &nats_url),
            ("SHOP_NATS_CREDS_FILE", &seed_file),
            ("SHOP_NATS_TLS_CA", &ca),
            ("SHOP_REDIS_URL", &redis_url),
            ("SHOP_REDIS_TLS_CA", &ca),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = common::ready_as_admin(shop.addr).await;
        if report.json()["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "never whole: {}", report.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let alice = token("alice", "customer");
    let product = json!({"id": "SKU-S", "name": "Safe", "unit_price": 9000, "currency": "KRW", "stock": 5});
    common::register(shop.addr, &product).await;
    let placed = common::place(shop.addr, &alice, "SKU-S", "s-1").await;
    let id = placed["order_id"].as_str().expect("an order id");
    common::confirmed(shop.addr, &alice, id).await;
    shop.stop().await;
}
