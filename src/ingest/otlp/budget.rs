//! What an OTLP request will cost once translated, counted before anything
//! is built.
//!
//! Translation multiplies: a histogram point becomes one series per bucket,
//! each carrying every attribute of the point; a log record becomes a
//! document carrying its resource's and scope's attributes. A small body can
//! therefore ask for gigabytes. The request is measured from the decoded
//! protobuf (whose size the body limit already bounds) and refused whole
//! when it would exceed `limits.max_items_per_request`,
//! `limits.max_series_per_request` or `limits.max_translated_size`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

use crate::ingest::IngestError;

/// Per-request limits of OTLP translation.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Log records, spans or metric data points.
    pub max_items: usize,
    /// Series a metrics request may produce (buckets count one each).
    pub max_series: usize,
    /// Bytes of labels or documents a request may produce.
    pub max_bytes: usize,
}

impl Default for Budget {
    /// No limits (for embedding and benchmarks; the server uses
    /// [`Budget::from_config`]).
    fn default() -> Self {
        Budget {
            max_items: usize::MAX,
            max_series: usize::MAX,
            max_bytes: usize::MAX,
        }
    }
}

impl Budget {
    pub fn from_config(limits: &crate::config::LimitsConfig) -> Budget {
        Budget {
            max_items: limits.max_items_per_request,
            max_series: limits.max_series_per_request,
            max_bytes: limits.max_translated_size.as_usize(),
        }
    }
}

/// Labels Oxeye adds to every series (`__name__`, `job`, `instance`, `le`…).
const SERIES_OVERHEAD: usize = 96;

fn attrs_len(attrs: &[KeyValue]) -> usize {
    attrs
        .iter()
        .map(|kv| {
            kv.key
                .len()
                .saturating_add(kv.value.as_ref().map_or(0, |v| v.encoded_len()))
        })
        .fold(0, usize::saturating_add)
}

impl Budget {
    fn items(&self, items: usize, what: &str) -> Result<(), IngestError> {
        if items > self.max_items {
            return Err(IngestError::BadRequest(format!(
                "request holds {items} {what}, more than {} (limits.max_items_per_request)",
                self.max_items
            )));
        }
        Ok(())
    }

    fn bytes(&self, bytes: usize, what: &str) -> Result<(), IngestError> {
        if bytes > self.max_bytes {
            return Err(IngestError::PayloadTooLarge(format!(
                "request would translate into about {bytes} bytes of {what}, more than {} (limits.max_translated_size)",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Data points, series (one per bucket, quantile, `_sum`, `_count`) and
    /// label bytes of a metrics request.
    pub fn check_metrics(&self, request: &ExportMetricsServiceRequest) -> Result<(), IngestError> {
        let (mut points, mut series, mut bytes) = (0usize, 0usize, 0usize);
        let mut add = |n_series: usize, labels: usize| {
            points = points.saturating_add(1);
            series = series.saturating_add(n_series);
            bytes = bytes
                .saturating_add(n_series.saturating_mul(labels.saturating_add(SERIES_OVERHEAD)));
        };
        for rm in &request.resource_metrics {
            let resource = rm.resource.as_ref().map_or(0, |r| attrs_len(&r.attributes));
            // target_info: one series with the resource's attributes.
            add(1, resource);
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    let name = metric.name.len().saturating_add(metric.unit.len());
                    let labels = |attrs: &[KeyValue]| name.saturating_add(attrs_len(attrs));
                    match &metric.data {
                        None => {}
                        Some(Data::Gauge(g)) => {
                            for p in &g.data_points {
                                add(1, labels(&p.attributes));
                            }
                        }
                        Some(Data::Sum(s)) => {
                            for p in &s.data_points {
                                add(1, labels(&p.attributes));
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            for p in &h.data_points {
                                let buckets = p.explicit_bounds.len().saturating_add(1);
                                add(buckets.saturating_add(2), labels(&p.attributes));
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            for p in &h.data_points {
                                let side = |b: &Option<_>| {
                                    b.as_ref().map_or(0, |b: &opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets| b.bucket_counts.len())
                                };
                                let buckets = side(&p.positive)
                                    .saturating_add(side(&p.negative))
                                    .saturating_add(2);
                                add(buckets.saturating_add(2), labels(&p.attributes));
                            }
                        }
                        Some(Data::Summary(s)) => {
                            for p in &s.data_points {
                                let n = p.quantile_values.len().saturating_add(2);
                                add(n, labels(&p.attributes));
                            }
                        }
                    }
                }
            }
        }
        self.items(points, "data points")?;
        if series > self.max_series {
            return Err(IngestError::BadRequest(format!(
                "request would create {series} series (one per data point, bucket, quantile, _sum and _count), more than {} (limits.max_series_per_request)",
                self.max_series
            )));
        }
        self.bytes(bytes, "series labels")
    }

    /// Records and document bytes of a logs request: every record carries
    /// its resource's and scope's attributes.
    pub fn check_logs(&self, request: &ExportLogsServiceRequest) -> Result<(), IngestError> {
        let (mut records, mut bytes) = (0usize, 0usize);
        for rl in &request.resource_logs {
            let resource = rl.resource.as_ref().map_or(0, |r| r.encoded_len());
            for sl in &rl.scope_logs {
                let scope = sl.scope.as_ref().map_or(0, |s| s.encoded_len());
                let shared = resource.saturating_add(scope);
                records = records.saturating_add(sl.log_records.len());
                for record in &sl.log_records {
                    bytes = bytes
                        .saturating_add(record.encoded_len())
                        .saturating_add(shared);
                }
            }
        }
        self.items(records, "log records")?;
        self.bytes(bytes, "log documents")
    }

    /// Spans of a traces request (spans share their resource, so bytes do
    /// not multiply).
    pub fn check_traces(&self, request: &ExportTraceServiceRequest) -> Result<(), IngestError> {
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .fold(0, usize::saturating_add);
        self.items(spans, "spans")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn budget() -> Budget {
        Budget {
            max_items: 1000,
            max_series: 1000,
            max_bytes: 1 << 20,
        }
    }

    fn big_attr(len: usize) -> KeyValue {
        KeyValue {
            key: "k".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(len))),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn histogram_buckets_count_as_series_before_they_exist() {
        let request = |bounds: usize, attr: usize| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "h".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![big_attr(attr)],
                                explicit_bounds: vec![1.0; bounds],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert!(budget().check_metrics(&request(10, 10)).is_ok());
        let err = budget().check_metrics(&request(5000, 10)).unwrap_err();
        assert!(err.to_string().contains("max_series_per_request"), "{err}");
        // 500 buckets × 4 KiB of attributes: 2 MiB of labels from 4 KiB.
        let err = budget().check_metrics(&request(500, 4096)).unwrap_err();
        assert!(err.to_string().contains("max_translated_size"), "{err}");
    }

    #[test]
    fn log_records_carry_their_resource() {
        let request = |records: usize, resource: usize| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![big_attr(resource)],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); records],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert!(budget().check_logs(&request(100, 100)).is_ok());
        let err = budget().check_logs(&request(5000, 10)).unwrap_err();
        assert!(err.to_string().contains("max_items_per_request"), "{err}");
        let err = budget().check_logs(&request(900, 64 << 10)).unwrap_err();
        assert!(err.to_string().contains("max_translated_size"), "{err}");
    }
}
