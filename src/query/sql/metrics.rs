//! Metric tables: `samples` (one row per sample, labels as a map),
//! `series` (one row per series), `metadata`, and `metrics.<name>`: one
//! table per metric name with one column per label.
//!
//! Pushed down to the store: the time range (`timestamp`), and `=`, `IN`
//! and `~` on `metric`, on `labels['name']` or on a label column, as label
//! matchers over the series postings. Only matching series are read.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::filters::{self, Target, Term};
use super::scan::{Producer, ScanExec, BATCH_ROWS};
use super::{map_type, projected, utc};
use crate::model::{Labels, METRIC_NAME};
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::MetricsStore;

/// Which metric table.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Samples,
    Series,
    /// `metrics.<name>`: these label columns.
    Wide(String, Vec<String>),
}

pub struct MetricTable {
    store: Arc<MetricsStore>,
    shape: Shape,
    schema: SchemaRef,
    max_samples: usize,
}

fn ts_field() -> Field {
    Field::new(
        "timestamp",
        DataType::Timestamp(TimeUnit::Millisecond, Some(utc())),
        false,
    )
}

impl MetricTable {
    pub fn samples(store: Arc<MetricsStore>, max_samples: usize) -> MetricTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new("labels", map_type(), false),
            ts_field(),
            Field::new("value", DataType::Float64, false),
        ]));
        MetricTable {
            store,
            shape: Shape::Samples,
            schema,
            max_samples,
        }
    }

    pub fn series(store: Arc<MetricsStore>) -> MetricTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new("labels", map_type(), false),
        ]));
        MetricTable {
            store,
            shape: Shape::Series,
            schema,
            max_samples: usize::MAX,
        }
    }

    /// `metrics.<name>`, or `None` when no series has that name.
    pub fn wide(store: Arc<MetricsStore>, name: &str, max_samples: usize) -> Option<MetricTable> {
        let matchers = vec![vec![Matcher::equal(METRIC_NAME, name)]];
        let labels: Vec<String> = store
            .label_names(&matchers, i64::MIN, i64::MAX)
            .into_iter()
            .filter(|l| l != METRIC_NAME && l != "timestamp" && l != "value")
            .collect();
        if labels.is_empty() && store.series(&matchers, i64::MIN, i64::MAX).is_empty() {
            return None;
        }
        let mut fields = vec![ts_field(), Field::new("value", DataType::Float64, false)];
        fields.extend(labels.iter().map(|l| Field::new(l, DataType::Utf8, true)));
        Some(MetricTable {
            store,
            shape: Shape::Wide(name.to_owned(), labels),
            schema: Arc::new(Schema::new(fields)),
            max_samples,
        })
    }

    /// The label a filter target stands for.
    fn label_of(&self, target: &Target) -> Option<String> {
        match (&self.shape, target) {
            (Shape::Samples | Shape::Series, Target::Column(c)) if c == "metric" => {
                Some(METRIC_NAME.to_owned())
            }
            (Shape::Samples | Shape::Series, Target::Key(map, key)) if map == "labels" => {
                Some(key.clone())
            }
            (Shape::Wide(_, labels), Target::Column(c)) if labels.contains(c) => Some(c.clone()),
            _ => None,
        }
    }

    fn usable(&self, term: &Term) -> bool {
        match term {
            Term::Time(column, ..) => column == "timestamp" && self.shape != Shape::Series,
            Term::Match(..) => false,
            other => other.target().and_then(|t| self.label_of(t)).is_some(),
        }
    }
}

impl std::fmt::Debug for MetricTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetricTable({:?})", self.shape)
    }
}

#[async_trait]
impl TableProvider for MetricTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters::pushdown(filters, |t| self.usable(t)))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let terms = filters::usable_terms(filters, |t| self.usable(t));
        let mut matchers = Vec::new();
        if let Shape::Wide(name, _) = &self.shape {
            matchers.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for term in &terms {
            let Some(label) = term.target().and_then(|t| self.label_of(t)) else {
                continue;
            };
            let matcher = match term {
                Term::Equal(_, value) => Matcher::equal(label, value.clone()),
                Term::In(_, values) => {
                    let alternatives: Vec<String> =
                        values.iter().map(|v| regex::escape(v)).collect();
                    Matcher::regex(label, &alternatives.join("|"), false)
                        .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?
                }
                // SQL's `~` finds the pattern anywhere; label matchers are
                // anchored.
                Term::Regex(_, pattern) => {
                    Matcher::regex(label, &format!(".*(?:{pattern}).*"), false).map_err(|e| {
                        datafusion::error::DataFusionError::Plan(format!(
                            "invalid regular expression {pattern:?}: {e}"
                        ))
                    })?
                }
                _ => continue,
            };
            matchers.push(matcher);
        }
        let (lo, hi) = filters::time_range(&terms, "timestamp");
        // Nanoseconds to the store's milliseconds, rounding inwards.
        let mint = if lo == i64::MIN {
            i64::MIN
        } else {
            lo.div_euclid(1_000_000) + i64::from(lo.rem_euclid(1_000_000) != 0)
        };
        let maxt = if hi == i64::MAX {
            i64::MAX
        } else {
            hi.div_euclid(1_000_000)
        };
        let (columns, schema) = projected(&self.schema, projection);
        let producer = MetricScan {
            store: self.store.clone(),
            shape: self.shape.clone(),
            matchers,
            mint,
            maxt,
            columns,
            schema: schema.clone(),
            limit,
            max_samples: self.max_samples,
        };
        let table = match self.shape {
            Shape::Samples => "samples",
            Shape::Series => "series",
            Shape::Wide(..) => "metrics",
        };
        Ok(Arc::new(ScanExec::new(
            table,
            filters::describe(&terms, true),
            schema,
            1,
            Arc::new(producer),
        )))
    }
}

struct MetricScan {
    store: Arc<MetricsStore>,
    shape: Shape,
    matchers: Vec<Matcher>,
    mint: i64,
    maxt: i64,
    columns: Vec<usize>,
    schema: SchemaRef,
    limit: Option<usize>,
    max_samples: usize,
}

/// Builders of the projected columns of one batch.
struct Rows<'a> {
    scan: &'a MetricScan,
    metric: StringBuilder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    ts: TimestampMillisecondBuilder,
    value: Float64Builder,
    wide: Vec<StringBuilder>,
    len: usize,
}

impl<'a> Rows<'a> {
    fn new(scan: &'a MetricScan) -> Rows<'a> {
        let wide = match &scan.shape {
            Shape::Wide(_, labels) => labels.iter().map(|_| StringBuilder::new()).collect(),
            _ => Vec::new(),
        };
        Rows {
            scan,
            metric: StringBuilder::new(),
            labels: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            ts: TimestampMillisecondBuilder::new().with_timezone(utc()),
            value: Float64Builder::new(),
            wide,
            len: 0,
        }
    }

    /// Append one row: the series' labels and, for sample tables, one sample.
    fn push(&mut self, labels: &Labels, sample: Option<(i64, f64)>) {
        for &c in &self.scan.columns {
            match (&self.scan.shape, c) {
                (Shape::Samples | Shape::Series, 0) => {
                    self.metric.append_value(labels.metric_name().unwrap_or(""))
                }
                (Shape::Samples | Shape::Series, 1) => {
                    for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
                        self.labels.keys().append_value(l.name);
                        self.labels.values().append_value(l.value);
                    }
                    let _ = self.labels.append(true);
                }
                (Shape::Samples, 2) | (Shape::Wide(..), 0) => {
                    self.ts.append_value(sample.map_or(0, |s| s.0))
                }
                (Shape::Samples, 3) | (Shape::Wide(..), 1) => {
                    self.value.append_value(sample.map_or(0.0, |s| s.1))
                }
                (Shape::Wide(_, names), c) => {
                    let builder = &mut self.wide[c - 2];
                    match labels.get(&names[c - 2]) {
                        Some(v) => builder.append_value(v),
                        None => builder.append_null(),
                    }
                }
                _ => {}
            }
        }
        self.len += 1;
    }

    fn finish(&mut self) -> std::result::Result<RecordBatch, String> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.scan.columns.len());
        for &c in &self.scan.columns {
            let array: ArrayRef = match (&self.scan.shape, c) {
                (Shape::Samples | Shape::Series, 0) => Arc::new(self.metric.finish()),
                (Shape::Samples | Shape::Series, 1) => Arc::new(self.labels.finish()),
                (Shape::Samples, 2) | (Shape::Wide(..), 0) => Arc::new(self.ts.finish()),
                (Shape::Samples, 3) | (Shape::Wide(..), 1) => Arc::new(self.value.finish()),
                (Shape::Wide(..), c) => Arc::new(self.wide[c - 2].finish()),
                _ => return Err(format!("no column {c}")),
            };
            arrays.push(array);
        }
        let rows = std::mem::take(&mut self.len);
        RecordBatch::try_new_with_options(
            self.scan.schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())
    }
}

impl Producer for MetricScan {
    fn produce(
        &self,
        _partition: usize,
        emit: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> std::result::Result<(), String> {
        let mut rows = Rows::new(self);
        let mut produced = 0usize;
        let wanted = self.limit.unwrap_or(usize::MAX);
        if self.shape == Shape::Series {
            let sets = if self.matchers.is_empty() {
                Vec::new()
            } else {
                vec![self.matchers.clone()]
            };
            for labels in self.store.series(&sets, self.mint, self.maxt) {
                rows.push(&labels, None);
                produced += 1;
                if rows.len == BATCH_ROWS && !emit(rows.finish()?) {
                    return Ok(());
                }
                if produced >= wanted {
                    break;
                }
            }
        } else {
            let matchers = if self.matchers.is_empty() {
                vec![Matcher::regex(METRIC_NAME, ".+", false).map_err(|e| e.to_string())?]
            } else {
                self.matchers.clone()
            };
            // One series in memory at a time; the samples read are
            // counted against query.max_samples as they are read.
            let mut failure: Option<String> = None;
            let mut read = 0usize;
            let mut going = true;
            self.store
                .for_each_selected(&matchers, self.mint, self.maxt, |s| {
                    read = read.saturating_add(s.samples.len());
                    if read > self.max_samples {
                        failure = Some(format!(
                            "{}the query reads more than query.max_samples ({}) samples: narrow it by metric, label or time",
                            super::scan::LIMIT,
                            self.max_samples
                        ));
                        return false;
                    }
                    for sample in &s.samples {
                        rows.push(&s.labels, Some((sample.t, sample.v)));
                        produced += 1;
                        if rows.len == BATCH_ROWS {
                            match rows.finish() {
                                Ok(batch) => going = emit(batch),
                                Err(e) => {
                                    failure = Some(e);
                                    going = false;
                                }
                            }
                        }
                        if !going || produced >= wanted {
                            going = false;
                            return false;
                        }
                    }
                    true
                });
            if let Some(e) = failure {
                return Err(e);
            }
            if !going && produced < wanted {
                return Ok(());
            }
        }
        if rows.len > 0 {
            emit(rows.finish()?);
        }
        Ok(())
    }
}

/// `metadata`: metric families with their type, help and unit.
pub fn metadata_batch(store: &MetricsStore) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("help", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
    ]));
    let (mut metric, mut kind, mut help, mut unit) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for m in store.metadata() {
        metric.append_value(&m.metric_family);
        kind.append_value(m.metric_type.as_str());
        help.append_value(&m.help);
        unit.append_value(&m.unit);
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(metric.finish()),
            Arc::new(kind.finish()),
            Arc::new(help.finish()),
            Arc::new(unit.finish()),
        ],
    )?)
}
