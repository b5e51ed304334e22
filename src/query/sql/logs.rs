//! The `logs` table, read from the tantivy partitions where the records are.
//!
//! Pushed-down filters become one log query, compiled to tantivy as an
//! Elasticsearch search would be: the `@timestamp` range (partitions
//! outside it are not opened), `index` (only those indices), `service`,
//! `severity` and `trace_id` / `span_id` equality, and `match(body, '…')`
//! (the full-text index). Columns come from fast columns where the store
//! keeps them (`index`, `@timestamp`, the trace and span ids, `service`
//! and `severity` when they are keywords); the rest from the stored
//! `_source`, read only when one of its columns is selected.

use std::sync::Arc;

use arrow_array::builder::{MapBuilder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use serde_json::{json, Map, Value};
use tantivy::columnar::{Column, StrColumn};
use tantivy::schema::Value as _;
use tantivy::{DocAddress, DocId, TantivyDocument};

use super::filters::{self, Target, Term};
use super::scan::{Producer, ScanExec, BATCH_ROWS};
use super::{map_type, projected, utc};
use crate::model::log::TIMESTAMP_FIELD;
use crate::model::span::hex;
use crate::query::logs::ast::{BoolQuery, LogQuery, MinimumShouldMatch};
use crate::query::logs::search::{first_str, for_each_match, identity};
use crate::storage::logs::{schema, LogStore};

const INDEX: usize = 0;
const TIMESTAMP: usize = 1;
const ID: usize = 2;
const BODY: usize = 3;
const SEVERITY: usize = 4;
const SERVICE: usize = 5;
const TRACE_ID: usize = 6;
const SPAN_ID: usize = 7;
const ATTRIBUTES: usize = 8;
const RESOURCE: usize = 9;
const SOURCE: usize = 10;

/// Where a record keeps its severity, in order of preference (OTLP,
/// Elastic Common Schema, common loggers).
const SEVERITY_PATHS: [&str; 4] = ["severity_text", "log.level", "level", "severity"];
/// Where a record keeps its service: its own `service.name` (ECS), else
/// its resource's (OTLP).
const SERVICE_PATHS: [&str; 2] = ["service.name", "resource.attributes.service.name"];

pub struct LogsTable {
    store: Arc<LogStore>,
    schema: SchemaRef,
}

impl std::fmt::Debug for LogsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogsTable")
    }
}

impl LogsTable {
    pub fn new(store: Arc<LogStore>) -> LogsTable {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let schema = Arc::new(Schema::new(vec![
            Field::new("index", DataType::Utf8, false),
            Field::new(
                TIMESTAMP_FIELD,
                DataType::Timestamp(TimeUnit::Millisecond, Some(utc())),
                false,
            ),
            Field::new("id", DataType::Utf8, false),
            text("body"),
            text("severity"),
            text("service"),
            text("trace_id"),
            text("span_id"),
            Field::new("attributes", map_type(), false),
            Field::new("resource_attributes", map_type(), false),
            Field::new("_source", DataType::Utf8, false),
        ]));
        LogsTable { store, schema }
    }

    fn usable(term: &Term) -> bool {
        match term {
            Term::Time(column, ..) => column == TIMESTAMP_FIELD,
            Term::Match(column, _) => column == "body",
            Term::Equal(Target::Column(c), _) | Term::In(Target::Column(c), _) => {
                matches!(
                    c.as_str(),
                    "index" | "service" | "severity" | "trace_id" | "span_id"
                )
            }
            _ => false,
        }
    }
}

/// A term on any of `paths` with one of `values`.
fn any_path(paths: &[&str], values: &[String]) -> LogQuery {
    let values: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    let should = paths
        .iter()
        .map(|p| LogQuery::Terms {
            field: (*p).to_owned(),
            values: values.clone(),
        })
        .collect();
    LogQuery::Bool(Box::new(BoolQuery {
        should,
        minimum_should_match: Some(MinimumShouldMatch::Count(1)),
        ..Default::default()
    }))
}

/// The log query the terms ask for (a superset of the rows they keep).
fn log_query(terms: &[Term]) -> LogQuery {
    let mut must = Vec::new();
    let (lo, hi) = filters::time_range(terms, TIMESTAMP_FIELD);
    if lo != i64::MIN || hi != i64::MAX {
        let ms = |ns: i64, up: bool| {
            let floor = ns.div_euclid(1_000_000);
            json!(if up && ns.rem_euclid(1_000_000) != 0 {
                floor.saturating_add(1)
            } else {
                floor
            })
        };
        must.push(LogQuery::Range {
            field: TIMESTAMP_FIELD.to_owned(),
            lower: (lo != i64::MIN).then(|| (ms(lo, false), true)),
            upper: (hi != i64::MAX).then(|| (ms(hi, true), true)),
            format: Some("epoch_millis".to_owned()),
        });
    }
    for (column, paths) in [
        ("service", &SERVICE_PATHS[..]),
        ("severity", &SEVERITY_PATHS[..]),
        ("trace_id", &["trace_id"][..]),
        ("span_id", &["span_id"][..]),
    ] {
        if let Some(values) = filters::values_of(terms, &Target::Column(column.into())) {
            let values: Vec<String> = if column.ends_with("_id") {
                values.iter().map(|v| v.to_ascii_lowercase()).collect()
            } else {
                values
            };
            must.push(any_path(paths, &values));
        }
    }
    for term in terms {
        if let Term::Match(_, text) = term {
            must.push(LogQuery::Match {
                field: None,
                text: text.clone(),
                and: true,
                minimum_should_match: None,
            });
        }
    }
    match must.len() {
        0 => LogQuery::All,
        _ => LogQuery::and(must),
    }
}

#[async_trait]
impl TableProvider for LogsTable {
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
        Ok(filters::pushdown(filters, Self::usable))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let terms = filters::usable_terms(filters, Self::usable);
        let all = self.store.catalog.read().resolve("*");
        let indices = match filters::values_of(&terms, &Target::Column("index".into())) {
            Some(wanted) => all.into_iter().filter(|i| wanted.contains(i)).collect(),
            None => all,
        };
        let query = log_query(&terms);
        let (columns, schema) = projected(&self.schema, projection);
        let mut detail = filters::describe(&terms, true);
        if !terms.is_empty() {
            detail.push_str(&format!("; indices={indices:?}; tantivy: {query:?}"));
        }
        let partitions = state.config().target_partitions().max(1);
        let producer = LogScan {
            store: self.store.clone(),
            indices,
            query,
            columns,
            schema: schema.clone(),
            partitions,
            now_ms: crate::now_ms(),
        };
        Ok(Arc::new(ScanExec::new(
            "logs",
            detail,
            schema,
            partitions,
            Arc::new(producer),
        )))
    }
}

struct LogScan {
    store: Arc<LogStore>,
    indices: Vec<String>,
    query: LogQuery,
    columns: Vec<usize>,
    schema: SchemaRef,
    partitions: usize,
    now_ms: i64,
}

/// Most dictionary entries of a string fast column remembered by ordinal.
const MAX_REMEMBERED: u64 = 1 << 16;

/// A string fast column with its dictionary lookups remembered (service
/// names, severities and index names are few; each is looked up once).
struct Strings {
    column: StrColumn,
    seen: Vec<Option<String>>,
    scratch: String,
}

impl Strings {
    fn open(reader: &tantivy::SegmentReader, name: &str) -> Option<Strings> {
        let column = reader.fast_fields().str(name).ok().flatten()?;
        Some(Strings {
            column,
            seen: Vec::new(),
            scratch: String::new(),
        })
    }

    fn get(&mut self, doc: DocId) -> Option<&str> {
        let ord = self.column.term_ords(doc).next()?;
        if ord >= MAX_REMEMBERED {
            self.scratch = first_str(&self.column, doc)?;
            return Some(&self.scratch);
        }
        let at = ord as usize;
        if self.seen.len() <= at {
            self.seen.resize(at + 1, None);
        }
        if self.seen[at].is_none() {
            self.seen[at] = Some(first_str(&self.column, doc)?);
        }
        self.seen[at].as_deref()
    }
}

/// The fast columns of one segment a scan reads.
struct SegmentColumns {
    id: tantivy::index::SegmentId,
    index: Option<Strings>,
    ts: Option<Column<tantivy::DateTime>>,
    trace: Option<Column<std::net::Ipv6Addr>>,
    span: Option<Column<u64>>,
    severity: Vec<Strings>,
    service: Vec<Strings>,
}

impl SegmentColumns {
    fn open(reader: &tantivy::SegmentReader, columns: &[usize]) -> SegmentColumns {
        let fast = reader.fast_fields();
        let wants = |c: usize| columns.contains(&c);
        let strings = |paths: &[&str]| -> Vec<Strings> {
            paths
                .iter()
                .filter_map(|p| Strings::open(reader, &format!("kw.{p}")))
                .collect()
        };
        SegmentColumns {
            id: reader.segment_id(),
            index: wants(INDEX)
                .then(|| Strings::open(reader, schema::INDEX))
                .flatten(),
            ts: wants(TIMESTAMP)
                .then(|| fast.date(schema::TS).ok())
                .flatten(),
            trace: wants(TRACE_ID)
                .then(|| fast.ip_addr(schema::TRACE_ID).ok())
                .flatten(),
            span: wants(SPAN_ID)
                .then(|| fast.u64(schema::SPAN_ID).ok())
                .flatten(),
            severity: if wants(SEVERITY) {
                strings(&SEVERITY_PATHS)
            } else {
                Vec::new()
            },
            service: if wants(SERVICE) {
                strings(&SERVICE_PATHS)
            } else {
                Vec::new()
            },
        }
    }
}

/// The first of several string fast columns that has a value.
fn first_of(columns: &mut [Strings], doc: DocId) -> Option<&str> {
    for column in columns.iter_mut() {
        // Two lookups: the borrow checker cannot return from the loop a
        // value borrowed by a call that may have returned None.
        if column.get(doc).is_some() {
            return column.get(doc);
        }
    }
    None
}

fn needs_source(columns: &[usize]) -> bool {
    columns
        .iter()
        .any(|c| matches!(*c, ID | BODY | ATTRIBUTES | RESOURCE | SOURCE))
}

impl Producer for LogScan {
    fn produce(
        &self,
        partition: usize,
        emit: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> std::result::Result<(), String> {
        let source_needed = needs_source(&self.columns);
        let mut index = StringBuilder::new();
        let mut ts = TimestampMillisecondBuilder::new().with_timezone(utc());
        // Builders by column number (a slot per column of the table).
        let width = self
            .columns
            .iter()
            .max()
            .map_or(0, |m| m + 1)
            .max(SOURCE + 1);
        let mut texts: Vec<Option<StringBuilder>> = (0..width)
            .map(|c| {
                (self.columns.contains(&c)
                    && !matches!(c, INDEX | TIMESTAMP | ATTRIBUTES | RESOURCE))
                .then(StringBuilder::new)
            })
            .collect();
        let mut maps: Vec<Option<MapBuilder<StringBuilder, StringBuilder>>> = (0..width)
            .map(|c| {
                (self.columns.contains(&c) && matches!(c, ATTRIBUTES | RESOURCE))
                    .then(|| MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()))
            })
            .collect();
        let mut pending = 0usize;
        let mut flush = |index: &mut StringBuilder,
                         ts: &mut TimestampMillisecondBuilder,
                         texts: &mut [Option<StringBuilder>],
                         maps: &mut [Option<MapBuilder<StringBuilder, StringBuilder>>],
                         rows: usize|
         -> std::result::Result<bool, String> {
            let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
            for c in &self.columns {
                arrays.push(match *c {
                    INDEX => Arc::new(index.finish()),
                    TIMESTAMP => Arc::new(ts.finish()),
                    ATTRIBUTES | RESOURCE => Arc::new(maps[*c].as_mut().ok_or("map")?.finish()),
                    other => Arc::new(texts[other].as_mut().ok_or("text")?.finish()),
                });
            }
            let batch = RecordBatch::try_new_with_options(
                self.schema.clone(),
                arrays,
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )
            .map_err(|e| e.to_string())?;
            Ok(emit(batch))
        };
        let mut stopped = false;
        let mut segment: Option<SegmentColumns> = None;
        let result = for_each_match(
            &self.store,
            &self.indices,
            &self.query,
            self.now_ms,
            partition,
            self.partitions,
            BATCH_ROWS,
            |searcher, reader, ord, docs| {
                // Columns are opened once per segment (a u128 column's
                // decompressor costs as much to open as a chunk to read),
                // and only the ones the query selects.
                if segment.as_ref().is_none_or(|s| s.id != reader.segment_id()) {
                    segment = Some(SegmentColumns::open(reader, &self.columns));
                }
                let SegmentColumns {
                    index: index_col,
                    ts: ts_col,
                    trace: trace_col,
                    span: span_col,
                    severity: severity_cols,
                    service: service_cols,
                    ..
                } = segment.as_mut().expect("opened above");
                for &doc in docs {
                    let stored: Option<(TantivyDocument, Map<String, Value>)> = if source_needed {
                        let addr = DocAddress::new(ord, doc);
                        let d: TantivyDocument = searcher.doc(addr).map_err(|e| {
                            crate::query::logs::QueryError::new("io", e.to_string())
                        })?;
                        let source = d
                            .get_first(self.store.schema.source)
                            .and_then(|v| v.as_bytes())
                            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(b).ok())
                            .unwrap_or_default();
                        Some((d, source))
                    } else {
                        None
                    };
                    let source = stored.as_ref().map(|(_, s)| s);
                    for c in &self.columns {
                        match *c {
                            INDEX => match index_col.as_mut().and_then(|col| col.get(doc)) {
                                Some(v) => index.append_value(v),
                                None => index.append_value(""),
                            },
                            TIMESTAMP => ts.append_value(
                                ts_col
                                    .as_ref()
                                    .and_then(|col| col.first(doc))
                                    .map_or(0, |t| t.into_timestamp_millis()),
                            ),
                            ATTRIBUTES | RESOURCE => {
                                let b = maps[*c].as_mut().expect("map builder");
                                let empty = Map::new();
                                let source = source.unwrap_or(&empty);
                                let mut pairs = Vec::new();
                                if *c == ATTRIBUTES {
                                    attributes_of(source, &mut pairs);
                                } else if let Some(Value::Object(attrs)) =
                                    source.get("resource").and_then(|r| r.get("attributes"))
                                {
                                    flatten("", attrs, &mut pairs);
                                }
                                for (k, v) in pairs {
                                    b.keys().append_value(k);
                                    b.values().append_value(v);
                                }
                                let _ = b.append(true);
                            }
                            other => {
                                let value: Option<String> = match other {
                                    ID => stored.as_ref().map(|(d, _)| {
                                        identity(
                                            &self.store,
                                            searcher,
                                            DocAddress::new(ord, doc),
                                            d,
                                        )
                                        .1
                                    }),
                                    BODY => source.and_then(body_of),
                                    SEVERITY | SERVICE => {
                                        let columns = if other == SEVERITY {
                                            &mut *severity_cols
                                        } else {
                                            &mut *service_cols
                                        };
                                        let b = texts[other].as_mut().expect("text builder");
                                        match first_of(columns, doc) {
                                            Some(v) => b.append_value(v),
                                            None => b.append_null(),
                                        }
                                        continue;
                                    }
                                    TRACE_ID => trace_col
                                        .as_ref()
                                        .and_then(|col| col.first(doc))
                                        .map(|ip| hex(&ip.octets())),
                                    SPAN_ID => span_col
                                        .as_ref()
                                        .and_then(|col| col.first(doc))
                                        .map(|id| hex(&id.to_be_bytes())),
                                    _ => source.map(|s| Value::Object(s.clone()).to_string()),
                                };
                                let b = texts[other].as_mut().expect("text builder");
                                match value {
                                    Some(v) => b.append_value(v),
                                    None => b.append_null(),
                                }
                            }
                        }
                    }
                    pending += 1;
                    if pending == BATCH_ROWS {
                        let going = flush(&mut index, &mut ts, &mut texts, &mut maps, pending)
                            .map_err(|e| crate::query::logs::QueryError::new("arrow", e))?;
                        pending = 0;
                        if !going {
                            stopped = true;
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            },
        );
        result.map_err(|e| e.reason)?;
        if !stopped && pending > 0 {
            flush(&mut index, &mut ts, &mut texts, &mut maps, pending)?;
        }
        Ok(())
    }
}

/// The record's message: `message` or `body` (an object body as JSON).
fn body_of(source: &Map<String, Value>) -> Option<String> {
    ["message", "body"]
        .iter()
        .find_map(|k| match source.get(*k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
}

/// Fields other than the time, message, resource and ids: an OTLP
/// record's `attributes`, or every other field of a record from `_bulk`,
/// as dotted paths with text values.
fn attributes_of(source: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    if let Some(Value::Object(attrs)) = source.get("attributes") {
        flatten("", attrs, out);
        return;
    }
    let rest: Map<String, Value> = source
        .iter()
        .filter(|(k, _)| {
            let key: &str = k;
            !matches!(
                key,
                TIMESTAMP_FIELD | "message" | "body" | "resource" | "trace_id" | "span_id"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    flatten("", &rest, out);
}

fn flatten(prefix: &str, object: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(&path, inner, out),
            Value::String(s) => out.push((path, s.clone())),
            Value::Null => {}
            other => out.push((path, other.to_string())),
        }
    }
}
