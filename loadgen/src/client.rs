//! The HTTP client the load is sent with: pooled HTTP/1.1 keep-alive
//! connections to one target, a time limit per request, and failures sorted
//! into the kinds the report counts.

use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Why a request did not get the answer it wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Answered with an unexpected status; the problem type when there is one.
    Status(u16, String),
    /// No answer within the time limit.
    Timeout,
    /// The connection failed.
    Connection(String),
}

impl Failure {
    /// How the report groups it: `503 unavailable`, `timeout`, `connection`.
    pub fn kind(&self) -> String {
        match self {
            Self::Status(status, problem) if problem.is_empty() => status.to_string(),
            Self::Status(status, problem) => format!("{status} {problem}"),
            Self::Timeout => "timeout".to_owned(),
            Self::Connection(_) => "connection".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    authority: Authority,
    timeout: Duration,
}

impl Api {
    pub fn target(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// The target's socket address, for raw connections.
    pub async fn socket_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let port = self.authority.port_u16().unwrap_or(80);
        tokio::net::lookup_host((self.authority.host(), port))
            .await?
            .next()
            .with_context(|| format!("{} resolves to no address", self.authority))
    }
}

impl Api {
    /// A client of `target` (`http://host:port`).
    pub fn new(target: &str, timeout: Duration) -> anyhow::Result<Self> {
        let uri: Uri = target.parse().with_context(|| format!("{target} is not a URL"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            anyhow::bail!("{target}: only http:// targets");
        }
        let authority = uri.authority().context("the target has no host")?.clone();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Below the shop's header read timeout (SHOP_HEADER_READ_TIMEOUT_MS,
            // 5 s by default), which closes a keep-alive connection that waits
            // for its next request that long: a connection kept longer could
            // be taken from the pool just as the server closes it, and the
            // request on it fail (it did once, in the checks after a run).
            .pool_idle_timeout(Duration::from_secs(4))
            .pool_max_idle_per_host(4096)
            .build(connector);
        Ok(Self {
            client,
            authority,
            timeout,
        })
    }

    /// Sends one request; any status is an answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let path: PathAndQuery = path
            .parse()
            .map_err(|_| Failure::Connection(format!("bad path {path}")))?;
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Failure::Connection(e.to_string()))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Failure::Connection(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Connection(e.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Connection(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    /// Sends one request and wants `expected`; anything else is a failure.
    pub async fn expect(
        &self,
        expected: StatusCode,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Bytes, Failure> {
        let (status, body) = self.send(method, path, token, body, idempotency_key).await?;
        if status == expected {
            return Ok(body);
        }
        let problem = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["type"].as_str().map(|t| t.rsplit('/').next().unwrap_or(t).to_owned()))
            .unwrap_or_default();
        Err(Failure::Status(status.as_u16(), problem))
    }
}
