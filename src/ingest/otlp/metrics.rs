//! OTLP metrics → Prometheus series, following Prometheus' own OTLP
//! translation (`otlptranslator`, "underscore escaping with suffixes"):
//!
//! - names: non-alphanumeric runs become `_`; the unit is appended
//!   (`ms` → `milliseconds`, `By/s` → `bytes_per_second`, `{…}` annotations
//!   dropped), monotonic sums get `_total`, gauges with unit `1` get `_ratio`;
//! - `service.namespace/service.name` → `job`, `service.instance.id` →
//!   `instance`; every other resource attribute goes to `target_info`, and
//!   those named in `otlp.promote_resource_attributes` also become labels of
//!   every series of the resource (a point attribute of the same name wins),
//!   as Prometheus' `otlp.promote_resource_attributes`;
//! - point attributes become labels (invalid characters → `_`, a leading
//!   digit gets `key_`);
//! - gauges and cumulative sums become one series each; **delta** sums are
//!   accumulated into cumulative totals (the running total lives in memory, so
//!   a restart looks like a counter reset, which `rate()` handles); delta
//!   histograms are rejected through `partial_success`;
//! - histograms become `_bucket{le}` (cumulative), `_sum` and `_count`;
//!   summaries `{quantile}`, `_sum`, `_count`;
//! - **exponential histograms** become the same classic form, with one `le`
//!   per populated exponential bucket: negative buckets as `le = -base^i`,
//!   the zero bucket as `le = zero_threshold`, positive buckets as
//!   `le = base^(i+1)` with `base = 2^(2^-scale)`, then `+Inf`; so
//!   `histogram_quantile` works on them unchanged;
//! - exemplars keep `trace_id`/`span_id` (hex) and their filtered attributes;
//!   a histogram's exemplar goes to the `_bucket` series that holds its value.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

use super::{any_to_json, hex};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric::Data, number_data_point, AggregationTemporality, Exemplar as OtlpExemplar,
    Metric,
};
use parking_lot::Mutex;

use crate::ingest::LabelCheck;
use crate::model::{
    Exemplar, LabelRef, Labels, MetricMetadata, MetricType, Sample, STALE_NAN_BITS,
};
use crate::storage::metrics::SeriesWrite;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the point marks a gap (stale).
const FLAG_NO_RECORDED_VALUE: u32 = 1;
/// At most this many delta series' running totals are remembered.
const MAX_DELTA_SERIES: usize = 1_000_000;

/// Running totals that turn delta sums into cumulative counters.
#[derive(Default)]
pub struct DeltaState {
    totals: Mutex<HashMap<u64, f64>>,
}

impl DeltaState {
    fn accumulate(&self, key: u64, delta: f64) -> f64 {
        let mut totals = self.totals.lock();
        if totals.len() >= MAX_DELTA_SERIES && !totals.contains_key(&key) {
            // Forget everything rather than grow without bound; consumers see a reset.
            totals.clear();
        }
        let total = totals.entry(key).or_insert(0.0);
        *total += delta;
        *total
    }
}

/// Series built from one request, merged by label set.
#[derive(Default)]
pub struct Translated {
    series: Vec<(Labels, Vec<Sample>, Vec<Exemplar>)>,
    by_labels: HashMap<Labels, usize>,
    pub metadata: Vec<MetricMetadata>,
    pub rejected_points: u64,
    pub messages: Vec<String>,
}

impl Translated {
    fn push(&mut self, labels: Labels, sample: Sample, exemplars: Vec<Exemplar>) {
        let index = match self.by_labels.get(&labels) {
            Some(&index) => index,
            None => {
                self.series.push((labels.clone(), Vec::new(), Vec::new()));
                self.by_labels.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let entry = &mut self.series[index];
        entry.1.push(sample);
        entry.2.extend(exemplars);
    }

    fn reject(&mut self, points: usize, message: String) {
        self.rejected_points += points as u64;
        if self.messages.len() < 10 {
            self.messages.push(message);
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.1.len()).sum()
    }

    /// Sort each series' samples by time, as the store expects them.
    pub fn sort_samples(&mut self) {
        for (_, samples, _) in &mut self.series {
            samples.sort_by_key(|s| s.t);
        }
    }

    /// Label views and canonical keys of every series, for [`Translated::writes`].
    pub fn label_refs(&self) -> Vec<(Vec<LabelRef<'_>>, Vec<u8>)> {
        self.series
            .iter()
            .map(|(labels, _, _)| (labels.iter().collect(), labels.key()))
            .collect()
    }

    pub fn writes<'a>(
        &'a self,
        label_refs: &'a [(Vec<LabelRef<'a>>, Vec<u8>)],
    ) -> Vec<SeriesWrite<'a>> {
        self.series
            .iter()
            .zip(label_refs)
            .map(|((_, samples, exemplars), (refs, key))| SeriesWrite {
                hash: xxhash_rust::xxh3::xxh3_64(key),
                key,
                labels: refs,
                samples,
                exemplars,
            })
            .collect()
    }
}

/// Translate a request. Points that cannot be represented are counted in
/// `rejected_points` with a message; the rest are kept.
pub fn translate(
    request: &ExportMetricsServiceRequest,
    check: &LabelCheck,
    deltas: &DeltaState,
    promote: &[String],
    now_ms: i64,
) -> Translated {
    let mut out = Translated::default();
    let mut seen_families: HashMap<String, ()> = HashMap::new();
    for resource_metrics in &request.resource_metrics {
        let resource_attrs: &[KeyValue] = resource_metrics
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let (job, instance) = job_and_instance(resource_attrs);
        let promoted: Vec<(String, String)> = merge_colliding(
            resource_attrs
                .iter()
                .filter(|kv| promote.contains(&kv.key))
                .map(|kv| (normalize_label(&kv.key), any_to_string(kv.value.as_ref())))
                .filter(|(k, _)| k != "__name__" && k != "job" && k != "instance")
                .collect(),
        );
        let mut newest = i64::MIN;
        for scope in &resource_metrics.scope_metrics {
            for metric in &scope.metrics {
                let families = translate_metric(
                    metric,
                    &job,
                    &instance,
                    &promoted,
                    check,
                    deltas,
                    now_ms,
                    &mut out,
                    &mut newest,
                );
                for m in families {
                    if seen_families.insert(m.metric_family.clone(), ()).is_none() {
                        out.metadata.push(m);
                    }
                }
            }
        }
        // target_info carries the resource attributes that are not job/instance.
        let extra: Vec<(String, String)> = resource_attrs
            .iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .map(|kv| (normalize_label(&kv.key), any_to_string(kv.value.as_ref())))
            .collect();
        if !extra.is_empty() && newest != i64::MIN {
            let mut pairs = merge_colliding(extra);
            pairs.push(("__name__".into(), "target_info".into()));
            add_job_instance(&mut pairs, &job, &instance);
            if let Some(labels) = checked_labels(pairs, check, &mut out) {
                out.push(labels, Sample { t: newest, v: 1.0 }, Vec::new());
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn translate_metric(
    metric: &Metric,
    job: &str,
    instance: &str,
    promoted: &[(String, String)],
    check: &LabelCheck,
    deltas: &DeltaState,
    now_ms: i64,
    out: &mut Translated,
    newest: &mut i64,
) -> Vec<MetricMetadata> {
    let Some(data) = &metric.data else {
        return Vec::new();
    };
    let mut time = |nanos: u64| {
        let t = if nanos == 0 {
            now_ms
        } else {
            (nanos / 1_000_000) as i64
        };
        *newest = (*newest).max(t);
        t
    };
    let metadata = |name: String, metric_type: MetricType| MetricMetadata {
        metric_family: name,
        metric_type,
        help: metric.description.clone(),
        unit: metric.unit.clone(),
    };
    let series_labels = |name: &str, attrs: &[KeyValue], extra: Option<(&str, String)>| {
        let mut pairs = merge_colliding(
            attrs
                .iter()
                .map(|kv| (normalize_label(&kv.key), any_to_string(kv.value.as_ref())))
                .collect(),
        );
        if let Some((k, v)) = extra {
            pairs.retain(|(n, _)| n != k);
            pairs.push((k.to_owned(), v));
        }
        pairs.retain(|(n, _)| n != "__name__");
        for (k, v) in promoted {
            if !pairs.iter().any(|(n, _)| n == k) {
                pairs.push((k.clone(), v.clone()));
            }
        }
        pairs.push(("__name__".into(), name.to_owned()));
        add_job_instance(&mut pairs, job, instance);
        pairs
    };
    // Explicit and exponential histograms, both in classic form.
    let mut histograms =
        |kind: &str, temporality: i32, points: Vec<(&[KeyValue], u64, ClassicHistogram)>| {
            if temporality == AggregationTemporality::Delta as i32 {
                out.reject(
                points.len(),
                format!("{kind} {:?}: delta temporality is not supported for histograms; export cumulative histograms", metric.name),
            );
                return Vec::new();
            }
            let base = metric_name(&metric.name, &metric.unit, Kind::Histogram);
            for (attributes, nanos, mut classic) in points {
                classic.t = time(nanos);
                classic.emit(
                    &base,
                    |name, extra| series_labels(name, attributes, extra),
                    check,
                    out,
                );
            }
            vec![metadata(base, MetricType::Histogram)]
        };
    match data {
        Data::Gauge(gauge) => {
            let name = metric_name(&metric.name, &metric.unit, Kind::Gauge);
            for point in &gauge.data_points {
                let t = time(point.time_unix_nano);
                let v = number_value(point.value.as_ref(), point.flags);
                let pairs = series_labels(&name, &point.attributes, None);
                if let Some(labels) = checked_labels(pairs, check, out) {
                    out.push(labels, Sample { t, v }, exemplars(&point.exemplars));
                }
            }
            vec![metadata(name, MetricType::Gauge)]
        }
        Data::Sum(sum) => {
            let kind = if sum.is_monotonic {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            let name = metric_name(&metric.name, &metric.unit, kind);
            let delta = sum.aggregation_temporality == AggregationTemporality::Delta as i32;
            for point in &sum.data_points {
                let t = time(point.time_unix_nano);
                let mut v = number_value(point.value.as_ref(), point.flags);
                let pairs = series_labels(&name, &point.attributes, None);
                if let Some(labels) = checked_labels(pairs, check, out) {
                    if delta && v.to_bits() != STALE_NAN_BITS {
                        v = deltas.accumulate(labels.hash(), v);
                    }
                    out.push(labels, Sample { t, v }, exemplars(&point.exemplars));
                }
            }
            let metric_type = if sum.is_monotonic {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            vec![metadata(name, metric_type)]
        }
        Data::Histogram(histogram) => {
            let points = histogram
                .data_points
                .iter()
                .map(|point| {
                    let bounds = point
                        .explicit_bounds
                        .iter()
                        .copied()
                        .chain(std::iter::once(f64::INFINITY));
                    let classic = ClassicHistogram {
                        t: 0,
                        stale: point.flags & FLAG_NO_RECORDED_VALUE != 0,
                        buckets: bounds.zip(point.bucket_counts.iter().copied()).collect(),
                        count: point.count,
                        sum: point.sum,
                        exemplars: exemplars(&point.exemplars),
                    };
                    (point.attributes.as_slice(), point.time_unix_nano, classic)
                })
                .collect();
            histograms("histogram", histogram.aggregation_temporality, points)
        }
        Data::ExponentialHistogram(histogram) => {
            let points = histogram
                .data_points
                .iter()
                .map(|point| {
                    let classic = ClassicHistogram {
                        t: 0,
                        stale: point.flags & FLAG_NO_RECORDED_VALUE != 0,
                        buckets: exponential_buckets(point),
                        count: point.count,
                        sum: point.sum,
                        exemplars: exemplars(&point.exemplars),
                    };
                    (point.attributes.as_slice(), point.time_unix_nano, classic)
                })
                .collect();
            histograms(
                "exponential histogram",
                histogram.aggregation_temporality,
                points,
            )
        }
        Data::Summary(summary) => {
            let base = metric_name(&metric.name, &metric.unit, Kind::Summary);
            for point in &summary.data_points {
                let t = time(point.time_unix_nano);
                let stale = point.flags & FLAG_NO_RECORDED_VALUE != 0;
                let value = |v: f64| {
                    if stale {
                        f64::from_bits(STALE_NAN_BITS)
                    } else {
                        v
                    }
                };
                for quantile in &point.quantile_values {
                    let pairs = series_labels(
                        &base,
                        &point.attributes,
                        Some(("quantile", format_le(quantile.quantile))),
                    );
                    if let Some(labels) = checked_labels(pairs, check, out) {
                        out.push(
                            labels,
                            Sample {
                                t,
                                v: value(quantile.value),
                            },
                            Vec::new(),
                        );
                    }
                }
                let pairs = series_labels(&format!("{base}_sum"), &point.attributes, None);
                if let Some(labels) = checked_labels(pairs, check, out) {
                    out.push(
                        labels,
                        Sample {
                            t,
                            v: value(point.sum),
                        },
                        Vec::new(),
                    );
                }
                let pairs = series_labels(&format!("{base}_count"), &point.attributes, None);
                if let Some(labels) = checked_labels(pairs, check, out) {
                    out.push(
                        labels,
                        Sample {
                            t,
                            v: value(point.count as f64),
                        },
                        Vec::new(),
                    );
                }
            }
            vec![metadata(base, MetricType::Summary)]
        }
    }
}

/// A histogram data point in Prometheus' classic form.
struct ClassicHistogram {
    t: i64,
    /// `FLAG_NO_RECORDED_VALUE`: every series of the point gets a stale marker.
    stale: bool,
    /// `(upper bound, count in this bucket)`, in increasing bound order.
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: Option<f64>,
    exemplars: Vec<Exemplar>,
}

impl ClassicHistogram {
    /// Write `_bucket{le}` (cumulative, ending with `+Inf` = count), `_sum`
    /// and `_count`. Each exemplar goes to the first bucket that holds its value.
    fn emit(
        self,
        base: &str,
        labels: impl Fn(&str, Option<(&str, String)>) -> Vec<(String, String)>,
        check: &LabelCheck,
        out: &mut Translated,
    ) {
        let value = |v: f64| {
            if self.stale {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                v
            }
        };
        let bucket_name = format!("{base}_bucket");
        let mut cumulative = 0u64;
        let mut pending = self.exemplars;
        let mut buckets = self.buckets;
        if buckets
            .last()
            .is_none_or(|(bound, _)| *bound != f64::INFINITY)
        {
            let seen: u64 = buckets.iter().map(|(_, c)| c).sum();
            buckets.push((f64::INFINITY, self.count.saturating_sub(seen)));
        }
        for (bound, count) in buckets {
            cumulative += count;
            let (mine, rest): (Vec<Exemplar>, Vec<Exemplar>) =
                pending.into_iter().partition(|e| e.v <= bound);
            pending = rest;
            let pairs = labels(&bucket_name, Some(("le", format_le(bound))));
            if let Some(series) = checked_labels(pairs, check, out) {
                out.push(
                    series,
                    Sample {
                        t: self.t,
                        v: value(cumulative as f64),
                    },
                    mine,
                );
            }
        }
        let mut scalar = |name: String, v: f64| {
            if let Some(series) = checked_labels(labels(&name, None), check, out) {
                out.push(
                    series,
                    Sample {
                        t: self.t,
                        v: value(v),
                    },
                    Vec::new(),
                );
            }
        };
        if let Some(sum) = self.sum {
            scalar(format!("{base}_sum"), sum);
        }
        scalar(format!("{base}_count"), self.count as f64);
    }
}

/// Upper bounds and counts of an exponential histogram's populated buckets,
/// in increasing order (without the final `+Inf`).
fn exponential_buckets(
    point: &opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint,
) -> Vec<(f64, u64)> {
    // Scale and offsets come from the request: any i32. Exponents are taken
    // in f64, so no value overflows (extreme ones give 0 or infinity).
    let base = match point.scale.checked_neg() {
        Some(neg) => 2f64.powf(2f64.powi(neg)),
        None => 2f64.powf(2f64.powf(-f64::from(point.scale))),
    };
    let bound = |offset: i32, k: usize, plus: i32| {
        let index = i32::try_from(k)
            .ok()
            .and_then(|k| offset.checked_add(k)?.checked_add(plus));
        match index {
            Some(index) => base.powi(index),
            None => base.powf(f64::from(offset) + k as f64 + f64::from(plus)),
        }
    };
    let mut out = Vec::new();
    if let Some(negative) = &point.negative {
        // Bucket i holds (-base^(i+1), -base^i]; most negative first.
        for (k, count) in negative.bucket_counts.iter().enumerate().rev() {
            out.push((-bound(negative.offset, k, 0), *count));
        }
    }
    if point.zero_count > 0 || point.zero_threshold > 0.0 {
        out.push((point.zero_threshold, point.zero_count));
    }
    if let Some(positive) = &point.positive {
        // Bucket i holds (base^i, base^(i+1)].
        for (k, count) in positive.bucket_counts.iter().enumerate() {
            out.push((bound(positive.offset, k, 1), *count));
        }
    }
    out
}

fn number_value(value: Option<&number_data_point::Value>, flags: u32) -> f64 {
    if flags & FLAG_NO_RECORDED_VALUE != 0 {
        return f64::from_bits(STALE_NAN_BITS);
    }
    match value {
        Some(number_data_point::Value::AsDouble(v)) => *v,
        Some(number_data_point::Value::AsInt(v)) => *v as f64,
        None => 0.0,
    }
}

fn exemplars(items: &[OtlpExemplar]) -> Vec<Exemplar> {
    items
        .iter()
        .map(|e| {
            let mut pairs: Vec<(String, String)> = e
                .filtered_attributes
                .iter()
                .map(|kv| (normalize_label(&kv.key), any_to_string(kv.value.as_ref())))
                .collect();
            if !e.trace_id.is_empty() {
                pairs.push(("trace_id".into(), hex(&e.trace_id)));
            }
            if !e.span_id.is_empty() {
                pairs.push(("span_id".into(), hex(&e.span_id)));
            }
            Exemplar {
                labels: Labels::from_pairs(merge_colliding(pairs)),
                t: (e.time_unix_nano / 1_000_000) as i64,
                v: match e.value {
                    Some(exemplar::Value::AsDouble(v)) => v,
                    Some(exemplar::Value::AsInt(v)) => v as f64,
                    None => 0.0,
                },
            }
        })
        .collect()
}

fn checked_labels(
    mut pairs: Vec<(String, String)>,
    check: &LabelCheck,
    out: &mut Translated,
) -> Option<Labels> {
    pairs.retain(|(_, v)| !v.is_empty());
    let mut refs: Vec<LabelRef<'_>> = pairs
        .iter()
        .map(|(name, value)| LabelRef { name, value })
        .collect();
    if let Err(problem) = check.check_and_sort(&mut refs) {
        let labels = Labels::from_refs(&refs);
        out.reject(1, format!("series {labels}: {problem}"));
        return None;
    }
    Some(Labels::from_refs(&refs))
}

fn add_job_instance(pairs: &mut Vec<(String, String)>, job: &str, instance: &str) {
    pairs.retain(|(n, _)| n != "job" && n != "instance");
    if !job.is_empty() {
        pairs.push(("job".into(), job.to_owned()));
    }
    if !instance.is_empty() {
        pairs.push(("instance".into(), instance.to_owned()));
    }
}

fn job_and_instance(attrs: &[KeyValue]) -> (String, String) {
    let get = |key: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| any_to_string(kv.value.as_ref()))
            .unwrap_or_default()
    };
    let name = get("service.name");
    let namespace = get("service.namespace");
    let job = match (namespace.is_empty(), name.is_empty()) {
        (false, false) => format!("{namespace}/{name}"),
        (true, _) => name,
        (false, true) => String::new(),
    };
    (job, get("service.instance.id"))
}

/// Labels whose names collide after normalisation are joined with `;`
/// (values in the order of their original keys), as Prometheus does.
fn merge_colliding(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        match out.last_mut() {
            Some(last) if last.0 == name => {
                last.1.push(';');
                last.1.push_str(&value);
            }
            _ => out.push((name, value)),
        }
    }
    out
}

/// OTLP attribute value as a label value.
pub fn any_to_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format_le(*d),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(other) => any_to_json(other).to_string(),
    }
}

/// A float as Prometheus prints `le` and `quantile`: shortest round-trip
/// form, `+Inf`/`-Inf`/`NaN`.
pub fn format_le(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else if value.is_nan() {
        "NaN".into()
    } else {
        format!("{value}")
    }
}

/// Prometheus' label-name normalisation for OTLP attribute keys.
pub fn normalize_label(key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let mut label: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.as_bytes()[0].is_ascii_digit() {
        label.insert_str(0, "key_");
    } else if label.starts_with('_') && !label.starts_with("__") {
        label.insert_str(0, "key");
    }
    label
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// Prometheus' OTLP metric-name normalisation with unit and type suffixes.
fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let (main_unit, per_unit) = split_unit(unit);
    if let Some(main) = main_unit {
        for token in main.split('_') {
            if !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_owned());
            }
        }
    }
    if let Some(per) = per_unit {
        if !tokens.iter().any(|t| t == &per) {
            tokens.push("per".into());
            tokens.push(per);
        }
    }
    if kind == Kind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if kind == Kind::Gauge && unit == "1" && !tokens.iter().any(|t| t == "ratio") {
        tokens.push("ratio".into());
    }
    let mut out = tokens.join("_");
    if out.is_empty() {
        out.push('_');
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

/// Unit words for the name suffix: `(main, per)`, e.g. `By/s` → (`bytes`, `second`).
fn split_unit(unit: &str) -> (Option<String>, Option<String>) {
    // Annotations in braces carry no unit.
    let mut cleaned = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "1" {
        return (None, None);
    }
    let (main, per) = match cleaned.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (cleaned, None),
    };
    let sanitize = |text: &str| -> Option<String> {
        let words: Vec<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        (!words.is_empty()).then(|| words.join("_"))
    };
    let main = (!main.is_empty())
        .then(|| sanitize(unit_word(main)))
        .flatten();
    let per = per
        .filter(|p| !p.is_empty())
        .and_then(|p| sanitize(per_unit_word(p)));
    (main, per)
}

fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        other => other,
    }
}

fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_translation() {
        assert_eq!(
            metric_name("http.server.duration", "ms", Kind::Histogram),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name("requests", "1", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("requests.total", "{request}", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("net.io", "By/s", Kind::Gauge),
            "net_io_bytes_per_second"
        );
        assert_eq!(
            metric_name("process.runtime.memory", "By", Kind::Gauge),
            "process_runtime_memory_bytes"
        );
        assert_eq!(
            metric_name("duration_seconds", "s", Kind::Gauge),
            "duration_seconds"
        );
        assert_eq!(metric_name("2xx", "", Kind::Gauge), "_2xx");
    }

    #[test]
    fn labels_are_normalized() {
        assert_eq!(normalize_label("http.method"), "http_method");
        assert_eq!(normalize_label("0day"), "key_0day");
        assert_eq!(normalize_label("_private"), "key_private");
        assert_eq!(normalize_label("__reserved"), "__reserved");
        let merged = merge_colliding(vec![("a_b".into(), "1".into()), ("a_b".into(), "2".into())]);
        assert_eq!(merged, vec![("a_b".to_string(), "1;2".to_string())]);
    }

    #[test]
    fn exponential_bucket_bounds() {
        use opentelemetry_proto::tonic::metrics::v1::{
            exponential_histogram_data_point::Buckets, ExponentialHistogramDataPoint,
        };
        let point = ExponentialHistogramDataPoint {
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 3],
            }),
            negative: Some(Buckets {
                offset: 1,
                bucket_counts: vec![4],
            }),
            ..Default::default()
        };
        assert_eq!(
            exponential_buckets(&point),
            vec![(-2.0, 4), (0.0, 1), (2.0, 2), (4.0, 3)]
        );
    }
}
