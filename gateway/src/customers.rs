//! `/api/customers/{id}`: a customer's data, exported or erased (GDPR
//! access and erasure), by that customer or an admin.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use shop_runtime::saga::use_cases::OrderUseCases;
use utoipa::ToSchema;

use crate::audit::AuditEntryView;
use crate::auth::{Caller, CallerRole};
use crate::edge::RequestId;
use crate::json::reply;
use crate::openapi::ApiProblems;
use crate::orders::{OrderView, order_problem};
use crate::problem::Problem;

pub fn router<O: OrderUseCases>(orders: Arc<O>) -> Router {
    Router::new()
        .route("/api/customers/{id}", axum::routing::delete(erase::<O>))
        .route("/api/customers/{id}/export", get(export::<O>))
        .with_state(orders)
}

/// Everything the shop keeps about one customer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CustomerExport {
    customer_id: String,
    /// Milliseconds since the Unix epoch.
    exported_at: i64,
    /// Every order of theirs, newest first, with its delivery details (or
    /// `delivery_erased`).
    orders: Vec<OrderView>,
    /// Every audit entry naming them as actor or target, oldest first.
    audit: Vec<AuditEntryView>,
}

/// The customer themself or an admin; anyone else is refused. An id no
/// customer can have is a bad request.
fn allowed(caller: &Caller, customer_id: &str) -> Result<(), Problem> {
    if let Err(invalid) = shop_rules::common::check_id("id", customer_id) {
        return Err(Problem::bad_request(invalid.to_string()).field("id"));
    }
    caller.require(&[CallerRole::Customer, CallerRole::Admin])?;
    if caller.role == CallerRole::Customer && caller.subject != customer_id {
        return Err(Problem::forbidden("a customer may export or erase only their own data"));
    }
    Ok(())
}

/// A customer's data as one document: every order with its delivery
/// details, and the audit entries about them.
#[utoipa::path(
    operation_id = "exportCustomer", get, path = "/api/customers/{id}/export", tag = "customers",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The customer id (the token subject)")),
    responses(
        (status = 200, description = "The customer's data", body = CustomerExport),
        (status = 400, description = "Not a customer id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither that customer nor an admin", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn export<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    allowed(&caller, &id)?;
    let data = orders.export(&id).await.map_err(order_problem)?;
    let export = CustomerExport {
        customer_id: id,
        exported_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        orders: data.orders.into_iter().map(OrderView::of_record).collect(),
        audit: data.audit.into_iter().map(AuditEntryView::from).collect(),
    };
    Ok(reply(StatusCode::OK, &export))
}

/// Erases a customer's personal data: their data key is destroyed, so the
/// delivery details of every order of theirs read back as erased
/// everywhere. Orders, items, amounts and the stock history stay.
/// Idempotent.
#[utoipa::path(
    operation_id = "eraseCustomer", delete, path = "/api/customers/{id}", tag = "customers",
    params(("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", description = "The customer id (the token subject)")),
    responses(
        (status = 204, description = "Erased (or nothing was left to erase)"),
        (status = 400, description = "Not a customer id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither that customer nor an admin", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn erase<O: OrderUseCases>(
    State(orders): State<Arc<O>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    allowed(&caller, &id)?;
    let destroyed = orders
        .erase_customer(&id, &caller.actor(&request_id))
        .await
        .map_err(order_problem)?;
    tracing::info!(target: "shop::customers", customer_id = %id, by = %caller.subject, destroyed, "customer data erased");
    Ok(StatusCode::NO_CONTENT.into_response())
}
