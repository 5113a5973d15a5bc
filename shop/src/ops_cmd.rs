//! `shop orders` and `shop stock`: the use cases at an operator's hands,
//! the command line being the shop's third driving adapter beside HTTP and
//! the event bus. They run the same services and rules as the API, on the
//! configured database (embedded or PostgreSQL), and print JSON.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;
use shop_adapter_memory::{MemoryKeyValue, MemoryLock};
use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_redis::RedisLock;
use shop_adapter_sqlite::SqliteStore;
use shop_gateway::{OrderView, ProductView};
use shop_rules::inventory::{Adjust, InventoryCommand, Restock};
use shop_rules::order::{CancelReason, OrderStatus};
use shop_runtime::ports::{InventoryStore, Lock, OrderQuery, OrderStore, SystemClock};
use shop_runtime::rules::{Capabilities, RuleHost};
use shop_runtime::saga::inventory::InventoryService;
use shop_runtime::saga::orders::OrderService;
use shop_streams::{Namespace, Trace};
use uuid::Uuid;

use crate::config::{self, Database, RulesConfig, Settings};
use crate::rules_cmd;

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// One order.
    Show { id: String },
    /// A customer's orders, newest first.
    List {
        #[arg(long)]
        customer: String,
        /// PENDING, CONFIRMED, COMPLETED or CANCELLED.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Cancel a PENDING order on the customer's behalf (reason `admin`).
    Cancel { id: String },
    /// Record a confirmed order's payment: it completes and its stock is deducted.
    Complete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// A product and its stock.
    Show { product: String },
    /// A product's audit trail, oldest first.
    Movements {
        product: String,
        /// Continue after this movement number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Add delivered units.
    Restock { product: String, quantity: i64 },
    /// Correct the available units up or down.
    Adjust {
        product: String,
        #[arg(allow_hyphen_values = true)]
        delta: i64,
        #[arg(long)]
        reason: String,
    },
}

pub enum Command {
    Orders(OrdersCommand),
    Stock(StockCommand),
}

pub fn run(command: Command, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = config::database(settings)?;
    config::block_on(async {
        match database {
            // The versions fence any concurrent writer; a local lock suffices here.
            Database::Embedded(url) => {
                execute(SqliteStore::open(&url).await?, MemoryLock::new(), command, settings).await
            }
            Database::Postgres(url) => {
                let store = PgStore::connect(&PgSettings::new(url)).await?;
                execute(
                    store,
                    RedisLock::connect(config::redis(settings)?).await?,
                    command,
                    settings,
                )
                .await
            }
        }
    })
}

async fn execute<S, L>(store: S, lock: L, command: Command, settings: &Settings) -> anyhow::Result<ExitCode>
where
    S: OrderStore + InventoryStore + Clone,
    L: Lock,
{
    let namespace = Namespace::new(config::namespace(settings))?;
    let clock = Arc::new(SystemClock);
    let capabilities = Capabilities {
        clock: clock.clone(),
        kv: Arc::new(MemoryKeyValue::new()),
        namespace: namespace.to_string(),
    };
    let rules = Arc::new(
        RuleHost::start(
            rules_cmd::rule_settings(RulesConfig::from_settings(settings)?),
            capabilities,
        )
        .context("loading the rules")?,
    );
    let trace = Trace::root(Uuid::now_v7());
    match command {
        Command::Orders(command) => {
            let orders = OrderService::new(store, rules, clock);
            match command {
                OrdersCommand::Show { id } => match orders.get(&id).await? {
                    Some(order) => print(&OrderView::from(&order)),
                    None => bail!("no order {id}"),
                },
                OrdersCommand::List {
                    customer,
                    status,
                    limit,
                } => {
                    let status = status.as_deref().map(parse_status).transpose()?;
                    let query = OrderQuery {
                        customer_id: &customer,
                        status,
                        after: None,
                        limit,
                    };
                    let found = orders.customer_orders(query).await?;
                    print(&found.iter().map(OrderView::from).collect::<Vec<_>>())
                }
                OrdersCommand::Cancel { id } => {
                    print(&OrderView::from(&orders.cancel(&id, CancelReason::Admin, trace).await?))
                }
                OrdersCommand::Complete { id } => print(&OrderView::from(&orders.complete(&id, trace).await?)),
            }
        }
        Command::Stock(command) => {
            let inventory = InventoryService::new(store, lock, rules, clock, namespace);
            let product = match command {
                StockCommand::Show { product } => product,
                StockCommand::Movements { product, after, limit } => {
                    let found = inventory.movements(&product, after, limit).await?;
                    let rows: Vec<_> = found
                        .into_iter()
                        .map(|(seq, m)| {
                            serde_json::json!({
                                "seq": seq, "kind": m.kind.as_str(), "quantity": m.quantity,
                                "order_id": m.order_id, "reason": m.reason, "at": m.at,
                            })
                        })
                        .collect();
                    return print(&rows);
                }
                StockCommand::Restock { product, quantity } => {
                    let command = InventoryCommand::Restock(Restock {
                        product_id: product.clone(),
                        quantity,
                    });
                    inventory.admin(command, trace).await?;
                    product
                }
                StockCommand::Adjust { product, delta, reason } => {
                    let command = InventoryCommand::Adjust(Adjust {
                        product_id: product.clone(),
                        delta,
                        reason,
                    });
                    inventory.admin(command, trace).await?;
                    product
                }
            };
            match inventory.product(&product).await? {
                Some(stock) => print(&ProductView::from(stock)),
                None => bail!("no product {product}"),
            }
        }
    }
}

fn parse_status(text: &str) -> anyhow::Result<OrderStatus> {
    OrderStatus::parse(text)
        .with_context(|| format!("{text:?}: the status is PENDING, CONFIRMED, COMPLETED or CANCELLED"))
}

fn print(value: &impl Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}
