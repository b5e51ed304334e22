//! `_search` and `_count` over the log store: request parsing, the sorted
//! top-k collector (any number of sort keys, `search_after`), hit fetching
//! with `_source` filtering, totals and aggregations, all merged across the
//! time partitions a query's `@timestamp` range touches.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};
use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::columnar::{DynamicColumn, StrColumn};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermSetQuery};
use tantivy::schema::Value as _;
use tantivy::{
    DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader, TantivyDocument, Term,
};

use super::aggs::{self, AggShape};
use super::ast::LogQuery;
use super::compile::Compiler;
use super::{datemath, dsl, highlight, lucene, QueryError};
use crate::model::log::{format_timestamp_ms, TIMESTAMP_FIELD};
use crate::storage::logs::schema::{self, LogSchema};
use crate::storage::logs::LogStore;

/// `hits.total` accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrackTotal {
    Exact,
    Off,
    UpTo(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    pub field: String,
    pub desc: bool,
    pub missing_first: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceFilter {
    pub enabled: bool,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

impl Default for SourceFilter {
    fn default() -> Self {
        SourceFilter {
            enabled: true,
            includes: Vec::new(),
            excludes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: LogQuery,
    pub from: usize,
    pub size: usize,
    pub sort: Vec<SortSpec>,
    pub explicit_sort: bool,
    pub search_after: Option<Vec<Value>>,
    pub source: SourceFilter,
    pub track_total_hits: TrackTotal,
    pub aggs: Option<Value>,
    pub fields: Vec<String>,
    /// `format` of `fields`/`docvalue_fields` entries, by field pattern.
    pub field_formats: Vec<(String, String)>,
    pub highlight: Option<highlight::Spec>,
    pub total_as_int: bool,
}

/// Limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SearchLimits {
    pub max_result_window: usize,
    pub max_buckets: u32,
}

const IGNORED_KEYS: [&str; 11] = [
    "timeout",
    "version",
    "seq_no_primary_term",
    "track_scores",
    "stored_fields",
    "profile",
    "explain",
    "batched_reduce_size",
    "indices_boost",
    "stats",
    "terminate_after",
];

impl SearchRequest {
    /// Parse a request body together with URL parameters (`q`, `size`,
    /// `from`, `sort`, `_source*`, `track_total_hits`, `rest_total_hits_as_int`).
    pub fn parse(
        body: Option<&Value>,
        params: &HashMap<String, String>,
    ) -> Result<SearchRequest, QueryError> {
        let empty = Map::new();
        let body = match body {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(o)) => o,
            Some(_) => return Err(QueryError::parsing("request body must be an object")),
        };
        let mut req = SearchRequest {
            query: LogQuery::All,
            from: 0,
            size: 10,
            sort: Vec::new(),
            explicit_sort: false,
            search_after: None,
            source: SourceFilter::default(),
            track_total_hits: TrackTotal::UpTo(10_000),
            aggs: None,
            fields: Vec::new(),
            field_formats: Vec::new(),
            highlight: None,
            total_as_int: params
                .get("rest_total_hits_as_int")
                .is_some_and(|v| v == "true" || v.is_empty()),
        };
        let mut track_set = false;
        for (key, value) in body {
            match key.as_str() {
                "query" => req.query = dsl::parse(value)?,
                "from" => req.from = usize_param("from", value)?,
                "size" => req.size = usize_param("size", value)?,
                "sort" => {
                    req.sort = parse_sort(value)?;
                    req.explicit_sort = true;
                }
                "search_after" => {
                    req.search_after =
                        Some(value.as_array().cloned().ok_or_else(|| {
                            QueryError::parsing("[search_after] must be an array")
                        })?)
                }
                "_source" => req.source = parse_source(value)?,
                "track_total_hits" => {
                    track_set = true;
                    req.track_total_hits = match value {
                        Value::Bool(true) => TrackTotal::Exact,
                        Value::Bool(false) => TrackTotal::Off,
                        Value::Number(n) => TrackTotal::UpTo(n.as_u64().unwrap_or(10_000)),
                        _ => {
                            return Err(QueryError::parsing(
                                "[track_total_hits] must be a boolean or a number",
                            ))
                        }
                    }
                }
                "aggs" | "aggregations" => req.aggs = Some(value.clone()),
                "highlight" => req.highlight = Some(highlight::parse(value)?),
                "fields" | "docvalue_fields" => {
                    if let Value::Array(items) = value {
                        for item in items {
                            match item {
                                Value::String(s) => req.fields.push(s.clone()),
                                Value::Object(o) => {
                                    if let Some(f) = o.get("field").and_then(Value::as_str) {
                                        req.fields.push(f.to_owned());
                                        if let Some(format) =
                                            o.get("format").and_then(Value::as_str)
                                        {
                                            req.field_formats
                                                .push((f.to_owned(), format.to_owned()));
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                "script_fields" if value.as_object().is_some_and(Map::is_empty) => {}
                "min_score" | "post_filter" | "collapse" | "rescore" | "suggest" | "pit"
                | "runtime_mappings" | "script_fields" | "knn" | "retriever" => {
                    return Err(QueryError::parsing(format!("[{key}] is not supported")))
                }
                k if IGNORED_KEYS.contains(&k) => {}
                other => {
                    return Err(QueryError::parsing(format!(
                        "Unknown key for a START_OBJECT in [{other}]."
                    )))
                }
            }
        }
        if let Some(q) = params.get("q") {
            let default_field: Vec<String> = params.get("df").into_iter().cloned().collect();
            let and = params
                .get("default_operator")
                .is_some_and(|op| op.eq_ignore_ascii_case("and"));
            req.query = lucene::parse(q, &default_field, and)?;
        }
        if let Some(v) = params.get("size") {
            req.size = v
                .parse()
                .map_err(|_| QueryError::parsing(format!("invalid size [{v}]")))?;
        }
        if let Some(v) = params.get("from") {
            req.from = v
                .parse()
                .map_err(|_| QueryError::parsing(format!("invalid from [{v}]")))?;
        }
        if let Some(v) = params.get("sort") {
            req.sort = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let (field, order) = s.split_once(':').unwrap_or((s, ""));
                    default_spec(field, (!order.is_empty()).then_some(order))
                })
                .collect::<Result<_, _>>()?;
            req.explicit_sort = true;
        }
        if let Some(v) = params.get("track_total_hits") {
            track_set = true;
            req.track_total_hits = match v.as_str() {
                "true" | "" => TrackTotal::Exact,
                "false" => TrackTotal::Off,
                n => TrackTotal::UpTo(n.parse().unwrap_or(10_000)),
            };
        }
        // As Elasticsearch's RestSearchAction: an integer total means an
        // exact one unless tracking is off (then -1); a bounded count is an
        // error.
        if req.total_as_int {
            match req.track_total_hits {
                _ if !track_set => req.track_total_hits = TrackTotal::Exact,
                TrackTotal::UpTo(n) if n != i32::MAX as u64 => {
                    return Err(QueryError::new(
                        "illegal_argument_exception",
                        format!(
                            "[rest_total_hits_as_int] cannot be used if the tracking of total hits is not accurate, got {n}"
                        ),
                    ))
                }
                _ => {}
            }
        }
        if let Some(v) = params.get("_source") {
            req.source = match v.as_str() {
                "false" => SourceFilter {
                    enabled: false,
                    ..SourceFilter::default()
                },
                "true" => SourceFilter::default(),
                list => SourceFilter {
                    enabled: true,
                    includes: split_list(list),
                    excludes: Vec::new(),
                },
            };
        }
        for key in ["_source_includes", "_source_include"] {
            if let Some(v) = params.get(key) {
                req.source.includes = split_list(v);
            }
        }
        for key in ["_source_excludes", "_source_exclude"] {
            if let Some(v) = params.get(key) {
                req.source.excludes = split_list(v);
            }
        }
        if req.sort.is_empty() {
            req.sort.push(SortSpec {
                field: "_score".into(),
                desc: true,
                missing_first: false,
            });
        }
        if let (Some(after), true) = (&req.search_after, req.explicit_sort) {
            if after.len() != req.sort.len() {
                return Err(QueryError::new(
                    "illegal_argument_exception",
                    format!(
                        "search_after has {} value(s) but sort has {}",
                        after.len(),
                        req.sort.len()
                    ),
                ));
            }
        }
        Ok(req)
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn usize_param(name: &str, value: &Value) -> Result<usize, QueryError> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .map(|n| n as usize)
        .ok_or_else(|| QueryError::parsing(format!("[{name}] must be a non-negative integer")))
}

fn default_spec(field: &str, order: Option<&str>) -> Result<SortSpec, QueryError> {
    let desc = match order {
        None => field == "_score",
        Some(o) if o.eq_ignore_ascii_case("desc") => true,
        Some(o) if o.eq_ignore_ascii_case("asc") => false,
        Some(o) => return Err(QueryError::parsing(format!("unknown sort order [{o}]"))),
    };
    Ok(SortSpec {
        field: field.to_owned(),
        desc,
        missing_first: false,
    })
}

fn parse_sort(value: &Value) -> Result<Vec<SortSpec>, QueryError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(field) => out.push(default_spec(field, None)?),
            Value::Object(map) => {
                for (field, spec) in map {
                    let mut s = match spec {
                        Value::String(order) => default_spec(field, Some(order))?,
                        Value::Object(o) => {
                            default_spec(field, o.get("order").and_then(Value::as_str))?
                        }
                        _ => {
                            return Err(QueryError::parsing(format!("invalid sort for [{field}]")))
                        }
                    };
                    if let Some(Value::String(m)) = spec.get("missing") {
                        s.missing_first = m == "_first";
                    }
                    out.push(s);
                }
            }
            _ => return Err(QueryError::parsing("invalid [sort]")),
        }
    }
    Ok(out)
}

fn parse_source(value: &Value) -> Result<SourceFilter, QueryError> {
    let list = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    Ok(match value {
        Value::Bool(enabled) => SourceFilter {
            enabled: *enabled,
            ..SourceFilter::default()
        },
        Value::String(_) | Value::Array(_) => SourceFilter {
            enabled: true,
            includes: list(Some(value)),
            excludes: Vec::new(),
        },
        Value::Object(o) => SourceFilter {
            enabled: true,
            includes: list(o.get("includes").or_else(|| o.get("include"))),
            excludes: list(o.get("excludes").or_else(|| o.get("exclude"))),
        },
        _ => return Err(QueryError::parsing("invalid [_source]")),
    })
}

/// A sort key of one document.
#[derive(Debug, Clone, PartialEq)]
enum SortValue {
    Missing,
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone)]
enum SortField {
    Score,
    Doc,
    /// A fast field by schema name (`ts`, `_index`, `kw.<path>`).
    Column {
        name: String,
        date: bool,
    },
}

#[derive(Debug, Clone)]
struct SortPlan {
    fields: Vec<(SortField, bool, bool)>,
}

impl SortPlan {
    fn compare(&self, a: &[SortValue], b: &[SortValue]) -> Ordering {
        for (i, (_, desc, missing_first)) in self.fields.iter().enumerate() {
            let ord = match (&a[i], &b[i]) {
                (SortValue::Missing, SortValue::Missing) => Ordering::Equal,
                (SortValue::Missing, _) => {
                    if *missing_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (_, SortValue::Missing) => {
                    if *missing_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (x, y) => {
                    let o = match (x, y) {
                        (SortValue::Num(p), SortValue::Num(q)) => p.total_cmp(q),
                        (SortValue::Str(p), SortValue::Str(q)) => p.cmp(q),
                        (SortValue::Num(_), SortValue::Str(_)) => Ordering::Less,
                        _ => Ordering::Greater,
                    };
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    fn needs_score(&self) -> bool {
        self.fields
            .iter()
            .any(|(f, ..)| matches!(f, SortField::Score))
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    key: Vec<SortValue>,
    partition: usize,
    addr: DocAddress,
    score: Score,
}

struct TopSorted {
    plan: Arc<SortPlan>,
    k: usize,
    after: Option<Arc<Vec<SortValue>>>,
    partition: usize,
}

enum ColumnReader {
    Score,
    Doc,
    Date(tantivy::columnar::Column<tantivy::DateTime>),
    Dynamic(Vec<DynamicColumn>),
}

struct TopSortedSegment {
    plan: Arc<SortPlan>,
    k: usize,
    after: Option<Arc<Vec<SortValue>>>,
    partition: usize,
    segment: SegmentOrdinal,
    readers: Vec<ColumnReader>,
    items: Vec<Candidate>,
}

fn read_dynamic(columns: &[DynamicColumn], doc: DocId) -> SortValue {
    for column in columns {
        let v = match column {
            DynamicColumn::I64(c) => c.first(doc).map(|x| SortValue::Num(x as f64)),
            DynamicColumn::U64(c) => c.first(doc).map(|x| SortValue::Num(x as f64)),
            DynamicColumn::F64(c) => c.first(doc).map(SortValue::Num),
            DynamicColumn::Bool(c) => c.first(doc).map(|x| SortValue::Num(f64::from(u8::from(x)))),
            DynamicColumn::DateTime(c) => c
                .first(doc)
                .map(|x| SortValue::Num(x.into_timestamp_millis() as f64)),
            DynamicColumn::Str(c) => first_str(c, doc).map(SortValue::Str),
            _ => None,
        };
        if let Some(v) = v {
            return v;
        }
    }
    SortValue::Missing
}

pub(crate) fn first_str(column: &StrColumn, doc: DocId) -> Option<String> {
    let ord = column.term_ords(doc).next()?;
    let mut out = String::new();
    column.ord_to_str(ord, &mut out).ok()?;
    Some(out)
}

impl Collector for TopSorted {
    type Fruit = Vec<Candidate>;
    type Child = TopSortedSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopSortedSegment> {
        let mut readers = Vec::new();
        for (field, ..) in &self.plan.fields {
            readers.push(match field {
                SortField::Score => ColumnReader::Score,
                SortField::Doc => ColumnReader::Doc,
                SortField::Column { name, date: true } => {
                    ColumnReader::Date(reader.fast_fields().date(name)?)
                }
                SortField::Column { name, .. } => {
                    let handles = reader.fast_fields().dynamic_column_handles(name)?;
                    let mut columns = Vec::new();
                    for h in handles {
                        columns.push(h.open()?);
                    }
                    ColumnReader::Dynamic(columns)
                }
            });
        }
        Ok(TopSortedSegment {
            plan: self.plan.clone(),
            k: self.k,
            after: self.after.clone(),
            partition: self.partition,
            segment,
            readers,
            items: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.plan.needs_score()
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Candidate>>) -> tantivy::Result<Vec<Candidate>> {
        let mut all: Vec<Candidate> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| self.plan.compare(&a.key, &b.key));
        all.truncate(self.k);
        Ok(all)
    }
}

impl SegmentCollector for TopSortedSegment {
    type Fruit = Vec<Candidate>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.k == 0 {
            return;
        }
        let key: Vec<SortValue> = self
            .readers
            .iter()
            .map(|r| match r {
                ColumnReader::Score => SortValue::Num(f64::from(score)),
                ColumnReader::Doc => SortValue::Num(
                    ((self.partition as u64) << 40 | u64::from(self.segment) << 32 | u64::from(doc))
                        as f64,
                ),
                ColumnReader::Date(c) => c.first(doc).map_or(SortValue::Missing, |d| {
                    SortValue::Num(d.into_timestamp_millis() as f64)
                }),
                ColumnReader::Dynamic(columns) => read_dynamic(columns, doc),
            })
            .collect();
        if let Some(after) = &self.after {
            if self.plan.compare(&key, after) != Ordering::Greater {
                return;
            }
        }
        self.items.push(Candidate {
            key,
            partition: self.partition,
            addr: DocAddress::new(self.segment, doc),
            score,
        });
        if self.items.len() >= self.k.saturating_mul(2).max(64) {
            let plan = self.plan.clone();
            self.items
                .select_nth_unstable_by(self.k - 1, |a, b| plan.compare(&a.key, &b.key));
            self.items.truncate(self.k);
        }
    }

    fn harvest(mut self) -> Vec<Candidate> {
        let plan = self.plan.clone();
        self.items.sort_by(|a, b| plan.compare(&a.key, &b.key));
        self.items.truncate(self.k);
        self.items
    }
}

/// What a compiled search needs, built under the catalogue lock.
struct Prepared {
    query: Box<dyn Query>,
    plan: SortPlan,
    aggs: Option<(Aggregations, BTreeMap<String, AggShape>)>,
    from_ms: i64,
    to_ms: i64,
}

/// The tantivy query of `query` over `indices` (restricted to them when
/// they are not every index).
fn compile_for(
    store: &LogStore,
    indices: &[String],
    query: &LogQuery,
    now_ms: i64,
) -> Result<Box<dyn Query>, QueryError> {
    let catalog = store.catalog.read();
    let fields = catalog.fields_of(indices.iter().map(String::as_str));
    let mut compiler = Compiler::new(&store.schema, &fields, indices, now_ms);
    let user = compiler.compile(query)?;
    if indices.len() == catalog.indices.len() {
        return Ok(user);
    }
    let terms = indices
        .iter()
        .map(|i| Term::from_field_text(store.schema.index, i));
    Ok(Box::new(BooleanQuery::new(vec![
        (Occur::Must, user),
        (
            Occur::Must,
            Box::new(ConstScoreQuery::new(
                Box::new(TermSetQuery::new(terms)),
                0.0,
            )),
        ),
    ])))
}

/// Every live document matching `query` in `indices`, unsorted and
/// unscored (SQL's `logs` table): handed to `visit` a segment at a time in
/// runs of at most `chunk` doc ids, with the segment's reader and searcher.
/// Partitions outside the query's `@timestamp` bounds are not opened;
/// `part`/`parts` deal their segments out among parallel callers. `visit`
/// returns false to stop.
#[allow(clippy::too_many_arguments)]
pub fn for_each_match(
    store: &LogStore,
    indices: &[String],
    query: &LogQuery,
    now_ms: i64,
    part: usize,
    parts: usize,
    chunk: usize,
    mut visit: impl FnMut(&Searcher, &SegmentReader, u32, &[DocId]) -> Result<bool, QueryError>,
) -> Result<(), QueryError> {
    if indices.is_empty() {
        return Ok(());
    }
    let compiled = compile_for(store, indices, query, now_ms)?;
    let (from_ms, to_ms) = time_bounds(query, now_ms);
    let failed = |err: tantivy::TantivyError| {
        QueryError::new("search_phase_execution_exception", err.to_string())
    };
    let mut dealt = 0usize;
    for partition in store.partitions_between(from_ms, to_ms).iter() {
        let searcher = partition.searcher();
        let weight = compiled
            .weight(tantivy::query::EnableScoring::disabled_from_searcher(
                &searcher,
            ))
            .map_err(failed)?;
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            dealt += 1;
            if (dealt - 1) % parts.max(1) != part {
                continue;
            }
            let mut scorer = weight.scorer(reader, 1.0).map_err(failed)?;
            let alive = reader.alive_bitset();
            let mut docs: Vec<DocId> = Vec::with_capacity(chunk.min(65_536));
            let mut doc = scorer.doc();
            while doc != tantivy::TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    docs.push(doc);
                    if docs.len() >= chunk {
                        if !visit(&searcher, reader, ord as u32, &docs)? {
                            return Ok(());
                        }
                        docs.clear();
                    }
                }
                doc = scorer.advance();
            }
            if !docs.is_empty() && !visit(&searcher, reader, ord as u32, &docs)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A `filters` bucket's query, compiled by us (tantivy's own filter
/// aggregation parses tantivy query strings, not our DSL). Never
/// serialized across processes: the query is not carried along.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CompiledFilter {
    #[serde(skip)]
    query: Option<Arc<dyn Query>>,
}

#[typetag::serde]
impl tantivy::aggregation::bucket::QueryBuilder for CompiledFilter {
    fn build_query(
        &self,
        _schema: &tantivy::schema::Schema,
        _tokenizers: &tantivy::tokenizer::TokenizerManager,
    ) -> tantivy::Result<Box<dyn Query>> {
        self.query.as_ref().map(|q| q.box_clone()).ok_or_else(|| {
            tantivy::TantivyError::InvalidArgument("filter query not compiled".into())
        })
    }

    fn box_clone(&self) -> Box<dyn tantivy::aggregation::bucket::QueryBuilder> {
        Box::new(self.clone())
    }
}

/// Replace the placeholder query strings of translated `filters` with
/// their compiled queries.
fn attach_filters(aggs: &mut Aggregations, compiled: &[Arc<dyn Query>]) {
    use tantivy::aggregation::agg_req::AggregationVariants;
    use tantivy::aggregation::bucket::FilterAggregation;
    for agg in aggs.values_mut() {
        if let AggregationVariants::Filter(filter) = &agg.agg {
            let index = serde_json::to_value(filter)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .and_then(|s| {
                    s.strip_prefix(aggs::FILTER_MARK)
                        .and_then(|n| n.parse::<usize>().ok())
                });
            if let Some(query) = index.and_then(|i| compiled.get(i)) {
                agg.agg = AggregationVariants::Filter(FilterAggregation::new_with_builder(
                    Box::new(CompiledFilter {
                        query: Some(query.clone()),
                    }),
                ));
            }
        }
        attach_filters(&mut agg.sub_aggregation, compiled);
    }
}

fn prepare(
    store: &LogStore,
    indices: &[String],
    req: &SearchRequest,
    now_ms: i64,
    max_buckets: u32,
) -> Result<Prepared, QueryError> {
    let query = compile_for(store, indices, &req.query, now_ms)?;
    let catalog = store.catalog.read();
    let fields = catalog.fields_of(indices.iter().map(String::as_str));
    let mut plan = SortPlan { fields: Vec::new() };
    for spec in &req.sort {
        let field = match spec.field.as_str() {
            "_score" => SortField::Score,
            "_doc" => SortField::Doc,
            TIMESTAMP_FIELD => SortField::Column {
                name: schema::TS.into(),
                date: true,
            },
            other => SortField::Column {
                name: aggs::fast_field(other, &fields)?,
                date: false,
            },
        };
        plan.fields.push((field, spec.desc, spec.missing_first));
    }
    if !plan
        .fields
        .iter()
        .any(|(f, ..)| matches!(f, SortField::Doc))
    {
        plan.fields.push((SortField::Doc, false, false));
    }
    let (from_ms, to_ms) = time_bounds(&req.query, now_ms);
    let aggs = match &req.aggs {
        Some(request) => {
            let mut ctx = aggs::Context::new(&fields, now_ms);
            ctx.max_buckets = max_buckets as usize;
            // Where the matching records can be: the query's range within
            // the stored partitions (calendar histograms enumerate it).
            let partitions = store.partitions_between(from_ms, to_ms);
            let stored = partitions.iter().fold(None, |acc: Option<(i64, i64)>, p| {
                let (lo, hi) = (p.start_ms, p.end_ms.saturating_sub(1));
                Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
            });
            ctx.data_bounds = stored
                .map(|(lo, hi)| (lo.max(from_ms), hi.min(to_ms.saturating_sub(1))))
                .filter(|(lo, hi)| lo <= hi);
            let (translated, shapes) = aggs::translate(request, &mut ctx)?;
            let mut parsed: Aggregations = serde_json::from_value(translated).map_err(|err| {
                QueryError::new(
                    "x_content_parse_exception",
                    format!("invalid aggregation: {err}"),
                )
            })?;
            if !ctx.filters.is_empty() {
                let mut compiler = Compiler::new(&store.schema, &fields, indices, now_ms);
                let compiled = ctx
                    .filters
                    .iter()
                    .map(|q| compiler.compile(q).map(Arc::from))
                    .collect::<Result<Vec<Arc<dyn Query>>, _>>()?;
                attach_filters(&mut parsed, &compiled);
            }
            Some((parsed, shapes))
        }
        None => None,
    };
    Ok(Prepared {
        query,
        plan,
        aggs,
        from_ms,
        to_ms,
    })
}

/// The `@timestamp` window a query cannot match outside of (for partition pruning).
pub fn time_bounds(query: &LogQuery, now_ms: i64) -> (i64, i64) {
    match query {
        LogQuery::Range {
            field,
            lower,
            upper,
            format,
        } if field == TIMESTAMP_FIELD => {
            let lo = lower
                .as_ref()
                .and_then(|(v, _)| datemath::resolve(v, format.as_deref(), now_ms, false).ok())
                .map_or(i64::MIN, |ns| ns.div_euclid(1_000_000));
            let hi = upper
                .as_ref()
                .and_then(|(v, _)| datemath::resolve(v, format.as_deref(), now_ms, true).ok())
                .map_or(i64::MAX, |ns| ns.div_euclid(1_000_000) + 1);
            (lo, hi)
        }
        LogQuery::Bool(b) => {
            let mut bounds = (i64::MIN, i64::MAX);
            for clause in b.must.iter().chain(&b.filter) {
                let (lo, hi) = time_bounds(clause, now_ms);
                bounds = (bounds.0.max(lo), bounds.1.min(hi));
            }
            bounds
        }
        _ => (i64::MIN, i64::MAX),
    }
}

fn empty_searcher(schema: &LogSchema) -> Searcher {
    static EMPTY: OnceLock<tantivy::IndexReader> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            tantivy::Index::create_in_ram(schema.schema.clone())
                .reader()
                .expect("in-memory reader")
        })
        .searcher()
}

struct Executed {
    total: u64,
    hits: Vec<Candidate>,
    searchers: Vec<Searcher>,
    aggregations: Option<Value>,
}

fn execute(
    store: &LogStore,
    indices: &[String],
    req: &SearchRequest,
    limits: SearchLimits,
    now_ms: i64,
) -> Result<Executed, QueryError> {
    if req.from + req.size > limits.max_result_window {
        return Err(QueryError::new(
            "illegal_argument_exception",
            format!(
                "Result window is too large, from + size must be less than or equal to: [{}] but was [{}] (logs.max_result_window)",
                limits.max_result_window,
                req.from + req.size
            ),
        ));
    }
    let prepared = prepare(store, indices, req, now_ms, limits.max_buckets)?;
    let plan = Arc::new(prepared.plan.clone());
    let after = match &req.search_after {
        Some(values) => {
            let mut key: Vec<SortValue> = values
                .iter()
                .zip(&plan.fields)
                .map(|(v, (field, ..))| match v {
                    Value::Number(n) => SortValue::Num(n.as_f64().unwrap_or(0.0)),
                    Value::String(s) => match field {
                        SortField::Column { date: true, .. } => {
                            datemath::resolve(v, None, now_ms, false)
                                .map_or(SortValue::Str(s.clone()), |ns| {
                                    SortValue::Num((ns / 1_000_000) as f64)
                                })
                        }
                        SortField::Score | SortField::Doc => {
                            s.parse().map_or(SortValue::Missing, SortValue::Num)
                        }
                        _ => SortValue::Str(s.clone()),
                    },
                    Value::Bool(b) => SortValue::Num(f64::from(u8::from(*b))),
                    _ => SortValue::Missing,
                })
                .collect();
            // The implicit `_doc` tie-breaker is not in the user's values:
            // start after every document with the same user key.
            while key.len() < plan.fields.len() {
                key.push(SortValue::Missing);
            }
            Some(Arc::new(key))
        }
        None => None,
    };
    let k = req.from + req.size;
    let mut partitions = store.partitions_between(prepared.from_ms, prepared.to_ms);
    let mut searchers: Vec<Searcher> = partitions.iter().map(|p| p.searcher()).collect();
    if searchers.is_empty() {
        searchers.push(empty_searcher(&store.schema));
        partitions.clear();
    }
    let limits_guard = AggregationLimitsGuard::new(Some(2 << 30), Some(limits.max_buckets));
    let mut total = 0u64;
    let mut hits: Vec<Candidate> = Vec::new();
    let mut intermediate: Option<IntermediateAggregationResults> = None;
    let agg_error = |err: tantivy::TantivyError| {
        QueryError::new(
            "illegal_argument_exception",
            format!("aggregation failed: {err}"),
        )
    };
    for (i, searcher) in searchers.iter().enumerate() {
        let top = TopSorted {
            plan: plan.clone(),
            k,
            after: after.clone(),
            partition: i,
        };
        let agg_collector = prepared.aggs.as_ref().map(|(aggs, _)| {
            DistributedAggregationCollector::from_aggs(
                aggs.clone(),
                AggContextParams::new(limits_guard.clone(), Default::default()),
            )
        });
        let (count, found, agg) = searcher
            .search(prepared.query.as_ref(), &(Count, top, agg_collector))
            .map_err(|err| match err {
                tantivy::TantivyError::AggregationError(_) => agg_error(err),
                other => QueryError::new("search_phase_execution_exception", other.to_string()),
            })?;
        total += count as u64;
        hits.extend(found);
        if let Some(agg) = agg {
            match intermediate.as_mut() {
                Some(acc) => acc.merge_fruits(agg).map_err(agg_error)?,
                None => intermediate = Some(agg),
            }
        }
    }
    hits.sort_by(|a, b| plan.compare(&a.key, &b.key));
    hits.truncate(k);
    let aggregations = match (intermediate, prepared.aggs) {
        (Some(intermediate), Some((request, shapes))) => {
            let result = intermediate
                .into_final_result(request, limits_guard)
                .map_err(agg_error)?;
            let mut value = serde_json::to_value(result)
                .map_err(|err| QueryError::new("illegal_argument_exception", err.to_string()))?;
            aggs::postprocess(&mut value, &shapes);
            Some(value)
        }
        _ => None,
    };
    Ok(Executed {
        total,
        hits,
        searchers,
        aggregations,
    })
}

/// Run a search; returns the Elasticsearch response body.
pub fn search(
    store: &LogStore,
    indices: &[String],
    req: &SearchRequest,
    limits: SearchLimits,
    now_ms: i64,
) -> Result<Value, QueryError> {
    let started = std::time::Instant::now();
    let executed = execute(store, indices, req, limits, now_ms)?;
    let by_score = matches!(req.sort.first(), Some(s) if s.field == "_score");
    let highlight_terms = req
        .highlight
        .as_ref()
        .map(|_| highlight::terms(&req.query))
        .unwrap_or_default();
    let mut hits = Vec::new();
    let mut max_score: Option<f32> = None;
    for candidate in executed.hits.iter().skip(req.from) {
        let searcher = &executed.searchers[candidate.partition];
        let doc: TantivyDocument = searcher
            .doc(candidate.addr)
            .map_err(|err| QueryError::new("search_phase_execution_exception", err.to_string()))?;
        let (index, id) = identity(store, searcher, candidate.addr, &doc);
        let source_bytes = doc
            .get_first(store.schema.source)
            .and_then(|v| v.as_bytes())
            .unwrap_or(b"{}");
        let source: Value = serde_json::from_slice(source_bytes).unwrap_or(Value::Null);
        let mut hit = Map::new();
        hit.insert("_index".into(), json!(index));
        hit.insert("_id".into(), json!(id));
        if by_score {
            max_score = Some(max_score.map_or(candidate.score, |m: f32| m.max(candidate.score)));
            hit.insert("_score".into(), json!(candidate.score));
        } else {
            hit.insert("_score".into(), Value::Null);
        }
        if !req.fields.is_empty() {
            hit.insert(
                "fields".into(),
                Value::Object(pick_fields(&source, &req.fields, &req.field_formats)),
            );
        }
        if let Some(spec) = &req.highlight {
            if let Some(marked) = highlight::highlight(&source, spec, &highlight_terms) {
                hit.insert("highlight".into(), Value::Object(marked));
            }
        }
        if req.source.enabled {
            let filtered = if req.source.includes.is_empty() && req.source.excludes.is_empty() {
                source
            } else {
                match &source {
                    Value::Object(map) => Value::Object(filter_source(
                        map,
                        "",
                        &req.source.includes,
                        &req.source.excludes,
                    )),
                    other => other.clone(),
                }
            };
            hit.insert("_source".into(), filtered);
        }
        if req.explicit_sort {
            let user_keys = req.sort.len();
            let values: Vec<Value> = candidate.key[..user_keys]
                .iter()
                .map(|v| match v {
                    SortValue::Missing => Value::Null,
                    SortValue::Num(x) if x.fract() == 0.0 && x.abs() < 9e15 => json!(*x as i64),
                    SortValue::Num(x) => json!(x),
                    SortValue::Str(s) => json!(s),
                })
                .collect();
            hit.insert("sort".into(), Value::Array(values));
        }
        hits.push(Value::Object(hit));
    }
    Ok(response(
        req,
        executed.total,
        max_score,
        hits,
        executed.aggregations,
        started,
    ))
}

/// A search response in Elasticsearch's shape: `total` matching documents
/// (reported as `track_total_hits` and `rest_total_hits_as_int` ask).
pub fn response(
    req: &SearchRequest,
    total: u64,
    max_score: Option<f32>,
    hits: Vec<Value>,
    aggregations: Option<Value>,
    started: std::time::Instant,
) -> Value {
    let mut hits_obj = Map::new();
    match req.track_total_hits {
        TrackTotal::Off if req.total_as_int => {
            hits_obj.insert("total".into(), json!(-1));
        }
        TrackTotal::Off => {}
        track => {
            let (value, relation) = match track {
                TrackTotal::UpTo(n) if total > n => (n, "gte"),
                _ => (total, "eq"),
            };
            hits_obj.insert(
                "total".into(),
                if req.total_as_int {
                    json!(value)
                } else {
                    json!({"value": value, "relation": relation})
                },
            );
        }
    }
    hits_obj.insert(
        "max_score".into(),
        max_score.map_or(Value::Null, |s| json!(s)),
    );
    hits_obj.insert("hits".into(), Value::Array(hits));
    let mut body = Map::new();
    body.insert("took".into(), json!(started.elapsed().as_millis() as u64));
    body.insert("timed_out".into(), json!(false));
    body.insert(
        "_shards".into(),
        json!({"total": 1, "successful": 1, "skipped": 0, "failed": 0}),
    );
    body.insert("hits".into(), Value::Object(hits_obj));
    if let Some(aggs) = aggregations {
        body.insert("aggregations".into(), aggs);
    }
    Value::Object(body)
}

/// A hit's index and id: the stored `_uid` of a caller-chosen id, or the
/// generated id rebuilt from its seed and sequence columns.
pub(crate) fn identity(
    store: &LogStore,
    searcher: &Searcher,
    addr: DocAddress,
    doc: &TantivyDocument,
) -> (String, String) {
    if let Some(uid) = doc.get_first(store.schema.uid).and_then(|v| v.as_str()) {
        let (index, id) = schema::split_uid(uid);
        return (index.to_owned(), id.to_owned());
    }
    let fast = searcher.segment_reader(addr.segment_ord).fast_fields();
    let u64_at = |name: &str| {
        fast.column_opt::<u64>(name)
            .ok()
            .flatten()
            .and_then(|c| c.first(addr.doc_id))
            .unwrap_or(0)
    };
    let id = schema::generated_id(u64_at(schema::ID_SEED), u64_at(schema::ID_SEQ));
    let index = fast
        .str(schema::INDEX)
        .ok()
        .flatten()
        .and_then(|c| first_str(&c, addr.doc_id))
        .unwrap_or_default();
    (index, id)
}

/// `_count`: how many documents match.
pub fn count(
    store: &LogStore,
    indices: &[String],
    query: LogQuery,
    now_ms: i64,
) -> Result<u64, QueryError> {
    let req = SearchRequest {
        query,
        from: 0,
        size: 0,
        sort: vec![SortSpec {
            field: "_doc".into(),
            desc: false,
            missing_first: false,
        }],
        explicit_sort: false,
        search_after: None,
        source: SourceFilter::default(),
        track_total_hits: TrackTotal::Exact,
        aggs: None,
        fields: Vec::new(),
        field_formats: Vec::new(),
        highlight: None,
        total_as_int: false,
    };
    let limits = SearchLimits {
        max_result_window: usize::MAX,
        max_buckets: 1,
    };
    Ok(execute(store, indices, &req, limits, now_ms)?.total)
}

/// Keep the paths `includes` asks for (all when empty) minus `excludes`.
pub fn filter_source(
    map: &Map<String, Value>,
    prefix: &str,
    includes: &[String],
    excludes: &[String],
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if excludes.iter().any(|p| super::catalog_glob(p, &path)) {
            continue;
        }
        let fully = includes.is_empty() || includes.iter().any(|p| super::catalog_glob(p, &path));
        match value {
            Value::Object(child) if !excludes.is_empty() || !fully => {
                let inner: &[String] = if fully { &[] } else { includes };
                let sub = filter_source(child, &path, inner, excludes);
                if fully || !sub.is_empty() {
                    out.insert(key.clone(), Value::Object(sub));
                }
            }
            _ if fully => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    out
}

/// The `fields` section of a hit: every leaf matching a requested pattern,
/// as an array of values (dates as ISO strings, in the requested `format`).
fn pick_fields(
    source: &Value,
    patterns: &[String],
    formats: &[(String, String)],
) -> Map<String, Value> {
    let mut leaves = Vec::new();
    flatten("", source, &mut leaves);
    let mut out: Map<String, Value> = Map::new();
    for (path, value) in leaves {
        if !patterns.iter().any(|p| super::catalog_glob(p, &path)) {
            continue;
        }
        let value = if path == TIMESTAMP_FIELD {
            let format = formats
                .iter()
                .find(|(p, _)| super::catalog_glob(p, &path))
                .map(|(_, f)| f.as_str());
            crate::model::log::parse_timestamp(&value)
                .map_or(value, |ns| Value::String(format_date(ns, format)))
        } else {
            value
        };
        match out.get_mut(&path) {
            Some(Value::Array(items)) => items.push(value),
            _ => {
                out.insert(path, Value::Array(vec![value]));
            }
        }
    }
    out
}

/// A date of the `fields` section in an Elasticsearch `format`:
/// `strict_date_optional_time_nanos` keeps up to nine fraction digits (at
/// least three, trailing zeros dropped), the epoch formats print numbers as
/// strings, anything else prints milliseconds.
fn format_date(ns: i64, format: Option<&str>) -> String {
    match format.map(str::trim) {
        Some("epoch_millis") => ns.div_euclid(1_000_000).to_string(),
        Some("epoch_second") => ns.div_euclid(1_000_000_000).to_string(),
        Some(f) if f.contains("nanos") => {
            let seconds = ns.div_euclid(1_000_000_000);
            let nanos = ns.rem_euclid(1_000_000_000);
            let Some(t) = chrono::DateTime::from_timestamp(seconds, 0) else {
                return format_timestamp_ms(ns);
            };
            let mut fraction = format!("{nanos:09}");
            while fraction.len() > 3 && fraction.ends_with('0') {
                fraction.pop();
            }
            format!("{}.{fraction}Z", t.format("%Y-%m-%dT%H:%M:%S"))
        }
        _ => format_timestamp_ms(ns),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten(prefix, item, out);
            }
        }
        Value::Null => {}
        scalar => out.push((prefix.to_owned(), scalar.clone())),
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
