//! `GET /api/orders/{id}?expand=products`: an order with each line's
//! current product name and availability, composed from both contexts.
//!
//! A process that runs the inventory context looks the products up through
//! its use cases ([`Catalog::of`]); the gateway role asks an inventory
//! instance (`forward::compose`). Either way the order comes back when the
//! inventory side cannot answer, with `"products": "unavailable"` and no
//! product on its lines: the fallback a broken circuit calls for.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shop_runtime::saga::use_cases::InventoryUseCases;
use utoipa::{IntoParams, ToSchema};

use crate::orders::OrderView;

/// The query `GET /api/orders/{id}` takes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadQuery {
    /// `products`: add each line's current product name and availability.
    #[param(inline, nullable = false)]
    pub expand: Option<Expand>,
}

/// What `expand` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Expand {
    Products,
}

/// A line's product as the inventory sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineProduct {
    pub name: String,
    /// Units that can be ordered now (stock not reserved or deducted).
    pub available: i64,
}

/// Whether an expanded order's lines carry their products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProductsPart {
    /// Every line whose product the inventory knows carries it.
    Included,
    /// The inventory side did not answer: the lines carry no product.
    Unavailable,
}

/// The inventory side failed to answer; the expansion is left out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable;

/// One product looked up: `None` when the inventory knows no such product.
pub(crate) type Looked = Result<Option<LineProduct>, Unavailable>;

/// How a process that runs the inventory context looks products up.
#[derive(Clone)]
pub(crate) struct Catalog(Arc<dyn Fn(String) -> BoxFuture<'static, Looked> + Send + Sync>);

impl Catalog {
    pub(crate) fn of<I: InventoryUseCases>(inventory: Arc<I>) -> Self {
        Self(Arc::new(move |product_id: String| {
            let inventory = Arc::clone(&inventory);
            Box::pin(async move {
                match inventory.product(&product_id).await {
                    Ok(found) => Ok(found.map(|p| LineProduct {
                        name: p.name,
                        available: p.available,
                    })),
                    Err(error) => {
                        tracing::warn!(target: "shop::api", %error, "products for an expanded order unavailable");
                        Err(Unavailable)
                    }
                }
            })
        }))
    }

    pub(crate) async fn look_up(&self, order: &OrderView) -> Found {
        look_up(order, |id| (self.0)(id)).await
    }
}

/// The products of an order's lines, by id, or why there are none.
pub(crate) type Found = Result<HashMap<String, Option<LineProduct>>, Unavailable>;

/// Every distinct product of `order`'s lines looked up with `one`, at once.
pub(crate) async fn look_up<F, Fut>(order: &OrderView, one: F) -> Found
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Looked>,
{
    let mut ids: Vec<String> = order.items.iter().map(|line| line.product_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = futures::future::join_all(ids.iter().map(|id| one(id.clone()))).await;
    ids.into_iter()
        .zip(found)
        .map(|(id, looked)| Ok((id, looked?)))
        .collect()
}

/// Each of `order`'s lines gains the product found for it, and `products`
/// says whether they were found.
pub(crate) fn compose(order: &mut OrderView, mut found: Found) {
    order.products = Some(match &found {
        Ok(_) => ProductsPart::Included,
        Err(Unavailable) => ProductsPart::Unavailable,
    });
    if let Ok(products) = &mut found {
        for line in &mut order.items {
            line.product = products.get(&line.product_id).cloned().flatten();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order() -> OrderView {
        serde_json::from_value(json!({
            "order_id": "o-1", "customer_id": "alice", "status": "PENDING", "total": 210,
            "currency": "KRW", "created_at": 1, "items": [
                {"product_id": "SKU-1", "quantity": 1, "unit_price": 100},
                {"product_id": "SKU-2", "quantity": 2, "unit_price": 50},
                {"product_id": "SKU-GONE", "quantity": 1, "unit_price": 10},
            ]
        }))
        .expect("an order view")
    }

    #[tokio::test]
    async fn each_line_gains_its_product_and_unknown_ones_stay_bare() {
        let asked = std::sync::Mutex::new(Vec::new());
        let found = look_up(&order(), |id| {
            asked.lock().expect("not poisoned").push(id.clone());
            async move {
                Ok((id != "SKU-GONE").then(|| LineProduct {
                    name: format!("{id} name"),
                    available: 7,
                }))
            }
        })
        .await;
        assert_eq!(asked.lock().expect("not poisoned").len(), 3, "each product once");
        let mut composed = order();
        compose(&mut composed, found);
        let composed = serde_json::to_value(composed).expect("JSON");
        assert_eq!(composed["products"], "included");
        assert_eq!(
            composed["items"][0]["product"],
            json!({"name": "SKU-1 name", "available": 7})
        );
        assert_eq!(composed["items"][1]["product"]["name"], "SKU-2 name");
        assert!(composed["items"][2].get("product").is_none());
    }

    #[tokio::test]
    async fn an_unanswering_inventory_leaves_the_order_whole_and_says_so() {
        let found = look_up(&order(), |id| async move {
            match id.as_str() {
                "SKU-2" => Err(Unavailable),
                _ => Ok(None),
            }
        })
        .await;
        let mut composed = order();
        compose(&mut composed, found);
        let composed = serde_json::to_value(composed).expect("JSON");
        assert_eq!(composed["products"], "unavailable");
        assert_eq!(composed["order_id"], "o-1");
        assert!((0..3).all(|n| composed["items"][n].get("product").is_none()));
    }
}
