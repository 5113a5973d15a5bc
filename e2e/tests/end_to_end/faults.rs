//! The services go away and come back. PostgreSQL, Redis and NATS are each
//! cut off by a proxy (the shared servers stay up for the other tests), and
//! a private nats-server is killed and restarted mid-run. Whatever happens,
//! every accepted order ends CONFIRMED or CANCELLED and no unit is lost.

use std::time::{Duration, Instant};

use shop_adapter_redis::RedisLock;
use shop_e2e::{Options, Shop, eventually_within, start_with};
use shop_rules::order::OrderStatus;
use shop_runtime::ports::{Lock, LockError, Outbox};
use shop_runtime::saga::orders::OrderError;
use shop_testkit::{NatsServer, TcpProxy};

async fn orders_in(shop: &Shop, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status = $1")
        .bind(status)
        .fetch_one(shop.observer.pool())
        .await
        .expect("countable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_fails_fast_writes_nothing_and_recovers() {
    let proxy = TcpProxy::start(([127, 0, 0, 1], 5432).into()).await.expect("proxy");
    let shop = start_with(Options {
        postgres: Some(proxy.addr()),
        ..Options::default()
    })
    .await;
    shop.register("SKU-P", 10).await;
    let in_flight = shop.place(&[("SKU-P", 1)]).await;

    proxy.cut();
    let started = Instant::now();
    let refused = shop.try_place(&[("SKU-P", 2)]).await;
    let took = started.elapsed();
    match refused {
        Err(OrderError::Store(error)) => {
            assert!(error.to_string().contains("store unavailable"), "{error}");
        }
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "failed fast, not after {took:?}");
    assert_eq!(
        orders_in(&shop, "PENDING").await + orders_in(&shop, "CONFIRMED").await,
        1,
        "the refused order left nothing behind"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    proxy.restore();
    // No restart, no operator: the pool reconnects, relays and consumers resume.
    eventually_within(Duration::from_secs(15), "intake working again", || async {
        shop.try_place(&[("SKU-P", 2)]).await.is_ok()
    })
    .await;
    shop.settles_at(&in_flight.id, OrderStatus::Confirmed).await;
    eventually_within(Duration::from_secs(30), "every order settled", || async {
        orders_in(&shop, "PENDING").await == 0
    })
    .await;
    assert_eq!(orders_in(&shop, "CONFIRMED").await, 2);
    assert_eq!(shop.stock("SKU-P").await, (7, 3, 0), "1 + 2 units reserved, once each");
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_the_lock_fast_and_reservations_resume_when_it_returns() {
    let proxy = TcpProxy::start(([127, 0, 0, 1], 6379).into()).await.expect("proxy");
    let shop = start_with(Options {
        redis: Some(proxy.addr()),
        ..Options::default()
    })
    .await;
    shop.register("SKU-R", 10).await;
    let lock = RedisLock::connect(&format!("redis://{}", proxy.addr()))
        .await
        .expect("Redis through the proxy");

    proxy.cut();
    let started = Instant::now();
    let outcome = lock
        .acquire(
            &["faults:probe".to_owned()],
            Duration::from_secs(5),
            Duration::from_secs(1),
        )
        .await;
    let took = started.elapsed();
    assert!(matches!(outcome, Err(LockError::Unavailable(_))), "{outcome:?}");
    assert!(took < Duration::from_secs(5), "failed fast, not after {took:?}");

    // Intake needs no lock: orders are accepted and wait for their reservation.
    let waiting = shop.place(&[("SKU-R", 3)]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders_in(&shop, "PENDING").await, 1, "no reservation without the lock");
    assert_eq!(shop.stock("SKU-R").await, (10, 0, 0), "nothing half-reserved");

    proxy.restore();
    shop.settles_at(&waiting.id, OrderStatus::Confirmed).await;
    assert_eq!(shop.stock("SKU-R").await, (7, 3, 0));
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_keeps_intake_open_and_publishes_when_it_returns() {
    let proxy = TcpProxy::start(([127, 0, 0, 1], 4222).into()).await.expect("proxy");
    let shop = start_with(Options {
        nats_url: Some(format!("nats://{}", proxy.addr())),
        ..Options::default()
    })
    .await;
    shop.register("SKU-N", 10).await;

    proxy.cut();
    let mut accepted = Vec::new();
    for _ in 0..5 {
        accepted.push(shop.place(&[("SKU-N", 1)]).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders_in(&shop, "PENDING").await, 5, "accepted, waiting for the broker");
    let backlog = shop
        .observer
        .outbox(shop_adapter_postgres::Schema::Orders)
        .backlog()
        .await;
    assert_eq!(backlog.expect("countable"), 5, "their events wait in the outbox");

    proxy.restore();
    for order in &accepted {
        shop.settles_at(&order.id, OrderStatus::Confirmed).await;
    }
    assert_eq!(shop.stock("SKU-N").await, (5, 5, 0));
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_run_loses_no_order_and_counts_no_unit_twice() {
    let mut nats = NatsServer::start().expect("a private nats-server");
    let shop = start_with(Options {
        nats_url: Some(nats.url()),
        ..Options::default()
    })
    .await;
    shop.register("SKU-S", 1000).await;
    for _ in 0..100 {
        shop.place(&[("SKU-S", 1)]).await;
    }
    eventually_within(Duration::from_secs(30), "the saga under way", || async {
        orders_in(&shop, "CONFIRMED").await >= 10
    })
    .await;

    nats.restart().expect("nats-server restarts");
    for _ in 0..100 {
        shop.place(&[("SKU-S", 1)]).await;
    }
    // Messages delivered but unacknowledged when it died come back after
    // the ack wait (30 s).
    eventually_within(Duration::from_secs(90), "every order settled", || async {
        orders_in(&shop, "PENDING").await == 0
    })
    .await;
    assert_eq!(orders_in(&shop, "CONFIRMED").await, 200);
    assert_eq!(
        shop.stock("SKU-S").await,
        (800, 200, 0),
        "no unit lost or counted twice"
    );
    shop.shutdown().await;
}
