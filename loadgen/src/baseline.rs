//! What the machine can do without the shop, measured in the same run as the
//! shop, so the shop's numbers can be read as a share of it: an HTTP
//! endpoint with no I/O (driven by the same load generator), PostgreSQL
//! inserts one transaction each and 100 to a transaction, and JetStream
//! publishes pipelined and awaited one by one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

/// One measured reference point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub per_second: f64,
    pub unit: String,
}

impl Baseline {
    fn new(name: &str, count: u64, elapsed: Duration, unit: &str) -> Self {
        let per_second = count as f64 / elapsed.as_secs_f64().max(1e-9);
        println!(
            "{name}: {per_second:.0} {unit}/s ({count} in {:.1} s)",
            elapsed.as_secs_f64()
        );
        Self {
            name: name.to_owned(),
            per_second,
            unit: unit.to_owned(),
        }
    }
}

/// Serves the API's shapes with no I/O behind them: a new order is parsed
/// and answered 202 with an id, a product registration 201, anything else
/// 200. Runs until the process is stopped.
pub async fn echo_server(listen: SocketAddr) -> anyhow::Result<()> {
    async fn answer(method: Method, uri: axum::http::Uri, body: Bytes) -> axum::response::Response {
        let json = [(header::CONTENT_TYPE, "application/json")];
        match (method, uri.path()) {
            (Method::POST, "/api/orders") => {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
                match parsed {
                    Ok(order) => {
                        let answer = serde_json::json!({
                            "order_id": uuid::Uuid::now_v7().to_string(),
                            "status": "PENDING",
                            "items": order["items"],
                        });
                        (StatusCode::ACCEPTED, json, answer.to_string()).into_response()
                    }
                    Err(_) => StatusCode::BAD_REQUEST.into_response(),
                }
            }
            (Method::POST, "/api/products") => (StatusCode::CREATED, json, "{}").into_response(),
            _ => (StatusCode::OK, json, "{}").into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("shop-load: echo server listening on http://{}", listener.local_addr()?);
    axum::serve(listener, Router::new().fallback(answer)).await?;
    Ok(())
}

/// Inserts order-sized rows into a scratch schema for `seconds` each way
/// with `connections` connections, then drops the schema.
pub async fn postgres(url: &str, seconds: u64, connections: u32) -> anyhow::Result<Vec<Baseline>> {
    use sqlx::postgres::PgPoolOptions;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let schema = format!("load_baseline_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.orders (id uuid PRIMARY KEY, customer text NOT NULL, total bigint NOT NULL, body jsonb NOT NULL)"
    )))
    .execute(&pool)
    .await?;
    let body = r#"{"items":[{"product_id":"SKU-1","quantity":1,"unit_price":1000}],"currency":"KRW"}"#;
    let single = format!("INSERT INTO {schema}.orders VALUES ($1, $2, $3, $4::jsonb)");
    let batch = format!(
        "INSERT INTO {schema}.orders SELECT a, b, c, d::jsonb FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[]) AS t(a, b, c, d)"
    );
    let rows = |pool: sqlx::PgPool, per_transaction: usize| {
        let (single, batch) = (single.clone(), batch.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(seconds);
            let count = Arc::new(AtomicU64::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..connections {
                let (pool, count, single, batch) = (pool.clone(), Arc::clone(&count), single.clone(), batch.clone());
                tasks.spawn(async move {
                    while Instant::now() < until {
                        let ids: Vec<uuid::Uuid> = (0..per_transaction).map(|_| uuid::Uuid::now_v7()).collect();
                        let done = match per_transaction {
                            1 => sqlx::query(sqlx::AssertSqlSafe(single.as_str()))
                                .bind(ids[0])
                                .bind("customer")
                                .bind(1000_i64)
                                .bind(body)
                                .execute(&pool)
                                .await
                                .map(drop),
                            n => sqlx::query(sqlx::AssertSqlSafe(batch.as_str()))
                                .bind(&ids)
                                .bind(vec!["customer"; n])
                                .bind(vec![1000_i64; n])
                                .bind(vec![body; n])
                                .execute(&pool)
                                .await
                                .map(drop),
                        };
                        done?;
                        count.fetch_add(per_transaction as u64, Ordering::Relaxed);
                    }
                    Ok::<_, sqlx::Error>(())
                });
            }
            let started = Instant::now();
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
            Ok::<_, anyhow::Error>((count.load(Ordering::Relaxed), started.elapsed()))
        }
    };
    let (one, one_took) = rows(pool.clone(), 1).await?;
    let (hundred, hundred_took) = rows(pool.clone(), 100).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await?;
    Ok(vec![
        Baseline::new("PostgreSQL insert, one transaction per row", one, one_took, "rows"),
        Baseline::new(
            "PostgreSQL insert, 100 rows per transaction",
            hundred,
            hundred_took,
            "rows",
        ),
    ])
}

/// Publishes `messages` event-sized messages to a scratch stream,
/// pipelined, and a tenth of that awaiting each acknowledgement, then
/// deletes the stream.
pub async fn jetstream(url: &str, messages: u64) -> anyhow::Result<Vec<Baseline>> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let js = async_nats::jetstream::new(client);
    let name = format!("load_baseline_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = Bytes::from(vec![b'x'; 400]);
    let subject = format!("{name}.event");

    let started = Instant::now();
    let mut acks = Vec::with_capacity(1000);
    for n in 0..messages {
        acks.push(js.publish(subject.clone(), payload.clone()).await?);
        if acks.len() == 1000 || n + 1 == messages {
            // Sent already; awaiting the acknowledgements in order costs
            // one round trip for the whole window.
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    let pipelined = Baseline::new("JetStream publish, pipelined", messages, started.elapsed(), "messages");

    let awaited_count = (messages / 10).max(1);
    let started = Instant::now();
    for _ in 0..awaited_count {
        js.publish(subject.clone(), payload.clone()).await?.await?;
    }
    let awaited = Baseline::new(
        "JetStream publish, each acknowledgement awaited",
        awaited_count,
        started.elapsed(),
        "messages",
    );
    js.delete_stream(&name).await?;
    Ok(vec![pipelined, awaited])
}
