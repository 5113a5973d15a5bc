//! `/api/rules`: the rule components the answering instance runs (so a
//! rollout can be watched converging), and publishing a new version for
//! the whole deployment (admin).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use shop_runtime::ports::RuleStoreError;
use shop_runtime::rules::{FleetError, ReleaseError, RuleMode};
use shop_runtime::saga::use_cases::RuleUseCases;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, CallerRole};
use crate::edge::RequestId;
use crate::json::{self, reply};
use crate::openapi::{AdminProblems, ApiProblems};
use crate::problem::Problem;

/// The largest component `POST /api/rules` takes.
pub const MAX_COMPONENT: usize = 16 << 20;

/// The header carrying a component's Ed25519 signature, hex, for hosts
/// that admit signed components only.
const SIGNATURE: &str = "shop-rule-signature";

pub(crate) struct RulesState<R> {
    rules: Arc<R>,
    instance: String,
}

pub fn router<R: RuleUseCases>(rules: Arc<R>, instance: String) -> Router {
    let state = Arc::new(RulesState { rules, instance });
    Router::new()
        .route("/api/rules", get(list::<R>).post(publish::<R>))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT))
        .with_state(state)
}

/// One component an instance runs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleView {
    name: String,
    /// The published version; 0 for one that was not published (built in,
    /// or read from `SHOP_RULES_DIR`).
    version: u32,
    /// Hex SHA-256 of the component.
    hash: String,
    /// `active` (it decides) or `shadow` (it answers beside the active
    /// version; its answers are compared, never acted on).
    mode: String,
    /// `order`, `inventory` or `policy`.
    role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RulesView {
    /// The instance that answered.
    instance: String,
    rules: Vec<RuleView>,
}

/// The rule components the answering instance runs, active and in shadow (admin).
#[utoipa::path(
    operation_id = "listRules", get, path = "/api/rules", tag = "rules",
    responses(
        (status = 200, description = "What this instance runs", body = RulesView),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list<R: RuleUseCases>(
    State(state): State<Arc<RulesState<R>>>,
    caller: Caller,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Admin])?;
    let rules = state
        .rules
        .running()
        .into_iter()
        .map(|c| RuleView {
            name: c.stamp.name.to_string(),
            version: c.stamp.version,
            hash: c.stamp.hash.to_string(),
            mode: c.mode.to_string(),
            role: c.role.to_string(),
        })
        .collect();
    let view = RulesView {
        instance: state.instance.clone(),
        rules,
    };
    Ok(reply(StatusCode::OK, &view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PublishParams {
    /// The rule's name: an `order` or `inventory` component replaces the
    /// built-in one of that name; a policy is added (or replaced) by name.
    #[param(nullable = false, min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")]
    name: String,
    /// Run it in shadow beside the active version instead of activating it.
    #[param(nullable = false)]
    shadow: Option<bool>,
}

/// A version just published.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PublishedView {
    name: String,
    version: u32,
    hash: String,
    mode: String,
    role: String,
}

/// Publishes a rule component (the request body: its bytes) as
/// the next version of `name`, for every instance of the deployment
/// (admin, audited). Every instance runs it within a second.
#[utoipa::path(
    operation_id = "publishRule", post, path = "/api/rules", tag = "rules",
    params(PublishParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component's bytes (sent as `application/wasm` or `application/octet-stream`: the type is not checked, the bytes are)"),
    responses(
        (status = 201, description = "Published", body = PublishedView),
        (status = 422, description = "Not a rule component this host runs, not a trusted one, or a malformed name or signature", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another publisher kept changing the rule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The rule store is unavailable", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        ApiProblems,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn publish<R: RuleUseCases>(
    State(state): State<Arc<RulesState<R>>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    query: Result<Query<PublishParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(&[CallerRole::Admin])?;
    let params = json::query(query)?;
    let signature = match headers.get(SIGNATURE) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(shop_streams::hex::decode)
                .ok_or_else(|| Problem::invalid(SIGNATURE, format!("{SIGNATURE} must be hex")))?,
        ),
    };
    let mode = match params.shadow {
        Some(true) => RuleMode::Shadow,
        _ => RuleMode::Active,
    };
    let published = state
        .rules
        .publish(&params.name, body.to_vec(), signature, mode, &caller.actor(&request_id))
        .await
        .map_err(fleet_problem)?;
    let view = PublishedView {
        name: published.name,
        version: published.version,
        hash: published.hash,
        mode: published.mode.to_string(),
        role: published.role.to_string(),
    };
    Ok(reply(StatusCode::CREATED, &view))
}

fn fleet_problem(error: FleetError) -> Problem {
    match error {
        FleetError::BadName(_) => Problem::invalid("name", error.to_string()),
        FleetError::Load(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "not-a-rule", error.to_string()),
        FleetError::Release(ReleaseError::NoSuchRule(_) | ReleaseError::NoSuchVersion { .. }) => {
            Problem::not_found(error.to_string())
        }
        FleetError::Release(_) | FleetError::Store(RuleStoreError::Conflict(_)) => Problem::conflict(error.to_string()),
        FleetError::Store(RuleStoreError::Unavailable(_)) => {
            tracing::warn!(target: "shop::api", %error, "rule store unavailable");
            Problem::unavailable("the rule store is unavailable; try again")
        }
        other => Problem::internal(other),
    }
}
