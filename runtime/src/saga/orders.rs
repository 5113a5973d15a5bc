//! The order context's use cases.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use shop_rules::inventory::InventoryEvent;
use shop_rules::order::{
    CancelReason, CataloguePrice, LineRequest, Order, OrderCommand, OrderEvent, OrderRejection, PlaceOrder,
};
use shop_streams::{DomainEvent, Envelope, RuleRef, Trace};
use tokio::sync::watch;
use uuid::Uuid;

use super::backpressure::{Backpressure, Overloaded};
use super::prices::PriceCache;
use super::{
    CONFLICT_RETRIES, HandleError, next_version, one_by_one, rounds_until_stopped, rule_ref, together_and_alone,
};
use crate::audit::{Actor, AuditEntry, AuditRecord};
use crate::customer_data::{Delivery, DeliveryRead, InvalidDelivery, Keyring, SealError};
use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::ports::{
    AuditLog, AuditQuery, CatalogueEntry, Clock, OrderQuery, OrderStore, OrderWrite, SealedDelivery, StoreError,
    Versioned,
};
use crate::rules::{PolicyViolation, RuleError, RuleFault, RuleHost};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Rejected(OrderRejection),
    #[error("refused by policy {}: {}", .0.policy, .0.message)]
    Policy(PolicyViolation),
    #[error("no order {0}")]
    NotFound(String),
    /// An intake retried under the id of an existing order, asking for
    /// something else (another customer or other lines).
    #[error("order {0} exists with other items")]
    KeyReused(String),
    #[error(transparent)]
    InvalidDelivery(#[from] InvalidDelivery),
    /// Customer data could not be sealed or opened (a key this process
    /// does not hold, a corrupted row): an operator's matter.
    #[error(transparent)]
    Sealing(SealError),
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    #[error(transparent)]
    Rules(#[from] RuleFault),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SealError> for OrderError {
    fn from(error: SealError) -> Self {
        match error {
            SealError::Store(store) => Self::Store(store),
            other => Self::Sealing(other),
        }
    }
}

impl From<RuleError<OrderRejection>> for OrderError {
    fn from(error: RuleError<OrderRejection>) -> Self {
        match error {
            RuleError::Rejected(rejection) => Self::Rejected(rejection),
            RuleError::Fault(fault) => Self::Rules(fault),
        }
    }
}

/// A new order as asked for: the customer is the caller, prices come from
/// the catalogue.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<LineRequest>,
    /// Where it goes: sealed under the customer's data key before it is stored.
    pub delivery: Option<Delivery>,
}

/// What the shop keeps about one customer, for an export.
#[derive(Debug, Clone)]
pub struct CustomerData {
    /// Newest first.
    pub orders: Vec<OrderRecord>,
    /// By number.
    pub audit: Vec<AuditEntry>,
}

/// Every audit entry `query` matches, page by page.
async fn audit_pages(log: &impl AuditLog, query: AuditQuery<'_>) -> Result<Vec<AuditEntry>, StoreError> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    loop {
        let page = log
            .entries(AuditQuery {
                after: entries.last().map_or(0, |e| e.seq),
                limit: EXPORT_PAGE,
                ..query
            })
            .await?;
        let full = page.len() == EXPORT_PAGE as usize;
        entries.extend(page);
        if !full {
            return Ok(entries);
        }
    }
}

/// An order with its delivery details as they read now, and the rules
/// that decided it.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub order: Order,
    /// `None` when the order was placed without delivery details.
    pub delivery: Option<DeliveryRead>,
    /// The order rules and policies that let it in, as its `OrderCreated`
    /// named them; empty for orders placed before provenance was kept.
    pub policy: Vec<RuleRef>,
}

/// Most orders of one customer an export reads per query.
const EXPORT_PAGE: u32 = 100;

/// Most prices one query of a refresh round reads.
const REFRESH_CHUNK: usize = 1000;

/// Tasks committing the commands asked for at once, and most commands a
/// commit carries.
const COMMAND_WRITERS: usize = 2;
const COMMAND_BATCH: usize = 256;

/// An order command someone asked for: a customer's cancel, an operator's
/// completion, a payment notice, a reservation's outcome.
#[derive(Debug, Clone)]
pub struct Asked {
    pub order_id: String,
    pub command: OrderCommand,
    pub trace: Trace,
    /// Who asked, when the change is audited as theirs.
    pub by: Option<Actor>,
    /// The customer whose order it must be, when a customer asked: any
    /// other's order is as absent to them as one that does not exist.
    pub owner: Option<String>,
}

impl Asked {
    /// `order` as this command finds it: `None` when a customer asked and
    /// it is not theirs.
    fn reaching<'o>(&self, order: Option<&'o Versioned<Order>>) -> Option<&'o Versioned<Order>> {
        order.filter(|o| self.owner.as_ref().is_none_or(|owner| *owner == o.value.customer_id))
    }
}

pub struct OrderService<S> {
    store: S,
    /// The service itself, once [`Self::shared`]: what the command writers
    /// hold, so that they stop with it.
    me: Weak<Self>,
    /// Commands asked for at once, decided and committed together: each
    /// audited change alone would hold the audit chain's lock through its
    /// own commit, one after another. Started on the first command.
    commands: OnceLock<GroupCommit<Asked, Result<Commanded, OrderError>>>,
    /// Seals and opens delivery details; without one, orders carry none.
    keyring: Option<Arc<Keyring>>,
    rules: Arc<RuleHost>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    backpressure: Arc<Backpressure>,
    prices: PriceCache,
}

impl<S: OrderStore> OrderService<S> {
    pub fn new(store: S, rules: Arc<RuleHost>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            me: Weak::new(),
            commands: OnceLock::new(),
            keyring: None,
            rules,
            clock,
            metrics: Metrics::default(),
            backpressure: Arc::new(Backpressure::off()),
            prices: PriceCache::off(),
        }
    }

    /// The service as the entry points share it. Its commands (see
    /// [`Self::command`]) are then committed together with those asked for
    /// at the same time; a service not shared this way commits each alone.
    pub fn shared(self) -> Arc<Self> {
        Arc::new_cyclic(|me| Self { me: me.clone(), ..self })
    }

    /// Reuses a price read from the catalogue copy for up to `lifetime`
    /// (see [`PriceCache`]).
    pub fn with_price_cache(mut self, lifetime: Duration) -> Self {
        self.prices = PriceCache::new(lifetime);
        self
    }

    /// Sheds intake while the saga's backlog is over `backpressure`'s bound
    /// (counted by [`super::backpressure::run_sampler`]).
    pub fn with_backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = Arc::new(backpressure);
        self
    }

    pub fn backpressure(&self) -> &Backpressure {
        &self.backpressure
    }

    /// Counts the orders waiting for the saga, for the intake's bound and
    /// the metrics, and returns the count.
    pub async fn count_backlog(&self) -> Result<u64, OrderError> {
        let pending = self.store.pending_count().await?;
        self.backpressure.record(pending);
        self.metrics.saga_pending(pending);
        Ok(pending)
    }

    /// Seals and opens the customers' delivery details with `keyring`.
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    fn keyring(&self) -> Result<&Keyring, SealError> {
        self.keyring.as_deref().ok_or(SealError::NoKeyring)
    }

    /// Counts created, confirmed, completed and cancelled orders into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Intake: the order and its `OrderCreated` in one transaction. Nothing
    /// is published here; the relay does that after the commit.
    pub async fn place(&self, new: NewOrder, trace: Trace) -> Result<Order, OrderError> {
        if let Err(overloaded) = self.backpressure.admit() {
            self.metrics.intake_shed();
            return Err(overloaded.into());
        }
        let ids: Vec<String> = new.lines.iter().map(|l| l.product_id.clone()).collect();
        // The customer's key and the prices are read at once: neither waits for the other.
        let sealing = async {
            match &new.delivery {
                Some(delivery) => self.seal(&new.customer_id, &new.order_id, delivery).await.map(Some),
                None => Ok(None),
            }
        };
        let (sealed, catalogue) = futures::join!(sealing, self.prices(&ids));
        let sealed = sealed?;
        let catalogue: Vec<CataloguePrice> = catalogue?.into_iter().map(|e| e.price).collect();
        let place = PlaceOrder {
            order_id: new.order_id,
            customer_id: new.customer_id,
            lines: new.lines,
            catalogue,
        };
        let decided = self.rules.decide_order(None, &OrderCommand::Place(place.clone()))?;
        let policies = self.rules.check_policies(&place).map_err(|error| match error {
            RuleError::Rejected(violation) => OrderError::Policy(violation),
            RuleError::Fault(fault) => OrderError::Rules(fault),
        })?;
        let (order, envelopes) = self.apply(None, &decided.value, &rule_ref(&decided.rule), trace)?;
        // The order's first events name the policies that let it in, too.
        let policies: Vec<_> = policies.iter().map(rule_ref).collect();
        let envelopes: Vec<Envelope> = envelopes.into_iter().map(|e| e.with_policies(&policies)).collect();
        let order = order.ok_or_else(|| OrderError::NotFound(place.order_id.clone()))?;
        self.store
            .write(OrderWrite {
                order: &order,
                expected_version: None,
                events: &envelopes,
                delivery: sealed.as_ref(),
                audit: None,
            })
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => OrderError::Rejected(OrderRejection::AlreadyExists),
                other => OrderError::Store(other),
            })?;
        self.metrics.order_events(&order, &decided.value);
        Ok(order)
    }

    /// The catalogue entries of `product_ids` that the copy knows: those
    /// held by the price cache, and the rest read (and kept).
    async fn prices(&self, product_ids: &[String]) -> Result<Vec<CatalogueEntry>, StoreError> {
        let now = self.clock.now_ms();
        let mut lookup = self.prices.look_up(product_ids, now);
        if lookup.missing.is_empty() {
            return Ok(lookup.held);
        }
        let read = self.store.catalogue(&lookup.missing).await?;
        self.prices.keep(lookup.since, &read, now);
        lookup.held.extend(read);
        Ok(lookup.held)
    }

    /// Reads again the prices intake used since the last round, so that
    /// they stay within the cache's lifetime; returns how many it read.
    async fn refresh_prices(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let due = self.prices.due();
        for chunk in due.product_ids.chunks(REFRESH_CHUNK) {
            let read = self.store.catalogue(chunk).await?;
            self.prices.renew(due.since, &read, now);
        }
        Ok(due.product_ids.len())
    }

    /// How often [`run_price_refresh`] reads prices again; `None` when
    /// the cache keeps none.
    pub fn price_refresh_every(&self) -> Option<Duration> {
        self.prices.refresh_every()
    }

    /// Intake that a retry cannot duplicate: the caller derives the order id
    /// from its idempotency key. When that order exists already, the same
    /// request gets it back; another request under the same id is refused.
    pub async fn place_once(&self, new: NewOrder, trace: Trace) -> Result<Order, OrderError> {
        match self.place(new.clone(), trace).await {
            Err(OrderError::Rejected(OrderRejection::AlreadyExists)) => {
                let existing = self
                    .get(&new.order_id)
                    .await?
                    .ok_or_else(|| OrderError::NotFound(new.order_id.clone()))?;
                let same_lines = existing.lines.len() == new.lines.len()
                    && existing.lines.iter().zip(&new.lines).all(|(had, asked)| {
                        had.product_id == asked.product_id && i64::from(had.quantity) == asked.quantity
                    });
                if existing.customer_id == new.customer_id && same_lines {
                    Ok(existing)
                } else {
                    Err(OrderError::KeyReused(new.order_id))
                }
            }
            other => other,
        }
    }

    /// `delivery` checked and sealed for `order_id` under the customer's
    /// data key (made now if they have none: a first order, or the first
    /// after an erasure).
    async fn seal(&self, customer_id: &str, order_id: &str, delivery: &Delivery) -> Result<SealedDelivery, OrderError> {
        delivery.check()?;
        let keyring = self.keyring()?;
        let candidate = keyring.new_key(customer_id, self.clock.now_ms())?;
        let key = self.store.obtain_key(&candidate).await?;
        Ok(keyring.seal(&key, order_id, delivery)?)
    }

    /// `sealed` delivery details opened with their customers' keys, by
    /// order id: erased where the key is gone.
    async fn open(&self, sealed: Vec<SealedDelivery>) -> Result<HashMap<String, DeliveryRead>, OrderError> {
        if sealed.is_empty() {
            return Ok(HashMap::new());
        }
        let keyring = self.keyring()?;
        let mut key_ids: Vec<String> = sealed.iter().map(|s| s.key_id.clone()).collect();
        key_ids.sort_unstable();
        key_ids.dedup();
        let keys: HashMap<String, _> = self
            .store
            .keys(&key_ids)
            .await?
            .into_iter()
            .map(|k| (k.key_id.clone(), k))
            .collect();
        sealed
            .iter()
            .map(|s| {
                let read = match keys.get(&s.key_id) {
                    Some(key) => DeliveryRead::Clear(keyring.open(key, s)?),
                    None => DeliveryRead::Erased,
                };
                Ok((s.order_id.clone(), read))
            })
            .collect()
    }

    /// The order with its delivery details and provenance, or `None` when
    /// it does not exist.
    pub async fn record(&self, order_id: &str) -> Result<Option<OrderRecord>, OrderError> {
        let Some(stored) = self.store.record(order_id).await? else {
            return Ok(None);
        };
        let mut opened = self.open(stored.delivery.into_iter().collect()).await?;
        Ok(Some(OrderRecord {
            delivery: opened.remove(order_id),
            policy: stored.provenance,
            order: stored.order.value,
        }))
    }

    /// `orders` with their delivery details and provenance, in their order.
    async fn records(&self, orders: Vec<Order>) -> Result<Vec<OrderRecord>, OrderError> {
        let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
        let deliveries = async { self.open(self.store.deliveries(&ids).await?).await };
        let (deliveries, provenance) = futures::join!(deliveries, self.store.provenance(&ids));
        let mut deliveries = deliveries?;
        let mut provenance: HashMap<String, Vec<RuleRef>> =
            provenance?.into_iter().map(|p| (p.order_id, p.rules)).collect();
        Ok(orders
            .into_iter()
            .map(|order| OrderRecord {
                delivery: deliveries.remove(&order.id),
                policy: provenance.remove(&order.id).unwrap_or_default(),
                order,
            })
            .collect())
    }

    /// Every order of the customer, newest first, with its delivery
    /// details, and the audit entries they are the actor or the target of.
    pub async fn export(&self, customer_id: &str) -> Result<CustomerData, OrderError> {
        let orders = self.export_orders(customer_id).await?;
        let target = format!("customer:{customer_id}");
        let (by, on) = futures::try_join!(
            audit_pages(
                &self.store,
                AuditQuery {
                    actor: Some(customer_id),
                    ..AuditQuery::default()
                }
            ),
            audit_pages(
                &self.store,
                AuditQuery {
                    target: Some(&target),
                    ..AuditQuery::default()
                }
            ),
        )?;
        let mut audit: Vec<AuditEntry> = by.into_iter().chain(on).collect();
        audit.sort_by_key(|e| e.seq);
        audit.dedup_by_key(|e| e.seq);
        Ok(CustomerData { orders, audit })
    }

    async fn export_orders(&self, customer_id: &str) -> Result<Vec<OrderRecord>, OrderError> {
        let mut records = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .customer_orders(OrderQuery {
                    customer_id,
                    status: None,
                    after: after.as_ref(),
                    limit: EXPORT_PAGE,
                })
                .await?;
            after = page.last().map(crate::ports::OrderCursor::after);
            let full = page.len() == EXPORT_PAGE as usize;
            records.extend(self.records(page).await?);
            if !full {
                return Ok(records);
            }
        }
    }

    /// Erases the customer's delivery details by destroying their data
    /// key, audited as `actor`'s in the same transaction; their orders,
    /// amounts and items stay. Returns whether there was a key to destroy.
    pub async fn erase_customer(&self, customer_id: &str, actor: &Actor) -> Result<bool, OrderError> {
        let record = crate::customer_data::erasure(actor, customer_id, self.clock.now_ms());
        Ok(self.store.destroy_key(customer_id, &record).await?)
    }

    pub async fn get(&self, order_id: &str) -> Result<Option<Order>, OrderError> {
        Ok(self.store.get(order_id).await?.map(|v| v.value))
    }

    /// The orders of `order_ids` that exist, in one read.
    pub async fn get_many(&self, order_ids: &[String]) -> Result<Vec<Order>, OrderError> {
        Ok(self
            .store
            .get_many(order_ids)
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// A page of a customer's orders, newest first.
    pub async fn customer_orders(&self, query: OrderQuery<'_>) -> Result<Vec<Order>, OrderError> {
        Ok(self.store.customer_orders(query).await?)
    }

    /// A customer's, an operator's or the expiry's cancel; audited as
    /// `by`'s when a caller asked for it.
    pub async fn cancel(
        &self,
        order_id: &str,
        reason: CancelReason,
        trace: Trace,
        by: Option<&Actor>,
    ) -> Result<Order, OrderError> {
        self.command(order_id, &OrderCommand::Cancel(reason), trace, by).await
    }

    /// Payment confirmed; audited as `by`'s when a caller asked for it.
    pub async fn complete(&self, order_id: &str, trace: Trace, by: Option<&Actor>) -> Result<Order, OrderError> {
        self.command(order_id, &OrderCommand::Complete, trace, by).await
    }

    /// Cancels CONFIRMED orders confirmed longer than `expiry.after` ago,
    /// for `expiry.reason`, at most `limit` per call, and returns how many.
    /// The order rules decide each one on the order's latest version, so a
    /// completion that commits first wins and the expiry changes nothing;
    /// one that comes later is refused.
    pub async fn expire_due(&self, expiry: &Expiry, limit: u32, trace: Trace) -> Result<usize, OrderError> {
        let ttl_ms = i64::try_from(expiry.after.as_millis()).unwrap_or(i64::MAX);
        let cutoff = self.clock.now_ms().saturating_sub(ttl_ms);
        let mut expired = 0;
        for order_id in self.store.confirmed_before(cutoff, limit).await? {
            match self.cancel(&order_id, expiry.reason.clone(), trace, None).await {
                Ok(order) if order.cancel_reason.as_ref() == Some(&expiry.reason) => expired += 1,
                Ok(_) => {}
                Err(OrderError::Rejected(rejection)) => {
                    tracing::info!(target: "shop::saga", order_id, %rejection, "not expired");
                }
                Err(other) => return Err(other),
            }
        }
        Ok(expired)
    }

    /// Decides `command` on the stored order and commits the outcome (with
    /// the commands asked for meanwhile, see [`Self::command_asked`]), again
    /// from a fresh read when another writer got there first. A command whose
    /// effect already holds (a repeated message) decides nothing and writes
    /// nothing. A command `by` a caller is audited with its change.
    async fn command(
        &self,
        order_id: &str,
        command: &OrderCommand,
        trace: Trace,
        by: Option<&Actor>,
    ) -> Result<Order, OrderError> {
        let asked = Asked {
            order_id: order_id.to_owned(),
            command: command.clone(),
            trace,
            by: by.cloned(),
            owner: None,
        };
        Ok(self.command_asked(asked).await?.into_order())
    }

    /// Does what `asked` asks, committed with the other commands asked for
    /// meanwhile (when the service is [`Self::shared`]), and says whether it
    /// changed the order.
    pub async fn command_asked(&self, asked: Asked) -> Result<Commanded, OrderError> {
        if self.me.strong_count() == 0 {
            return self.command_once(&asked).await;
        }
        let writers = self.commands.get_or_init(|| {
            let me = self.me.clone();
            GroupCommit::start(COMMAND_WRITERS, COMMAND_BATCH, move |batch: Vec<Asked>| {
                let me = me.upgrade();
                async move {
                    match me {
                        Some(service) => service.command_many(&batch).await,
                        None => batch.iter().map(|_| Err(writers_stopped())).collect(),
                    }
                }
            })
        });
        writers.submit(asked).await.unwrap_or_else(|| Err(writers_stopped()))
    }

    /// Commands, each decided on its order as stored and all committed at
    /// once; each answered as [`Self::command_asked`] would. Should the
    /// commit fail (an order changed meanwhile, or was named twice), each is
    /// done alone.
    async fn command_many(&self, commands: &[Asked]) -> Vec<Result<Commanded, OrderError>> {
        match self.command_together(commands).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::debug!(target: "shop::saga", %error, count = commands.len(), "commanding together failed; one by one");
                let each = commands.iter().map(|asked| self.command_once(asked)).collect();
                super::at_most(8, each).await
            }
        }
    }

    async fn command_together(&self, commands: &[Asked]) -> Result<Vec<Result<Commanded, OrderError>>, OrderError> {
        let ids: Vec<String> = commands.iter().map(|asked| asked.order_id.clone()).collect();
        let stored: HashMap<String, Versioned<Order>> = self
            .store
            .get_many(&ids)
            .await?
            .into_iter()
            .map(|s| (s.value.id.clone(), s))
            .collect();
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut changes = Vec::new();
        for asked in commands {
            let Some(current) = asked.reaching(stored.get(&asked.order_id)) else {
                outcomes.push(Err(OrderError::NotFound(asked.order_id.clone())));
                continue;
            };
            match self.rules.decide_order(Some(&current.value), &asked.command) {
                Ok(decided) if decided.value.is_empty() => {
                    outcomes.push(Ok(Commanded::Unchanged(current.value.clone())))
                }
                Ok(decided) => {
                    let (order, envelopes) =
                        self.apply(Some(current), &decided.value, &rule_ref(&decided.rule), asked.trace)?;
                    let order = order.ok_or_else(|| OrderError::NotFound(asked.order_id.clone()))?;
                    let audit = asked
                        .by
                        .as_ref()
                        .map(|actor| audit_of(actor, &asked.order_id, &asked.command, self.clock.now_ms()));
                    outcomes.push(Ok(Commanded::Changed(order.clone())));
                    changes.push((order, current.version, envelopes, audit, decided.value));
                }
                Err(RuleError::Rejected(rejection)) => outcomes.push(Err(OrderError::Rejected(rejection))),
                Err(RuleError::Fault(fault)) => return Err(fault.into()),
            }
        }
        let updates: Vec<OrderWrite<'_>> = changes
            .iter()
            .map(|(order, version, events, audit, _)| OrderWrite {
                order,
                expected_version: Some(*version),
                events,
                delivery: None,
                audit: audit.as_ref(),
            })
            .collect();
        if !updates.is_empty() {
            self.store.update_many(&updates).await?;
        }
        for (order, .., decided) in &changes {
            self.metrics.order_events(order, decided);
        }
        Ok(outcomes)
    }

    /// `asked` decided and committed alone, from a fresh read again when
    /// another writer got there first.
    async fn command_once(&self, asked: &Asked) -> Result<Commanded, OrderError> {
        let (order_id, command, trace) = (asked.order_id.as_str(), &asked.command, asked.trace);
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let stored = self.store.get(order_id).await?;
            let Some(current) = asked.reaching(stored.as_ref()) else {
                return Err(OrderError::NotFound(order_id.to_owned()));
            };
            let decided = self.rules.decide_order(Some(&current.value), command)?;
            if decided.value.is_empty() {
                return Ok(Commanded::Unchanged(current.value.clone()));
            }
            let (order, envelopes) = self.apply(stored.as_ref(), &decided.value, &rule_ref(&decided.rule), trace)?;
            let order = order.ok_or_else(|| OrderError::NotFound(order_id.to_owned()))?;
            let audit = asked
                .by
                .as_ref()
                .map(|actor| audit_of(actor, order_id, command, self.clock.now_ms()));
            let write = OrderWrite {
                order: &order,
                expected_version: Some(current.version),
                events: &envelopes,
                delivery: None,
                audit: audit.as_ref(),
            };
            match self.store.write(write).await {
                Ok(_) => {
                    self.metrics.order_events(&order, &decided.value);
                    return Ok(Commanded::Changed(order));
                }
                Err(StoreError::Conflict(what)) => last = Some(StoreError::Conflict(what)),
                Err(other) => return Err(other.into()),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Conflict(order_id.to_owned())).into())
    }

    /// Folds decided events into the order and wraps each in an envelope.
    fn apply(
        &self,
        stored: Option<&crate::ports::Versioned<Order>>,
        events: &[OrderEvent],
        rule: &shop_streams::RuleRef,
        trace: Trace,
    ) -> Result<(Option<Order>, Vec<Envelope>), OrderError> {
        let mut order = stored.map(|s| s.value.clone());
        let mut envelopes = Vec::with_capacity(events.len());
        for (version, event) in (next_version(stored)..).zip(events) {
            order = self.rules.evolve_order(order, event)?;
            let at = self.clock.now_ms();
            envelopes.push(Envelope::new(
                &DomainEvent::Order(event.clone()),
                version,
                at,
                rule.clone(),
                trace,
            ));
        }
        Ok((order, envelopes))
    }

    /// Inventory events, as [`Self::handle`] would take them one by one, but
    /// the bulk of the traffic together: the confirmations and cancellations
    /// that reservations ask for (of orders read in one query), in one
    /// commit. Should it fail (an order changed meanwhile, a store hiccup),
    /// they are handled one by one after all.
    pub async fn handle_many(&self, envelopes: &[&Envelope], concurrency: usize) -> Vec<Result<(), HandleError>> {
        let mut together = Vec::new();
        for (at, envelope) in envelopes.iter().enumerate() {
            let order = match envelope.event() {
                Ok(DomainEvent::Inventory(InventoryEvent::StockReserved(lines))) => {
                    (lines.order_id, OrderCommand::Confirm)
                }
                Ok(DomainEvent::Inventory(InventoryEvent::InsufficientStock(shortage))) => {
                    (shortage.order_id, OrderCommand::Cancel(CancelReason::InsufficientStock))
                }
                // Catalogue updates go their own way, and so do malformed
                // messages and inventory's own bookkeeping (which asks nothing).
                Ok(_) | Err(_) => continue,
            };
            together.push(Settling {
                at,
                order,
                trace: Trace::follows(envelope),
            });
        }
        // An order named twice is refused by the store's `update_many` as a
        // conflict, and then handled one by one like any failed batch.
        if together.len() < 2 {
            return one_by_one(self, envelopes, concurrency).await;
        }
        let at = together.iter().map(|t| t.at).collect::<Vec<_>>();
        let at_once = async {
            let commands: Vec<Asked> = together
                .iter()
                .map(
                    |Settling {
                         order: (id, command),
                         trace,
                         ..
                     }| Asked {
                        order_id: id.clone(),
                        command: command.clone(),
                        trace: *trace,
                        by: None,
                        owner: None,
                    },
                )
                .collect();
            let outcomes = self
                .command_together(&commands)
                .await?
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(_) => Ok(()),
                    // Not there yet: the message waits for it.
                    Err(OrderError::NotFound(id)) => Err(HandleError::Transient(format!("order {id} not found yet"))),
                    // The order moved on (a customer cancel won the race).
                    Err(OrderError::Rejected(rejection)) => {
                        tracing::info!(target: "shop::saga", %rejection, "event changes nothing");
                        Ok(())
                    }
                    Err(other) => Err(HandleError::Transient(other.to_string())),
                });
            Ok::<_, OrderError>(outcomes.collect())
        };
        together_and_alone(self, envelopes, concurrency, &at, at_once).await
    }

    /// Stores a product's new catalogue entry, and drops the price the
    /// cache held for it.
    async fn update_catalogue(&self, entry: &CatalogueEntry) -> Result<(), HandleError> {
        self.store.update_catalogue(entry).await?;
        self.prices.changed(&entry.price.product_id);
        Ok(())
    }

    /// The order side's reaction to an inventory event. Idempotent by the
    /// order's status and the catalogue entry's source version: a repeated
    /// message decides nothing.
    pub async fn handle(&self, envelope: &Envelope) -> Result<(), HandleError> {
        let event = match envelope.event() {
            Ok(DomainEvent::Inventory(event)) => event,
            Ok(DomainEvent::Order(_)) => {
                return Err(HandleError::Permanent("an order event on the inventory stream".into()));
            }
            Err(error) => return Err(HandleError::Permanent(error.to_string())),
        };
        let trace = Trace::follows(envelope);
        let outcome = match &event {
            InventoryEvent::StockReserved(lines) => {
                self.command(&lines.order_id, &OrderCommand::Confirm, trace, None).await
            }
            InventoryEvent::InsufficientStock(shortage) => {
                let cancel = OrderCommand::Cancel(CancelReason::InsufficientStock);
                self.command(&shortage.order_id, &cancel, trace, None).await
            }
            InventoryEvent::ProductRegistered(product) => {
                let entry = catalogue_entry(&product.product_id, product.unit_price, &product.currency, envelope);
                return self.update_catalogue(&entry).await;
            }
            InventoryEvent::PriceChanged(change) => {
                let entry = catalogue_entry(&change.product_id, change.new_price, &change.currency, envelope);
                return self.update_catalogue(&entry).await;
            }
            // The rest is inventory's own bookkeeping: it asks nothing here.
            _ => return Ok(()),
        };
        match outcome {
            Ok(_) => Ok(()),
            // The order moved on (a customer cancel won the race): the rules
            // refuse, and that refusal is the answer. Inventory releases the
            // stock when it sees the cancel.
            Err(OrderError::Rejected(rejection)) => {
                tracing::info!(target: "shop::saga", event = envelope.event_type, %rejection, "event changes nothing");
                Ok(())
            }
            Err(OrderError::NotFound(id)) => Err(HandleError::Transient(format!("order {id} not found yet"))),
            Err(other) => Err(HandleError::Transient(other.to_string())),
        }
    }
}

/// How long a confirmed order waits for what comes next, and why it is
/// cancelled when that does not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub after: Duration,
    pub reason: CancelReason,
}

impl Expiry {
    /// Waiting for a completion through the API: the reservation runs out.
    pub fn reservation(ttl: Duration) -> Self {
        Self {
            after: ttl,
            reason: CancelReason::ReservationExpired,
        }
    }

    /// Waiting for the payment provider's notice: the payment failed.
    pub fn payment(timeout: Duration) -> Self {
        Self {
            after: timeout,
            reason: CancelReason::PaymentFailed,
        }
    }
}

/// Reads again the prices in use every `every`, until `stop` turns true.
/// A failed round is logged; the prices it did not read expire, and
/// intake reads them itself.
pub async fn run_price_refresh<S: OrderStore>(
    service: Arc<OrderService<S>>,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    let service = &service;
    rounds_until_stopped(every, stop, move || async move {
        if let Err(error) = service.refresh_prices().await {
            tracing::warn!(target: "shop::intake", %error, "prices not refreshed; intake reads them");
        }
    })
    .await;
}

/// Expires due orders every `every` until `stop` turns true. Running it in
/// several processes is safe: the order's version decides each race.
pub async fn run_expiry<S: OrderStore>(
    service: Arc<OrderService<S>>,
    expiry: Expiry,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    let (service, expiry) = (&service, &expiry);
    rounds_until_stopped(every, stop, move || async move {
        match service.expire_due(expiry, 500, Trace::root(Uuid::now_v7())).await {
            Ok(0) => {}
            Ok(expired) => {
                tracing::info!(target: "shop::saga", expired, reason = expiry.reason.as_str(), "confirmed orders expired")
            }
            Err(error) => tracing::warn!(target: "shop::saga", %error, "expiry round failed; retrying"),
        }
    })
    .await;
}

impl<S: OrderStore> super::Handler for OrderService<S> {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandleError> {
        OrderService::handle(self, envelope).await
    }

    async fn handle_many(&self, envelopes: &[&Envelope], concurrency: usize) -> Vec<Result<(), HandleError>> {
        OrderService::handle_many(self, envelopes, concurrency).await
    }
}

/// What a command did to its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commanded {
    /// Decided events, committed: the order as they left it.
    Changed(Order),
    /// Its effect held already (a repeated command): the order as stored.
    Unchanged(Order),
}

impl Commanded {
    pub fn into_order(self) -> Order {
        match self {
            Self::Changed(order) | Self::Unchanged(order) => order,
        }
    }
}

/// An inventory event handled with others: the order it confirms or cancels.
struct Settling {
    at: usize,
    order: (String, OrderCommand),
    trace: Trace,
}

fn catalogue_entry(product_id: &str, unit_price: i64, currency: &str, envelope: &Envelope) -> CatalogueEntry {
    CatalogueEntry {
        price: CataloguePrice {
            product_id: product_id.to_owned(),
            unit_price,
            currency: currency.to_owned(),
        },
        source_version: envelope.aggregate_version,
    }
}

fn writers_stopped() -> OrderError {
    OrderError::Store(StoreError::Unavailable("the order command writers stopped".into()))
}

/// The audit record of `command`, done on `order_id` as `actor` asked.
fn audit_of(actor: &Actor, order_id: &str, command: &OrderCommand, at: i64) -> AuditRecord {
    let target = format!("order:{order_id}");
    let (action, detail) = match command {
        OrderCommand::Place(_) => ("order.place", serde_json::json!({})),
        OrderCommand::Confirm => ("order.confirm", serde_json::json!({})),
        OrderCommand::Complete => ("order.complete", serde_json::json!({})),
        OrderCommand::Cancel(reason) => ("order.cancel", serde_json::json!({ "reason": reason.as_str() })),
    };
    actor.did("order", action, target, at, &detail)
}
