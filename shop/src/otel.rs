//! Trace export over OpenTelemetry, on when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, off (and free)
//! otherwise.
//!
//! Spans go out in batches as OTLP over HTTP/protobuf to
//! `<endpoint>/v1/traces` (an OpenTelemetry collector, Jaeger, Tempo, ...).
//! The standard variables apply: `OTEL_SERVICE_NAME` (default
//! `shop-<role>`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its
//! argument, `OTEL_BSP_*` for the batches, `OTEL_EXPORTER_OTLP_HEADERS` and
//! `_TIMEOUT`. Only the `shop*` targets' info spans are exported: a
//! request, a relay's publish and a consumer's handling of a message, each
//! the child of the span that caused it (see `shop_runtime::trace_context`).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The variables that switch export on.
const ENDPOINT_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"];

/// Longest wait for one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the exporter alive; dropping it sends what is still batched.
pub(crate) struct Export {
    provider: SdkTracerProvider,
}

impl Drop for Export {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("shop: traces not all exported at exit: {error}");
        }
    }
}

/// The tracing layer that exports spans, and its guard, when an endpoint
/// variable is set; `None` when none is. An endpoint that cannot be used is
/// an error to report, not a reason to run without the traces asked for.
pub(crate) fn layer<S>(service: &str) -> anyhow::Result<Option<(impl Layer<S> + use<S>, Export)>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    {
        return Ok(None);
    }
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient::start()?)
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("shop"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target("shop", LevelFilter::INFO));
    shop_runtime::trace_context::enable();
    Ok(Some((layer, Export { provider })))
}

/// OTLP requests over HTTP/1.1, on a thread of their own: the batch
/// processor calls from its own thread, outside the shop's runtime.
#[derive(Debug)]
struct ExportClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Ok(Self {
            client,
            runtime: handle,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, async move {
                let response = client.request(request.map(Full::new)).await?;
                let (head, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(head, body))
            })
            .await
            .map_err(|_| HttpError::from(format!("no answer within {EXPORT_TIMEOUT:?}")))?
        });
        sent.await?
    }
}
