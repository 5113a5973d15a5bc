//! After the load: the system's own account, read back through the API,
//! held against what the load generator was told.
//!
//! Every order the shop accepted must be found exactly once, and once the
//! saga has settled be CONFIRMED, CANCELLED or COMPLETED (those still
//! PENDING when the wait ends are counted as in flight). Every product of
//! the run must have no negative stock, conserve its units (available +
//! reserved + deducted = what it was registered with), hold reserved
//! exactly the units of its CONFIRMED orders and deducted exactly those of
//! its COMPLETED ones. A shop that pays through a provider (`--paid`) must
//! also leave no order CONFIRMED: each is paid or its payment failed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::shop::Shop;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Invariants {
    /// The saga came to rest before the check (otherwise its numbers are a
    /// snapshot of work in progress).
    #[serde(default)]
    pub settled: bool,
    pub accepted: u64,
    pub found: u64,
    /// Accepted, and not found: lost.
    pub lost: u64,
    /// Found more than once in the listings.
    pub duplicated: u64,
    /// Found, but the 202 never reached the load generator (it timed out).
    pub created_unanswered: u64,
    pub pending: u64,
    pub confirmed: u64,
    pub cancelled: u64,
    pub completed: u64,
    pub cancel_reasons: BTreeMap<String, u64>,
    pub products: Vec<ProductCheck>,
    /// From acceptance to CONFIRMED, as the shop stamped them.
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    pub confirm_max_ms: f64,
    /// CONFIRMED orders per second between the first acceptance and the
    /// last confirmation.
    pub confirmations_per_second: f64,
    pub violations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductCheck {
    pub id: String,
    pub registered: i64,
    pub available: i64,
    pub reserved: i64,
    pub deducted: i64,
    /// Units of this product in CONFIRMED orders.
    pub confirmed_units: i64,
    /// Units of this product in COMPLETED orders.
    #[serde(default)]
    pub completed_units: i64,
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<OrderView>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OrderView {
    order_id: String,
    status: String,
    items: Vec<Item>,
    created_at: i64,
    confirmed_at: Option<i64>,
    cancel_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Item {
    product_id: String,
    quantity: i64,
}

/// Waits up to `settle` for the saga to come to rest (no order of the run
/// PENDING, nor CONFIRMED when `paid`, and the products' stock unchanged
/// over two seconds: a cancelled order's reservation may still be on its
/// way in and out), then checks.
pub async fn check(
    shop: &Shop,
    products: &[(String, i64)],
    settle: Duration,
    paid: bool,
    settled_file: Option<&Path>,
) -> anyhow::Result<Invariants> {
    let deadline = Instant::now() + settle;
    let mut last_stock = None;
    let accepted: HashSet<String> = shop.users.iter().flat_map(|u| u.accepted()).collect();
    // While the saga works, only the orders still on their way are listed:
    // listing every order every two seconds would load the shop (and so
    // its measured cost per order) with the check's own reads.
    let (stock, settled) = loop {
        let mut pending = all_orders(shop, Some("PENDING")).await?.len();
        // With a payment provider a confirmed order is on its way too.
        if paid {
            pending += all_orders(shop, Some("CONFIRMED")).await?.len();
        }
        let out_of_time = Instant::now() >= deadline;
        // Stock is read only once nothing is pending: before that the saga
        // is certainly not at rest, and reading every product is not free.
        if pending > 0 && !out_of_time {
            eprintln!("settling: {pending} of {} orders still on their way", accepted.len());
            last_stock = None;
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        let mut stock = Vec::with_capacity(products.len());
        for (id, _) in products {
            stock.push(shop.stock(id).await?);
        }
        let resting = pending == 0 && last_stock.as_ref() == Some(&stock);
        if resting || out_of_time {
            if !resting {
                eprintln!("settling: gave up after {settle:?}");
            }
            break (stock, resting);
        }
        eprintln!("settling: no order PENDING; waiting for stock to stop moving");
        last_stock = Some(stock);
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    if let Some(file) = settled_file {
        std::fs::write(file, b"").map_err(|e| anyhow::anyhow!("creating the settled file {}: {e}", file.display()))?;
    }
    let orders = all_orders(shop, None).await?;
    let mut result = Invariants {
        settled,
        ..Invariants::default()
    };
    result.accepted = accepted.len() as u64;
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for order in &orders {
        *seen.entry(order.order_id.as_str()).or_default() += 1;
    }
    result.found = seen.len() as u64;
    result.duplicated = seen.values().filter(|n| **n > 1).count() as u64;
    result.lost = accepted.iter().filter(|id| !seen.contains_key(id.as_str())).count() as u64;
    result.created_unanswered = seen.keys().filter(|id| !accepted.contains(**id)).count() as u64;

    let mut confirm = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).expect("valid bounds");
    let mut confirmed_units: HashMap<&str, i64> = HashMap::new();
    let mut completed_units: HashMap<&str, i64> = HashMap::new();
    let (mut first_created, mut last_confirmed) = (i64::MAX, i64::MIN);
    for order in &orders {
        first_created = first_created.min(order.created_at);
        match order.status.as_str() {
            "PENDING" => result.pending += 1,
            "CONFIRMED" => {
                result.confirmed += 1;
                for item in &order.items {
                    *confirmed_units.entry(item.product_id.as_str()).or_default() += item.quantity;
                }
            }
            "CANCELLED" => {
                result.cancelled += 1;
                let reason = order.cancel_reason.clone().unwrap_or_default();
                *result.cancel_reasons.entry(reason).or_default() += 1;
            }
            "COMPLETED" => {
                result.completed += 1;
                for item in &order.items {
                    *completed_units.entry(item.product_id.as_str()).or_default() += item.quantity;
                }
            }
            other => result
                .violations
                .push(format!("order {} has status {other}", order.order_id)),
        }
        if let Some(at) = order.confirmed_at {
            confirm.saturating_record(u64::try_from(at - order.created_at).unwrap_or(0).max(1));
            last_confirmed = last_confirmed.max(at);
        }
    }
    if !confirm.is_empty() {
        result.confirm_p50_ms = confirm.value_at_quantile(0.5) as f64;
        result.confirm_p99_ms = confirm.value_at_quantile(0.99) as f64;
        result.confirm_max_ms = confirm.max() as f64;
        let span = (last_confirmed - first_created).max(1) as f64 / 1000.0;
        result.confirmations_per_second = confirm.len() as f64 / span;
    }

    for ((id, registered), (available, reserved, deducted)) in products.iter().zip(stock) {
        let check = ProductCheck {
            id: id.clone(),
            registered: *registered,
            available,
            reserved,
            deducted,
            confirmed_units: confirmed_units.get(id.as_str()).copied().unwrap_or(0),
            completed_units: completed_units.get(id.as_str()).copied().unwrap_or(0),
        };
        if available < 0 || reserved < 0 || deducted < 0 {
            result.violations.push(format!("{id}: negative stock {check:?}"));
        }
        if available + reserved + deducted != *registered {
            result.violations.push(format!("{id}: units not conserved {check:?}"));
        }
        // Reserved units match confirmed orders only once the saga is at
        // rest; negative stock and lost units are wrong at any moment.
        if settled && reserved != check.confirmed_units {
            result
                .violations
                .push(format!("{id}: reserved is not the confirmed orders' units {check:?}"));
        }
        if settled && deducted != check.completed_units {
            result
                .violations
                .push(format!("{id}: deducted is not the completed orders' units {check:?}"));
        }
        result.products.push(check);
    }
    if paid && result.confirmed > 0 {
        result.violations.push(format!(
            "{} orders still CONFIRMED: neither paid nor failed",
            result.confirmed
        ));
    }
    if result.lost > 0 {
        result
            .violations
            .push(format!("{} accepted orders not found", result.lost));
    }
    if result.duplicated > 0 {
        result
            .violations
            .push(format!("{} orders listed twice", result.duplicated));
    }
    Ok(result)
}

/// Every order of every user of the run (or those in `status`), through
/// the API.
async fn all_orders(shop: &Shop, status: Option<&str>) -> anyhow::Result<Vec<OrderView>> {
    let pages = futures::stream::iter(shop.users.iter().map(|user| orders_of(shop, user.token(), status)))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut all = Vec::new();
    for orders in pages {
        all.extend(orders?);
    }
    Ok(all)
}

async fn orders_of(shop: &Shop, token: &str, status: Option<&str>) -> anyhow::Result<Vec<OrderView>> {
    let mut orders = Vec::new();
    let mut after: Option<String> = None;
    let status = status.map(|s| format!("&status={s}")).unwrap_or_default();
    loop {
        let path = match &after {
            Some(cursor) => format!("/api/orders?limit=100{status}&after={cursor}"),
            None => format!("/api/orders?limit=100{status}"),
        };
        let body = shop
            .api
            .expect(StatusCode::OK, Method::GET, &path, token, None, None)
            .await
            .map_err(|f| anyhow::anyhow!("listing orders: {}", f.kind()))?;
        let page: Page = serde_json::from_slice(&body)?;
        orders.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(orders),
        }
    }
}

impl Invariants {
    pub fn print(&self) {
        println!(
            "orders: {} accepted, {} found, {} lost, {} duplicated, {} created without an answer",
            self.accepted, self.found, self.lost, self.duplicated, self.created_unanswered
        );
        println!(
            "status: {} CONFIRMED, {} CANCELLED {:?}, {} COMPLETED, {} still PENDING",
            self.confirmed, self.cancelled, self.cancel_reasons, self.completed, self.pending
        );
        println!(
            "accepted -> CONFIRMED: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {:.0} confirmations/s",
            self.confirm_p50_ms, self.confirm_p99_ms, self.confirm_max_ms, self.confirmations_per_second
        );
        for p in self.products.iter().take(5) {
            println!(
                "{}: registered {}, available {}, reserved {}, deducted {}, in confirmed orders {}",
                p.id, p.registered, p.available, p.reserved, p.deducted, p.confirmed_units
            );
        }
        if self.products.len() > 5 {
            println!("... and {} more products", self.products.len() - 5);
        }
        if !self.settled {
            println!("the saga had not come to rest when checked: a snapshot of work in progress");
        }
        match self.violations.is_empty() {
            true => println!("invariants: hold"),
            false => {
                println!("invariants: VIOLATED");
                for violation in &self.violations {
                    println!("  {violation}");
                }
            }
        }
    }
}
