//! What the driving side (the REST API, operator tools) asks of each
//! context, as traits: a handler names the use cases it needs, not how a
//! service is built (its store, its lock). [`OrderService`] and
//! [`InventoryService`] are the implementations.

use std::future::Future;

use shop_rules::inventory::{Decision, InventoryCommand, ProductStock};
use shop_rules::order::{CancelReason, Order, OrderCommand};
use shop_streams::Trace;

use super::inventory::{InventoryError, InventoryService};
use super::orders::{Asked, CustomerData, NewOrder, OrderError, OrderRecord, OrderService};
use super::payment::{PaymentService, Settled, WebhookError};
use crate::audit::{Actor, AuditEntry};
use crate::ports::{
    AuditLog, AuditQuery, InventoryStore, Lock, MovementEntry, OrderQuery, OrderStore, PaymentProvider, RuleStore,
    StoreError,
};
use crate::rules::{ComponentInfo, FleetError, Published, RuleFleet, RuleMode};

/// The order context's use cases.
pub trait OrderUseCases: Send + Sync + 'static {
    /// MUST accept `new` at most once under its order id: the same request
    /// again gets the order back, a different one under that id
    /// [`OrderError::KeyReused`].
    fn place_once(&self, new: NewOrder, trace: Trace) -> impl Future<Output = Result<Order, OrderError>> + Send;

    /// MUST return `None` for an order that does not exist.
    fn get(&self, order_id: &str) -> impl Future<Output = Result<Option<Order>, OrderError>> + Send;

    /// MUST return the order with its delivery details as they read now
    /// (erased once its customer was), or `None` when it does not exist.
    fn record(&self, order_id: &str) -> impl Future<Output = Result<Option<OrderRecord>, OrderError>> + Send;

    /// MUST return every order of the customer, newest first, with its
    /// delivery details, and every audit entry naming them as actor or
    /// target (`customer:ID`).
    fn export(&self, customer_id: &str) -> impl Future<Output = Result<CustomerData, OrderError>> + Send;

    /// MUST make every delivery detail of the customer's unreadable for
    /// good, keep their orders otherwise, audit it as `actor`'s, and
    /// succeed again when repeated.
    fn erase_customer(&self, customer_id: &str, actor: &Actor)
    -> impl Future<Output = Result<bool, OrderError>> + Send;

    /// MUST return the customer's orders newest first, as the query pages them.
    fn customer_orders(&self, query: OrderQuery<'_>) -> impl Future<Output = Result<Vec<Order>, OrderError>> + Send;

    /// MUST cancel the order as the rules allow, audited as `actor`'s with
    /// the change, or say why not. With an `owner`, MUST treat an order of
    /// any other customer as one that does not exist.
    fn cancel(
        &self,
        order_id: &str,
        reason: CancelReason,
        actor: &Actor,
        owner: Option<&str>,
        trace: Trace,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send;

    /// MUST complete a confirmed order, audited as `actor`'s with the
    /// change, or say why not.
    fn complete(
        &self,
        order_id: &str,
        actor: &Actor,
        trace: Trace,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send;
}

/// Reading the audit log, which every context appends to.
pub trait AuditUseCases: Send + Sync + 'static {
    /// MUST return the entries `query` matches, by number.
    fn audit(&self, query: AuditQuery<'_>) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

impl<S: OrderStore> AuditUseCases for OrderService<S> {
    fn audit(&self, query: AuditQuery<'_>) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send {
        self.store().entries(query)
    }
}

impl<S: InventoryStore, L: Lock> AuditUseCases for InventoryService<S, L> {
    fn audit(&self, query: AuditQuery<'_>) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send {
        self.store().entries(query)
    }
}

/// The deployment's rules, as an admin sees them from one instance.
pub trait RuleUseCases: Send + Sync + 'static {
    /// MUST return the components this instance runs now, active and in shadow.
    fn running(&self) -> Vec<ComponentInfo>;

    /// MUST publish `wasm` as the next version of `name` in `mode` for the
    /// whole deployment and audit it as `actor`'s doing, and MUST refuse
    /// (publishing nothing) a component this host would not load.
    fn publish(
        &self,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<Vec<u8>>,
        mode: RuleMode,
        actor: &Actor,
    ) -> impl Future<Output = Result<Published, FleetError>> + Send;
}

impl<S: RuleStore, A: AuditLog> RuleUseCases for RuleFleet<S, A> {
    fn running(&self) -> Vec<ComponentInfo> {
        self.host().components()
    }

    fn publish(
        &self,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<Vec<u8>>,
        mode: RuleMode,
        actor: &Actor,
    ) -> impl Future<Output = Result<Published, FleetError>> + Send {
        RuleFleet::publish(self, name, wasm, signature, mode, actor)
    }
}

/// What the payment provider's webhook asks.
pub trait PaymentUseCases: Send + Sync + 'static {
    /// MUST refuse a notice whose `signature` does not vouch for `body`, is
    /// out of its time window, or was accepted before, and change nothing
    /// then; else MUST complete (`succeeded`) or cancel (`failed`) the order
    /// it names, at most once whatever the number and order of notices.
    fn accept_notice(
        &self,
        signature: &str,
        body: &[u8],
        trace: Trace,
    ) -> impl Future<Output = Result<Settled, WebhookError>> + Send;
}

impl<S: OrderStore, P: PaymentProvider> PaymentUseCases for PaymentService<S, P> {
    fn accept_notice(
        &self,
        signature: &str,
        body: &[u8],
        trace: Trace,
    ) -> impl Future<Output = Result<Settled, WebhookError>> + Send {
        PaymentService::accept(self, signature, body, trace)
    }
}

/// The inventory context's use cases.
pub trait InventoryUseCases: Send + Sync + 'static {
    /// MUST return `None` for a product that is not registered.
    fn product(&self, product_id: &str) -> impl Future<Output = Result<Option<ProductStock>, InventoryError>> + Send;

    /// MUST return products in id order, `limit` at most, after the id
    /// `after`; with `search`, only those whose id or name contains it
    /// (ignoring ASCII case).
    fn products(
        &self,
        after: Option<&str>,
        search: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ProductStock>, InventoryError>> + Send;

    /// MUST return the product's movements after the one numbered `after`, oldest first.
    fn movements(
        &self,
        product_id: &str,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<MovementEntry>, InventoryError>> + Send;

    /// MUST apply an administrator's command (register, restock, adjust,
    /// change price) as the rules decide, audited as `actor`'s, and refuse
    /// the saga's own. With
    /// `expected`, MUST write nothing and return
    /// [`InventoryError::VersionMoved`] when the product exists at another
    /// version and the rules accept the command (one they refuse is refused
    /// as such; a missing product as unknown).
    fn admin(
        &self,
        command: InventoryCommand,
        expected: Option<u64>,
        trace: Trace,
        actor: &Actor,
    ) -> impl Future<Output = Result<Decision, InventoryError>> + Send;
}

impl<S: OrderStore> OrderUseCases for OrderService<S> {
    fn place_once(&self, new: NewOrder, trace: Trace) -> impl Future<Output = Result<Order, OrderError>> + Send {
        OrderService::place_once(self, new, trace)
    }

    fn get(&self, order_id: &str) -> impl Future<Output = Result<Option<Order>, OrderError>> + Send {
        OrderService::get(self, order_id)
    }

    fn record(&self, order_id: &str) -> impl Future<Output = Result<Option<OrderRecord>, OrderError>> + Send {
        OrderService::record(self, order_id)
    }

    fn export(&self, customer_id: &str) -> impl Future<Output = Result<CustomerData, OrderError>> + Send {
        OrderService::export(self, customer_id)
    }

    fn erase_customer(
        &self,
        customer_id: &str,
        actor: &Actor,
    ) -> impl Future<Output = Result<bool, OrderError>> + Send {
        OrderService::erase_customer(self, customer_id, actor)
    }

    fn customer_orders(&self, query: OrderQuery<'_>) -> impl Future<Output = Result<Vec<Order>, OrderError>> + Send {
        OrderService::customer_orders(self, query)
    }

    fn cancel(
        &self,
        order_id: &str,
        reason: CancelReason,
        actor: &Actor,
        owner: Option<&str>,
        trace: Trace,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send {
        let asked = Asked {
            order_id: order_id.to_owned(),
            command: OrderCommand::Cancel(reason),
            trace,
            by: Some(actor.clone()),
            owner: owner.map(str::to_owned),
        };
        async move { Ok(self.command_asked(asked).await?.into_order()) }
    }

    fn complete(
        &self,
        order_id: &str,
        actor: &Actor,
        trace: Trace,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send {
        OrderService::complete(self, order_id, trace, Some(actor))
    }
}

impl<S: InventoryStore, L: Lock> InventoryUseCases for InventoryService<S, L> {
    fn product(&self, product_id: &str) -> impl Future<Output = Result<Option<ProductStock>, InventoryError>> + Send {
        InventoryService::product(self, product_id)
    }

    fn movements(
        &self,
        product_id: &str,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<MovementEntry>, InventoryError>> + Send {
        InventoryService::movements(self, product_id, after, limit)
    }

    fn products(
        &self,
        after: Option<&str>,
        search: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ProductStock>, InventoryError>> + Send {
        InventoryService::products(self, after, search, limit)
    }

    fn admin(
        &self,
        command: InventoryCommand,
        expected: Option<u64>,
        trace: Trace,
        actor: &Actor,
    ) -> impl Future<Output = Result<Decision, InventoryError>> + Send {
        InventoryService::admin(self, command, expected, trace, actor)
    }
}
