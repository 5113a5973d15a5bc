//! `/api/orders`: intake, reading, cancelling and completing orders.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use shop_rules::order::{CancelReason, LineRequest, Order, OrderRejection, OrderStatus};
use shop_runtime::customer_data::{Delivery, DeliveryRead};
use shop_runtime::ports::{OrderCursor, OrderQuery, StoreError};
use shop_runtime::saga::orders::{NewOrder, OrderError, OrderRecord};
use shop_runtime::saga::use_cases::OrderUseCases;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, CallerRole};
use crate::conditional;
use crate::edge::{RequestId, RequestTrace};
use crate::expand::{self, Catalog, Expand, LineProduct, ProductsPart, ReadQuery};
use crate::json::{self, Body, reply};
use crate::openapi::{ApiProblems, BodyProblems};
use crate::problem::Problem;

/// Longest `Idempotency-Key` accepted (visible ASCII, no spaces).
const MAX_KEY_LEN: usize = 255;
/// Most orders one page lists.
const MAX_PAGE: u32 = 100;
/// Idempotency keys map to order ids in this UUIDv5 namespace.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_1a7e_0b8d_4c7a_9e51_2d4f_6a3b_8c90);

pub fn router<O: OrderUseCases>(orders: Arc<O>) -> Router {
    Router::new()
        .route("/api/orders", post(place::<O>).get(list::<O>))
        .route("/api/orders/{id}", get(read::<O>))
        .route("/api/orders/{id}/cancel", post(cancel::<O>))
        .route("/api/orders/{id}/complete", post(complete::<O>))
        .with_state(orders)
}

// The limits in the schemas below are the built-in rule book's
// (`shop_rules::common`, `shop_rules::order`); a test in openapi.rs keeps
// them equal.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaceBody {
    /// One line per product; a product may appear once.
    #[serde(deserialize_with = "json::objects")]
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<ItemBody>,
    /// Where it goes; stored encrypted, shown to the customer and admins.
    /// Absent or `null`: none.
    #[serde(default, deserialize_with = "json::optional_object")]
    delivery: Option<DeliveryBody>,
}

/// Delivery details: each field 1 to 200 characters, no control characters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryBody {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
        example = "Kim Minji"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
        example = "+82 10 1234 5678"
    )]
    pub phone: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
        example = "1 Sejong-daero, Seoul"
    )]
    pub address: String,
}

impl From<DeliveryBody> for Delivery {
    fn from(body: DeliveryBody) -> Self {
        Self {
            name: body.name,
            phone: body.phone,
            address: body.address,
        }
    }
}

impl From<Delivery> for DeliveryBody {
    fn from(delivery: Delivery) -> Self {
        Self {
            name: delivery.name,
            phone: delivery.phone,
            address: delivery.address,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemBody {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", example = "SKU-1")]
    product_id: String,
    #[serde(deserialize_with = "json::whole")]
    #[schema(minimum = 1, maximum = 10000, example = 2)]
    quantity: i64,
}

// Deserialize: the gateway role reads an order instance's answer to expand it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    pub items: Vec<ItemView>,
    pub total: i64,
    pub currency: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// With `?expand=products`: whether the lines carry their products.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<ProductsPart>,
    /// The delivery details, to the customer and admins; `null` when the
    /// order has none, they were erased, or the caller may not see them.
    #[serde(default)]
    pub delivery: Option<DeliveryBody>,
    /// Present and `true` once the customer's data was erased.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delivery_erased: bool,
    /// The rules that let the order in: the order rules, then each policy,
    /// as its `OrderCreated` event names them. Absent where not read (lists)
    /// and on orders placed before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<RuleStamp>,
}

/// One rule component that decided an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleStamp {
    #[schema(example = "purchase-limit")]
    pub name: String,
    /// Its version in the deployment's rule store; 0 when not published
    /// (built in, or read from a rules directory).
    pub version: u32,
    /// The SHA-256 of the component, hex.
    pub hash: String,
}

impl OrderView {
    /// The order with its delivery details as they read now.
    pub(crate) fn of_record(record: OrderRecord) -> Self {
        let mut view = Self::from(&record.order);
        match record.delivery {
            Some(DeliveryRead::Clear(delivery)) => view.delivery = Some(delivery.into()),
            Some(DeliveryRead::Erased) => view.delivery_erased = true,
            None => {}
        }
        view.policy = record
            .policy
            .into_iter()
            .map(|rule| RuleStamp {
                name: rule.name,
                version: rule.version,
                hash: rule.hash,
            })
            .collect();
        view
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: i64,
    /// With `?expand=products`: the product as the inventory sees it now
    /// (absent when the inventory did not answer or knows no such product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<LineProduct>,
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        Self {
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            status: order.status.as_str().to_owned(),
            items: order
                .lines
                .iter()
                .map(|l| ItemView {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    product: None,
                })
                .collect(),
            total: order.total(),
            currency: order.currency.clone(),
            created_at: order.created_at,
            confirmed_at: order.confirmed_at,
            cancel_reason: order.cancel_reason.as_ref().map(|r| r.as_str().to_owned()),
            products: None,
            delivery: None,
            delivery_erased: false,
            policy: Vec::new(),
        }
    }
}

/// The order id for an intake: derived from the caller and their
/// `Idempotency-Key` (so a retry names the same order), or fresh.
fn order_id(caller: &Caller, headers: &HeaderMap) -> Result<String, Problem> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(Uuid::now_v7().to_string());
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
            .field("Idempotency-Key")
        })?;
    let name = format!("{}\n{key}", caller.subject);
    Ok(Uuid::new_v5(&KEY_NAMESPACE, name.as_bytes()).to_string())
}

/// Places an order for the caller (a customer). Nothing is reserved yet:
/// the order is `PENDING` until the inventory answers through the saga.
#[utoipa::path(
    operation_id = "placeOrder", post, path = "/api/orders", tag = "orders",
    request_body = PlaceBody,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
            description = "Makes retries safe: the same key and body return the first order")),
    responses(
        (status = 202, description = "Accepted and stored with its event", body = OrderView),
        (status = 403, description = "Not a customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable (`field` names it), a product is unknown or listed twice, \
                                     currencies are mixed, the total is too large, a policy refuses, or the key was used for another order",
         body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn place<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    headers: HeaderMap,
    Body(body): Body<PlaceBody>,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Customer])?;
    let order_id = order_id(&caller, &headers)?;
    let delivery: Option<Delivery> = body.delivery.map(Delivery::from);
    let new = NewOrder {
        order_id,
        customer_id: caller.subject,
        lines: body
            .items
            .into_iter()
            .map(|item| LineRequest {
                product_id: item.product_id,
                quantity: item.quantity,
            })
            .collect(),
        delivery: delivery.clone(),
    };
    let order = orders.place_once(new, trace).await.map_err(order_problem)?;
    let mut view = OrderView::from(&order);
    view.delivery = delivery.map(DeliveryBody::from);
    let mut response = reply(StatusCode::ACCEPTED, &view);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The order, if the caller may see it: customers see their own only, and
/// someone else's order is as absent to them as one that does not exist.
async fn visible<O: OrderUseCases>(orders: &O, caller: &Caller, id: &str) -> Result<Order, Problem> {
    let order = orders.get(id).await.map_err(order_problem)?;
    match order {
        Some(order) if may_see(caller, &order) => Ok(order),
        _ => Err(Problem::not_found(format!("no order {id}"))),
    }
}

fn may_see(caller: &Caller, order: &Order) -> bool {
    caller.role != CallerRole::Customer || order.customer_id == caller.subject
}

/// The order as [`visible`] finds it, with its delivery details for the
/// customer and admins (payment sees none).
async fn visible_record<O: OrderUseCases>(orders: &O, caller: &Caller, id: &str) -> Result<OrderView, Problem> {
    if caller.role == CallerRole::Payment {
        return Ok(OrderView::from(&visible(orders, caller, id).await?));
    }
    match orders.record(id).await.map_err(order_problem)? {
        Some(record) if may_see(caller, &record.order) => Ok(OrderView::of_record(record)),
        _ => Err(Problem::not_found(format!("no order {id}"))),
    }
}

/// One order: the caller's own, or any for admin and payment.
#[utoipa::path(
    operation_id = "readOrder", get, path = "/api/orders/{id}", tag = "orders",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The order id"),
        ReadQuery,
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "The `ETag` the client holds: 304 while it is current")),
    responses(
        (status = 200, description = "The order; `ETag` changes whenever it does. With `expand=products` each line \
                                     also carries its product's current name and availability, and `products` says whether \
                                     the inventory answered (`unavailable`: the order alone)", body = OrderView,
            headers(("ETag" = String, description = "A digest of this representation, quoted"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Not modified: `If-None-Match` names the current `ETag`"),
        (status = 404, description = "No such order (or not the caller's)", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn read<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
    catalog: Option<Extension<Catalog>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let query = json::query(query)?;
    let mut view = visible_record(orders.as_ref(), &caller, &id).await?;
    if query.expand == Some(Expand::Products) {
        // An order instance without the inventory context cannot see products.
        let found = match catalog {
            Some(Extension(catalog)) => catalog.look_up(&view).await,
            None => Err(expand::Unavailable),
        };
        expand::compose(&mut view, found);
    }
    Ok(conditional::reply_tagged(&headers, None, &view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only orders in this status.
    #[param(value_type = Option<StatusName>, inline, nullable = false)]
    status: Option<String>,
    /// Orders per page (default 20).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next` of the previous page.
    #[param(nullable = false, pattern = "^[0-9]{1,18}_[A-Za-z0-9._:-]{1,64}$")]
    after: Option<String>,
}

/// An order's status, as the API writes it.
#[derive(ToSchema)]
#[allow(clippy::upper_case_acronyms, dead_code)]
enum StatusName {
    PENDING,
    CONFIRMED,
    COMPLETED,
    CANCELLED,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrderPage {
    items: Vec<OrderView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The caller's orders, newest first.
#[utoipa::path(
    operation_id = "listOrders", get, path = "/api/orders", tag = "orders",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 422, description = "A bad status, limit or cursor", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let query = json::query(query)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(parse_status(text)?),
    };
    let limit = json::page_limit(query.limit, 20, MAX_PAGE)?;
    let after = query.after.as_deref().map(parse_cursor).transpose()?;
    let found = orders
        .customer_orders(OrderQuery {
            customer_id: &caller.subject,
            status,
            after: after.as_ref(),
            limit,
        })
        .await
        .map_err(order_problem)?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|o| format!("{}_{}", o.created_at, o.id)))
        .flatten();
    let page = OrderPage {
        items: found.iter().map(OrderView::from).collect(),
        next,
    };
    Ok(reply(StatusCode::OK, &page))
}

/// Exactly as the API writes statuses, so the document's enum is the whole truth.
fn parse_status(text: &str) -> Result<OrderStatus, Problem> {
    OrderStatus::ALL
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| Problem::invalid("status", "status must be PENDING, CONFIRMED, COMPLETED or CANCELLED"))
}

/// `{created_at}_{order_id}` as `list` writes it: 1 to 18 digits (always an
/// i64), an underscore, an order id.
fn parse_cursor(text: &str) -> Result<OrderCursor, Problem> {
    let bad = || Problem::invalid("after", "after must be the `next` of a previous page");
    let (created_at, order_id) = text.split_once('_').ok_or_else(bad)?;
    let digits = (1..=18).contains(&created_at.len()) && created_at.bytes().all(|b| b.is_ascii_digit());
    if !digits || shop_rules::common::check_id("after", order_id).is_err() {
        return Err(bad());
    }
    Ok(OrderCursor {
        created_at: created_at.parse().map_err(|_| bad())?,
        order_id: order_id.to_owned(),
    })
}

/// Cancels an order that is still `PENDING` (its owner, or an admin).
#[utoipa::path(
    operation_id = "cancelOrder", post, path = "/api/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The order id")),
    responses(
        (status = 200, description = "Cancelled", body = OrderView),
        (status = 404, description = "No such order (or not the caller's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No longer cancellable", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Customer, CallerRole::Admin])?;
    // Customers cancel only their own orders. The service checks that on
    // the order it reads to cancel (no read of its own here), and someone
    // else's order is a 404, as `visible` makes it.
    let (reason, owner) = if caller.role == CallerRole::Admin {
        (CancelReason::Admin, None)
    } else {
        (CancelReason::Customer, Some(caller.subject.as_str()))
    };
    let order = orders
        .cancel(&id, reason, &caller.actor(&request_id), owner, trace)
        .await
        .map_err(order_problem)?;
    Ok(reply(StatusCode::OK, &OrderView::from(&order)))
}

/// Payment confirmed: a `CONFIRMED` order becomes `COMPLETED` and its stock is deducted.
#[utoipa::path(
    operation_id = "completeOrder", post, path = "/api/orders/{id}/complete", tag = "orders",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The order id")),
    responses(
        (status = 200, description = "Completed", body = OrderView),
        (status = 403, description = "Not payment or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not confirmed (still pending, cancelled or expired)", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn complete<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    RequestTrace(trace): RequestTrace,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Payment, CallerRole::Admin])?;
    let order = orders
        .complete(&id, &caller.actor(&request_id), trace)
        .await
        .map_err(order_problem)?;
    Ok(reply(StatusCode::OK, &OrderView::from(&order)))
}

/// The field of the request an order rejection is about.
pub(crate) fn order_problem(error: OrderError) -> Problem {
    let item = |index: u32, field: &str| format!("items[{index}].{field}");
    match error {
        OrderError::Rejected(rejection) => {
            let detail = rejection.to_string();
            match rejection {
                OrderRejection::InvalidField(e) => Problem::invalid(api_field(&e.field), detail),
                OrderRejection::NoLines | OrderRejection::TooManyLines(_) | OrderRejection::TotalTooLarge => {
                    Problem::invalid("items", detail)
                }
                OrderRejection::NonPositiveQuantity(l) | OrderRejection::QuantityTooLarge(l) => {
                    Problem::invalid(item(l.index, "quantity"), detail)
                }
                OrderRejection::DuplicateLine(l)
                | OrderRejection::UnknownProduct(l)
                | OrderRejection::MixedCurrencies(l) => Problem::invalid(item(l.index, "product_id"), detail),
                OrderRejection::NotFound => Problem::not_found(detail),
                OrderRejection::AlreadyExists
                | OrderRejection::InvalidTransition(_)
                | OrderRejection::NotCancellable(_)
                | OrderRejection::NotExpiredYet(_) => Problem::conflict(detail),
            }
        }
        OrderError::Policy(violation) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("policy/{}", violation.policy),
            format!("refused by policy {}: {}", violation.policy, violation.message),
        )
        .field("items"),
        OrderError::NotFound(id) => Problem::not_found(format!("no order {id}")),
        OrderError::KeyReused(_) => Problem::invalid(
            "Idempotency-Key",
            "this Idempotency-Key was used before for another order; use a new key for a new order",
        ),
        OrderError::Overloaded(overloaded) => {
            Problem::unavailable(overloaded.to_string()).retry_after(overloaded.retry_after.as_secs().max(1))
        }
        // The cause is logged with the request's id, never sent.
        OrderError::Store(StoreError::Unavailable(why)) => {
            tracing::warn!(target: "shop::api", %why, "order store unavailable");
            Problem::unavailable("the order store is unavailable; try again")
        }
        OrderError::Store(StoreError::Refused(why)) => {
            tracing::info!(target: "shop::api", %why, "the order store refused a value");
            Problem::bad_request("the request holds a value the order store cannot take")
        }
        OrderError::Store(StoreError::Conflict(what)) => {
            Problem::conflict(format!("{what} changed concurrently; try again"))
        }
        OrderError::InvalidDelivery(invalid) => Problem::bad_request(invalid.to_string()).field(invalid.field),
        other => Problem::internal(other),
    }
}

/// Domain field names as the API calls them.
fn api_field(field: &str) -> String {
    match field {
        "customer_id" => "token.sub".to_owned(),
        "lines" => "items".to_owned(),
        other => other.replace("lines[", "items["),
    }
}
