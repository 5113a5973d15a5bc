//! The OpenAPI document, generated from the handlers' annotations, served
//! at `/openapi.json` with a browsable UI at `/docs`.

use std::collections::BTreeMap;

use axum::Router;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::problem::{PROBLEM_JSON, Problem};
use crate::{audit, customers, orders, payments, products, rules};

/// What any `/api` call may answer besides its own outcomes.
pub(crate) struct ApiProblems;

impl IntoResponses for ApiProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (
                400,
                "A control character in the path, query or a header, or a query or header that does not parse",
            ),
            (401, "No valid bearer token or API key"),
            (429, "Over the rate limit; Retry-After says when to come back"),
            (
                503,
                "A dependency is down or the request took too long; nothing was written; retry",
            ),
        ])
    }
}

/// What a call with a JSON body may answer about the body itself.
pub(crate) struct BodyProblems;

impl IntoResponses for BodyProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[
            (400, "The body is not well-formed JSON"),
            (413, "The body is larger than 64 KiB"),
            (415, "The body is not sent as application/json"),
            (
                422,
                "A field is missing, unknown, of the wrong type or out of range; `field` names it",
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
        customers::export,
        customers::erase,
        payments::webhook,
        products::register,
        products::list,
        products::read,
        products::restock,
        products::adjust,
        products::price,
        products::movements,
        audit::list,
        rules::list,
        rules::publish,
    ),
    components(schemas(Problem)),
    modifiers(&BearerToken, &Links),
    tags(
        (name = "orders", description = "Intake and the life of an order"),
        (name = "products", description = "The catalogue, its stock and the audit trail"),
        (name = "payments", description = "The payment provider's notices"),
        (name = "customers", description = "A customer's data: export and erasure"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "rules", description = "The rule components: what an instance runs, publishing for the deployment"),
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

/// Links from the call that creates a product or an order to the calls that
/// act on it, so clients (and a stateful fuzzer) can follow them.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let product = [
            "readProduct",
            "restockProduct",
            "adjustStock",
            "changePrice",
            "listMovements",
        ];
        link(openapi, "/api/products", "201", "$response.body#/id", &product);
        let order = ["readOrder", "cancelOrder", "completeOrder"];
        link(openapi, "/api/orders", "202", "$response.body#/order_id", &order);
    }
}

/// Links the `status` answer of `POST path` to each operation, passing the
/// created resource's id (`from`) as their `id` path parameter.
fn link(openapi: &mut utoipa::openapi::OpenApi, path: &str, status: &str, from: &str, operations: &[&str]) {
    let response = openapi
        .paths
        .paths
        .get_mut(path)
        .and_then(|item| item.post.as_mut())
        .and_then(|post| post.responses.responses.get_mut(status));
    let Some(RefOr::T(response)) = response else {
        // Only reachable if a path above is renamed; the document test catches it.
        return;
    };
    for operation in operations {
        let link = LinkBuilder::new()
            .operation_id(*operation)
            .parameter("id", from)
            .build();
        response.links.insert((*operation).to_owned(), RefOr::T(link));
    }
}

/// The document as served. utoipa 5.5 writes a link's `operationId` and
/// `requestBody` in snake case, which no OpenAPI tool reads; they are renamed
/// here.
pub fn document() -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let links = document
        .get_mut("paths")
        .and_then(|paths| paths.as_object_mut())
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.pointer_mut("/responses"))
        .filter_map(|responses| responses.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.pointer_mut("/links"))
        .filter_map(|links| links.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(from) {
                link.insert(to.to_owned(), value);
            }
        }
    }
    document
}

/// `/openapi.json` and the UI at `/docs`.
pub fn router() -> Router {
    Router::new().merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", document()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};
    use shop_rules::common::{MAX_AMOUNT, MAX_ID_LEN, MAX_TEXT_LEN};
    use shop_rules::inventory::MAX_STOCK;
    use shop_rules::order::{MAX_LINE_QUANTITY, MAX_LINES};

    use super::document;

    fn at<'a>(document: &'a Value, pointer: &str) -> &'a Value {
        document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the document has no {pointer}"))
    }

    /// The schema's limits are literals (utoipa takes no constants), so this
    /// keeps them equal to the rule book's.
    #[test]
    fn the_document_states_the_rule_books_limits() {
        let doc = document();
        let schemas = "/components/schemas";
        let expected = [
            ("/PlaceBody/properties/items/maxItems", json!(MAX_LINES)),
            ("/ItemBody/properties/quantity/maximum", json!(MAX_LINE_QUANTITY)),
            ("/ItemBody/properties/product_id/maxLength", json!(MAX_ID_LEN)),
            ("/RegisterBody/properties/id/maxLength", json!(MAX_ID_LEN)),
            ("/RegisterBody/properties/name/maxLength", json!(MAX_TEXT_LEN)),
            ("/RegisterBody/properties/unit_price/maximum", json!(MAX_AMOUNT)),
            ("/RegisterBody/properties/stock/maximum", json!(MAX_STOCK)),
            ("/RestockBody/properties/quantity/maximum", json!(MAX_STOCK)),
            ("/AdjustBody/properties/reason/maxLength", json!(MAX_TEXT_LEN)),
            ("/AdjustBody/properties/delta/oneOf/0/minimum", json!(-MAX_STOCK)),
            ("/AdjustBody/properties/delta/oneOf/1/maximum", json!(MAX_STOCK)),
            ("/PriceBody/properties/unit_price/maximum", json!(MAX_AMOUNT)),
        ];
        for (pointer, value) in expected {
            assert_eq!(at(&doc, &format!("{schemas}{pointer}")), &value, "{pointer}");
        }
        // Free text follows one rule (`shop_rules::common::check_text`), so one pattern.
        assert_eq!(
            at(&doc, &format!("{schemas}/RegisterBody/properties/name/pattern")),
            at(&doc, &format!("{schemas}/AdjustBody/properties/reason/pattern")),
        );
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_them_in_camel_case() {
        let doc = document();
        let mut ids = BTreeSet::new();
        let mut links = Vec::new();
        for item in at(&doc, "/paths").as_object().into_iter().flat_map(|p| p.values()) {
            for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
                let id = at(operation, "/operationId").as_str().unwrap_or_default().to_owned();
                assert!(ids.insert(id.clone()), "operationId {id} is used twice");
                for response in at(operation, "/responses")
                    .as_object()
                    .into_iter()
                    .flat_map(|r| r.values())
                {
                    if let Some(found) = response.get("links").and_then(Value::as_object) {
                        links.extend(found.values().cloned());
                    }
                }
            }
        }
        assert_eq!(links.len(), 8, "links from registering a product and placing an order");
        for link in links {
            let target = at(&link, "/operationId").as_str().unwrap_or_default();
            assert!(ids.contains(target), "a link names {target}, which no operation is");
            assert!(link.get("operation_id").is_none(), "{link}");
        }
    }
}
