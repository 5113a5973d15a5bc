//! The OpenAPI document, generated from the handlers' annotations, served
//! at `/openapi.json` with a browsable UI at `/docs`.

use std::collections::BTreeMap;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::problem::{PROBLEM_JSON, Problem};
use crate::{orders, products};

/// What any `/api` call may answer besides its own outcomes.
pub(crate) struct ApiProblems;

impl IntoResponses for ApiProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (401, "No valid bearer token or API key"),
            (429, "Over the rate limit; Retry-After says when to come back"),
            (
                503,
                "A dependency is down or the request took too long; nothing was written; retry",
            ),
        ])
    }
}

/// What an administrator's command on a product may answer besides success.
pub(crate) struct AdminProblems;

impl IntoResponses for AdminProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (403, "Not an admin"),
            (404, "No such product"),
            (422, "A field is not acceptable; `field` names it"),
        ])
    }
}

fn problems(answers: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    answers
        .iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content(PROBLEM_JSON, content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "The order and inventory core of the shop. Every /api call takes a bearer token \
                       (`shop token --sub NAME --role customer|admin|payment`); errors are RFC 9457 problems.",
    ),
    paths(
        orders::place,
        orders::list,
        orders::read,
        orders::cancel,
        orders::complete,
        products::register,
        products::read,
        products::restock,
        products::adjust,
        products::price,
        products::movements,
    ),
    components(schemas(Problem)),
    modifiers(&BearerToken),
    tags(
        (name = "orders", description = "Intake and the life of an order"),
        (name = "products", description = "The catalogue, its stock and the audit trail"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `/openapi.json` and the UI at `/docs`.
pub fn router() -> Router {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
