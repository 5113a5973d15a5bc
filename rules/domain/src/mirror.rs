//! Conversions between the domain types and WIT bindings, written once.
//!
//! Both sides of the WebAssembly boundary generate their own Rust types from
//! `rules/wit/shop-rules.wit`: wit-bindgen in the guests, wasmtime's bindgen in
//! the host. Their names and fields match the domain types one for one, so a
//! single table per WIT interface (below) drives the conversions for either
//! side: `shop_rules::mirror_order_types!(path::to::order_types);` implements
//! [`Mirror`] both ways for every type of the interface.

/// A lossless conversion between a domain type and its WIT twin.
pub trait Mirror<T> {
    fn mirror(self) -> T;
}

macro_rules! mirror_as_is {
    ($($t:ty),*) => {$(
        impl Mirror<$t> for $t {
            fn mirror(self) -> $t {
                self
            }
        }
    )*};
}
mirror_as_is!(bool, u32, u64, i64, String);

impl<A: Mirror<B>, B> Mirror<Vec<B>> for Vec<A> {
    fn mirror(self) -> Vec<B> {
        self.into_iter().map(Mirror::mirror).collect()
    }
}

impl<A: Mirror<B>, B> Mirror<Option<B>> for Option<A> {
    fn mirror(self) -> Option<B> {
        self.map(Mirror::mirror)
    }
}

/// Implements [`Mirror`] both ways between `$crate::$dom::T` and `$wit::T`
/// for each listed record and variant (WIT enums are variants without payload).
#[macro_export]
#[doc(hidden)]
macro_rules! mirror {
    (
        wit = $($wit:ident)::+; dom = $dom:ident;
        $( record $r:ident { $($field:ident),* $(,)? } )*
        $( variant $v:ident { $($case:ident $(($x:ident))?),* $(,)? } )*
    ) => {
        const _: () = {
            use $($wit)::+ as wit;
            use $crate::$dom as dom;
            use $crate::mirror::Mirror;
            $(
                impl Mirror<wit::$r> for dom::$r {
                    fn mirror(self) -> wit::$r {
                        wit::$r { $($field: self.$field.mirror()),* }
                    }
                }
                impl Mirror<dom::$r> for wit::$r {
                    fn mirror(self) -> dom::$r {
                        dom::$r { $($field: self.$field.mirror()),* }
                    }
                }
            )*
            $(
                impl Mirror<wit::$v> for dom::$v {
                    fn mirror(self) -> wit::$v {
                        match self { $(dom::$v::$case $(($x))? => wit::$v::$case $(($x.mirror()))?,)* }
                    }
                }
                impl Mirror<dom::$v> for wit::$v {
                    fn mirror(self) -> dom::$v {
                        match self { $(wit::$v::$case $(($x))? => dom::$v::$case $(($x.mirror()))?,)* }
                    }
                }
            )*
        };
    };
}

/// The `common` interface: errors that name a field or a line.
#[macro_export]
macro_rules! mirror_common {
    ($($wit:ident)::+) => {
        $crate::mirror! {
            wit = $($wit)::+; dom = common;
            record FieldError { field, message }
            record LineError { index, product_id }
        }
    };
}

/// The `order-types` interface.
#[macro_export]
macro_rules! mirror_order_types {
    ($($wit:ident)::+) => {
        $crate::mirror! {
            wit = $($wit)::+; dom = order;
            record OrderLine { product_id, quantity, unit_price }
            record Order { id, customer_id, lines, currency, status, cancel_reason, created_at, confirmed_at }
            record LineRequest { product_id, quantity }
            record CataloguePrice { product_id, unit_price, currency }
            record PlaceOrder { order_id, customer_id, lines, catalogue }
            record OrderCreated { order_id, customer_id, lines, currency, total, at }
            record OrderTransition { order_id, at }
            record OrderCancelled { order_id, reason, at }
            record StatusChange { from, to }
            variant OrderStatus { Pending, Confirmed, Completed, Cancelled }
            variant CancelReason { Customer, Admin, InsufficientStock, ReservationExpired, PaymentFailed, Other(text) }
            variant OrderCommand { Place(place), Confirm, Complete, Cancel(reason) }
            variant OrderEvent { Created(e), Confirmed(e), Cancelled(e), Completed(e) }
            variant OrderRejection {
                InvalidField(e), NoLines, TooManyLines(max), NonPositiveQuantity(e),
                QuantityTooLarge(e), DuplicateLine(e), UnknownProduct(e), MixedCurrencies(e),
                TotalTooLarge, AlreadyExists, NotFound, InvalidTransition(change),
                NotCancellable(status), NotExpiredYet(ms),
            }
        }
    };
}

/// The `inventory-types` interface.
#[macro_export]
macro_rules! mirror_inventory_types {
    ($($wit:ident)::+) => {
        $crate::mirror! {
            wit = $($wit)::+; dom = inventory;
            record ProductStock {
                product_id, name, unit_price, currency, available, reserved, version,
                initial, restocked, adjusted, deducted,
            }
            record StockLine { product_id, quantity }
            record Reservation { order_id, status, lines }
            record InventoryState { products, reservation }
            record RegisterProduct { product_id, name, unit_price, currency, initial_stock }
            record Restock { product_id, quantity }
            record Adjust { product_id, delta, reason }
            record ChangePrice { product_id, unit_price }
            record OrderLines { order_id, lines }
            record Release { order_id, reason }
            record PriceChanged { product_id, old_price, new_price, currency }
            record Shortage { product_id, requested, available }
            record InsufficientStock { order_id, shortages }
            record StockRestored { order_id, lines, reason }
            record Movement { product_id, kind, quantity, order_id, reason, at }
            record Decision { events, movements }
            record WouldGoNegative { product_id, available, delta }
            variant ReservationStatus { Reserved, Rejected, Released, Deducted }
            variant ReleaseReason { Cancelled, Expired }
            variant MovementKind { Initial, Restock, Adjust, Reserve, Deduct, Restore, Expire }
            variant InventoryCommand {
                RegisterProduct(c), Restock(c), Adjust(c), ChangePrice(c), Reserve(c),
                Deduct(order_id), Release(c),
            }
            variant InventoryEvent {
                ProductRegistered(e), Restocked(e), Adjusted(e), PriceChanged(e),
                StockReserved(e), InsufficientStock(e), StockDeducted(e), StockRestored(e),
                ReservationVoided(order_id),
            }
            variant InventoryRejection {
                InvalidField(e), ProductExists(id), UnknownProduct(id), QuantityTooLarge(id),
                WouldGoNegative(e), NoLines, NonPositiveQuantity(e), DuplicateLine(e),
                ReservationNotFound(order_id), ReservationClosed(status),
            }
        }
    };
}
