//! The inventory context's use cases.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_rules::inventory::{
    Decision, InventoryCommand, InventoryEvent, InventoryRejection, InventoryState, OrderLines, ProductStock, Release,
    ReleaseReason, Reservation, StockLine,
};
use shop_rules::order::{CancelReason, OrderCreated, OrderEvent};
use shop_streams::{DomainEvent, Envelope, Namespace, Trace};

use super::turns::{Turn, Turns};
use super::{CONFLICT_RETRIES, HandleError, one_by_one, rule_ref, together_and_alone};
use crate::audit::{Actor, AuditRecord};
use crate::metrics::Metrics;
use crate::ports::inventory_store::{AUDIT_CONTEXT, product_target};
use crate::ports::{Clock, InventoryStore, InventoryWrite, Lease, Lock, LockError, MovementEntry, StoreError};
use crate::rules::{Decided, RuleError, RuleFault, RuleHost};

/// How long product locks are held at most, and waited for.
#[derive(Debug, Clone, Copy)]
pub struct LockSettings {
    pub ttl: Duration,
    pub wait: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            wait: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    Rejected(InventoryRejection),
    #[error(transparent)]
    Rules(#[from] RuleFault),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("order commands arrive as events, not as administrator commands")]
    NotAdmin,
    /// The command was to apply to `expected`, and the product has moved
    /// on to `current`. Nothing was written.
    #[error("product {product} is at version {current}, not {expected}")]
    VersionMoved {
        product: String,
        expected: u64,
        current: u64,
    },
}

impl From<RuleError<InventoryRejection>> for InventoryError {
    fn from(error: RuleError<InventoryRejection>) -> Self {
        match error {
            RuleError::Rejected(rejection) => Self::Rejected(rejection),
            RuleError::Fault(fault) => Self::Rules(fault),
        }
    }
}

/// One command and what it needs: the products to lock and load, and the
/// order whose reservation it touches.
#[derive(Debug, Clone, Copy)]
struct Job<'a> {
    products: &'a [String],
    order_id: Option<&'a str>,
    command: &'a InventoryCommand,
    /// The version the (one) product must be at for the command to apply.
    expected: Option<u64>,
    trace: Trace,
    actor: &'a Actor,
}

pub struct InventoryService<S, L> {
    store: S,
    lock: L,
    rules: Arc<RuleHost>,
    clock: Arc<dyn Clock>,
    namespace: Namespace,
    locks: LockSettings,
    turns: Turns,
    metrics: Metrics,
}

impl<S: InventoryStore, L: Lock> InventoryService<S, L> {
    pub fn new(store: S, lock: L, rules: Arc<RuleHost>, clock: Arc<dyn Clock>, namespace: Namespace) -> Self {
        Self {
            store,
            lock,
            rules,
            clock,
            namespace,
            locks: LockSettings::default(),
            turns: Turns::default(),
            metrics: Metrics::default(),
        }
    }

    /// Counts lock waits into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_locks(mut self, locks: LockSettings) -> Self {
        self.locks = locks;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub async fn product(&self, product_id: &str) -> Result<Option<ProductStock>, InventoryError> {
        Ok(self.store.product(product_id).await?)
    }

    /// Products in id order after `after`, those matching `search` (id or
    /// name, ignoring ASCII case) when given.
    pub async fn products(
        &self,
        after: Option<&str>,
        search: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProductStock>, InventoryError> {
        Ok(self.store.products(after, search, limit).await?)
    }

    /// The product's stock movements, oldest first, after the one numbered `after`.
    pub async fn movements(
        &self,
        product_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<MovementEntry>, InventoryError> {
        Ok(self.store.movements(product_id, after, limit).await?)
    }

    /// An administrator's command: register, restock, adjust or change
    /// price, audited as `actor`'s. Reservations, releases and deductions
    /// arrive as order events through [`Self::handle`] and are refused here.
    /// With `expected`, only while the product is at that version (checked
    /// on the state the command is decided and fenced on, so it cannot move
    /// in between).
    pub async fn admin(
        &self,
        command: InventoryCommand,
        expected: Option<u64>,
        trace: Trace,
        actor: &Actor,
    ) -> Result<Decision, InventoryError> {
        let product = match &command {
            InventoryCommand::RegisterProduct(c) => c.product_id.clone(),
            InventoryCommand::Restock(c) => c.product_id.clone(),
            InventoryCommand::Adjust(c) => c.product_id.clone(),
            InventoryCommand::ChangePrice(c) => c.product_id.clone(),
            InventoryCommand::Reserve(_) | InventoryCommand::Deduct(_) | InventoryCommand::Release(_) => {
                return Err(InventoryError::NotAdmin);
            }
        };
        let job = Job {
            products: &[product],
            order_id: None,
            command: &command,
            expected,
            trace,
            actor,
        };
        self.execute(job).await
    }

    /// Takes the products' locks (in a fixed order), decides on fresh state,
    /// and commits under the products' versions; a lost version race decides
    /// again. The lock keeps races rare; the versions make them harmless.
    async fn execute(&self, job: Job<'_>) -> Result<Decision, InventoryError> {
        let held = self.hold(job.products).await?;
        let outcome = self.decide_and_write(job).await;
        self.release(&held.lease).await;
        outcome
    }

    /// This process's turn at the products, then their distributed lock.
    async fn hold(&self, products: &[String]) -> Result<Held<'_>, InventoryError> {
        let mut keys: Vec<String> = products
            .iter()
            .map(|p| format!("{}:lock:product:{p}", self.namespace))
            .collect();
        keys.sort();
        keys.dedup();
        let waiting = Instant::now();
        let turn = self.turns.take(&keys).await;
        let lease = self.lock.acquire(&keys, self.locks.ttl, self.locks.wait).await;
        self.metrics.lock_waited(waiting.elapsed());
        Ok(Held {
            _turn: turn,
            lease: lease?,
        })
    }

    async fn release(&self, lease: &Lease) {
        // A lease that cannot be released expires by itself.
        if let Err(error) = self.lock.release(lease).await {
            tracing::warn!(target: "shop::saga", %error, "lock not released; it will expire");
        }
    }

    async fn decide_and_write(&self, job: Job<'_>) -> Result<Decision, InventoryError> {
        let Job {
            products,
            order_id,
            command,
            expected,
            trace,
            actor,
        } = job;
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let before = self.store.load(products, order_id).await?;
            let decided = self.rules.decide_inventory(&before, command);
            // A command the rules refuse is refused as such at any version
            // (it could not apply at the current one either), and one for a
            // product that does not exist as unknown.
            let product = products.first().and_then(|id| before.product(id));
            if let (Some(expected), Some(product)) = (expected, product) {
                let current = product.version;
                let product = product.product_id.clone();
                let refused = matches!(decided, Err(RuleError::Rejected(_)));
                if current != expected && !refused {
                    return Err(InventoryError::VersionMoved {
                        product,
                        expected,
                        current,
                    });
                }
            }
            let decided = decided?;
            let (after, envelopes) = self.outcome(&before, &decided, trace)?;
            let audit = audit_of(actor, &decided.value, self.clock.now_ms());
            let write = InventoryWrite {
                before: &before,
                after: &after,
                movements: &decided.value.movements,
                events: &envelopes,
                actor,
                audit: &audit,
            };
            match self.store.write(write).await {
                Ok(()) => return Ok(decided.value),
                Err(StoreError::Conflict(what)) => {
                    tracing::debug!(target: "shop::saga", %what, "version conflict; deciding again");
                    last = Some(StoreError::Conflict(what));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Conflict("inventory".into())).into())
    }

    /// The state `decided` leaves `before` in, and its events as messages.
    fn outcome(
        &self,
        before: &InventoryState,
        decided: &Decided<Decision>,
        trace: Trace,
    ) -> Result<(InventoryState, Vec<Envelope>), InventoryError> {
        let mut after = before.clone();
        let mut envelopes = Vec::with_capacity(decided.value.events.len());
        for event in &decided.value.events {
            after = self.rules.evolve_inventory(after, event)?;
            let version = aggregate_version(&after, event);
            envelopes.push(Envelope::new(
                &DomainEvent::Inventory(event.clone()),
                version,
                self.clock.now_ms(),
                rule_ref(&decided.rule),
                trace,
            ));
        }
        Ok((after, envelopes))
    }

    /// Order events, as [`Self::handle`] would take them one by one, but the
    /// bulk of the traffic together: reservations (`OrderCreated`), and the
    /// deductions and releases that completions and cancellations ask for,
    /// with one lock of all their products, one load of the products, the
    /// rules asked order after order on the running stock, and one commit.
    /// Each is decided on its order's reservation as read (all in one
    /// query) before the lock; should the commit fail (a reservation that
    /// moved or was made meanwhile; a store hiccup) they are handled one by
    /// one after all, which sorts out each case exactly.
    pub async fn handle_many(&self, envelopes: &[&Envelope], concurrency: usize) -> Vec<Result<(), HandleError>> {
        let mut asked = Vec::new();
        for (at, envelope) in envelopes.iter().enumerate() {
            let Ok(DomainEvent::Order(event)) = envelope.event() else {
                continue;
            };
            if let Some((order_id, command)) = command_for(event) {
                asked.push((at, envelope, order_id, command));
            }
        }
        // Every order's reservation, in one read: a release or deduction
        // touches what it holds, and a reservation to make may meet one
        // made already (the order's cancel, read by another consumer
        // first, leaves a released one), which the rules then refuse.
        let ids: Vec<String> = asked.iter().map(|(_, _, order_id, _)| order_id.clone()).collect();
        let reservations = match self.store.reservations(&ids).await {
            Ok(reservations) => reservations,
            Err(error) => {
                tracing::debug!(target: "shop::saga", %error, "reservations not read; one by one");
                return one_by_one(self, envelopes, concurrency).await;
            }
        };
        let reservations: HashMap<String, Reservation> =
            reservations.into_iter().map(|r| (r.order_id.clone(), r)).collect();
        let batch: Vec<Batched> = asked
            .into_iter()
            .map(|(at, envelope, order_id, command)| {
                let reservation = reservations.get(&order_id).cloned();
                Batched::new(at, envelope, order_id, command, reservation)
            })
            .collect();
        if batch.len() < 2 {
            return one_by_one(self, envelopes, concurrency).await;
        }
        let together: Vec<usize> = batch.iter().map(|b| b.at).collect();
        let at_once = async {
            let outcome = self.write_together(&batch).await;
            match &outcome {
                Ok(()) => self.metrics.inventory_handled_together(batch.len()),
                Err(_) => self.metrics.inventory_handled_one_by_one(batch.len()),
            }
            outcome.map(|()| batch.iter().map(|_| Ok(())).collect())
        };
        together_and_alone(self, envelopes, concurrency, &together, at_once).await
    }

    async fn write_together(&self, batch: &[Batched]) -> Result<(), InventoryError> {
        let mut products: Vec<String> = batch.iter().flat_map(|b| b.products.iter().cloned()).collect();
        products.sort();
        products.dedup();
        let held = self.hold(&products).await?;
        let outcome = self.decide_and_write_together(batch, &products).await;
        self.release(&held.lease).await;
        outcome
    }

    async fn decide_and_write_together(&self, batch: &[Batched], products: &[String]) -> Result<(), InventoryError> {
        let loaded = self.store.load(products, None).await?;
        let mut stock: HashMap<String, ProductStock> =
            loaded.products.into_iter().map(|p| (p.product_id.clone(), p)).collect();
        let mut steps = Vec::with_capacity(batch.len());
        let now = self.clock.now_ms();
        for one in batch {
            let (order_id, command) = (&one.order_id, &one.command);
            // Each order is decided on only its own products, as they stand
            // after the orders ahead of it, and its reservation as read.
            let before = InventoryState {
                products: one.products.iter().filter_map(|p| stock.get(p).cloned()).collect(),
                reservation: one.reservation.clone(),
            };
            let step = match self.rules.decide_inventory(&before, command) {
                Ok(decided) => {
                    let (after, events) = self.outcome(&before, &decided, one.trace)?;
                    for product in &after.products {
                        stock.insert(product.product_id.clone(), product.clone());
                    }
                    let audit = audit_of(&one.actor, &decided.value, now);
                    (before, after, decided.value.movements, events, audit)
                }
                Err(RuleError::Rejected(rejection)) => {
                    tracing::info!(target: "shop::saga", %order_id, %rejection, "event changes nothing");
                    Default::default()
                }
                Err(RuleError::Fault(fault)) => return Err(fault.into()),
            };
            steps.push(step);
        }
        let writes: Vec<InventoryWrite<'_>> = steps
            .iter()
            .zip(batch)
            .map(|((before, after, movements, events, audit), one)| InventoryWrite {
                before,
                after,
                movements,
                events,
                actor: &one.actor,
                audit,
            })
            .collect();
        Ok(self.store.write_many(&writes).await?)
    }

    /// The inventory side's reaction to an order event: reserve on
    /// `OrderCreated`, release on `OrderCancelled`, deduct on `OrderCompleted`.
    /// Idempotent by the order's reservation (one per order, fenced by its
    /// status): a repeated message decides nothing.
    pub async fn handle(&self, envelope: &Envelope) -> Result<(), HandleError> {
        let event = match envelope.event() {
            Ok(DomainEvent::Order(event)) => event,
            Ok(DomainEvent::Inventory(_)) => {
                return Err(HandleError::Permanent("an inventory event on the order stream".into()));
            }
            Err(error) => return Err(HandleError::Permanent(error.to_string())),
        };
        let trace = Trace::follows(envelope);
        let Some((order_id, command)) = command_for(event) else {
            return Ok(());
        };
        let products = match &command {
            InventoryCommand::Reserve(lines) => lines.lines.iter().map(|l| l.product_id.clone()).collect(),
            // Release and deduct touch what the reservation holds.
            _ => match self.store.reservation(&order_id).await? {
                Some(reservation) => reservation.lines.into_iter().map(|l| l.product_id).collect(),
                None => Vec::new(),
            },
        };
        let actor = saga_actor(&command, &trace);
        let job = Job {
            products: &products,
            order_id: Some(&order_id),
            command: &command,
            expected: None,
            trace,
            actor: &actor,
        };
        match self.execute(job).await {
            Ok(_) => Ok(()),
            Err(InventoryError::Rejected(rejection)) => {
                tracing::info!(target: "shop::saga", event = envelope.event_type, %rejection, "event changes nothing");
                Ok(())
            }
            Err(other) => Err(HandleError::Transient(other.to_string())),
        }
    }
}

impl<S: InventoryStore, L: Lock> super::Handler for InventoryService<S, L> {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandleError> {
        InventoryService::handle(self, envelope).await
    }

    async fn handle_many(&self, envelopes: &[&Envelope], concurrency: usize) -> Vec<Result<(), HandleError>> {
        InventoryService::handle_many(self, envelopes, concurrency).await
    }
}

/// Held while a command works on its products.
struct Held<'a> {
    _turn: Turn<'a>,
    lease: Lease,
}

/// An order event handled with others: the command it asks for, the
/// products that touches and the order's reservation as read.
struct Batched {
    /// Where its message is in the batch.
    at: usize,
    order_id: String,
    command: InventoryCommand,
    products: Vec<String>,
    reservation: Option<Reservation>,
    trace: Trace,
    actor: Actor,
}

impl Batched {
    /// `command` for an order, on its `reservation` as read: a reservation
    /// to make touches the products of its lines, a release or deduction
    /// what the reservation holds.
    fn new(
        at: usize,
        envelope: &Envelope,
        order_id: String,
        command: InventoryCommand,
        reservation: Option<Reservation>,
    ) -> Self {
        let products = match &command {
            InventoryCommand::Reserve(lines) => lines.lines.iter().map(|l| l.product_id.clone()).collect(),
            _ => reservation
                .iter()
                .flat_map(|r| r.lines.iter().map(|l| l.product_id.clone()))
                .collect(),
        };
        let trace = Trace::follows(envelope);
        Self {
            at,
            order_id,
            actor: saga_actor(&command, &trace),
            command,
            products,
            reservation,
            trace,
        }
    }
}

/// The saga step a command is, as the actor its changes are audited under:
/// the step, and the correlation id of the request that placed the order.
fn saga_actor(command: &InventoryCommand, trace: &Trace) -> Actor {
    let step = match command {
        InventoryCommand::Reserve(_) => "reserve",
        InventoryCommand::Release(_) => "release",
        InventoryCommand::Deduct(_) => "deduct",
        _ => "inventory",
    };
    Actor::saga(step, trace.correlation_id)
}

/// The audit log's account of a decision besides its stock movements
/// (which the store keeps as audit records of their own,
/// [`movement_record`](crate::ports::movement_record)): each product
/// registered and each price changed, as `actor` did it.
fn audit_of(actor: &Actor, decision: &Decision, at: i64) -> Vec<AuditRecord> {
    decision
        .events
        .iter()
        .filter_map(|event| match event {
            InventoryEvent::ProductRegistered(p) => Some(actor.did(
                AUDIT_CONTEXT,
                "product.register",
                product_target(&p.product_id),
                at,
                &serde_json::json!({
                    "name": p.name, "unit_price": p.unit_price, "currency": p.currency, "stock": p.initial_stock,
                }),
            )),
            InventoryEvent::PriceChanged(p) => Some(actor.did(
                AUDIT_CONTEXT,
                "price.change",
                product_target(&p.product_id),
                at,
                &serde_json::json!({ "from": p.old_price, "to": p.new_price, "currency": p.currency }),
            )),
            _ => None,
        })
        .collect()
}

fn reserve_lines(created: &OrderCreated) -> Vec<StockLine> {
    created
        .lines
        .iter()
        .map(|l| StockLine {
            product_id: l.product_id.clone(),
            quantity: i64::from(l.quantity),
        })
        .collect()
}

/// The command an order event asks of the inventory, for the order it
/// concerns; `None` when it asks nothing (`OrderConfirmed`).
fn command_for(event: OrderEvent) -> Option<(String, InventoryCommand)> {
    match event {
        OrderEvent::Created(created) => {
            let lines = reserve_lines(&created);
            let order_id = created.order_id;
            Some((
                order_id.clone(),
                InventoryCommand::Reserve(OrderLines { order_id, lines }),
            ))
        }
        OrderEvent::Cancelled(cancelled) => {
            let reason = match cancelled.reason {
                CancelReason::ReservationExpired => ReleaseReason::Expired,
                _ => ReleaseReason::Cancelled,
            };
            let order_id = cancelled.order_id;
            Some((
                order_id.clone(),
                InventoryCommand::Release(Release { order_id, reason }),
            ))
        }
        OrderEvent::Completed(completed) => {
            Some((completed.order_id.clone(), InventoryCommand::Deduct(completed.order_id)))
        }
        OrderEvent::Confirmed(_) => None,
    }
}

/// The version an event leaves its aggregate at: the product's for product
/// events (the order side orders catalogue updates by it), 1 otherwise.
fn aggregate_version(state: &InventoryState, event: &InventoryEvent) -> u64 {
    let product = match event {
        InventoryEvent::ProductRegistered(e) => Some(&e.product_id),
        InventoryEvent::Restocked(e) => Some(&e.product_id),
        InventoryEvent::Adjusted(e) => Some(&e.product_id),
        InventoryEvent::PriceChanged(e) => Some(&e.product_id),
        _ => None,
    };
    product.and_then(|id| state.product(id)).map_or(1, |p| p.version)
}
