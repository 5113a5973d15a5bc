//! Distributed traces across the saga's hops, over `tracing` spans.
//!
//! A hop (an HTTP request, a relay's publish, a consumer's handling) is a
//! span; [`adopt`] makes the [`TraceParent`] that arrived with the work its
//! parent, and [`of`] the span is what the hop passes on: in the events it
//! decides, the requests it forwards and the messages it publishes. The
//! exporter (OpenTelemetry, installed by the shop binary when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set) calls [`enable`]; until then spans
//! carry no trace ids, and a hop passes on the context it was given, so a
//! caller's trace still reaches the events it caused.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use shop_streams::trace_parent::TraceParent;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Spans become trace spans from now on: an OpenTelemetry layer is installed.
pub fn enable() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether spans are exported (so worth making per message).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Makes `parent`, a remote caller's span, the parent of `span`, which must
/// not have been read by [`of`] yet. Nothing when not exporting or no parent.
pub fn adopt(span: &Span, parent: Option<TraceParent>) {
    let Some(parent) = parent.filter(|_| exporting()) else {
        return;
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    if let Err(error) = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote)) {
        tracing::debug!(target: "shop::trace", %error, "span already started; parent not set");
    }
}

/// The context of `span` as a caller of the next hop sees it, when spans
/// are exported; `None` otherwise.
pub fn of(span: &Span) -> Option<TraceParent> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| TraceParent {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        flags: span_context.trace_flags().to_u8(),
    })
}
