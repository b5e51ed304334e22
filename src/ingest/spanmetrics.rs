//! Span-derived RED metrics, named and labelled like the OpenTelemetry
//! Collector's `spanmetrics` connector (what Jaeger's Monitor tab and
//! Grafana's APM dashboards read):
//!
//! - `traces_span_metrics_calls_total` — spans, a counter;
//! - `traces_span_metrics_duration_milliseconds_{bucket,sum,count}` — span
//!   durations, a histogram with `traces.span_metrics_buckets_ms` bounds;
//!
//! each with labels `service_name`, `span_name`, `span_kind`
//! (`SPAN_KIND_SERVER`, …) and `status_code` (`STATUS_CODE_UNSET|OK|ERROR`).
//! Errors are `calls_total{status_code="STATUS_CODE_ERROR"}`. Counts
//! accumulate in memory as spans arrive and are written to the metrics store
//! every `traces.span_metrics_interval` (like a scrape), each series with an
//! exemplar carrying the `trace_id` and `span_id` of its latest span. At
//! most `traces.span_metrics_max_series` combinations are tracked; spans of
//! further ones are counted as dropped (`oxeye_span_metrics_dropped_spans`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::span::{hex, Span};
use crate::model::{Exemplar, LabelRef, Labels, MetricMetadata, MetricType, Sample};
use crate::storage::metrics::{MetricsStore, SeriesWrite, StorageError};

pub const CALLS: &str = "traces_span_metrics_calls_total";
pub const DURATION: &str = "traces_span_metrics_duration_milliseconds";

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUSES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: String,
    name: String,
    kind: u8,
    status: u8,
}

#[derive(Debug, Clone)]
struct Entry {
    calls: u64,
    /// Per bucket (not cumulative), the last one being +Inf.
    buckets: Vec<u64>,
    sum_ms: f64,
    /// (trace id, span id, duration ms, end time ms) of the latest span.
    exemplar: Option<([u8; 16], [u8; 8], f64, i64)>,
}

pub struct SpanMetrics {
    bounds_ms: Vec<f64>,
    max_series: usize,
    /// Longest service or span name made into a label value
    /// (`limits.max_label_value_length`, as for every other series).
    max_label_value: usize,
    series: Mutex<HashMap<Key, Entry>>,
    /// Spans not counted because `max_series` combinations exist already,
    /// or because their service or span name is too long to be a label.
    pub dropped: std::sync::atomic::AtomicU64,
}

impl SpanMetrics {
    pub fn new(bounds_ms: Vec<f64>, max_series: usize) -> Arc<SpanMetrics> {
        Arc::new(SpanMetrics {
            bounds_ms,
            max_series,
            max_label_value: usize::MAX,
            series: Mutex::new(HashMap::new()),
            dropped: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Apply `limits.max_label_value_length` to the labels made from spans.
    pub fn with_label_limit(mut self: Arc<Self>, max_label_value: usize) -> Arc<Self> {
        if let Some(this) = Arc::get_mut(&mut self) {
            this.max_label_value = max_label_value;
        }
        self
    }

    /// Count spans as they are stored; returns how many were not counted
    /// because of the series limit or the label length limit.
    pub fn observe(&self, spans: &[Span]) -> u64 {
        let mut dropped = 0;
        let mut series = self.series.lock();
        for span in spans {
            if span.service.len() > self.max_label_value || span.name.len() > self.max_label_value {
                dropped += 1;
                continue;
            }
            let key = Key {
                service: span.service.clone(),
                name: span.name.clone(),
                kind: span.kind.min(5),
                status: span.status_code.min(2),
            };
            if !series.contains_key(&key) && series.len() >= self.max_series {
                dropped += 1;
                continue;
            }
            let entry = series.entry(key).or_insert_with(|| Entry {
                calls: 0,
                buckets: vec![0; self.bounds_ms.len() + 1],
                sum_ms: 0.0,
                exemplar: None,
            });
            let ms = span.duration_ns() as f64 / 1e6;
            let bucket = self.bounds_ms.partition_point(|b| *b < ms);
            entry.calls += 1;
            entry.buckets[bucket] += 1;
            entry.sum_ms += ms;
            entry.exemplar = Some((span.trace_id, span.span_id, ms, span.end_ns / 1_000_000));
        }
        self.dropped
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        dropped
    }

    /// Write every series' current value at `now_ms`.
    pub fn flush(&self, store: &MetricsStore, now_ms: i64) -> Result<u64, StorageError> {
        let snapshot: Vec<(Key, Entry)> = self
            .series
            .lock()
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        if snapshot.is_empty() {
            return Ok(0);
        }
        // Owned series first; `SeriesWrite` borrows from them.
        struct Owned {
            labels: Labels,
            key: Vec<u8>,
            sample: [Sample; 1],
            exemplars: Vec<Exemplar>,
        }
        let mut owned = Vec::new();
        let mut push = |pairs: Vec<(&str, String)>, value: f64, exemplar: Option<Exemplar>| {
            let labels = Labels::from_pairs(pairs);
            let key = labels.key();
            owned.push(Owned {
                labels,
                key,
                sample: [Sample {
                    t: now_ms,
                    v: value,
                }],
                exemplars: exemplar.into_iter().collect(),
            });
        };
        for (key, entry) in snapshot {
            let base = |name: &str| {
                vec![
                    ("__name__", name.to_owned()),
                    ("service_name", key.service.clone()),
                    ("span_name", key.name.clone()),
                    ("span_kind", KINDS[key.kind as usize].to_owned()),
                    ("status_code", STATUSES[key.status as usize].to_owned()),
                ]
            };
            let exemplar = entry.exemplar.map(|(trace, span, ms, t)| Exemplar {
                labels: Labels::from_pairs([("trace_id", hex(&trace)), ("span_id", hex(&span))]),
                t: t.min(now_ms),
                v: ms,
            });
            push(base(CALLS), entry.calls as f64, exemplar.clone());
            let mut cumulative = 0u64;
            for (i, count) in entry.buckets.iter().enumerate() {
                cumulative += count;
                let le = match self.bounds_ms.get(i) {
                    Some(bound) => crate::ingest::otlp::metrics::format_le(*bound),
                    None => "+Inf".to_owned(),
                };
                let mut labels = base(&format!("{DURATION}_bucket"));
                labels.push(("le", le));
                let bucket_exemplar = exemplar.as_ref().filter(|e| {
                    let lower = if i == 0 {
                        f64::NEG_INFINITY
                    } else {
                        self.bounds_ms[i - 1]
                    };
                    let upper = self.bounds_ms.get(i).copied().unwrap_or(f64::INFINITY);
                    e.v > lower && e.v <= upper
                });
                push(labels, cumulative as f64, bucket_exemplar.cloned());
            }
            push(base(&format!("{DURATION}_sum")), entry.sum_ms, None);
            push(base(&format!("{DURATION}_count")), entry.calls as f64, None);
        }
        let refs: Vec<Vec<LabelRef<'_>>> =
            owned.iter().map(|o| o.labels.iter().collect()).collect();
        let writes: Vec<SeriesWrite<'_>> = owned
            .iter()
            .zip(&refs)
            .map(|(o, r)| SeriesWrite {
                hash: xxhash_rust::xxh3::xxh3_64(&o.key),
                key: &o.key,
                labels: r,
                samples: &o.sample,
                exemplars: &o.exemplars,
            })
            .collect();
        let metadata = [
            MetricMetadata {
                metric_family: CALLS.to_owned(),
                metric_type: MetricType::Counter,
                help: "Spans received, by service, span name, span kind and status code".into(),
                unit: String::new(),
            },
            MetricMetadata {
                metric_family: DURATION.to_owned(),
                metric_type: MetricType::Histogram,
                help: "Span durations in milliseconds".into(),
                unit: "milliseconds".into(),
            },
        ];
        let outcome = store.append(&writes, &metadata)?;
        Ok(outcome.samples_accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::span::AttrValue;

    fn span(name: &str, ms: i64, status: u8) -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: name.into(),
            kind: 2,
            start_ns: 0,
            end_ns: ms * 1_000_000,
            status_code: status,
            status_message: String::new(),
            service: "api".into(),
            resource: Arc::new(vec![("service.name".into(), AttrValue::Str("api".into()))]),
            scope_name: String::new(),
            scope_version: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn span_names_too_long_for_a_label_are_not_counted() {
        let metrics = SpanMetrics::new(vec![10.0], 100).with_label_limit(16);
        let long = "GET /items/".to_owned() + &"9".repeat(5000);
        assert_eq!(
            metrics.observe(&[span(&long, 5, 0), span("short", 5, 0)]),
            1
        );
        assert_eq!(metrics.series.lock().len(), 1);
    }

    #[test]
    fn counts_buckets_and_the_series_limit() {
        let metrics = SpanMetrics::new(vec![10.0, 100.0], 2);
        assert_eq!(
            metrics.observe(&[span("a", 5, 0), span("a", 50, 0), span("a", 500, 2)]),
            0
        );
        // Two combinations exist (a/unset, a/error): a third is dropped.
        assert_eq!(metrics.observe(&[span("b", 1, 0), span("a", 7, 0)]), 1);
        let series = metrics.series.lock();
        let ok = &series[&Key {
            service: "api".into(),
            name: "a".into(),
            kind: 2,
            status: 0,
        }];
        assert_eq!(ok.calls, 3);
        assert_eq!(ok.buckets, vec![2, 1, 0]);
        assert!((ok.sum_ms - 62.0).abs() < 1e-9);
        assert_eq!(
            metrics.dropped.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
