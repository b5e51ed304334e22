//! What `oxeye loadgen` sends: request bodies built from item numbers, so
//! that any batch can be built on any task, in any order, and the same run
//! always sends the same data.
//!
//! - Metrics: item `i` is a sample of series `i mod series` in round
//!   `i div series`; series are a window of ids that slides by
//!   `churn × series` every churn interval (new series appear, old ones go
//!   stale). Ten metric names, 100 series per `instance`.
//! - Traces: item `i` is span `i mod 8` of trace `i div 8` (a root server
//!   span and a chain of children), services and operations of bounded
//!   cardinality.
//! - Logs: item `i` is one record of a rotating service and severity,
//!   carrying the trace id of trace `i div 8` of the OTLP/gRPC spans.
//!
//! Every item carries the run id (`run` label or attribute), so a run can
//! be counted on the server afterwards.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

use crate::ingest::remote_write::encode;

/// Spans per trace.
pub const SPANS_PER_TRACE: u64 = 8;
/// Metric names per protocol.
const METRIC_NAMES: u64 = 10;

/// The part of the run a batch belongs to.
#[derive(Debug, Clone)]
pub struct Workload {
    pub run: String,
    pub series: u64,
    pub services: u64,
    /// Series replaced per churn interval, as a fraction of `series`.
    pub churn: f64,
    /// Milliseconds between two samples of one series.
    pub sample_interval_ms: i64,
    /// Wall-clock start of the run (ms).
    pub start_ms: i64,
    /// remote_write series from an exposition instead of generated ones.
    pub template: Option<std::sync::Arc<Vec<super::exposition::TemplateSeries>>>,
}

/// One request's worth of items: `first .. first + count`, dispatched in
/// churn interval `epoch`, at wall-clock `now_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub first: u64,
    pub count: u64,
    pub epoch: u64,
    pub now_ms: i64,
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// `item` into its service's group (services are few: a list will do).
fn add<T>(groups: &mut Vec<(String, Vec<T>)>, service: String, item: T) {
    match groups.iter_mut().find(|(s, _)| *s == service) {
        Some((_, items)) => items.push(item),
        None => groups.push((service, vec![item])),
    }
}

/// 64 well-mixed bits of `x` (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Workload {
    /// The series id and timestamp of metric item `i`.
    fn sample(&self, i: u64, epoch: u64) -> (u64, i64) {
        let series = self.series.max(1);
        let offset = (epoch as f64 * self.churn * series as f64) as u64;
        let round = (i / series) as i64;
        (
            offset + i % series,
            self.start_ms
                .saturating_add(round.saturating_mul(self.sample_interval_ms)),
        )
    }

    fn service(&self, n: u64) -> String {
        format!("loadgen-svc-{}", n % self.services.max(1))
    }

    /// A remote_write body (snappy-compressed WriteRequest).
    pub fn remote_write(&self, b: Batch) -> Vec<u8> {
        let mut body = Vec::with_capacity(b.count as usize * 120);
        if let Some(template) = &self.template {
            for i in b.first..b.first + b.count {
                let (id, t) = self.sample(i, b.epoch);
                let series = &template[(id % template.len() as u64) as usize];
                let labels: Vec<(&str, &str)> = series
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let seconds = (t - self.start_ms) as f64 / 1000.0;
                encode::timeseries(&mut body, &labels, &[(t, series.value_at(id, seconds))]);
            }
            return snap::raw::Encoder::new()
                .compress_vec(&body)
                .unwrap_or_default();
        }
        for i in b.first..b.first + b.count {
            let (id, t) = self.sample(i, b.epoch);
            let name = format!("loadgen_rw_metric_{}", id % METRIC_NAMES);
            let instance = format!("host-{}", id / 100);
            let series = id.to_string();
            let labels = [
                ("__name__", name.as_str()),
                ("instance", instance.as_str()),
                ("job", "loadgen"),
                ("run", self.run.as_str()),
                ("series", series.as_str()),
            ];
            encode::timeseries(&mut body, &labels, &[(t, (i / self.series.max(1)) as f64)]);
        }
        snap::raw::Encoder::new()
            .compress_vec(&body)
            .unwrap_or_default()
    }

    /// OTLP gauges; `prefix` names the protocol (`otlp_grpc`, `otlp_http`).
    pub fn otlp_metrics(&self, prefix: &str, b: Batch) -> ExportMetricsServiceRequest {
        let mut metrics: Vec<Metric> = Vec::new();
        for i in b.first..b.first + b.count {
            let (id, t) = self.sample(i, b.epoch);
            let point = NumberDataPoint {
                attributes: vec![
                    kv("instance", format!("host-{}", id / 100)),
                    kv("run", self.run.clone()),
                    kv("series", id.to_string()),
                ],
                time_unix_nano: (t.max(0) as u64).saturating_mul(1_000_000),
                value: Some(number_data_point::Value::AsDouble(
                    (i / self.series.max(1)) as f64,
                )),
                ..Default::default()
            };
            let name = format!("loadgen.{prefix}.metric_{}", id % METRIC_NAMES);
            match metrics.iter_mut().find(|m| m.name == name) {
                Some(Metric {
                    data: Some(metric::Data::Gauge(g)),
                    ..
                }) => g.data_points.push(point),
                _ => metrics.push(Metric {
                    name,
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point],
                    })),
                    ..Default::default()
                }),
            }
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "loadgen")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Trace ids differ per run and per protocol (`source`).
    fn trace_id(&self, source: &str, trace: u64) -> Vec<u8> {
        let seed = mix(self
            .run
            .bytes()
            .chain(source.bytes())
            .fold(0u64, |h, b| mix(h ^ b as u64)));
        let mut id = mix(seed ^ trace).to_be_bytes().to_vec();
        id.extend_from_slice(&mix(seed ^ trace ^ 0x5555).to_be_bytes());
        id
    }

    fn span_id(&self, trace: u64, k: u64) -> Vec<u8> {
        mix(mix(trace) ^ (k + 1)).max(1).to_be_bytes().to_vec()
    }

    /// OTLP spans, grouped by service; `source` (an attribute) names the
    /// protocol.
    pub fn spans(&self, source: &str, b: Batch) -> ExportTraceServiceRequest {
        let mut by_service: Vec<(String, Vec<Span>)> = Vec::new();
        let now_ns = (b.now_ms.max(0) as u64).saturating_mul(1_000_000);
        for i in b.first..b.first + b.count {
            let (trace, k) = (i / SPANS_PER_TRACE, i % SPANS_PER_TRACE);
            // The root spans the trace; each child a slice of it.
            let start = now_ns.saturating_sub(100_000_000) + k * 5_000_000;
            let duration = if k == 0 {
                90_000_000
            } else {
                1_000_000 + mix(i) % 4_000_000
            };
            let failed = mix(i).is_multiple_of(100);
            let span = Span {
                trace_id: self.trace_id(source, trace),
                span_id: self.span_id(trace, k),
                parent_span_id: if k == 0 {
                    Vec::new()
                } else {
                    self.span_id(trace, k - 1)
                },
                name: if k == 0 {
                    format!("GET /api/items/{{id}}/{}", trace % 5)
                } else {
                    format!("step-{k}")
                },
                kind: if k == 0 {
                    span::SpanKind::Server as i32
                } else {
                    span::SpanKind::Internal as i32
                },
                start_time_unix_nano: start,
                end_time_unix_nano: start + duration,
                attributes: vec![
                    kv("run", self.run.clone()),
                    kv("source", source),
                    kv("http.request.method", "GET"),
                ],
                status: Some(Status {
                    code: if failed { 2 } else { 0 },
                    ..Default::default()
                }),
                ..Default::default()
            };
            add(&mut by_service, self.service(trace), span);
        }
        ExportTraceServiceRequest {
            resource_spans: by_service
                .into_iter()
                .map(|(service, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", service)],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn log_line(&self, i: u64) -> (&'static str, String) {
        const LEVELS: [&str; 4] = ["INFO", "INFO", "WARN", "ERROR"];
        let level = LEVELS[(mix(i) % 4) as usize];
        let status = [200, 200, 404, 500][(mix(i) % 4) as usize];
        (
            level,
            format!(
                "loadgen record {i} user=u{} path=/api/items/{} status={status} took={}ms",
                mix(i) % 1000,
                i % 97,
                mix(i ^ 7) % 500
            ),
        )
    }

    /// OTLP log records, grouped by service; `source` (an attribute) names
    /// the protocol.
    pub fn logs(&self, source: &str, b: Batch) -> ExportLogsServiceRequest {
        let mut by_service: Vec<(String, Vec<LogRecord>)> = Vec::new();
        let now_ns = (b.now_ms.max(0) as u64).saturating_mul(1_000_000);
        for i in b.first..b.first + b.count {
            let (level, body) = self.log_line(i);
            let record = LogRecord {
                time_unix_nano: now_ns,
                observed_time_unix_nano: now_ns,
                severity_number: match level {
                    "INFO" => 9,
                    "WARN" => 13,
                    _ => 17,
                },
                severity_text: level.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                attributes: vec![kv("run", self.run.clone()), kv("source", source)],
                trace_id: self.trace_id("otlp_grpc", i / SPANS_PER_TRACE),
                ..Default::default()
            };
            add(&mut by_service, self.service(i), record);
        }
        ExportLogsServiceRequest {
            resource_logs: by_service
                .into_iter()
                .map(|(service, log_records)| ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", service)],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// An Elasticsearch `_bulk` body of `create` actions into `index`.
    pub fn bulk(&self, index: &str, b: Batch) -> Vec<u8> {
        let mut out = Vec::with_capacity(b.count as usize * 256);
        let timestamp = chrono::DateTime::from_timestamp_millis(b.now_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for i in b.first..b.first + b.count {
            let (level, message) = self.log_line(i);
            let action = serde_json::json!({"create": {"_index": index}});
            let doc = serde_json::json!({
                "@timestamp": timestamp,
                "message": message,
                "log": {"level": level},
                "service": {"name": self.service(i)},
                "run": self.run,
                "trace": {"id": crate::model::span::hex(&self.trace_id("otlp_grpc", i / SPANS_PER_TRACE))},
            });
            out.extend_from_slice(action.to_string().as_bytes());
            out.push(b'\n');
            out.extend_from_slice(doc.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            template: None,
            run: "t".into(),
            series: 10,
            services: 3,
            churn: 0.2,
            sample_interval_ms: 1000,
            start_ms: 1_000_000,
        }
    }

    #[test]
    fn series_slide_with_churn_and_timestamps_rise_per_series() {
        let w = workload();
        assert_eq!(w.sample(3, 0), (3, 1_000_000));
        assert_eq!(w.sample(13, 0), (3, 1_001_000));
        // Two series replaced per churn interval.
        assert_eq!(w.sample(3, 1), (5, 1_000_000));
        assert_eq!(w.sample(9, 2), (13, 1_000_000));
    }

    #[test]
    fn traces_have_one_root_and_chained_children() {
        let w = workload();
        let request = w.spans(
            "test",
            Batch {
                first: 0,
                count: 16,
                epoch: 0,
                now_ms: 2_000_000,
            },
        );
        let spans: Vec<&Span> = request
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
            .collect();
        assert_eq!(spans.len(), 16);
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert_eq!(roots, 2);
        for s in &spans {
            if !s.parent_span_id.is_empty() {
                assert!(spans
                    .iter()
                    .any(|p| p.span_id == s.parent_span_id && p.trace_id == s.trace_id));
            }
        }
    }

    #[test]
    fn bulk_bodies_are_ndjson_pairs() {
        let body = workload().bulk(
            "loadgen",
            Batch {
                first: 5,
                count: 3,
                epoch: 0,
                now_ms: 1_700_000_000_000,
            },
        );
        let lines: Vec<serde_json::Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[1]["run"], "t");
        assert_eq!(lines[1]["@timestamp"], "2023-11-14T22:13:20.000Z");
    }
}
