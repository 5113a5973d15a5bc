//! The OpenAPI document, generated from the handlers' annotations, served
//! at `/openapi.json` with a browsable UI at `/docs`.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::{orders, products};

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
