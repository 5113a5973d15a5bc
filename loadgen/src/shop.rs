//! The shop as the load sees it: customers with real tokens, products an
//! admin registers, and the three requests of the seed's scenario (create,
//! query, cancel), each timed and remembered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::http::{Method, StatusCode};
use shop_gateway::{Auth, CallerRole};

use crate::client::{Api, Failure};
use crate::record::Recorder;

#[derive(Debug)]
pub struct User {
    token: String,
    /// Ids of the orders the shop accepted (202) for this user.
    accepted: Mutex<Vec<String>>,
}

impl User {
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn accepted(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug)]
pub struct Shop {
    pub api: Api,
    /// Where products are registered and read (the inventory side); the
    /// same as `api` unless the orders go to an order instance directly.
    pub products_api: Api,
    pub admin: String,
    pub users: Vec<User>,
    /// Unique to this run: in product ids and idempotency keys.
    pub run: String,
    /// Orders sent with no answer (timeout, broken connection): they may exist.
    pub unanswered: AtomicU64,
    pub recorder: Arc<Recorder>,
    /// Orders carry delivery details (which the shop encrypts).
    pub delivery: bool,
}

impl Shop {
    pub fn new(api: Api, products_api: Api, secret: &str, users: usize) -> anyhow::Result<Self> {
        let auth = Auth::hs256(secret.as_bytes());
        let day = Duration::from_secs(24 * 3600);
        let run = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
        let users = (0..users.max(1))
            .map(|n| {
                let token = auth.issue(&format!("load-{run}-{n}"), CallerRole::Customer, day)?;
                Ok(User {
                    token,
                    accepted: Mutex::new(Vec::new()),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            api,
            products_api,
            admin: auth.issue(&format!("load-{run}-admin"), CallerRole::Admin, day)?,
            users,
            run,
            unanswered: AtomicU64::new(0),
            recorder: Arc::new(Recorder::default()),
            delivery: false,
        })
    }

    /// A product id of this run.
    pub fn product(&self, n: usize) -> String {
        format!("LOAD-{}-{n}", self.run)
    }

    /// Registers `products` (id, stock) through the API.
    pub async fn register(&self, products: &[(String, i64)]) -> anyhow::Result<()> {
        for (id, stock) in products {
            let body = serde_json::json!({
                "id": id, "name": "Load test item", "unit_price": 1000, "currency": "KRW", "stock": stock
            });
            self.products_api
                .expect(
                    StatusCode::CREATED,
                    Method::POST,
                    "/api/products",
                    &self.admin,
                    Some(body.to_string().into_bytes()),
                    None,
                )
                .await
                .map_err(|f| anyhow::anyhow!("registering {id}: {}", f.kind()))?;
        }
        Ok(())
    }

    /// Waits until the order side has heard of `product` (its catalogue copy
    /// arrives through the saga) by placing the run's first order for it.
    pub async fn wait_until_orderable(&self, product: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self
                .try_place(0, product, &format!("{}-warm-{product}", self.run))
                .await
            {
                Ok(_) => return Ok(()),
                Err(Failure::Status(422, _)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(failure) => anyhow::bail!("{product} cannot be ordered: {}", failure.kind()),
            }
        }
    }

    /// Places order `i` for `user` (one unit of `product`), timed from `due`.
    pub async fn place(&self, i: u64, user: usize, product: &str, due: Instant) -> Option<String> {
        let outcome = self.try_place(user, product, &format!("{}-{i}", self.run)).await;
        self.recorder.record(
            "create",
            due.elapsed(),
            outcome.as_ref().map(drop).map_err(Failure::kind),
        );
        outcome.ok()
    }

    async fn try_place(&self, user: usize, product: &str, key: &str) -> Result<String, Failure> {
        let n = user;
        let user = &self.users[n % self.users.len()];
        let body = match self.delivery {
            false => format!(r#"{{"items":[{{"product_id":"{product}","quantity":1}}]}}"#),
            true => format!(
                r#"{{"items":[{{"product_id":"{product}","quantity":1}}],"delivery":{{"name":"Customer {n}","phone":"+82 10 0000 {n:04}","address":"{n} Sejong-daero, Jongno-gu, Seoul 03154"}}}}"#
            ),
        };
        let answer = self
            .api
            .expect(
                StatusCode::ACCEPTED,
                Method::POST,
                "/api/orders",
                &user.token,
                Some(body.into_bytes()),
                Some(key),
            )
            .await;
        let body = match answer {
            Ok(body) => body,
            Err(failure) => {
                if matches!(failure, Failure::Timeout | Failure::Connection(_)) {
                    self.unanswered.fetch_add(1, Ordering::Relaxed);
                }
                return Err(failure);
            }
        };
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["order_id"].as_str().map(str::to_owned))
            .ok_or_else(|| Failure::Status(202, "no order_id in the answer".into()))?;
        user.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id.clone());
        Ok(id)
    }

    /// Reads order `id` of `user`.
    pub async fn query(&self, user: usize, id: &str) -> bool {
        self.timed("query", Method::GET, &format!("/api/orders/{id}"), user)
            .await
    }

    /// Cancels order `id` of `user`.
    pub async fn cancel(&self, user: usize, id: &str) -> bool {
        self.timed("cancel", Method::POST, &format!("/api/orders/{id}/cancel"), user)
            .await
    }

    /// Reads `path` as `user`, wanting a 200, recorded as `kind` and timed from `due`.
    pub async fn read(&self, kind: &'static str, user: usize, path: &str, due: Instant) -> bool {
        self.timed_from(due, kind, Method::GET, path, user).await
    }

    /// One request of `user` that wants a 200, recorded as `kind`.
    async fn timed(&self, kind: &'static str, method: Method, path: &str, user: usize) -> bool {
        self.timed_from(Instant::now(), kind, method, path, user).await
    }

    async fn timed_from(&self, started: Instant, kind: &'static str, method: Method, path: &str, user: usize) -> bool {
        let user = &self.users[user % self.users.len()];
        let outcome = self
            .api
            .expect(StatusCode::OK, method, path, &user.token, None, None)
            .await;
        self.recorder.record(
            kind,
            started.elapsed(),
            outcome.as_ref().map(drop).map_err(Failure::kind),
        );
        outcome.is_ok()
    }

    /// Reads `product`'s stock: (available, reserved, deducted).
    pub async fn stock(&self, product: &str) -> anyhow::Result<(i64, i64, i64)> {
        let body = self
            .products_api
            .expect(
                StatusCode::OK,
                Method::GET,
                &format!("/api/products/{product}"),
                &self.admin,
                None,
                None,
            )
            .await
            .map_err(|f| anyhow::anyhow!("reading {product}: {}", f.kind()))?;
        let view: serde_json::Value = serde_json::from_slice(&body).context("a product")?;
        let field = |name: &str| view[name].as_i64().with_context(|| format!("{product} has no {name}"));
        Ok((field("available")?, field("reserved")?, field("deducted")?))
    }
}
