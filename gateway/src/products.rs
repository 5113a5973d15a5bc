//! `/api/products`: the catalogue and its stock, administered by admins.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use shop_rules::inventory::{
    Adjust, ChangePrice, InventoryCommand, InventoryRejection, MAX_STOCK, ProductStock, RegisterProduct, Restock,
};
use shop_runtime::ports::{LockError, MovementEntry, StoreError};
use shop_runtime::saga::inventory::InventoryError;
use shop_runtime::saga::use_cases::InventoryUseCases;
use shop_streams::Trace;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, CallerRole};
use crate::conditional;
use crate::edge::{RequestId, RequestTrace};
use crate::json::{self, Body, reply};
use crate::openapi::{AdminProblems, ApiProblems, BodyProblems};
use crate::problem::Problem;

/// Most movements one page lists.
const MAX_PAGE: u32 = 500;

/// Most products one page lists.
const MAX_PRODUCTS_PAGE: u32 = 100;

pub fn router<I: InventoryUseCases>(inventory: Arc<I>) -> Router {
    Router::new()
        .route("/api/products", post(register::<I>).get(list::<I>))
        .route("/api/products/{id}", get(read::<I>))
        .route("/api/products/{id}/restock", post(restock::<I>))
        .route("/api/products/{id}/adjust", post(adjust::<I>))
        .route("/api/products/{id}/price", put(price::<I>))
        .route("/api/products/{id}/movements", get(movements::<I>))
        .with_state(inventory)
}

// The limits in the schemas below are the built-in rule book's
// (`shop_rules::common`, `shop_rules::inventory`); a test in openapi.rs
// keeps them equal. Text must hold a character that is not Unicode
// White_Space, which is what the rules' `trim()` leaves, and no NUL, which
// the rules refuse.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", example = "SKU-1")]
    id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        example = "Mug"
    )]
    name: String,
    /// In minor units of `currency`.
    #[serde(deserialize_with = "json::whole")]
    #[schema(minimum = 0, maximum = 1000000000000000i64, example = 12000)]
    unit_price: i64,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "KRW")]
    currency: String,
    #[serde(deserialize_with = "json::whole")]
    #[schema(minimum = 0, maximum = 1000000000, example = 100)]
    stock: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestockBody {
    #[serde(deserialize_with = "json::whole")]
    #[schema(minimum = 1, maximum = 1000000000)]
    quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdjustBody {
    /// Units to add (positive) or take away (negative); never 0.
    #[serde(deserialize_with = "json::whole")]
    #[schema(schema_with = delta_schema)]
    delta: i64,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    reason: String,
}

/// `delta`: a non-zero whole number of at most `MAX_STOCK` units either way.
fn delta_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
    let range = |low: i64, high: i64| {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(low))
            .maximum(Some(high))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(range(-MAX_STOCK, -1))
            .item(range(1, MAX_STOCK))
            .description(Some("Units to add (positive) or take away (negative); never 0."))
            .build(),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriceBody {
    #[serde(deserialize_with = "json::whole")]
    #[schema(minimum = 0, maximum = 1000000000000000i64)]
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

async fn run<I: InventoryUseCases>(
    inventory: &I,
    caller: &Caller,
    product_id: &str,
    command: InventoryCommand,
    conditions: Option<&HeaderMap>,
    (trace, request_id): (Trace, &str),
) -> Result<ProductView, Problem> {
    caller.require(&[CallerRole::Admin])?;
    let expected = conditions.map(conditional::if_match).transpose()?.flatten();
    inventory
        .admin(command, expected, trace, &caller.actor(request_id))
        .await
        .map_err(inventory_problem)?;
    current(inventory, product_id).await
}

/// A change's answer: the product as it now stands, tagged with its version.
fn changed(product: &ProductView) -> Response {
    conditional::tagged(
        reply(StatusCode::OK, product),
        &conditional::version_tag(product.version),
    )
}

async fn current<I: InventoryUseCases>(inventory: &I, product_id: &str) -> Result<ProductView, Problem> {
    inventory
        .product(product_id)
        .await
        .map_err(inventory_problem)?
        .map(ProductView::from)
        .ok_or_else(|| Problem::not_found(format!("no product {product_id}")))
}

/// Registers a product with its initial stock (admin).
#[utoipa::path(
    operation_id = "registerProduct", post, path = "/api/products", tag = "products",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered", body = ProductView),
        (status = 409, description = "The id is taken", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        BodyProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn register<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    RequestId(request_id): RequestId,
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
    let product = run(inventory.as_ref(), &caller, &id, command, None, (trace, &request_id)).await?;
    let mut response = reply(StatusCode::CREATED, &product);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/products/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A product with its stock: available, reserved and deducted units.
#[utoipa::path(
    operation_id = "readProduct", get, path = "/api/products/{id}", tag = "products",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The product id"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "The `ETag` the client holds: 304 while it is current")),
    responses(
        (status = 200, description = "The product; `ETag` is its version", body = ProductView,
            headers(("ETag" = String, description = "The product's version, quoted"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Not modified: `If-None-Match` names the current version"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn read<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    _caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let product = current(inventory.as_ref(), &id).await?;
    let tag = conditional::version_tag(product.version);
    Ok(conditional::reply_tagged(&headers, Some(tag), &product))
}

/// Adds delivered units (admin).
#[utoipa::path(
    operation_id = "restockProduct", post, path = "/api/products/{id}/restock", tag = "products",
    request_body = RestockBody,
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The product id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|"[0-9]{1,19}")?$"#, description = "Apply only at this version of the product (its `ETag`, a number in quotes); 412 when it moved")),
    responses(
        (status = 200, description = "Restocked", body = ProductView),
        (status = 409, description = "The product would hold more than 1,000,000,000 units", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names a version the product is no longer at", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        BodyProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn restock<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<RestockBody>,
) -> Result<Response, Problem> {
    let command = InventoryCommand::Restock(Restock {
        product_id: id.clone(),
        quantity: body.quantity,
    });
    Ok(changed(
        &run(
            inventory.as_ref(),
            &caller,
            &id,
            command,
            Some(&headers),
            (trace, &request_id),
        )
        .await?,
    ))
}

/// Corrects the available units up or down, with a reason (admin).
#[utoipa::path(
    operation_id = "adjustStock", post, path = "/api/products/{id}/adjust", tag = "products",
    request_body = AdjustBody,
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The product id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|"[0-9]{1,19}")?$"#, description = "Apply only at this version of the product (its `ETag`, a number in quotes); 412 when it moved")),
    responses(
        (status = 200, description = "Adjusted", body = ProductView),
        (status = 409, description = "Stock would go negative, or the product would hold more than 1,000,000,000 units", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names a version the product is no longer at", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        BodyProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn adjust<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<AdjustBody>,
) -> Result<Response, Problem> {
    let command = InventoryCommand::Adjust(Adjust {
        product_id: id.clone(),
        delta: body.delta,
        reason: body.reason,
    });
    Ok(changed(
        &run(
            inventory.as_ref(),
            &caller,
            &id,
            command,
            Some(&headers),
            (trace, &request_id),
        )
        .await?,
    ))
}

/// Changes the price new orders pay (admin).
#[utoipa::path(
    operation_id = "changePrice", put, path = "/api/products/{id}/price", tag = "products",
    request_body = PriceBody,
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The product id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|"[0-9]{1,19}")?$"#, description = "Apply only at this version of the product (its `ETag`, a number in quotes); 412 when it moved")),
    responses(
        (status = 200, description = "Repriced", body = ProductView),
        (status = 412, description = "`If-Match` names a version the product is no longer at", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        BodyProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn price<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<PriceBody>,
) -> Result<Response, Problem> {
    let command = InventoryCommand::ChangePrice(ChangePrice {
        product_id: id.clone(),
        unit_price: body.unit_price,
    });
    Ok(changed(
        &run(
            inventory.as_ref(),
            &caller,
            &id,
            command,
            Some(&headers),
            (trace, &request_id),
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// The `next` of the previous page.
    #[param(nullable = false, minimum = 0, maximum = 9223372036854775807i64)]
    after: Option<u64>,
    /// Movements per page (default 100).
    #[param(nullable = false, minimum = 1, maximum = 500)]
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
    /// Who caused it: an admin's token subject, or the saga step
    /// (`saga:reserve`, ...); absent on movements older than the audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    /// The request that caused it: the admin's `X-Request-Id`, or for a
    /// saga step the correlation id of the order's request.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl From<MovementEntry> for MovementView {
    fn from(entry: MovementEntry) -> Self {
        let m = entry.movement;
        Self {
            kind: m.kind.as_str().to_owned(),
            quantity: m.quantity,
            order_id: m.order_id,
            reason: m.reason,
            at: m.at,
            actor: entry.actor,
            request_id: entry.request_id,
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
    operation_id = "listMovements", get, path = "/api/products/{id}/movements", tag = "products",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The product id"), PageQuery),
    responses(
        (status = 200, description = "A page of movements", body = MovementPage),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn movements<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Admin])?;
    let query = json::query(query)?;
    let limit = json::page_limit(query.limit, 100, MAX_PAGE)?;
    if query.after.is_some_and(|after| after > i64::MAX as u64) {
        return Err(Problem::invalid("after", "after must be the `next` of a previous page"));
    }
    current(inventory.as_ref(), &id).await?;
    let found = inventory
        .movements(&id, query.after.unwrap_or(0), limit)
        .await
        .map_err(inventory_problem)?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|m| m.seq))
        .flatten();
    let page = MovementPage {
        items: found.into_iter().map(MovementView::from).collect(),
        next,
    };
    Ok(reply(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProductQuery {
    /// The `next` of the previous page: products with ids after it.
    #[param(nullable = false, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    after: Option<String>,
    /// Products per page (default 20).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only products whose id or name contains this text, ignoring ASCII case.
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    q: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductPage {
    items: Vec<ProductView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Products in id order, a page at a time; `q` searches ids and names.
#[utoipa::path(
    operation_id = "listProducts", get, path = "/api/products", tag = "products",
    params(ProductQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 422, description = "`limit`, `after` or `q` out of range; `field` names it", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list<I: InventoryUseCases>(
    State(inventory): State<Arc<I>>,
    _caller: Caller,
    query: Result<Query<ProductQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let query = json::query(query)?;
    let limit = json::page_limit(query.limit, 20, MAX_PRODUCTS_PAGE)?;
    if query
        .after
        .as_deref()
        .is_some_and(|after| shop_rules::common::check_id("after", after).is_err())
    {
        return Err(Problem::invalid("after", "after must be the `next` of a previous page"));
    }
    json::filter_text("q", query.q.as_deref())?;
    let found = inventory
        .products(query.after.as_deref(), query.q.as_deref(), limit)
        .await
        .map_err(inventory_problem)?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|p| p.product_id.clone()))
        .flatten();
    let page = ProductPage {
        items: found.into_iter().map(ProductView::from).collect(),
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
                // Too many for the product as it stands, not a bad field: a conflict, like going below zero.
                InventoryRejection::QuantityTooLarge(_) => Problem::conflict(detail),
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
        InventoryError::VersionMoved {
            product,
            expected,
            current,
        } => conditional::precondition_failed(format!(
            "product {product} is at version {current}, not {expected}: read it again"
        )),
        InventoryError::Lock(LockError::Unavailable(why)) => {
            tracing::warn!(target: "shop::api", %why, "lock service unavailable");
            Problem::unavailable("the lock service is unavailable; try again")
        }
        other => Problem::internal(other),
    }
}
