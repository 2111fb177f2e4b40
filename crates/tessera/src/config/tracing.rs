//! `[tracing]`: exporting traces over OTLP. Off unless an endpoint is set; then every request's span, its store
//! calls, password check, signing and verification, and the token flow's events (issued, refreshed, exchanged,
//! revoked, propagated) go to an OpenTelemetry collector.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration_text;

/// Trace export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TracingConfig {
    /// The collector's OTLP URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: over HTTP the base URL, to which `/v1/traces` is
    /// added (e.g. `http://127.0.0.1:4318`); over gRPC the server's URL (e.g. `http://127.0.0.1:4317`). `https`
    /// verifies the collector against the system's roots. Default none: no traces, and no cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) otlp_endpoint: Option<String>,
    /// `http/protobuf` (default), `http/json` or `grpc`.
    pub(crate) protocol: OtlpProtocol,
    /// The `service.name` of the spans. Default `tessera`.
    pub(crate) service_name: String,
    /// Share of new traces kept, from 0 to 1 (default 1). A request that arrives with a sampled W3C `traceparent`
    /// is always kept: the caller's decision is followed.
    pub(crate) sample_ratio: f64,
    /// How long one export may take. Default 10 s.
    #[serde(with = "duration_text")]
    pub(crate) timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            service_name: "tessera".to_owned(),
            sample_ratio: 1.0,
            timeout: Duration::from_secs(10),
        }
    }
}

/// OTLP's transports and encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OtlpProtocol {
    /// Protocol buffers, the default of collectors.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[serde(rename = "http/json")]
    HttpJson,
    /// Protocol buffers over gRPC, the collectors' other port.
    #[serde(rename = "grpc")]
    Grpc,
}

impl TracingConfig {
    /// The URL spans are sent to: over HTTP the traces path under the endpoint, over gRPC the endpoint itself (the
    /// service's path is gRPC's own).
    pub(crate) fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint.as_ref().map(|base| {
            let base = base.trim_end_matches('/');
            if self.protocol == OtlpProtocol::Grpc || base.ends_with("/v1/traces") {
                base.to_owned()
            } else {
                format!("{base}/v1/traces")
            }
        })
    }

    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
        if let Some(endpoint) = &self.otlp_endpoint {
            match reqwest::Url::parse(endpoint) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                    if !url.username().is_empty() || url.password().is_some() {
                        problems.push("tracing.otlp_endpoint must not carry credentials".into());
                    }
                }
                _ => problems.push(format!("tracing.otlp_endpoint must be an http(s) URL, not {endpoint:?}")),
            }
        }
        if !(self.sample_ratio.is_finite() && (0.0..=1.0).contains(&self.sample_ratio)) {
            problems.push(format!("tracing.sample_ratio must be between 0 and 1, not {}", self.sample_ratio));
        }
        if self.service_name.trim().is_empty() {
            problems.push("tracing.service_name must not be empty".into());
        }
        if self.timeout.is_zero() {
            problems.push("tracing.timeout must be more than 0".into());
        }
    }
}
