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
use shop_runtime::ports::{InventoryStore, Lock, OrderQuery, OrderStore};
use shop_streams::Trace;
use uuid::Uuid;

use crate::config::{self, Database, Settings};
use crate::contexts::{Contexts, Ports};
use crate::serve_cmd::ProcessRole;

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
    let keyring = crate::secrets::keyring(settings, &database)?.map(Arc::new);
    let role = match command {
        Command::Orders(_) => ProcessRole::Order,
        Command::Stock(_) => ProcessRole::Inventory,
    };
    config::block_on(async {
        match database {
            // The versions fence any concurrent writer; a local lock suffices here.
            Database::Embedded(url) => {
                let ports = Ports {
                    store: SqliteStore::open(&url).await?,
                    lock: Some(MemoryLock::new()),
                    kv: Arc::new(MemoryKeyValue::new()),
                    keyring,
                };
                execute(Contexts::build(role, ports, settings)?, command).await
            }
            Database::Postgres(url) => {
                let lock = match role {
                    ProcessRole::Inventory => Some(RedisLock::connect(config::redis(settings)?).await?),
                    _ => None,
                };
                let ports = Ports {
                    store: PgStore::connect(&PgSettings::new(url)).await?,
                    lock,
                    kv: Arc::new(MemoryKeyValue::new()),
                    keyring,
                };
                execute(Contexts::build(role, ports, settings)?, command).await
            }
        }
    })
}

/// Runs `command` on the use cases of `contexts` (built without their saga:
/// the events the command decides wait in the outbox for a serving relay).
async fn execute<S, L>(contexts: Contexts<S, L>, command: Command) -> anyhow::Result<ExitCode>
where
    S: OrderStore + InventoryStore + Clone,
    L: Lock,
{
    let request = Uuid::now_v7();
    let operator = crate::audit_cmd::operator(request);
    let trace = Trace::root(request);
    match command {
        Command::Orders(command) => {
            let orders = contexts.orders.context("the order context")?;
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
                OrdersCommand::Cancel { id } => print(&OrderView::from(
                    &orders.cancel(&id, CancelReason::Admin, trace, Some(&operator)).await?,
                )),
                OrdersCommand::Complete { id } => {
                    print(&OrderView::from(&orders.complete(&id, trace, Some(&operator)).await?))
                }
            }
        }
        Command::Stock(command) => {
            let inventory = contexts.inventory.context("the inventory context")?;
            let product = match command {
                StockCommand::Show { product } => product,
                StockCommand::Movements { product, after, limit } => {
                    let found = inventory.movements(&product, after, limit).await?;
                    let rows: Vec<_> = found
                        .into_iter()
                        .map(|entry| {
                            let m = entry.movement;
                            serde_json::json!({
                                "seq": entry.seq, "kind": m.kind.as_str(), "quantity": m.quantity,
                                "order_id": m.order_id, "reason": m.reason, "at": m.at,
                                "actor": entry.actor, "request_id": entry.request_id,
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
                    inventory.admin(command, None, trace, &operator).await?;
                    product
                }
                StockCommand::Adjust { product, delta, reason } => {
                    let command = InventoryCommand::Adjust(Adjust {
                        product_id: product.clone(),
                        delta,
                        reason,
                    });
                    inventory.admin(command, None, trace, &operator).await?;
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
