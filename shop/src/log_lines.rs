//! JSON log lines that say which process wrote them: every line carries
//! the process's `role` and `instance` beside the request's spans, so logs
//! gathered from many instances can be told apart and filtered.

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `inner`'s JSON object with `"role"` and `"instance"` first.
pub(crate) struct WithProcess<F> {
    inner: F,
    /// `"role":"...","instance":"...",` as JSON.
    fields: String,
}

impl<F> WithProcess<F> {
    pub(crate) fn new(inner: F, role: &str, instance: &str) -> Self {
        let fields = format!(
            "\"role\":{},\"instance\":{},",
            serde_json::Value::from(role),
            serde_json::Value::from(instance)
        );
        Self { inner, fields }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithProcess<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_char('{')?;
                writer.write_str(&self.fields)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}
