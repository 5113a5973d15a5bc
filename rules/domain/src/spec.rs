//! The rule book as examples: given past events, when a command arrives, then
//! these events (or this rejection).
//!
//! One table, two executions: `tests/spec.rs` runs every case against the
//! native build, and the runtime's tests run the same cases through the
//! WebAssembly components, so both builds are held to the same expectations.

use crate::common::{FieldError, LineError};
use crate::env::{DEFAULT_RESERVATION_TTL_MS, FixedEnv};
use crate::inventory::{self, *};
use crate::order::{self, *};

/// The clock reading every case starts from.
pub const T0: i64 = 1_767_225_600_000;

#[derive(Debug, Clone)]
pub struct OrderCase {
    pub name: &'static str,
    pub given: Vec<OrderEvent>,
    pub when: OrderCommand,
    pub now_ms: i64,
    pub then: Result<Vec<OrderEvent>, OrderRejection>,
}

#[derive(Debug, Clone)]
pub struct InventoryCase {
    pub name: &'static str,
    pub given: Vec<InventoryEvent>,
    pub when: InventoryCommand,
    pub now_ms: i64,
    pub then: Result<Decision, InventoryRejection>,
}

impl OrderCase {
    /// The native execution: fold the history, then decide.
    pub fn run_natively(&self) -> Result<Vec<OrderEvent>, OrderRejection> {
        let state = self.given.iter().fold(None, order::evolve);
        order::decide(state.as_ref(), &self.when, &FixedEnv::at(self.now_ms))
    }
}

impl InventoryCase {
    pub fn run_natively(&self) -> Result<Decision, InventoryRejection> {
        let state = self.given.iter().fold(InventoryState::default(), inventory::evolve);
        inventory::decide(&state, &self.when, self.now_ms)
    }
}

fn s(text: &str) -> String {
    text.to_owned()
}

fn catalogue() -> Vec<CataloguePrice> {
    [("SKU-1", 1200, "KRW"), ("SKU-2", 500, "KRW"), ("USD-1", 9, "USD")]
        .into_iter()
        .map(|(id, price, currency)| CataloguePrice {
            product_id: s(id),
            unit_price: price,
            currency: s(currency),
        })
        .collect()
}

fn place(lines: &[(&str, i64)]) -> OrderCommand {
    OrderCommand::Place(PlaceOrder {
        order_id: s("o-1"),
        customer_id: s("alice"),
        lines: lines
            .iter()
            .map(|(id, quantity)| LineRequest {
                product_id: s(id),
                quantity: *quantity,
            })
            .collect(),
        catalogue: catalogue(),
    })
}

fn created() -> OrderEvent {
    OrderEvent::Created(OrderCreated {
        order_id: s("o-1"),
        customer_id: s("alice"),
        lines: vec![
            OrderLine {
                product_id: s("SKU-1"),
                quantity: 2,
                unit_price: 1200,
            },
            OrderLine {
                product_id: s("SKU-2"),
                quantity: 1,
                unit_price: 500,
            },
        ],
        currency: s("KRW"),
        total: 2900,
        at: T0,
    })
}

fn confirmed(at: i64) -> OrderEvent {
    OrderEvent::Confirmed(OrderTransition { order_id: s("o-1"), at })
}

fn completed(at: i64) -> OrderEvent {
    OrderEvent::Completed(OrderTransition { order_id: s("o-1"), at })
}

fn cancelled(reason: CancelReason, at: i64) -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled {
        order_id: s("o-1"),
        reason,
        at,
    })
}

fn line(index: u32, product_id: &str) -> LineError {
    LineError {
        index,
        product_id: s(product_id),
    }
}

fn change(from: OrderStatus, to: OrderStatus) -> OrderRejection {
    OrderRejection::InvalidTransition(StatusChange { from, to })
}

/// Every order rule of DESIGN.md section 2, as cases.
pub fn order_cases() -> Vec<OrderCase> {
    use CancelReason as R;
    use OrderCommand as C;
    use OrderRejection as X;
    use OrderStatus as S;
    let case = |name, given, when, now_ms, then| OrderCase {
        name,
        given,
        when,
        now_ms,
        then,
    };
    let ttl = DEFAULT_RESERVATION_TTL_MS;
    vec![
        case(
            "placing freezes catalogue prices and derives the total",
            vec![],
            place(&[("SKU-1", 2), ("SKU-2", 1)]),
            T0,
            Ok(vec![created()]),
        ),
        case(
            "an order needs at least one item",
            vec![],
            place(&[]),
            T0,
            Err(X::NoLines),
        ),
        case(
            "a zero quantity is refused, naming the line",
            vec![],
            place(&[("SKU-1", 1), ("SKU-2", 0)]),
            T0,
            Err(X::NonPositiveQuantity(line(1, "SKU-2"))),
        ),
        case(
            "a negative quantity is refused",
            vec![],
            place(&[("SKU-1", -2)]),
            T0,
            Err(X::NonPositiveQuantity(line(0, "SKU-1"))),
        ),
        case(
            "a huge quantity is refused",
            vec![],
            place(&[("SKU-1", 1_000_000)]),
            T0,
            Err(X::QuantityTooLarge(line(0, "SKU-1"))),
        ),
        case(
            "a product outside the catalogue is refused",
            vec![],
            place(&[("GHOST", 1)]),
            T0,
            Err(X::UnknownProduct(line(0, "GHOST"))),
        ),
        case(
            "a product listed twice is refused",
            vec![],
            place(&[("SKU-1", 1), ("SKU-1", 1)]),
            T0,
            Err(X::DuplicateLine(line(1, "SKU-1"))),
        ),
        case(
            "one order, one currency",
            vec![],
            place(&[("SKU-1", 1), ("USD-1", 1)]),
            T0,
            Err(X::MixedCurrencies(line(1, "USD-1"))),
        ),
        case(
            "an empty customer id is refused by field",
            vec![],
            OrderCommand::Place(PlaceOrder {
                order_id: s("o-1"),
                customer_id: s(""),
                lines: vec![],
                catalogue: vec![],
            }),
            T0,
            Err(X::InvalidField(FieldError {
                field: s("customer_id"),
                message: s("must not be empty"),
            })),
        ),
        case(
            "an order id is placed once",
            vec![created()],
            place(&[("SKU-1", 1)]),
            T0,
            Err(X::AlreadyExists),
        ),
        case(
            "commands need an existing order",
            vec![],
            C::Confirm,
            T0,
            Err(X::NotFound),
        ),
        case(
            "reserved stock confirms a pending order",
            vec![created()],
            C::Confirm,
            T0 + 5,
            Ok(vec![confirmed(T0 + 5)]),
        ),
        case(
            "a second confirmation decides nothing",
            vec![created(), confirmed(T0 + 5)],
            C::Confirm,
            T0 + 9,
            Ok(vec![]),
        ),
        case(
            "payment completes a confirmed order",
            vec![created(), confirmed(T0 + 5)],
            C::Complete,
            T0 + 9,
            Ok(vec![completed(T0 + 9)]),
        ),
        case(
            "a pending order cannot complete",
            vec![created()],
            C::Complete,
            T0 + 9,
            Err(change(S::Pending, S::Completed)),
        ),
        case(
            "a completed order never goes back",
            vec![created(), confirmed(T0 + 5), completed(T0 + 9)],
            C::Confirm,
            T0 + 10,
            Err(change(S::Completed, S::Confirmed)),
        ),
        case(
            "a cancelled order is never confirmed",
            vec![created(), cancelled(R::Customer, T0 + 1)],
            C::Confirm,
            T0 + 5,
            Err(change(S::Cancelled, S::Confirmed)),
        ),
        case(
            "a customer cancels a pending order",
            vec![created()],
            C::Cancel(R::Customer),
            T0 + 1,
            Ok(vec![cancelled(R::Customer, T0 + 1)]),
        ),
        case(
            "missing stock cancels a pending order",
            vec![created()],
            C::Cancel(R::InsufficientStock),
            T0 + 1,
            Ok(vec![cancelled(R::InsufficientStock, T0 + 1)]),
        ),
        case(
            "a customer cannot cancel a confirmed order",
            vec![created(), confirmed(T0 + 5)],
            C::Cancel(R::Customer),
            T0 + 6,
            Err(X::NotCancellable(S::Confirmed)),
        ),
        case(
            "a cancelled order cancels again without effect",
            vec![created(), cancelled(R::Customer, T0 + 1)],
            C::Cancel(R::Admin),
            T0 + 2,
            Ok(vec![]),
        ),
        case(
            "a cancellation reason may not be blank",
            vec![created()],
            C::Cancel(R::Other(s(" "))),
            T0 + 1,
            Err(X::InvalidField(FieldError {
                field: s("reason"),
                message: s("must not be blank"),
            })),
        ),
        case(
            "an expired reservation cancels a confirmed order",
            vec![created(), confirmed(T0)],
            C::Cancel(R::ReservationExpired),
            T0 + ttl,
            Ok(vec![cancelled(R::ReservationExpired, T0 + ttl)]),
        ),
        case(
            "a reservation does not expire early",
            vec![created(), confirmed(T0)],
            C::Cancel(R::ReservationExpired),
            T0 + ttl - 1000,
            Err(X::NotExpiredYet(1000)),
        ),
        case(
            "a pending order has no reservation to expire",
            vec![created()],
            C::Cancel(R::ReservationExpired),
            T0 + ttl,
            Err(change(S::Pending, S::Cancelled)),
        ),
        case(
            "a failed payment cancels a confirmed order at once",
            vec![created(), confirmed(T0)],
            C::Cancel(R::PaymentFailed),
            T0 + 1,
            Ok(vec![cancelled(R::PaymentFailed, T0 + 1)]),
        ),
        case(
            "a pending order has no payment to fail",
            vec![created()],
            C::Cancel(R::PaymentFailed),
            T0 + 1,
            Err(change(S::Pending, S::Cancelled)),
        ),
        case(
            "a completed order's payment cannot fail afterwards",
            vec![created(), confirmed(T0), completed(T0 + 1)],
            C::Cancel(R::PaymentFailed),
            T0 + 2,
            Err(change(S::Completed, S::Cancelled)),
        ),
        case(
            "a completed order does not expire",
            vec![created(), confirmed(T0), completed(T0 + 1)],
            C::Cancel(R::ReservationExpired),
            T0 + ttl,
            Err(change(S::Completed, S::Cancelled)),
        ),
    ]
}

fn registered(id: &str, stock: i64) -> InventoryEvent {
    InventoryEvent::ProductRegistered(RegisterProduct {
        product_id: s(id),
        name: format!("Product {id}"),
        unit_price: 1000,
        currency: s("KRW"),
        initial_stock: stock,
    })
}

fn order_lines(lines: &[(&str, i64)]) -> OrderLines {
    OrderLines {
        order_id: s("o-1"),
        lines: lines
            .iter()
            .map(|(id, quantity)| StockLine {
                product_id: s(id),
                quantity: *quantity,
            })
            .collect(),
    }
}

fn movement(product_id: &str, kind: MovementKind, quantity: i64, order: bool, reason: Option<&str>) -> Movement {
    Movement {
        product_id: s(product_id),
        kind,
        quantity,
        order_id: order.then(|| s("o-1")),
        reason: reason.map(s),
        at: T0,
    }
}

fn decision(events: Vec<InventoryEvent>, movements: Vec<Movement>) -> Result<Decision, InventoryRejection> {
    Ok(Decision { events, movements })
}

/// Every inventory rule of DESIGN.md section 2, as cases.
pub fn inventory_cases() -> Vec<InventoryCase> {
    use InventoryCommand as C;
    use InventoryEvent as E;
    use InventoryRejection as X;
    use MovementKind as M;
    let case = |name, given, when, then| InventoryCase {
        name,
        given,
        when,
        now_ms: T0,
        then,
    };
    let register = |id: &str, stock| {
        C::RegisterProduct(RegisterProduct {
            product_id: s(id),
            name: format!("Product {id}"),
            unit_price: 1000,
            currency: s("KRW"),
            initial_stock: stock,
        })
    };
    let reserved = || E::StockReserved(order_lines(&[("A", 2), ("B", 1)]));
    let release = |reason| {
        C::Release(Release {
            order_id: s("o-1"),
            reason,
        })
    };
    vec![
        case(
            "registering a product records its initial stock",
            vec![],
            register("A", 10),
            decision(
                vec![registered("A", 10)],
                vec![movement("A", M::Initial, 10, false, None)],
            ),
        ),
        case(
            "a product id is registered once",
            vec![registered("A", 1)],
            register("A", 5),
            Err(X::ProductExists(s("A"))),
        ),
        case(
            "initial stock cannot be negative",
            vec![],
            register("A", -1),
            Err(X::InvalidField(FieldError {
                field: s("stock"),
                message: s("must be between 0 and 1000000000"),
            })),
        ),
        case(
            "a currency is three upper-case letters",
            vec![],
            C::RegisterProduct(RegisterProduct {
                product_id: s("A"),
                name: s("Mug"),
                unit_price: 1,
                currency: s("won"),
                initial_stock: 1,
            }),
            Err(X::InvalidField(FieldError {
                field: s("currency"),
                message: s("must be a three-letter upper-case currency code"),
            })),
        ),
        case(
            "restocking adds available units",
            vec![registered("A", 1)],
            C::Restock(Restock {
                product_id: s("A"),
                quantity: 4,
            }),
            decision(
                vec![E::Restocked(Restock {
                    product_id: s("A"),
                    quantity: 4,
                })],
                vec![movement("A", M::Restock, 4, false, None)],
            ),
        ),
        case(
            "restocking an unknown product is refused",
            vec![],
            C::Restock(Restock {
                product_id: s("Z"),
                quantity: 4,
            }),
            Err(X::UnknownProduct(s("Z"))),
        ),
        case(
            "an adjustment records its reason",
            vec![registered("A", 5)],
            C::Adjust(Adjust {
                product_id: s("A"),
                delta: -2,
                reason: s("broken"),
            }),
            decision(
                vec![E::Adjusted(Adjust {
                    product_id: s("A"),
                    delta: -2,
                    reason: s("broken"),
                })],
                vec![movement("A", M::Adjust, -2, false, Some("broken"))],
            ),
        ),
        case(
            "an adjustment never makes stock negative",
            vec![registered("A", 5)],
            C::Adjust(Adjust {
                product_id: s("A"),
                delta: -6,
                reason: s("lost"),
            }),
            Err(X::WouldGoNegative(WouldGoNegative {
                product_id: s("A"),
                available: 5,
                delta: -6,
            })),
        ),
        case(
            "a price change is an event, not a movement",
            vec![registered("A", 5)],
            C::ChangePrice(ChangePrice {
                product_id: s("A"),
                unit_price: 1500,
            }),
            decision(
                vec![E::PriceChanged(PriceChanged {
                    product_id: s("A"),
                    old_price: 1000,
                    new_price: 1500,
                    currency: s("KRW"),
                })],
                vec![],
            ),
        ),
        case(
            "a reservation takes every line at once",
            vec![registered("A", 5), registered("B", 1)],
            C::Reserve(order_lines(&[("A", 2), ("B", 1)])),
            decision(
                vec![reserved()],
                vec![
                    movement("A", M::Reserve, 2, true, None),
                    movement("B", M::Reserve, 1, true, None),
                ],
            ),
        ),
        case(
            "one short line reserves nothing and names the shortage",
            vec![registered("A", 5), registered("B", 1)],
            C::Reserve(order_lines(&[("A", 2), ("B", 3)])),
            decision(
                vec![E::InsufficientStock(InsufficientStock {
                    order_id: s("o-1"),
                    shortages: vec![Shortage {
                        product_id: s("B"),
                        requested: 3,
                        available: 1,
                    }],
                })],
                vec![],
            ),
        ),
        case(
            "an unknown product is a shortage of everything",
            vec![registered("A", 5)],
            C::Reserve(order_lines(&[("GHOST", 1)])),
            decision(
                vec![E::InsufficientStock(InsufficientStock {
                    order_id: s("o-1"),
                    shortages: vec![Shortage {
                        product_id: s("GHOST"),
                        requested: 1,
                        available: 0,
                    }],
                })],
                vec![],
            ),
        ),
        case(
            "a reservation needs lines",
            vec![registered("A", 5)],
            C::Reserve(order_lines(&[])),
            Err(X::NoLines),
        ),
        case(
            "a reservation needs positive quantities",
            vec![registered("A", 5)],
            C::Reserve(order_lines(&[("A", 0)])),
            Err(X::NonPositiveQuantity(line(0, "A"))),
        ),
        case(
            "a second reserve for the same order changes nothing",
            vec![registered("A", 5), registered("B", 1), reserved()],
            C::Reserve(order_lines(&[("A", 2), ("B", 1)])),
            decision(vec![], vec![]),
        ),
        case(
            "completion deducts the reserved units",
            vec![registered("A", 5), registered("B", 1), reserved()],
            C::Deduct(s("o-1")),
            decision(
                vec![E::StockDeducted(order_lines(&[("A", 2), ("B", 1)]))],
                vec![
                    movement("A", M::Deduct, 2, true, None),
                    movement("B", M::Deduct, 1, true, None),
                ],
            ),
        ),
        case(
            "a second deduct changes nothing",
            vec![
                registered("A", 5),
                registered("B", 1),
                reserved(),
                E::StockDeducted(order_lines(&[("A", 2), ("B", 1)])),
            ],
            C::Deduct(s("o-1")),
            decision(vec![], vec![]),
        ),
        case(
            "nothing reserved, nothing to deduct",
            vec![registered("A", 5)],
            C::Deduct(s("o-1")),
            Err(X::ReservationNotFound(s("o-1"))),
        ),
        case(
            "a cancelled order's stock is restored",
            vec![registered("A", 5), registered("B", 1), reserved()],
            release(ReleaseReason::Cancelled),
            decision(
                vec![E::StockRestored(StockRestored {
                    order_id: s("o-1"),
                    lines: order_lines(&[("A", 2), ("B", 1)]).lines,
                    reason: ReleaseReason::Cancelled,
                })],
                vec![
                    movement("A", M::Restore, 2, true, None),
                    movement("B", M::Restore, 1, true, None),
                ],
            ),
        ),
        case(
            "an expired reservation's stock comes back",
            vec![registered("A", 5), registered("B", 1), reserved()],
            release(ReleaseReason::Expired),
            decision(
                vec![E::StockRestored(StockRestored {
                    order_id: s("o-1"),
                    lines: order_lines(&[("A", 2), ("B", 1)]).lines,
                    reason: ReleaseReason::Expired,
                })],
                vec![
                    movement("A", M::Expire, 2, true, None),
                    movement("B", M::Expire, 1, true, None),
                ],
            ),
        ),
        case(
            "a cancel seen before its reserve voids the reservation",
            vec![registered("A", 5)],
            release(ReleaseReason::Cancelled),
            decision(vec![E::ReservationVoided(s("o-1"))], vec![]),
        ),
        case(
            "a reserve after the void reserves nothing",
            vec![registered("A", 5), E::ReservationVoided(s("o-1"))],
            C::Reserve(order_lines(&[("A", 2)])),
            decision(vec![], vec![]),
        ),
        case(
            "releasing a deducted reservation changes nothing",
            vec![
                registered("A", 5),
                registered("B", 1),
                reserved(),
                E::StockDeducted(order_lines(&[("A", 2), ("B", 1)])),
            ],
            release(ReleaseReason::Expired),
            decision(vec![], vec![]),
        ),
        case(
            "a released reservation is not deducted",
            vec![registered("A", 5), E::ReservationVoided(s("o-1"))],
            C::Deduct(s("o-1")),
            Err(X::ReservationClosed(ReservationStatus::Released)),
        ),
    ]
}
