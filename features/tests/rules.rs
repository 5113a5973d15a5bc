//! Step definitions for `specs/rules/*.feature`: the seed's order and
//! inventory rules, executed through the WebAssembly components by the host.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use cucumber::gherkin::Step;
use cucumber::{World, given, then, when};
use shop_adapter_memory::MemoryKeyValue;
use shop_rules::inventory::{
    Adjust, InventoryCommand, InventoryEvent, InventoryState, Movement, MovementKind, OrderLines, ProductStock,
    RegisterProduct, Release, ReleaseReason, Reservation, Restock, StockLine,
};
use shop_rules::order::{CancelReason, CataloguePrice, LineRequest, Order, OrderCommand, OrderStatus, PlaceOrder};
use shop_rules::spec::T0;
use shop_runtime::ports::ManualClock;
use shop_runtime::rules::{Capabilities, RuleError, RuleHost, RuleSettings};

const MINUTE_MS: i64 = 60_000;

/// One host for all scenarios: loading compiles the components once.
/// Scenarios run one at a time, since they share its clock.
fn shared_host() -> &'static (Arc<RuleHost>, Arc<ManualClock>) {
    static HOST: OnceLock<(Arc<RuleHost>, Arc<ManualClock>)> = OnceLock::new();
    HOST.get_or_init(|| {
        let clock = Arc::new(ManualClock::new(T0));
        let settings = RuleSettings {
            builtin: shop_rules_bundle::DEFAULT
                .iter()
                .map(|c| shop_runtime::rules::RuleSource::builtin(c.name, c.wasm))
                .collect(),
            ..RuleSettings::default()
        };
        let capabilities = Capabilities {
            clock: clock.clone(),
            kv: Arc::new(MemoryKeyValue::new()),
            namespace: "features".into(),
        };
        let host = RuleHost::start(settings, capabilities).expect("rules load");
        (Arc::new(host), clock)
    })
}

/// What the last command answered, whichever context it went to.
#[derive(Debug)]
enum Outcome {
    Accepted { events: usize },
    Refused(String),
}

#[derive(Debug, World)]
#[world(init = Self::new)]
struct RulesWorld {
    host: Arc<RuleHost>,
    clock: Arc<ManualClock>,
    catalogue: Vec<CataloguePrice>,
    order: Option<Order>,
    products: Vec<ProductStock>,
    reservations: BTreeMap<String, Reservation>,
    movements: Vec<Movement>,
    last_events: Vec<InventoryEvent>,
    outcome: Option<Outcome>,
}

impl RulesWorld {
    fn new() -> Self {
        let (host, clock) = shared_host();
        clock.set(T0);
        Self {
            host: Arc::clone(host),
            clock: Arc::clone(clock),
            catalogue: Vec::new(),
            order: None,
            products: Vec::new(),
            reservations: BTreeMap::new(),
            movements: Vec::new(),
            last_events: Vec::new(),
            outcome: None,
        }
    }

    fn order_command(&mut self, command: OrderCommand) {
        self.outcome = Some(match self.host.decide_order(self.order.as_ref(), &command) {
            Ok(decided) => {
                for event in &decided.value {
                    self.order = self.host.evolve_order(self.order.take(), event).expect("evolve");
                }
                Outcome::Accepted {
                    events: decided.value.len(),
                }
            }
            Err(RuleError::Rejected(rejection)) => Outcome::Refused(rejection.to_string()),
            Err(RuleError::Fault(fault)) => panic!("{fault}"),
        });
    }

    fn place(&mut self, customer: &str, lines: Vec<(String, i64)>) {
        let command = OrderCommand::Place(PlaceOrder {
            order_id: "o-1".into(),
            customer_id: customer.into(),
            lines: lines
                .into_iter()
                .map(|(product_id, quantity)| LineRequest { product_id, quantity })
                .collect(),
            catalogue: self.catalogue.clone(),
        });
        self.order = None;
        self.order_command(command);
    }

    fn inventory_command(&mut self, order: Option<&str>, command: InventoryCommand) {
        let state = InventoryState {
            products: self.products.clone(),
            reservation: order.and_then(|o| self.reservations.get(o).cloned()),
        };
        self.outcome = Some(match self.host.decide_inventory(&state, &command) {
            Ok(decided) => {
                let mut state = state;
                for event in &decided.value.events {
                    state = self.host.evolve_inventory(state, event).expect("evolve");
                }
                self.products = state.products;
                if let Some(reservation) = state.reservation {
                    self.reservations.insert(reservation.order_id.clone(), reservation);
                }
                self.movements.extend(decided.value.movements);
                self.last_events = decided.value.events;
                Outcome::Accepted {
                    events: self.last_events.len(),
                }
            }
            Err(RuleError::Rejected(rejection)) => Outcome::Refused(rejection.to_string()),
            Err(RuleError::Fault(fault)) => panic!("{fault}"),
        });
    }

    fn product(&self, id: &str) -> &ProductStock {
        self.products
            .iter()
            .find(|p| p.product_id == id)
            .unwrap_or_else(|| panic!("no product {id}"))
    }

    fn current_order(&self) -> &Order {
        self.order.as_ref().expect("an order exists")
    }

    fn assert_accepted(&self) {
        if let Some(Outcome::Refused(reason)) = &self.outcome {
            panic!("the last command was refused: {reason}");
        }
    }
}

/// The rows of a step's data table, header excluded, as maps by column.
fn rows(step: &Step) -> Vec<BTreeMap<String, String>> {
    let table = step.table.as_ref().expect("the step has a table");
    let header = &table.rows[0];
    table.rows[1..]
        .iter()
        .map(|row| header.iter().cloned().zip(row.iter().cloned()).collect())
        .collect()
}

fn lines(step: &Step) -> Vec<(String, i64)> {
    rows(step)
        .into_iter()
        .map(|r| (r["product"].clone(), r["quantity"].parse().expect("quantity")))
        .collect()
}

fn status(name: &str) -> OrderStatus {
    OrderStatus::parse(name).unwrap_or_else(|| panic!("unknown status {name}"))
}

// ---- Orders ----

#[given("the catalogue lists")]
fn catalogue(world: &mut RulesWorld, step: &Step) {
    world.catalogue = rows(step)
        .into_iter()
        .map(|r| CataloguePrice {
            product_id: r["product"].clone(),
            unit_price: r["price"].parse().expect("price"),
            currency: r["currency"].clone(),
        })
        .collect();
}

#[when(expr = "customer {string} orders")]
fn orders_table(world: &mut RulesWorld, customer: String, step: &Step) {
    let lines = lines(step);
    world.place(&customer, lines);
}

#[when(expr = "customer {string} orders nothing")]
fn orders_nothing(world: &mut RulesWorld, customer: String) {
    world.place(&customer, Vec::new());
}

#[when(expr = "customer {string} orders {int} of {string}")]
fn orders_one(world: &mut RulesWorld, customer: String, quantity: i64, product: String) {
    world.place(&customer, vec![(product, quantity)]);
}

#[given(expr = "customer {string} has a {word} order for {int} of {string}")]
fn has_order(world: &mut RulesWorld, customer: String, wanted: String, quantity: i64, product: String) {
    world.place(&customer, vec![(product, quantity)]);
    if wanted == "CONFIRMED" {
        world.order_command(OrderCommand::Confirm);
    }
    world.assert_accepted();
    assert_eq!(world.current_order().status, status(&wanted));
}

#[when(expr = "the catalogue price of {string} becomes {int}")]
fn price_changes(world: &mut RulesWorld, product: String, price: i64) {
    for entry in world.catalogue.iter_mut().filter(|p| p.product_id == product) {
        entry.unit_price = price;
    }
}

#[when("the stock is reserved")]
fn stock_reserved(world: &mut RulesWorld) {
    world.order_command(OrderCommand::Confirm);
}

#[when("the payment is confirmed")]
fn payment_confirmed(world: &mut RulesWorld) {
    world.order_command(OrderCommand::Complete);
}

#[when("the customer cancels")]
fn customer_cancels(world: &mut RulesWorld) {
    world.order_command(OrderCommand::Cancel(CancelReason::Customer));
}

#[when("the stock turns out to be insufficient")]
fn insufficient(world: &mut RulesWorld) {
    world.order_command(OrderCommand::Cancel(CancelReason::InsufficientStock));
}

#[when("the system expires the reservation")]
fn system_expires(world: &mut RulesWorld) {
    world.order_command(OrderCommand::Cancel(CancelReason::ReservationExpired));
}

#[when(regex = r"^(\d+) minutes? pass(?:es)?$")]
fn minutes_pass(world: &mut RulesWorld, minutes: i64) {
    world.clock.advance(minutes * MINUTE_MS);
}

#[then(expr = "the order is {word}")]
fn order_is(world: &mut RulesWorld, wanted: String) {
    assert_eq!(world.current_order().status, status(&wanted));
}

#[then(expr = "the order is CANCELLED because {string}")]
fn cancelled_because(world: &mut RulesWorld, reason: String) {
    world.assert_accepted();
    let order = world.current_order();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        order.cancel_reason.as_ref().map(CancelReason::as_str),
        Some(reason.as_str())
    );
}

#[then(expr = "the order total is {int} {word}")]
fn total_is(world: &mut RulesWorld, total: i64, currency: String) {
    let order = world.current_order();
    assert_eq!((order.total(), order.currency.as_str()), (total, currency.as_str()));
}

#[then(expr = "the order line for {string} still costs {int}")]
fn line_costs(world: &mut RulesWorld, product: String, price: i64) {
    let line = world
        .current_order()
        .lines
        .iter()
        .find(|l| l.product_id == product)
        .expect("line");
    assert_eq!(line.unit_price, price);
}

#[then(expr = "it is refused: {string}")]
fn refused(world: &mut RulesWorld, reason: String) {
    match &world.outcome {
        Some(Outcome::Refused(actual)) => assert_eq!(actual, &reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[then("nothing happens")]
fn nothing_happens(world: &mut RulesWorld) {
    assert!(
        matches!(world.outcome, Some(Outcome::Accepted { events: 0 })),
        "{:?}",
        world.outcome
    );
}

// ---- Inventory ----

#[given("the products")]
fn products(world: &mut RulesWorld, step: &Step) {
    for row in rows(step) {
        let command = InventoryCommand::RegisterProduct(RegisterProduct {
            product_id: row["product"].clone(),
            name: format!("The {}", row["product"]),
            unit_price: 1000,
            currency: "KRW".into(),
            initial_stock: row["stock"].parse().expect("stock"),
        });
        world.inventory_command(None, command);
        world.assert_accepted();
    }
}

fn reserve(world: &mut RulesWorld, order: &str, lines: Vec<(String, i64)>) {
    let command = InventoryCommand::Reserve(OrderLines {
        order_id: order.to_owned(),
        lines: lines
            .into_iter()
            .map(|(product_id, quantity)| StockLine { product_id, quantity })
            .collect(),
    });
    world.inventory_command(Some(order), command);
}

#[when(expr = "order {string} reserves")]
fn reserves_table(world: &mut RulesWorld, order: String, step: &Step) {
    let lines = lines(step);
    reserve(world, &order, lines);
}

#[when(expr = "order {string} reserves {int} of {string}")]
fn reserves_one(world: &mut RulesWorld, order: String, quantity: i64, product: String) {
    reserve(world, &order, vec![(product, quantity)]);
}

#[when(expr = "order {string} completes")]
fn completes(world: &mut RulesWorld, order: String) {
    world.inventory_command(Some(&order), InventoryCommand::Deduct(order.clone()));
    world.assert_accepted();
}

fn release(world: &mut RulesWorld, order: String, reason: ReleaseReason) {
    let command = InventoryCommand::Release(Release {
        order_id: order.clone(),
        reason,
    });
    world.inventory_command(Some(&order), command);
    world.assert_accepted();
}

#[when(expr = "order {string} is cancelled")]
fn order_cancelled(world: &mut RulesWorld, order: String) {
    release(world, order, ReleaseReason::Cancelled);
}

#[when(expr = "the reservation of order {string} expires")]
fn reservation_expires(world: &mut RulesWorld, order: String) {
    release(world, order, ReleaseReason::Expired);
}

#[when(expr = "{string} is adjusted by {int} because {string}")]
fn adjusted(world: &mut RulesWorld, product: String, delta: i64, reason: String) {
    let command = InventoryCommand::Adjust(Adjust {
        product_id: product,
        delta,
        reason,
    });
    world.inventory_command(None, command);
}

#[when(expr = "{string} is restocked with {int}")]
fn restocked(world: &mut RulesWorld, product: String, quantity: i64) {
    world.inventory_command(
        None,
        InventoryCommand::Restock(Restock {
            product_id: product,
            quantity,
        }),
    );
    world.assert_accepted();
}

#[then(expr = "{string} has {int} available and {int} reserved")]
fn has_stock(world: &mut RulesWorld, product: String, available: i64, reserved: i64) {
    let p = world.product(&product);
    assert_eq!((p.available, p.reserved), (available, reserved));
}

#[then(expr = "the stock is short of {string}: {int} requested, {int} available")]
fn short_of(world: &mut RulesWorld, product: String, requested: i64, available: i64) {
    world.assert_accepted();
    let shortages = world
        .last_events
        .iter()
        .find_map(|e| match e {
            InventoryEvent::InsufficientStock(e) => Some(&e.shortages),
            _ => None,
        })
        .expect("an InsufficientStock event");
    assert_eq!(shortages.len(), 1, "{shortages:?}");
    let s = &shortages[0];
    assert_eq!(
        (s.product_id.as_str(), s.requested, s.available),
        (product.as_str(), requested, available)
    );
}

fn kind(name: &str) -> MovementKind {
    match name {
        "initial" => MovementKind::Initial,
        "restock" => MovementKind::Restock,
        "adjust" => MovementKind::Adjust,
        "reserve" => MovementKind::Reserve,
        "deduct" => MovementKind::Deduct,
        "restore" => MovementKind::Restore,
        "expire" => MovementKind::Expire,
        other => panic!("unknown movement kind {other}"),
    }
}

#[then(expr = "the movements of {string} are")]
fn movements_are(world: &mut RulesWorld, product: String, step: &Step) {
    let actual: Vec<(MovementKind, i64, Option<String>)> = world
        .movements
        .iter()
        .filter(|m| m.product_id == product)
        .map(|m| (m.kind, m.quantity, m.order_id.clone()))
        .collect();
    let expected: Vec<(MovementKind, i64, Option<String>)> = rows(step)
        .into_iter()
        .map(|r| {
            let order = Some(r["order"].clone()).filter(|o| !o.is_empty());
            (kind(&r["kind"]), r["quantity"].parse().expect("quantity"), order)
        })
        .collect();
    assert_eq!(actual, expected);
}

#[then(expr = "the last movement of {string} is a {word} of {int}")]
fn last_movement(world: &mut RulesWorld, product: String, wanted: String, quantity: i64) {
    let last = world
        .movements
        .iter()
        .rev()
        .find(|m| m.product_id == product)
        .expect("a movement");
    assert_eq!((last.kind, last.quantity), (kind(&wanted), quantity));
}

#[then("stock is conserved")]
fn conserved(world: &mut RulesWorld) {
    for p in &world.products {
        assert!(p.is_conserved(), "{p:?}");
        // The audit trail alone tells the same story as the counters.
        let net = |kinds: &[MovementKind]| -> i64 {
            world
                .movements
                .iter()
                .filter(|m| m.product_id == p.product_id && kinds.contains(&m.kind))
                .map(|m| m.quantity)
                .sum()
        };
        use MovementKind as M;
        let available = net(&[M::Initial, M::Restock, M::Adjust, M::Restore, M::Expire]) - net(&[M::Reserve]);
        let reserved = net(&[M::Reserve]) - net(&[M::Deduct, M::Restore, M::Expire]);
        assert_eq!(
            (available, reserved),
            (p.available, p.reserved),
            "movements of {}",
            p.product_id
        );
    }
}

fn main() {
    let specs = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/rules");
    futures::executor::block_on(
        RulesWorld::cucumber()
            .max_concurrent_scenarios(1)
            .fail_on_skipped()
            .run_and_exit(specs),
    );
}
