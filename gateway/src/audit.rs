//! `/api/audit`: the audit log, read by admins, filtered and paged by
//! entry number.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use shop_runtime::audit::AuditEntry;
use shop_runtime::ports::{AuditQuery, StoreError};
use shop_runtime::saga::use_cases::AuditUseCases;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, CallerRole};
use crate::json::{self, reply};
use crate::openapi::{AdminProblems, ApiProblems};
use crate::problem::Problem;

/// Most entries one page lists.
const MAX_PAGE: u32 = 500;

pub fn router<A: AuditUseCases>(audit: Arc<A>) -> Router {
    Router::new().route("/api/audit", get(list::<A>)).with_state(audit)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only entries by this actor: a token subject, `saga:reserve`, ...
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    actor: Option<String>,
    /// Only entries on this target: `product:SKU-1`, `customer:alice`, `rule:order`, ...
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    target: Option<String>,
    /// Only entries of this action: `stock.reserve`, `price.change`, `customer.erase`, ...
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]+$"
    )]
    action: Option<String>,
    /// The `next` of the previous page.
    #[param(nullable = false, minimum = 0, maximum = 9223372036854775807i64)]
    after: Option<u64>,
    /// Entries per page (default 100).
    #[param(nullable = false, minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// One entry of the chain.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEntryView {
    /// Its place in the chain, from 1.
    seq: u64,
    /// The context that wrote it: `inventory`, `order` or `rules`.
    context: String,
    /// Milliseconds since the Unix epoch.
    at: i64,
    actor: String,
    /// The actor's role: `admin`, `customer`, `saga`, `system`, ...
    role: String,
    action: String,
    target: String,
    /// The request that caused it: its `X-Request-Id`, or for a saga step
    /// the correlation id of the request that placed the order.
    request_id: String,
    /// What changed, as a JSON value.
    #[schema(value_type = Object)]
    detail: serde_json::Value,
    /// The hash of the entry before (64 zeros for the first).
    prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this entry's fields.
    hash: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        let r = entry.record;
        Self {
            seq: entry.seq,
            // Stored as the text that was hashed; shown as the JSON it is.
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::String(r.detail)),
            context: r.context,
            at: r.at,
            actor: r.actor,
            role: r.role,
            action: r.action,
            target: r.target,
            request_id: r.request_id,
            prev_hash: entry.prev_hash,
            hash: entry.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    items: Vec<AuditEntryView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// The audit log, oldest first: every stock change, price change, product
/// registration, erasure and rule change, with who did it through which
/// request (admin).
#[utoipa::path(
    operation_id = "listAudit", get, path = "/api/audit", tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditPage),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list<A: AuditUseCases>(
    State(audit): State<Arc<A>>,
    caller: Caller,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Admin])?;
    let params = json::query(query)?;
    let limit = json::page_limit(params.limit, 100, MAX_PAGE)?;
    if params.after.is_some_and(|after| after > i64::MAX as u64) {
        return Err(Problem::invalid("after", "after must be the `next` of a previous page"));
    }
    for (field, value) in [
        ("actor", &params.actor),
        ("target", &params.target),
        ("action", &params.action),
    ] {
        json::filter_text(field, value.as_deref())?;
    }
    let query = AuditQuery {
        actor: params.actor.as_deref(),
        target: params.target.as_deref(),
        action: params.action.as_deref(),
        after: params.after.unwrap_or(0),
        limit,
    };
    let found = audit.audit(query).await.map_err(audit_problem)?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|e| e.seq))
        .flatten();
    let page = AuditPage {
        items: found.into_iter().map(AuditEntryView::from).collect(),
        next,
    };
    Ok(reply(StatusCode::OK, &page))
}

fn audit_problem(error: StoreError) -> Problem {
    // The cause is logged with the request's id, never sent.
    tracing::warn!(target: "shop::api", %error, "audit log unavailable");
    Problem::unavailable("the audit log is unavailable; try again")
}
