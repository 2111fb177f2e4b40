//! Logs and traces of `tessera serve`.
//!
//! Logs go to standard error (text or JSON), each line written while a request is served carrying its request id.
//! Traces are exported over OTLP only when `[tracing] otlp_endpoint` is set: then a span per request (parented on
//! the caller's W3C `traceparent`) holds the spans and events the server emits on `tessera_model::SPAN_TARGET`.
//! Without an endpoint no trace layer exists and those callsites are disabled: tracing off costs nothing.

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tessera_store::model::SPAN_TARGET;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::config::{LogFormat, OtlpProtocol, TracingConfig};

/// What must outlive the server: the trace exporter, flushed at [`Telemetry::shutdown`].
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub(crate) fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered. Called outside the async runtime (the exporter blocks).
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(err) = provider.shutdown() {
                eprintln!("tessera: flushing traces failed: {err}");
            }
        }
    }

    /// `router` with a span around each request, when spans are exported; `router` itself otherwise.
    pub(crate) fn around(&self, router: Router) -> Router {
        if self.exporting() {
            router.layer(axum::middleware::from_fn(request_span))
        } else {
            router
        }
    }
}

/// Sets up logging and, when configured, trace export. Call once, before the async runtime starts.
///
/// # Errors
/// An exporter that cannot be built (a bad endpoint).
pub(crate) fn init(format: LogFormat, tracing: &TracingConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The trace's own spans and events are for the exporter, never for the log.
        .add_directive(format!("{SPAN_TARGET}=off").parse().context("the log filter")?);
    // Colour codes only on a terminal: in a log file or a collector they are noise in every line.
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs = match format {
        LogFormat::Json => base.json().event_format(WithRequestId::json()).boxed(),
        LogFormat::Text => base.event_format(WithRequestId::text()).boxed(),
    };
    let provider = tracing.traces_url().map(|url| provider(tracing, url)).transpose()?;
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tessera"))
            .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry().with(traces).with(logs.with_filter(filter)).try_init();
    Ok(Telemetry { provider })
}

fn provider(config: &TracingConfig, url: String) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build());
    let builder = match config.protocol {
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let protocol =
                if config.protocol == OtlpProtocol::HttpJson { Protocol::HttpJson } else { Protocol::HttpBinary };
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(url)
                .with_timeout(config.timeout)
                .build()
                .context("setting up the OTLP/HTTP exporter")?;
            builder.with_batch_exporter(exporter)
        }
        OtlpProtocol::Grpc => builder.with_batch_exporter(GrpcExporter::new(url, config.timeout)?),
    };
    Ok(builder.build())
}

/// The OTLP/gRPC exporter with a Tokio runtime of its own. tonic's connections need a Tokio reactor, and the batch
/// processor exports from a plain thread of its own: without this the export would panic there and every span
/// after it be dropped. One worker keeps the HTTP/2 connection alive between exports; the server's runtime is left
/// alone, so a slow collector never takes a thread from the requests.
#[derive(Debug)]
struct GrpcExporter {
    exporter: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl GrpcExporter {
    fn new(url: String, timeout: std::time::Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tessera-otlp-grpc")
            .enable_all()
            .build()
            .context("starting the OTLP/gRPC exporter's runtime")?;
        // The channel is created here and bound to the reactor of the runtime entered.
        let exporter = runtime.block_on(async {
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(url).with_timeout(timeout).build()
        });
        Ok(Self { exporter: exporter.context("setting up the OTLP/gRPC exporter")?, runtime })
    }
}

impl opentelemetry_sdk::trace::SpanExporter for GrpcExporter {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        // Called on the batch processor's thread, never on a runtime's: blocking here is what that thread is for.
        std::future::ready(self.runtime.block_on(self.exporter.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

/// The span of one request, named after its route (`POST /auth/refresh`: a layer of the router sees the matched
/// route), a child of the caller's trace when it sent a valid `traceparent`. The server records the status and the
/// request id (`tessera_server::trace`); the path is recorded without its query, where a client may have put a
/// token.
async fn request_span(request: Request, next: Next) -> Response {
    let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        url.path = request.uri().path(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        request_id = tracing::field::Empty,
    );
    // Only fails when no OpenTelemetry layer is installed, and this layer exists only with one.
    let _ = span.set_parent(parent);
    next.run(request).instrument(span).await
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// The usual log line, with the id of the request being served (if any) added: a field of the JSON object, or
/// `request_id=...` at the end of a text line. Request ids are safe to write as they are (see
/// `tessera_server::trace`).
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl WithRequestId<tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>> {
    fn json() -> Self {
        Self { inner: tracing_subscriber::fmt::format().json(), json: true }
    }
}

impl WithRequestId<tracing_subscriber::fmt::format::Format> {
    fn text() -> Self {
        Self { inner: tracing_subscriber::fmt::format(), json: false }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = tessera_server::trace::current_request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let id = id.to_str().unwrap_or_default();
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match line.strip_prefix('{').filter(|_| self.json) {
            Some(fields) => writeln!(writer, "{{\"request_id\":\"{id}\",{fields}"),
            None => writeln!(writer, "{line} request_id={id}"),
        }
    }
}
