//! The `spans` table, read from the trace store where the spans are.
//!
//! Block columns become Arrow columns without a copy where the types agree
//! (`service`, `name`, the start and end as nanosecond timestamps); the
//! payload (attributes, events, status message, scope) is decoded only
//! when one of its columns is selected. Pushed down: `trace_id = …` / `IN`
//! (the blocks' trace-id filters and batch ranges: only the batches that
//! can hold the trace are read), `service = …` (only that service's
//! batches), and the `start_time` range (blocks outside it are skipped).

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch,
    RecordBatchOptions, StringArray, TimestampNanosecondArray, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use serde_json::{Map, Value};

use super::filters::{self, Target, Term};
use super::scan::{Producer, ScanExec, BATCH_ROWS};
use super::{map_type, projected, utc};
use crate::model::span::{self, AttrValue, Attributes, Span, TraceId, KIND_NAMES};
use crate::storage::traces::block;
use crate::storage::traces::TraceStore;

const TRACE_ID: usize = 0;
const SPAN_ID: usize = 1;
const PARENT: usize = 2;
const SERVICE: usize = 3;
const NAME: usize = 4;
const KIND: usize = 5;
const STATUS: usize = 6;
const STATUS_MESSAGE: usize = 7;
const START: usize = 8;
const END: usize = 9;
const DURATION_NS: usize = 10;
const DURATION_MS: usize = 11;
const ATTRIBUTES: usize = 12;
const RESOURCE: usize = 13;
const ATTRIBUTES_JSON: usize = 14;
const SCOPE: usize = 15;
const EVENTS_JSON: usize = 16;

/// Most trace ids one query looks up by id (more: a scan).
const MAX_TRACE_LOOKUPS: usize = 10_000;

const STATUS_NAMES: [&str; 3] = ["UNSET", "OK", "ERROR"];

pub struct SpansTable {
    store: Arc<TraceStore>,
    schema: SchemaRef,
}

impl std::fmt::Debug for SpansTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpansTable")
    }
}

impl SpansTable {
    pub fn new(store: Arc<TraceStore>) -> SpansTable {
        let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some(utc()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("trace_id", DataType::Utf8, false),
            Field::new("span_id", DataType::Utf8, false),
            Field::new("parent_span_id", DataType::Utf8, true),
            Field::new("service", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("status_code", DataType::Utf8, false),
            Field::new("status_message", DataType::Utf8, false),
            Field::new("start_time", ts(), false),
            Field::new("end_time", ts(), false),
            Field::new("duration_ns", DataType::Int64, false),
            Field::new("duration_ms", DataType::Float64, false),
            Field::new("attributes", map_type(), false),
            Field::new("resource_attributes", map_type(), false),
            Field::new("attributes_json", DataType::Utf8, false),
            Field::new("scope_name", DataType::Utf8, false),
            Field::new("events_json", DataType::Utf8, false),
        ]));
        SpansTable { store, schema }
    }

    fn usable(term: &Term) -> bool {
        match term {
            Term::Time(column, ..) => column == "start_time",
            Term::Equal(Target::Column(c), _) | Term::In(Target::Column(c), _) => {
                c == "trace_id" || c == "service"
            }
            _ => false,
        }
    }
}

#[async_trait]
impl TableProvider for SpansTable {
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
        let (columns, schema) = projected(&self.schema, projection);
        let traces = filters::values_of(&terms, &Target::Column("trace_id".into()))
            .filter(|ids| ids.len() <= MAX_TRACE_LOOKUPS)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| span::parse_hex::<16>(&id.to_ascii_lowercase()))
                    .collect::<Vec<TraceId>>()
            });
        let services = filters::values_of(&terms, &Target::Column("service".into()));
        let (start_ns, end_ns) = filters::time_range(&terms, "start_time");
        let partitions = if traces.is_some() {
            1
        } else {
            state.config().target_partitions().max(1)
        };
        let producer = SpanScan {
            store: self.store.clone(),
            columns,
            schema: schema.clone(),
            traces,
            services,
            start_ns,
            end_ns,
            partitions,
        };
        Ok(Arc::new(ScanExec::new(
            "spans",
            filters::describe(&terms, false),
            schema,
            partitions,
            Arc::new(producer),
        )))
    }
}

struct SpanScan {
    store: Arc<TraceStore>,
    columns: Vec<usize>,
    schema: SchemaRef,
    traces: Option<Vec<TraceId>>,
    services: Option<Vec<String>>,
    start_ns: i64,
    end_ns: i64,
    partitions: usize,
}

impl SpanScan {
    fn needs_payload(&self) -> bool {
        self.columns.iter().any(|c| {
            matches!(
                *c,
                STATUS_MESSAGE | ATTRIBUTES | RESOURCE | ATTRIBUTES_JSON | SCOPE | EVENTS_JSON
            )
        })
    }

    /// Block columns a fast-path batch needs, in block order.
    fn block_projection(&self) -> Vec<usize> {
        if self.needs_payload() {
            return (0..=block::COL_PAYLOAD).collect();
        }
        let mut wanted: Vec<usize> = self
            .columns
            .iter()
            .flat_map(|c| match *c {
                TRACE_ID => vec![block::COL_TRACE_ID],
                SPAN_ID => vec![block::COL_SPAN_ID],
                PARENT => vec![block::COL_PARENT],
                SERVICE => vec![block::COL_SERVICE],
                NAME => vec![block::COL_NAME],
                KIND => vec![block::COL_KIND],
                STATUS => vec![block::COL_STATUS],
                START => vec![block::COL_START],
                END => vec![block::COL_END],
                _ => vec![block::COL_START, block::COL_END],
            })
            .collect();
        // One small column at least, to count rows.
        wanted.push(block::COL_KIND);
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Arrow columns of a block batch read with `projection`, without
    /// decoding payloads.
    fn convert(&self, batch: &RecordBatch, projection: &[usize]) -> Result<RecordBatch, String> {
        let at = |col: usize| -> Result<&ArrayRef, String> {
            projection
                .iter()
                .position(|&c| c == col)
                .map(|i| batch.column(i))
                .ok_or_else(|| format!("block column {col} not read"))
        };
        let fixed_hex = |col: usize| -> Result<ArrayRef, String> {
            let ids = at(col)?
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or("id column")?;
            Ok(Arc::new(hex_array(ids)))
        };
        let i64s = |col: usize| -> Result<&Int64Array, String> {
            at(col)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| "time column".to_owned())
        };
        let names = |col: usize, names: &[&str]| -> Result<ArrayRef, String> {
            let codes = at(col)?
                .as_any()
                .downcast_ref::<UInt8Array>()
                .ok_or("code column")?;
            Ok(Arc::new(
                codes
                    .values()
                    .iter()
                    .map(|&c| Some(names.get(c as usize).copied().unwrap_or(names[0])))
                    .collect::<StringArray>(),
            ))
        };
        let stamp = |col: usize| -> Result<ArrayRef, String> {
            let v = i64s(col)?;
            Ok(Arc::new(
                TimestampNanosecondArray::new(v.values().clone(), v.nulls().cloned())
                    .with_timezone(utc()),
            ))
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for &c in &self.columns {
            arrays.push(match c {
                TRACE_ID => fixed_hex(block::COL_TRACE_ID)?,
                SPAN_ID => fixed_hex(block::COL_SPAN_ID)?,
                PARENT => fixed_hex(block::COL_PARENT)?,
                SERVICE => at(block::COL_SERVICE)?.clone(),
                NAME => at(block::COL_NAME)?.clone(),
                KIND => names(block::COL_KIND, &KIND_NAMES)?,
                STATUS => names(block::COL_STATUS, &STATUS_NAMES)?,
                START => stamp(block::COL_START)?,
                END => stamp(block::COL_END)?,
                DURATION_NS | DURATION_MS => {
                    let (s, e) = (i64s(block::COL_START)?, i64s(block::COL_END)?);
                    let d = s
                        .values()
                        .iter()
                        .zip(e.values().iter())
                        .map(|(s, e)| e.saturating_sub(*s).max(0));
                    if c == DURATION_NS {
                        Arc::new(Int64Array::from_iter_values(d))
                    } else {
                        Arc::new(Float64Array::from_iter_values(d.map(|d| d as f64 / 1e6)))
                    }
                }
                other => return Err(format!("column {other} needs the payload")),
            });
        }
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| e.to_string())
    }
}

impl Producer for SpanScan {
    fn produce(
        &self,
        partition: usize,
        emit: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> std::result::Result<(), String> {
        let mut rows = SpanRows::new(&self.columns, self.schema.clone());
        if let Some(traces) = &self.traces {
            for trace in traces {
                let spans = self.store.trace(trace).map_err(|e| e.to_string())?;
                for s in &spans {
                    rows.push(s);
                    if rows.len == BATCH_ROWS && !emit(rows.finish()?) {
                        return Ok(());
                    }
                }
            }
            if rows.len > 0 {
                emit(rows.finish()?);
            }
            return Ok(());
        }
        let projection = self.block_projection();
        let payload = self.needs_payload();
        let services: Vec<Option<&str>> = match &self.services {
            None => vec![None],
            Some(list) => list.iter().map(|s| Some(s.as_str())).collect(),
        };
        // Both visitors hand batches on: one sink, whichever calls.
        struct Sink<'a> {
            emit: &'a mut dyn FnMut(RecordBatch) -> bool,
            going: bool,
            failure: Option<String>,
        }
        impl Sink<'_> {
            fn send(&mut self, batch: Result<RecordBatch, String>) -> bool {
                match batch {
                    Ok(b) if b.num_rows() == 0 => {}
                    Ok(b) => self.going = (self.emit)(b),
                    Err(e) => {
                        self.failure = Some(e);
                        self.going = false;
                    }
                }
                self.going
            }
        }
        let sink = std::cell::RefCell::new(Sink {
            emit,
            going: true,
            failure: None,
        });
        for service in services {
            let mut head_rows = SpanRows::new(&self.columns, self.schema.clone());
            self.store
                .scan_part(
                    partition,
                    self.partitions,
                    self.start_ns,
                    self.end_ns,
                    service,
                    projection.clone(),
                    |s| {
                        head_rows.push(s);
                        if head_rows.len == BATCH_ROWS {
                            return sink.borrow_mut().send(head_rows.finish());
                        }
                        sink.borrow().going
                    },
                    |batch| {
                        if !sink.borrow().going {
                            return false;
                        }
                        let converted = if payload {
                            let columns = block::Columns {
                                batch: batch.clone(),
                            };
                            for row in 0..batch.num_rows() {
                                if let Some(s) = columns.span(row) {
                                    rows.push(&s);
                                }
                            }
                            rows.finish()
                        } else {
                            self.convert(batch, &projection)
                        };
                        sink.borrow_mut().send(converted)
                    },
                )
                .map_err(|e| e.to_string())?;
            let mut sink = sink.borrow_mut();
            if let Some(e) = sink.failure.take() {
                return Err(e);
            }
            if !sink.going {
                break;
            }
            if head_rows.len > 0 && !sink.send(head_rows.finish()) {
                break;
            }
        }
        Ok(())
    }
}

/// Hex text of fixed-size ids (nulls stay null), without an allocation
/// per row.
fn hex_array(ids: &FixedSizeBinaryArray) -> StringArray {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let width = ids.value_length() as usize;
    let mut builder = StringBuilder::with_capacity(ids.len(), ids.len() * width * 2);
    let mut text = vec![0u8; width * 2];
    for row in 0..ids.len() {
        if ids.is_null(row) {
            builder.append_null();
            continue;
        }
        for (i, b) in ids.value(row).iter().enumerate() {
            text[2 * i] = DIGITS[(b >> 4) as usize];
            text[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        // Hex digits are ASCII.
        builder.append_value(std::str::from_utf8(&text).unwrap_or_default());
    }
    builder.finish()
}

enum Col {
    Str(StringBuilder),
    Ts(TimestampNanosecondBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Map(Box<MapBuilder<StringBuilder, StringBuilder>>),
}

/// Rows from whole spans (heads, trace lookups, payload columns).
struct SpanRows {
    columns: Vec<usize>,
    builders: Vec<Col>,
    schema: SchemaRef,
    len: usize,
}

impl SpanRows {
    fn new(columns: &[usize], schema: SchemaRef) -> SpanRows {
        let builders = columns
            .iter()
            .map(|c| match *c {
                START | END => Col::Ts(TimestampNanosecondBuilder::new().with_timezone(utc())),
                DURATION_NS => Col::I64(Int64Builder::new()),
                DURATION_MS => Col::F64(Float64Builder::new()),
                ATTRIBUTES | RESOURCE => Col::Map(Box::new(MapBuilder::new(
                    None,
                    StringBuilder::new(),
                    StringBuilder::new(),
                ))),
                _ => Col::Str(StringBuilder::new()),
            })
            .collect();
        SpanRows {
            columns: columns.to_vec(),
            builders,
            schema,
            len: 0,
        }
    }

    fn push(&mut self, s: &Span) {
        for (c, builder) in self.columns.iter().zip(self.builders.iter_mut()) {
            match (builder, *c) {
                (Col::Str(b), TRACE_ID) => b.append_value(span::hex(&s.trace_id)),
                (Col::Str(b), SPAN_ID) => b.append_value(span::hex(&s.span_id)),
                (Col::Str(b), PARENT) => match &s.parent_span_id {
                    Some(p) => b.append_value(span::hex(p)),
                    None => b.append_null(),
                },
                (Col::Str(b), SERVICE) => b.append_value(&s.service),
                (Col::Str(b), NAME) => b.append_value(&s.name),
                (Col::Str(b), KIND) => b.append_value(s.kind_name()),
                (Col::Str(b), STATUS) => b.append_value(
                    STATUS_NAMES
                        .get(s.status_code as usize)
                        .copied()
                        .unwrap_or("UNSET"),
                ),
                (Col::Str(b), STATUS_MESSAGE) => b.append_value(&s.status_message),
                (Col::Ts(b), START) => b.append_value(s.start_ns),
                (Col::Ts(b), END) => b.append_value(s.end_ns),
                (Col::I64(b), _) => b.append_value(s.duration_ns()),
                (Col::F64(b), _) => b.append_value(s.duration_ns() as f64 / 1e6),
                (Col::Map(b), ATTRIBUTES) => append_map(b, &s.attributes),
                (Col::Map(b), _) => append_map(b, &s.resource),
                (Col::Str(b), ATTRIBUTES_JSON) => {
                    b.append_value(Value::Object(attributes_json(&s.attributes)).to_string())
                }
                (Col::Str(b), SCOPE) => b.append_value(&s.scope_name),
                (Col::Str(b), _) => b.append_value(events_json(s).to_string()),
                (Col::Ts(b), _) => b.append_value(0),
            }
        }
        self.len += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch, String> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Col::Str(b) => Arc::new(b.finish()),
                    Col::Ts(b) => Arc::new(b.finish()),
                    Col::I64(b) => Arc::new(b.finish()),
                    Col::F64(b) => Arc::new(b.finish()),
                    Col::Map(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let rows = std::mem::take(&mut self.len);
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| e.to_string())
    }
}

fn append_map(builder: &mut MapBuilder<StringBuilder, StringBuilder>, attributes: &Attributes) {
    for (key, value) in attributes {
        builder.keys().append_value(key);
        builder.values().append_value(value.as_text());
    }
    let _ = builder.append(true);
}

fn attr_json(value: &AttrValue) -> Value {
    match value {
        AttrValue::Str(s) => Value::String(s.clone()),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Int(i) => Value::from(*i),
        AttrValue::Double(d) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        AttrValue::Bytes(b) => Value::String(span::hex(b)),
        AttrValue::Json(text) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
    }
}

fn attributes_json(attributes: &Attributes) -> Map<String, Value> {
    attributes
        .iter()
        .map(|(k, v)| (k.clone(), attr_json(v)))
        .collect()
}

fn events_json(s: &Span) -> Value {
    Value::Array(
        s.events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "time_unix_nano": e.time_ns,
                    "name": e.name,
                    "attributes": attributes_json(&e.attributes),
                })
            })
            .collect(),
    )
}
