//! `/api/payments/webhook`: the payment provider's signed notices.
//!
//! No bearer token: the provider proves itself by the notice's signature
//! (`Shop-Signature`), which the payment use case checks with its time
//! window and replay memory before anything changes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde::Serialize;
use shop_runtime::ports::payment::{SIGNATURE_HEADER, SignatureError};
use shop_runtime::saga::payment::WebhookError;
use shop_runtime::saga::use_cases::PaymentUseCases;
use utoipa::ToSchema;

use crate::edge::RequestTrace;
use crate::json::reply;
use crate::openapi::ApiProblems;
use crate::problem::Problem;

pub fn router<P: PaymentUseCases>(payments: Arc<P>) -> Router {
    Router::new()
        .route("/api/payments/webhook", post(webhook::<P>))
        .with_state(payments)
}

/// What a notice did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NoticeTaken {
    /// `applied` (completed or cancelled the order), `duplicate` (it was so
    /// already) or `late` (the order had moved the other way; nothing changed).
    #[schema(example = "applied")]
    outcome: &'static str,
}

/// A notice body as the provider sends it (other fields are ignored).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct NoticeBody {
    #[schema(example = "018f6c1e-...")]
    order_id: String,
    /// `succeeded` completes the order (its stock is deducted); `failed`
    /// cancels it with `PAYMENT_FAILED` (its stock is released).
    #[schema(example = "succeeded")]
    status: String,
}

/// The payment provider's notice: `succeeded` completes a `CONFIRMED`
/// order, `failed` cancels it with `PAYMENT_FAILED`. Signed with
/// `Shop-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` under
/// `SHOP_PAYMENT_WEBHOOK_SECRET`; signatures older than 5 minutes, wrong or
/// seen before are refused. A repeated notice has no further effect.
#[utoipa::path(
    operation_id = "paymentWebhook", post, path = "/api/payments/webhook", tag = "payments",
    request_body(content = NoticeBody, content_type = "application/json"),
    params(("Shop-Signature" = String, Header, pattern = "^t=[0-9]{1,12},v1=[0-9a-f]{64}$", description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">; anything else is 400")),
    responses(
        (status = 200, description = "Taken", body = NoticeTaken),
        (status = 400, description = "No or malformed signature header, or a body that is not a notice", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A signature that does not match, or is out of its 5-minute window", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "This exact notice was delivered before", body = Problem, content_type = "application/problem+json"),
        ApiProblems,
    )
)]
pub(crate) async fn webhook<P: PaymentUseCases>(
    State(payments): State<Arc<P>>,
    RequestTrace(trace): RequestTrace,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "bad-signature", "no Shop-Signature header"))?;
    let settled = payments
        .accept_notice(signature, &body, trace)
        .await
        .map_err(notice_problem)?;
    Ok(reply(
        StatusCode::OK,
        &NoticeTaken {
            outcome: settled.as_str(),
        },
    ))
}

fn notice_problem(error: WebhookError) -> Problem {
    let detail = error.to_string();
    match error {
        WebhookError::Signature(SignatureError::Malformed) => {
            Problem::new(StatusCode::BAD_REQUEST, "bad-signature", detail)
        }
        // Not 401's Bearer challenge: a signature, not a token, is missing.
        WebhookError::Signature(SignatureError::Mismatch | SignatureError::OutOfWindow(..)) => {
            Problem::new(StatusCode::FORBIDDEN, "bad-signature", detail)
        }
        WebhookError::Replayed => Problem::new(StatusCode::CONFLICT, "replayed", detail),
        WebhookError::Malformed(_) => Problem::bad_request(detail),
        WebhookError::UnknownOrder(_) => Problem::not_found(detail),
        WebhookError::Unavailable(why) => {
            tracing::warn!(target: "shop::api", %why, "payment notice not taken");
            Problem::unavailable("the notice could not be taken now; deliver it again")
        }
    }
}
