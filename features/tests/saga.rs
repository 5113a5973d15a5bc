//! Step definitions for `specs/saga/*.feature`: the saga end to end, every
//! role in this process on PostgreSQL, NATS JetStream and Redis on
//! 127.0.0.1, each scenario with its own database, namespace and keys.

use std::time::Duration;

use cucumber::{World, given, then, when};
use shop_e2e::{Options, Shop, eventually, start_with};
use shop_rules::order::{CancelReason, Order, OrderStatus};
use shop_runtime::saga::orders::Expiry;
use shop_streams::{Envelope, Trace};
use uuid::Uuid;

#[derive(World, Default)]
struct SagaWorld {
    shop: Option<Shop>,
    ttl: Option<Duration>,
    order: Option<Order>,
    placed: Vec<Order>,
}

impl std::fmt::Debug for SagaWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaWorld")
            .field("order", &self.order)
            .field("placed", &self.placed.len())
            .finish_non_exhaustive()
    }
}

impl SagaWorld {
    fn shop(&self) -> &Shop {
        self.shop
            .as_ref()
            .expect("a running shop (the scenario starts one first)")
    }

    fn order_id(&self) -> String {
        self.order.as_ref().map(|o| o.id.clone()).expect("an order was placed")
    }
}

fn status(name: &str) -> OrderStatus {
    OrderStatus::parse(name).unwrap_or_else(|| panic!("no order status {name}"))
}

#[given("a running shop")]
async fn a_running_shop(world: &mut SagaWorld) {
    world.shop = Some(start_with(Options::default()).await);
}

#[given(expr = "a running shop whose reservations expire after {int} milliseconds")]
async fn a_running_shop_with_expiry(world: &mut SagaWorld, millis: u64) {
    let ttl = Duration::from_millis(millis);
    world.ttl = Some(ttl);
    world.shop = Some(
        start_with(Options {
            reservation_ttl: Some(ttl),
            ..Options::default()
        })
        .await,
    );
}

#[given(expr = "the product {string} with {int} units in stock")]
async fn a_product(world: &mut SagaWorld, product: String, stock: i64) {
    world.shop().register(&product, stock).await;
}

#[when(expr = "a customer orders {int} of {string}")]
async fn orders_one_line(world: &mut SagaWorld, quantity: i64, product: String) {
    world.order = Some(world.shop().place(&[(&product, quantity)]).await);
}

#[when(expr = "a customer orders {int} of {string} and {int} of {string}")]
async fn orders_two_lines(
    world: &mut SagaWorld,
    first: i64,
    first_product: String,
    second: i64,
    second_product: String,
) {
    let lines = [(first_product.as_str(), first), (second_product.as_str(), second)];
    world.order = Some(world.shop().place(&lines).await);
}

#[when(expr = "{int} customers each order {int} of {string} at once")]
async fn many_customers(world: &mut SagaWorld, customers: usize, quantity: i64, product: String) {
    let shop = world.shop();
    let line = [(product.as_str(), quantity)];
    let orders = futures::future::join_all((0..customers).map(|_| shop.place(&line))).await;
    world.placed = orders;
}

#[when("the payment for the order is confirmed")]
async fn payment_confirmed(world: &mut SagaWorld) {
    let id = world.order_id();
    world
        .shop()
        .orders
        .complete(&id, Trace::root(Uuid::now_v7()), None)
        .await
        .expect("completed");
}

#[when("the reservation has outlived its time and the expiry runs")]
async fn expiry_runs(world: &mut SagaWorld) {
    let ttl = world.ttl.expect("a shop whose reservations expire");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let expired = world
        .shop()
        .orders
        .expire_due(&Expiry::reservation(ttl), 100, Trace::root(Uuid::now_v7()))
        .await
        .expect("the expiry ran");
    assert_eq!(expired, 1);
}

#[when("inventory receives the order's OrderCreated again")]
async fn created_again(world: &mut SagaWorld) {
    let id = world.order_id();
    let shop = world.shop();
    let created: sqlx::types::Json<Envelope> = sqlx::query_scalar(
        "SELECT envelope FROM orders.outbox WHERE envelope->>'aggregate_id' = $1 AND envelope->>'event_type' = 'OrderCreated'",
    )
    .bind(&id)
    .fetch_one(shop.observer.pool())
    .await
    .expect("the published event");
    shop.inventory.handle(&created.0).await.expect("handled");
}

#[then(expr = "the order is accepted as {word}")]
async fn accepted_as(world: &mut SagaWorld, expected: String) {
    let order = world.order.as_ref().expect("an order was placed");
    assert_eq!(order.status, status(&expected));
}

#[then(expr = "the order becomes {word}")]
async fn becomes(world: &mut SagaWorld, expected: String) {
    let id = world.order_id();
    world.order = Some(world.shop().settles_at(&id, status(&expected)).await);
}

#[then(expr = "the order becomes CANCELLED because of {word}")]
async fn cancelled_because(world: &mut SagaWorld, reason: String) {
    let id = world.order_id();
    let order = world.shop().settles_at(&id, OrderStatus::Cancelled).await;
    let cancel_reason = order.cancel_reason.as_ref().map(CancelReason::as_str);
    assert_eq!(cancel_reason, Some(reason.as_str()));
    world.order = Some(order);
}

#[then(expr = "{int} orders end CONFIRMED and {int} end CANCELLED")]
async fn orders_end(world: &mut SagaWorld, confirmed: usize, cancelled: usize) {
    let shop = world.shop();
    let settled = || async {
        let mut counts = (0, 0);
        for order in &world.placed {
            match shop.orders.get(&order.id).await.ok().flatten().map(|o| o.status) {
                Some(OrderStatus::Confirmed) => counts.0 += 1,
                Some(OrderStatus::Cancelled) => counts.1 += 1,
                _ => {}
            }
        }
        counts
    };
    eventually("every order settled", || async {
        settled().await == (confirmed, cancelled)
    })
    .await;
}

#[then(expr = "{string} has {int} available, {int} reserved and {int} deducted")]
async fn stock_is(world: &mut SagaWorld, product: String, available: i64, reserved: i64, deducted: i64) {
    let shop = world.shop();
    let expected = (available, reserved, deducted);
    eventually(&format!("{product} at {expected:?}"), || async {
        shop.stock(&product).await == expected
    })
    .await;
}

fn main() {
    let specs = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/saga");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(
        SagaWorld::cucumber()
            // Each scenario starts a whole shop; two at a time suit two cores.
            .max_concurrent_scenarios(2)
            .fail_on_skipped()
            .after(|_, _, _, _, world| {
                Box::pin(async move {
                    if let Some(shop) = world.and_then(|w| w.shop.take()) {
                        shop.shutdown().await;
                    }
                })
            })
            .run_and_exit(specs),
    );
}
