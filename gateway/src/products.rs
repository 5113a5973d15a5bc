//! `/api/products`: the catalogue and its stock, administered by admins.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use shop_rules::inventory::{
    Adjust, ChangePrice, InventoryCommand, InventoryRejection, Movement, ProductStock, RegisterProduct, Restock,
};
use shop_runtime::ports::{InventoryStore, Lock, LockError, StoreError};
use shop_runtime::saga::inventory::{InventoryError, InventoryService};
use shop_streams::Trace;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::json::{self, Body, reply};
use crate::openapi::{AdminProblems, ApiProblems};
use crate::problem::Problem;

/// Most movements one page lists.
const MAX_PAGE: u32 = 500;

type Inventory<S, L> = Arc<InventoryService<S, L>>;

pub fn router<S: InventoryStore, L: Lock>(inventory: Inventory<S, L>) -> Router {
    Router::new()
        .route("/api/products", post(register::<S, L>))
        .route("/api/products/{id}", get(read::<S, L>))
        .route("/api/products/{id}/restock", post(restock::<S, L>))
        .route("/api/products/{id}/adjust", post(adjust::<S, L>))
        .route("/api/products/{id}/price", put(price::<S, L>))
        .route("/api/products/{id}/movements", get(movements::<S, L>))
        .with_state(inventory)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    id: String,
    name: String,
    unit_price: i64,
    currency: String,
    stock: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestockBody {
    quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdjustBody {
    delta: i64,
    reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriceBody {
    unit_price: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    pub id: String,
    pub name: String,
    pub unit_price: i64,
    pub currency: String,
    pub available: i64,
    pub reserved: i64,
    pub deducted: i64,
    pub version: u64,
}

impl From<ProductStock> for ProductView {
    fn from(p: ProductStock) -> Self {
        Self {
            id: p.product_id,
            name: p.name,
            unit_price: p.unit_price,
            currency: p.currency,
            available: p.available,
            reserved: p.reserved,
            deducted: p.deducted,
            version: p.version,
        }
    }
}

async fn run<S: InventoryStore, L: Lock>(
    inventory: &InventoryService<S, L>,
    caller: &Caller,
    product_id: &str,
    command: InventoryCommand,
) -> Result<ProductView, Problem> {
    caller.require(&[Role::Admin])?;
    inventory
        .admin(command, Trace::root(Uuid::now_v7()))
        .await
        .map_err(inventory_problem)?;
    current(inventory, product_id).await
}

async fn current<S: InventoryStore, L: Lock>(
    inventory: &InventoryService<S, L>,
    product_id: &str,
) -> Result<ProductView, Problem> {
    inventory
        .product(product_id)
        .await
        .map_err(inventory_problem)?
        .map(ProductView::from)
        .ok_or_else(|| Problem::not_found(format!("no product {product_id}")))
}

/// Registers a product with its initial stock (admin).
#[utoipa::path(
    post, path = "/api/products", tag = "products",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered", body = ProductView),
        (status = 409, description = "The id is taken", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn register<S: InventoryStore, L: Lock>(
    State(inventory): State<Inventory<S, L>>,
    caller: Caller,
    Body(body): Body<RegisterBody>,
) -> Result<Response, Problem> {
    let id = body.id.clone();
    let command = InventoryCommand::RegisterProduct(RegisterProduct {
        product_id: body.id,
        name: body.name,
        unit_price: body.unit_price,
        currency: body.currency,
        initial_stock: body.stock,
    });
    let product = run(&inventory, &caller, &id, command).await?;
    let mut response = reply(StatusCode::CREATED, &product);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/products/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A product with its stock: available, reserved and deducted units.
#[utoipa::path(
    get, path = "/api/products/{id}", tag = "products",
    params(("id" = String, Path, description = "The product id")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn read<S: InventoryStore, L: Lock>(
    State(inventory): State<Inventory<S, L>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(reply(StatusCode::OK, &current(&inventory, &id).await?))
}

/// Adds delivered units (admin).
#[utoipa::path(
    post, path = "/api/products/{id}/restock", tag = "products",
    request_body = RestockBody,
    params(("id" = String, Path, description = "The product id")),
    responses(
        (status = 200, description = "Restocked", body = ProductView),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn restock<S: InventoryStore, L: Lock>(
    State(inventory): State<Inventory<S, L>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RestockBody>,
) -> Result<Response, Problem> {
    let command = InventoryCommand::Restock(Restock {
        product_id: id.clone(),
        quantity: body.quantity,
    });
    Ok(reply(StatusCode::OK, &run(&inventory, &caller, &id, command).await?))
}

/// Corrects the available units up or down, with a reason (admin).
#[utoipa::path(
    post, path = "/api/products/{id}/adjust", tag = "products",
    request_body = AdjustBody,
    params(("id" = String, Path, description = "The product id")),
    responses(
        (status = 200, description = "Adjusted", body = ProductView),
        (status = 409, description = "Stock would go negative", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn adjust<S: InventoryStore, L: Lock>(
    State(inventory): State<Inventory<S, L>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<AdjustBody>,
) -> Result<Response, Problem> {
    let command = InventoryCommand::Adjust(Adjust {
        product_id: id.clone(),
        delta: body.delta,
        reason: body.reason,
    });
    Ok(reply(StatusCode::OK, &run(&inventory, &caller, &id, command).await?))
}

/// Changes the price new orders pay (admin).
#[utoipa::path(
    put, path = "/api/products/{id}/price", tag = "products",
    request_body = PriceBody,
    params(("id" = String, Path, description = "The product id")),
    responses(
        (status = 200, description = "Repriced", body = ProductView),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn price<S: InventoryStore, L: Lock>(
    State(inventory): State<Inventory<S, L>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PriceBody>,
) -> Result<Response, Problem> {
    let command = InventoryCommand::ChangePrice(ChangePrice {
        product_id: id.clone(),
        unit_price: body.unit_price,
    });
    Ok(reply(StatusCode::OK, &run(&inventory, &caller, &id, command).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// The `next` of the previous page.
    after: Option<u64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MovementView {
    kind: String,
    quantity: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    at: i64,
}

impl From<Movement> for MovementView {
    fn from(m: Movement) -> Self {
        Self {
            kind: m.kind.as_str().to_owned(),
            quantity: m.quantity,
            order_id: m.order_id,
            reason: m.reason,
            at: m.at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MovementPage {
    items: Vec<MovementView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// The product's audit trail, oldest first (admin).
#[utoipa::path(
    get, path = "/api/products/{id}/movements", tag = "products",
    params(("id" = String, Path, description = "The product id"), PageQuery),
    responses(
        (status = 200, description = "A page of movements", body = MovementPage),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn movements<S: InventoryStore, L: Lock>(
    State(inventory): State<Inventory<S, L>>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Admin])?;
    let query = json::query(query)?;
    let limit = json::page_limit(query.limit, 100, MAX_PAGE)?;
    current(&inventory, &id).await?;
    let found = inventory
        .movements(&id, query.after.unwrap_or(0), limit)
        .await
        .map_err(inventory_problem)?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|(seq, _)| *seq))
        .flatten();
    let page = MovementPage {
        items: found.into_iter().map(|(_, m)| MovementView::from(m)).collect(),
        next,
    };
    Ok(reply(StatusCode::OK, &page))
}

fn inventory_problem(error: InventoryError) -> Problem {
    match error {
        InventoryError::Rejected(rejection) => {
            let detail = rejection.to_string();
            match rejection {
                InventoryRejection::InvalidField(e) => Problem::invalid(e.field, detail),
                InventoryRejection::ProductExists(_) => Problem::conflict(detail).field("id"),
                InventoryRejection::UnknownProduct(_) => Problem::not_found(detail),
                InventoryRejection::QuantityTooLarge(_) => Problem::invalid("quantity", detail),
                InventoryRejection::WouldGoNegative(_) => Problem::conflict(detail).field("delta"),
                other => Problem::conflict(other.to_string()),
            }
        }
        // Causes are logged with the request's id, never sent.
        InventoryError::Store(StoreError::Unavailable(why)) => {
            tracing::warn!(target: "shop::api", %why, "inventory store unavailable");
            Problem::unavailable("the inventory store is unavailable; try again")
        }
        InventoryError::Store(StoreError::Refused(why)) => {
            tracing::info!(target: "shop::api", %why, "the inventory store refused a change");
            Problem::conflict("the inventory store refused the change; nothing was written")
        }
        InventoryError::Store(StoreError::Conflict(what)) => {
            Problem::conflict(format!("{what} changed concurrently; try again"))
        }
        InventoryError::Lock(LockError::Busy(what)) => {
            Problem::unavailable(format!("{what} is busy; try again")).retry_after(1)
        }
        InventoryError::Lock(LockError::Unavailable(why)) => {
            tracing::warn!(target: "shop::api", %why, "lock service unavailable");
            Problem::unavailable("the lock service is unavailable; try again")
        }
        other => Problem::internal(other),
    }
}
