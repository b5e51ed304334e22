//! Elasticsearch aggregations, run by tantivy's aggregation framework.
//!
//! Requests are translated before tantivy sees them: field names are mapped
//! to the schema (`@timestamp` → `ts`, `host.name[.keyword]` → `kw.host.name`),
//! legacy `interval` and fixed-length `calendar_interval`s become
//! `fixed_interval`, dates in bounds become epoch milliseconds. Results are
//! shaped back the way Elasticsearch prints them (`key_as_string` per the
//! requested `format`, integral keys and counts as integers).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ast::LogQuery;
use super::calendar::{self, Interval, Unit, Zone};
use super::pipeline::{self, Pipeline};
use super::{datemath, QueryError};
use crate::model::log::{format_timestamp_ms, BODY_FIELDS, TIMESTAMP_FIELD};
use crate::storage::logs::catalog::{FieldKind, FieldMapping};

/// What post-processing needs to know of each aggregation.
#[derive(Debug, Default, Clone)]
pub struct AggShape {
    pub kind: String,
    pub format: Option<String>,
    pub children: BTreeMap<String, AggShape>,
    pub extra: Extra,
}

/// Per-kind details for post-processing.
#[derive(Debug, Default, Clone)]
pub enum Extra {
    #[default]
    None,
    /// Computed from its parent's buckets after the search.
    Pipeline(Pipeline),
    /// A `date_histogram` tantivy ran natively (UTC, fixed width).
    FixedHistogram { width_ms: i64 },
    /// A `date_histogram` with calendar units or a time zone, run as a
    /// `range` aggregation over bucket bounds computed here.
    Calendar(Box<CalendarHistogram>),
    /// `filters`: tantivy ran one `filter` aggregation per named filter.
    Filters { keys: Vec<String>, keyed: bool },
    /// `rate` under a `date_histogram`: a `sum` (with a field) or the doc count.
    Rate { has_field: bool, unit: Option<Unit> },
    /// `top_metrics`, run as tantivy's `top_hits` sorted by `@timestamp`.
    TopMetrics { metrics: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
pub struct CalendarHistogram {
    pub interval: Interval,
    pub zone: Zone,
    /// `offset`, in ms: buckets start this much after the rounded times.
    pub offset_ms: i64,
    /// Bucket start → bucket end (epoch ms).
    pub bounds: BTreeMap<i64, i64>,
    pub min_doc_count: u64,
    pub extended: Option<(i64, i64)>,
}

/// What translation needs besides the request.
pub struct Context<'a> {
    pub fields: &'a BTreeMap<&'a str, &'a FieldMapping>,
    pub now_ms: i64,
    /// The `@timestamp` span the matching records can lie in (`None`: no data).
    pub data_bounds: Option<(i64, i64)>,
    pub max_buckets: usize,
    /// `filters` queries, referred to as `FILTER_MARK<index>` in the
    /// translated request and compiled by the caller.
    pub filters: Vec<LogQuery>,
    /// The enclosing `date_histogram`'s interval (for `rate`).
    parent_interval: Option<Interval>,
}

impl<'a> Context<'a> {
    pub fn new(fields: &'a BTreeMap<&'a str, &'a FieldMapping>, now_ms: i64) -> Self {
        Context {
            fields,
            now_ms,
            data_bounds: None,
            max_buckets: 65_535,
            filters: Vec::new(),
            parent_interval: None,
        }
    }
}

/// Prefix of the placeholder query string of a translated `filters` entry.
pub const FILTER_MARK: &str = "\u{0}oxeye-filter:";
/// Separates a `filters` aggregation's name from its filter's index in the
/// names of the tantivy aggregations it becomes.
const PART_SEPARATOR: char = '\u{1}';

const SUPPORTED: [&str; 13] = [
    "date_histogram",
    "histogram",
    "terms",
    "range",
    "min",
    "max",
    "avg",
    "sum",
    "value_count",
    "cardinality",
    "percentiles",
    "stats",
    "extended_stats",
];

const OWN: [&str; 3] = ["filters", "rate", "top_metrics"];

/// Translate an `aggs` object for tantivy; returns it and its shape.
pub fn translate(
    aggs: &Value,
    ctx: &mut Context,
) -> Result<(Value, BTreeMap<String, AggShape>), QueryError> {
    ctx.parent_interval = None;
    translate_level(aggs, ctx, None)
}

fn translate_level(
    aggs: &Value,
    ctx: &mut Context,
    parent: Option<&str>,
) -> Result<(Value, BTreeMap<String, AggShape>), QueryError> {
    let object = aggs
        .as_object()
        .ok_or_else(|| QueryError::parsing("[aggs] must be an object"))?;
    let mut out = Map::new();
    let mut shapes = BTreeMap::new();
    for (name, body) in object {
        if name.contains(PART_SEPARATOR) || name.starts_with('\u{0}') {
            return Err(QueryError::parsing(format!(
                "invalid aggregation name [{}]",
                name.escape_debug()
            )));
        }
        let body = body.as_object().ok_or_else(|| {
            QueryError::parsing(format!("aggregation [{name}] must be an object"))
        })?;
        let mut kind: Option<(&str, &Value)> = None;
        let mut sub: Option<&Value> = None;
        for (key, value) in body {
            match key.as_str() {
                "aggs" | "aggregations" => sub = Some(value),
                "meta" => {}
                k if SUPPORTED.contains(&k) || OWN.contains(&k) || pipeline::KINDS.contains(&k) => {
                    if let Some((first, _)) = kind {
                        return Err(QueryError::parsing(format!(
                            "Found two aggregation type definitions in [{name}]: [{first}] and [{k}]"
                        )));
                    }
                    kind = Some((k, value));
                }
                other => {
                    return Err(QueryError::parsing(format!(
                        "unknown aggregation type [{other}] in [{name}] (supported: {}, {}, {})",
                        SUPPORTED.join(", "),
                        OWN.join(", "),
                        pipeline::KINDS.join(", ")
                    ))
                    .with_kind("x_content_parse_exception"))
                }
            }
        }
        let Some((kind, value)) = kind else {
            return Err(QueryError::parsing(format!(
                "Missing definition for aggregation [{name}]"
            )));
        };
        let params = value.as_object().ok_or_else(|| {
            QueryError::parsing(format!("[{kind}] of [{name}] must be an object"))
        })?;
        let mut shape = AggShape {
            kind: kind.to_owned(),
            ..AggShape::default()
        };
        if pipeline::KINDS.contains(&kind) {
            if sub.is_some() {
                return Err(QueryError::parsing(format!(
                    "Aggregator [{name}] of type [{kind}] cannot accept sub-aggregations"
                )));
            }
            let p = pipeline::parse(kind, name, params, parent, object)?;
            shape.extra = Extra::Pipeline(p);
            shapes.insert(name.clone(), shape);
            continue;
        }
        // The interval a `rate` below this aggregation divides by.
        let saved_interval = ctx.parent_interval;
        let mut translated = Map::new();
        let histogram = if kind == "date_histogram" {
            Some(histogram_interval(name, params)?)
        } else {
            None
        };
        ctx.parent_interval = histogram.map(|(interval, _)| interval);
        let sub_translated = match sub {
            Some(sub) => {
                let (sub_out, sub_shapes) = translate_level(sub, ctx, Some(kind))?;
                shape.children = sub_shapes;
                Some(sub_out)
            }
            None => None,
        };
        ctx.parent_interval = saved_interval;
        match kind {
            "filters" => {
                let (keys, keyed, queries) = parse_filters(name, params)?;
                for (i, query) in queries.into_iter().enumerate() {
                    let mark = format!("{FILTER_MARK}{}", ctx.filters.len());
                    ctx.filters.push(query);
                    let mut part = Map::new();
                    part.insert("filter".into(), Value::String(mark));
                    if let Some(sub) = &sub_translated {
                        part.insert("aggs".into(), sub.clone());
                    }
                    out.insert(format!("{name}{PART_SEPARATOR}{i}"), Value::Object(part));
                }
                shape.extra = Extra::Filters { keys, keyed };
                shapes.insert(name.clone(), shape);
                continue;
            }
            "rate" => {
                let interval = ctx.parent_interval.ok_or_else(|| {
                    QueryError::new(
                        "illegal_argument_exception",
                        format!("The rate aggregation [{name}] can only be used inside a date histogram"),
                    )
                })?;
                let (rate, extra) = translate_rate(name, params, interval, ctx)?;
                if let Some(rate) = rate {
                    translated.extend(rate);
                }
                shape.extra = extra;
            }
            "top_metrics" => {
                let (top, extra) = translate_top_metrics(name, params, ctx)?;
                translated.insert("top_hits".into(), top);
                shape.extra = extra;
            }
            "date_histogram" => {
                let (interval, zone) = histogram.expect("date_histogram interval");
                let native = zone.is_utc()
                    && match interval {
                        Interval::Fixed(_) => true,
                        Interval::Calendar(unit) => unit <= Unit::Day,
                    };
                if native {
                    let (params, format) =
                        translate_params(kind, name, params, ctx.fields, ctx.now_ms)?;
                    shape.format = format;
                    translated.insert(kind.to_owned(), Value::Object(params));
                    shape.extra = Extra::FixedHistogram {
                        width_ms: match interval {
                            Interval::Fixed(ms) => ms,
                            Interval::Calendar(unit) => unit.nominal_ms(),
                        },
                    };
                } else {
                    let (range, calendar, format) =
                        translate_calendar(name, params, interval, zone, ctx)?;
                    shape.kind = "calendar_histogram".into();
                    shape.format = format;
                    shape.extra = Extra::Calendar(Box::new(calendar));
                    translated.insert("range".into(), range);
                }
            }
            _ => {
                let (params, format) =
                    translate_params(kind, name, params, ctx.fields, ctx.now_ms)?;
                shape.format = format;
                translated.insert(kind.to_owned(), Value::Object(params));
            }
        }
        if let Some(sub) = sub_translated {
            if sub.as_object().is_some_and(|o| !o.is_empty()) {
                translated.insert("aggs".into(), sub);
            }
        }
        if !translated.is_empty() {
            out.insert(name.clone(), Value::Object(translated));
        }
        shapes.insert(name.clone(), shape);
    }
    pipeline::check_cycles(&shapes)?;
    Ok((Value::Object(out), shapes))
}

/// A `date_histogram`'s interval and time zone.
fn histogram_interval(
    name: &str,
    params: &Map<String, Value>,
) -> Result<(Interval, Zone), QueryError> {
    let zone = match params.get("time_zone") {
        Some(tz) => Zone::parse(tz.as_str().unwrap_or("")).map_err(|reason| {
            QueryError::parsing(format!("[{name}]: {reason}"))
                .with_kind("illegal_argument_exception")
        })?,
        None => Zone::UTC,
    };
    let text = |key: &str| params.get(key).map(|v| v.as_str().unwrap_or("").trim());
    let interval = if let Some(text) = text("calendar_interval") {
        Interval::Calendar(Unit::parse(text).ok_or_else(|| {
            QueryError::parsing(format!(
                "[{name}]: The supplied interval [{text}] could not be parsed as a calendar interval."
            ))
            .with_kind("illegal_argument_exception")
        })?)
    } else if let Some(text) = text("fixed_interval") {
        Interval::Fixed(fixed_ms(text).ok_or_else(|| {
            QueryError::parsing(format!(
                "[{name}]: failed to parse setting [date_histogram.fixedInterval] with value [{text}] as a time value: unit is missing or unrecognized"
            ))
            .with_kind("illegal_argument_exception")
        })?)
    } else if let Some(text) = text("interval") {
        match Unit::parse(text) {
            Some(unit) if unit > Unit::Day => Interval::Calendar(unit),
            _ => Interval::Fixed(fixed_ms(text).ok_or_else(|| {
                QueryError::parsing(format!("[{name}]: interval [{text}] could not be parsed"))
            })?),
        }
    } else {
        return Err(QueryError::parsing(format!(
            "[{name}]: date_histogram requires fixed_interval, calendar_interval or interval"
        )));
    };
    Ok((interval, zone))
}

/// A `date_histogram` `offset`: `+1h`, `-30m`, `2d`, or milliseconds.
fn parse_offset(value: &Value) -> Option<i64> {
    if let Some(ms) = value.as_i64() {
        return Some(ms);
    }
    let text = value.as_str()?.trim();
    if text.is_empty() || text == "0" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes()[0] {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    fixed_ms(rest).map(|ms| sign * ms)
}

/// Milliseconds of a fixed interval (`30s`, `1m`, `hour`, `2d`, `1w`, `500ms`).
pub(crate) fn fixed_ms(text: &str) -> Option<i64> {
    let fixed = fixed_interval(text)?;
    let digits = fixed.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = fixed.split_at(digits);
    let n: i64 = n.parse().ok()?;
    let per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(per).filter(|ms| *ms > 0)
}

fn translate_calendar(
    name: &str,
    params: &Map<String, Value>,
    interval: Interval,
    zone: Zone,
    ctx: &Context,
) -> Result<(Value, CalendarHistogram, Option<String>), QueryError> {
    let mut format = None;
    let mut offset_ms = 0i64;
    let mut min_doc_count = 0u64;
    let mut extended = None;
    let mut hard = None;
    let bounds_of = |key: &str, value: &Value, format: Option<&str>| {
        let object = value
            .as_object()
            .ok_or_else(|| QueryError::parsing(format!("[{name}]: [{key}] must be an object")))?;
        let side = |side: &str| -> Result<Option<i64>, QueryError> {
            object
                .get(side)
                .filter(|v| !v.is_null())
                .map(|v| {
                    datemath::resolve(
                        v,
                        format.or(Some("epoch_millis||strict_date_optional_time")),
                        ctx.now_ms,
                        false,
                    )
                    .map(|ns| ns.div_euclid(1_000_000))
                    .map_err(QueryError::parsing)
                })
                .transpose()
        };
        Ok::<_, QueryError>((side("min")?, side("max")?))
    };
    for (key, value) in params {
        match key.as_str() {
            "field" => {
                if value.as_str() != Some(TIMESTAMP_FIELD) {
                    return Err(QueryError::new(
                        "illegal_argument_exception",
                        format!("[{name}]: a date_histogram with a calendar interval or a time zone must be on [@timestamp], not {value}"),
                    ));
                }
            }
            "format" => format = value.as_str().map(str::to_owned),
            "min_doc_count" => {
                min_doc_count = value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| {
                        QueryError::parsing(format!(
                            "[{name}]: [min_doc_count] must be a non-negative integer"
                        ))
                    })?
            }
            "calendar_interval" | "fixed_interval" | "interval" | "time_zone" | "keyed"
                if key != "keyed" || value == &Value::Bool(false) => {}
            "offset" => {
                offset_ms = parse_offset(value).ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[{name}]: failed to parse [offset] {value}: use a duration such as +1h or -30m"
                    ))
                    .with_kind("illegal_argument_exception")
                })?
            }
            "order" => {}
            "extended_bounds" | "hard_bounds" => {}
            other => {
                return Err(QueryError::parsing(format!(
                    "[{name}]: [{other}] is not supported on a date_histogram with a calendar interval or a time zone"
                )))
            }
        }
    }
    if let Some(value) = params.get("extended_bounds") {
        let (lo, hi) = bounds_of("extended_bounds", value, format.as_deref())?;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            extended = Some((lo, hi));
        }
    }
    if let Some(value) = params.get("hard_bounds") {
        hard = Some(bounds_of("hard_bounds", value, format.as_deref())?);
    }
    let mut span = ctx.data_bounds;
    if let Some((lo, hi)) = extended {
        span = Some(match span {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
    if let (Some((mut lo, mut hi)), Some((hard_lo, hard_hi))) = (span, hard) {
        lo = lo.max(hard_lo.unwrap_or(i64::MIN));
        hi = hi.min(hard_hi.map_or(i64::MAX, |h| h.saturating_sub(1)));
        span = (lo <= hi).then_some((lo, hi));
    }
    let mut bounds = BTreeMap::new();
    if let Some((lo, hi)) = span {
        let out_of_range = || {
            QueryError::new(
                "illegal_argument_exception",
                format!("[{name}]: dates out of range"),
            )
        };
        // An offset shifts every bucket: rounding happens `offset` earlier.
        let floor = |t: i64| {
            calendar::floor(t.checked_sub(offset_ms)?, interval, zone)?.checked_add(offset_ms)
        };
        let next = |t: i64| {
            calendar::next(t.checked_sub(offset_ms)?, interval, zone)?.checked_add(offset_ms)
        };
        let mut start = floor(lo).ok_or_else(out_of_range)?;
        while start <= hi {
            let end = next(start).ok_or_else(out_of_range)?;
            bounds.insert(start, end);
            if bounds.len() > ctx.max_buckets {
                return Err(QueryError::new(
                    "too_many_buckets_exception",
                    format!(
                        "Trying to create too many buckets. Must be less than or equal to: [{}] but this date_histogram [{name}] needs more (logs.max_buckets)",
                        ctx.max_buckets
                    ),
                ));
            }
            start = end;
        }
    }
    let ranges: Vec<Value> = if bounds.is_empty() {
        // tantivy wants a range; one nobody asked for is dropped afterwards.
        vec![serde_json::json!({"from": 0.0, "to": 1.0})]
    } else {
        bounds
            .iter()
            .map(|(start, end)| {
                // Bounds are whole seconds: exact in f64 nanoseconds.
                serde_json::json!({
                    "key": start.to_string(),
                    "from": *start as f64 * 1e6,
                    "to": *end as f64 * 1e6,
                })
            })
            .collect()
    };
    Ok((
        serde_json::json!({"field": "ts", "ranges": ranges, "keyed": false}),
        CalendarHistogram {
            interval,
            zone,
            offset_ms,
            bounds,
            min_doc_count,
            extended,
        },
        format,
    ))
}

type ParsedFilters = (Vec<String>, bool, Vec<LogQuery>);

fn parse_filters(name: &str, params: &Map<String, Value>) -> Result<ParsedFilters, QueryError> {
    let mut keys = Vec::new();
    let mut queries = Vec::new();
    let mut keyed = true;
    for (key, value) in params {
        match key.as_str() {
            "filters" => match value {
                Value::Object(named) => {
                    for (k, q) in named {
                        keys.push(k.clone());
                        queries.push(super::dsl::parse(q)?);
                    }
                }
                Value::Array(items) => {
                    keyed = false;
                    for (i, q) in items.iter().enumerate() {
                        keys.push(i.to_string());
                        queries.push(super::dsl::parse(q)?);
                    }
                }
                _ => {
                    return Err(QueryError::parsing(format!(
                        "[{name}]: [filters] must be an object or an array"
                    )))
                }
            },
            "other_bucket" if value == &Value::Bool(false) => {}
            other => {
                return Err(QueryError::parsing(format!(
                    "[{name}]: [filters] does not support [{other}]"
                )))
            }
        }
    }
    if queries.is_empty() {
        return Err(QueryError::new(
            "illegal_argument_exception",
            format!("[{name}]: [filters] cannot be empty."),
        ));
    }
    Ok((keys, keyed, queries))
}

fn translate_rate(
    name: &str,
    params: &Map<String, Value>,
    interval: Interval,
    ctx: &Context,
) -> Result<(Option<Map<String, Value>>, Extra), QueryError> {
    let mut field = None;
    let mut unit = None;
    let mut mode = "sum";
    for (key, value) in params {
        match key.as_str() {
            "field" => {
                let text = value.as_str().ok_or_else(|| {
                    QueryError::parsing(format!("[{name}]: [field] must be a string"))
                })?;
                field = Some(fast_field(text, ctx.fields)?);
            }
            "unit" => {
                let text = value.as_str().unwrap_or("");
                unit = Some(Unit::parse(text).ok_or_else(|| {
                    QueryError::new(
                        "illegal_argument_exception",
                        format!("[{name}]: unsupported rate unit [{text}]"),
                    )
                })?);
            }
            "mode" => {
                mode = match value.as_str() {
                    Some("sum") => "sum",
                    Some("value_count") => "value_count",
                    _ => {
                        return Err(QueryError::parsing(format!(
                            "[{name}]: [mode] must be sum or value_count"
                        )))
                    }
                }
            }
            "format" => {}
            other => {
                return Err(QueryError::parsing(format!(
                    "[{name}]: [rate] does not support [{other}]"
                )))
            }
        }
    }
    if let (Some(unit), Interval::Fixed(_)) = (unit, interval) {
        if unit.months().is_some() {
            return Err(QueryError::new(
                "illegal_argument_exception",
                format!("[{name}]: Cannot use month-based rate unit with a fixed interval date histogram; only week, day, hour, minute and second are supported"),
            ));
        }
    }
    if let (Some(unit), Interval::Calendar(parent)) = (unit, interval) {
        if unit.months().is_some() && parent.months().is_none() {
            return Err(QueryError::new(
                "illegal_argument_exception",
                format!("[{name}]: Cannot use month-based rate unit with a date histogram of less than a month"),
            ));
        }
    }
    if mode == "value_count" && field.is_none() {
        return Err(QueryError::parsing(format!(
            "[{name}]: [mode] value_count requires a field"
        )));
    }
    let has_field = field.is_some();
    let translated = field.map(|f| {
        let mut m = Map::new();
        m.insert(mode.into(), serde_json::json!({"field": f}));
        m
    });
    Ok((translated, Extra::Rate { has_field, unit }))
}

fn translate_top_metrics(
    name: &str,
    params: &Map<String, Value>,
    ctx: &Context,
) -> Result<(Value, Extra), QueryError> {
    let mut metrics = Vec::new();
    let mut order = "desc".to_owned();
    let mut size = 1u64;
    for (key, value) in params {
        match key.as_str() {
            "metrics" => {
                let items: Vec<&Value> = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    let field = item.get("field").and_then(Value::as_str).ok_or_else(|| {
                        QueryError::parsing(format!("[{name}]: each of [metrics] needs a [field]"))
                    })?;
                    metrics.push((field.to_owned(), fast_field(field, ctx.fields)?));
                }
            }
            "sort" => {
                let spec = match value {
                    Value::Array(items) if items.len() == 1 => &items[0],
                    other => other,
                };
                let (field, dir) = match spec {
                    Value::Object(o) if o.len() == 1 => {
                        let (f, d) = o.iter().next().expect("one entry");
                        let dir = match d {
                            Value::String(s) => s.clone(),
                            Value::Object(inner) => inner
                                .get("order")
                                .and_then(Value::as_str)
                                .unwrap_or("asc")
                                .to_owned(),
                            _ => String::new(),
                        };
                        (f.clone(), dir)
                    }
                    Value::String(f) => (f.clone(), "asc".to_owned()),
                    _ => (String::new(), String::new()),
                };
                if field != TIMESTAMP_FIELD {
                    return Err(QueryError::new(
                        "illegal_argument_exception",
                        format!("[{name}]: top_metrics sorts on [@timestamp] only, got {value}"),
                    ));
                }
                if dir != "asc" && dir != "desc" {
                    return Err(QueryError::parsing(format!(
                        "[{name}]: unknown sort order [{dir}]"
                    )));
                }
                order = dir;
            }
            "size" => {
                size = value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                    .filter(|n| (1..=10).contains(n))
                    .ok_or_else(|| {
                        QueryError::new(
                            "illegal_argument_exception",
                            format!(
                                "[{name}]: [size] must be between 1 and 10 (top_metrics_max_size)"
                            ),
                        )
                    })?;
            }
            other => {
                return Err(QueryError::parsing(format!(
                    "[{name}]: [top_metrics] does not support [{other}]"
                )))
            }
        }
    }
    if metrics.is_empty() {
        return Err(QueryError::parsing(format!(
            "[{name}]: [top_metrics] requires [metrics]"
        )));
    }
    // `*` rather than the metric columns: tantivy panics on a named column
    // a segment does not have, and `ts` is in every segment.
    let top = serde_json::json!({
        "size": size,
        "sort": [{"ts": order}],
        "docvalue_fields": ["*"],
    });
    Ok((top, Extra::TopMetrics { metrics }))
}

/// The schema field an aggregation over `name` reads.
pub fn fast_field(
    name: &str,
    fields: &BTreeMap<&str, &FieldMapping>,
) -> Result<String, QueryError> {
    if name == TIMESTAMP_FIELD {
        return Ok("ts".into());
    }
    if name == "_index" {
        return Ok("_index".into());
    }
    let base = name
        .strip_suffix(".keyword")
        .filter(|b| fields.contains_key(b));
    let path = base.unwrap_or(name);
    if let Some(mapping) = fields.get(path) {
        let text_only = mapping.kind == FieldKind::Text && !mapping.keyword;
        if (text_only || BODY_FIELDS.contains(&path) && !mapping.keyword) && base.is_none() {
            return Err(QueryError::new(
                "illegal_argument_exception",
                format!(
                    "Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [{name}]"
                ),
            ));
        }
    }
    Ok(format!("kw.{path}"))
}

fn translate_params(
    kind: &str,
    name: &str,
    params: &Map<String, Value>,
    fields: &BTreeMap<&str, &FieldMapping>,
    now_ms: i64,
) -> Result<(Map<String, Value>, Option<String>), QueryError> {
    let mut out = Map::new();
    let mut format = None;
    for (key, value) in params {
        match key.as_str() {
            "script" => {
                return Err(QueryError::parsing(format!(
                    "[{name}]: scripts are not supported"
                )))
            }
            "field" => {
                let field = value.as_str().ok_or_else(|| {
                    QueryError::parsing(format!("[{name}]: [field] must be a string"))
                })?;
                out.insert("field".into(), Value::String(fast_field(field, fields)?));
            }
            "format" => format = value.as_str().map(str::to_owned),
            "time_zone" => {
                let tz = value.as_str().unwrap_or("");
                if !datemath::is_utc(tz) {
                    return Err(QueryError::parsing(format!(
                        "[{name}]: time_zone [{tz}] is not supported (only UTC)"
                    )));
                }
            }
            "interval" | "calendar_interval" if kind == "date_histogram" => {
                let text = value.as_str().unwrap_or("");
                let fixed = fixed_interval(text).ok_or_else(|| {
                    QueryError::parsing(format!(
                        "[{name}]: {key} [{text}] is not supported: months, quarters and years are not fixed lengths; use fixed_interval"
                    ))
                })?;
                out.insert("fixed_interval".into(), Value::String(fixed));
            }
            "extended_bounds" | "hard_bounds" if kind == "date_histogram" => {
                let bounds = value.as_object().ok_or_else(|| {
                    QueryError::parsing(format!("[{name}]: [{key}] must be an object"))
                })?;
                let mut converted = Map::new();
                for (side, v) in bounds {
                    let ns = datemath::resolve(
                        v,
                        format
                            .as_deref()
                            .or(Some("epoch_millis||strict_date_optional_time")),
                        now_ms,
                        false,
                    )
                    .map_err(QueryError::parsing)?;
                    converted.insert(side.clone(), Value::from(ns / 1_000_000));
                }
                out.insert(key.clone(), Value::Object(converted));
            }
            "order" if kind == "terms" => {
                out.insert(key.clone(), rename_term_order(value));
            }
            // Grafana's Elasticsearch data source sends these as strings
            // (`"percents": ["25","50"]`, `"sigma": "2"`); Elasticsearch
            // accepts numeric strings.
            "percents" if kind == "percentiles" => {
                let items = value.as_array().ok_or_else(|| {
                    QueryError::parsing(format!("[{name}]: [percents] must be an array"))
                })?;
                let numbers = items
                    .iter()
                    .map(|item| numeric(name, key, item))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(key.clone(), Value::Array(numbers));
            }
            "sigma" if kind == "extended_stats" => {
                let sigma = numeric(name, key, value)?;
                if sigma.as_f64().is_none_or(|x| x < 0.0) {
                    return Err(QueryError::parsing(format!(
                        "[{name}]: [sigma] must be greater than or equal to 0. Found [{sigma}]"
                    ))
                    .with_kind("illegal_argument_exception"));
                }
                out.insert(key.clone(), sigma);
            }
            "missing" if NUMERIC_METRICS.contains(&kind) => {
                out.insert(key.clone(), numeric(name, key, value)?);
            }
            "execution_hint"
            | "collect_mode"
            | "shard_size"
            | "shard_min_doc_count"
            | "show_term_doc_count_error"
            | "precision_threshold"
            | "value_type" => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if kind == "date_histogram" && !out.contains_key("fixed_interval") {
        return Err(QueryError::parsing(format!(
            "[{name}]: date_histogram requires fixed_interval, calendar_interval or interval"
        )));
    }
    Ok((out, format))
}

/// Metric aggregations whose parameters are numbers.
const NUMERIC_METRICS: [&str; 8] = [
    "min",
    "max",
    "avg",
    "sum",
    "percentiles",
    "stats",
    "extended_stats",
    "histogram",
];

/// A number, or a string holding one, as a JSON number.
fn numeric(name: &str, key: &str, value: &Value) -> Result<Value, QueryError> {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    };
    number
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| {
            QueryError::parsing(format!("[{name}]: [{key}] must be a number, got {value}"))
                .with_kind("x_content_parse_exception")
        })
}

fn rename_term_order(value: &Value) -> Value {
    let rename = |v: &Value| match v.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let k = if k == "_term" { "_key" } else { k.as_str() };
                    (k.to_owned(), v.clone())
                })
                .collect(),
        ),
        None => v.clone(),
    };
    match value {
        Value::Array(items) => items.first().map(rename).unwrap_or(Value::Null),
        other => rename(other),
    }
}

/// `1m`, `minute`, `1h`, `hour`, `1d`, `day`, `1w`, `week`, `30s`, `1000ms`.
fn fixed_interval(text: &str) -> Option<String> {
    let text = text.trim();
    let named = match text {
        "second" | "1s" => Some("1s"),
        "minute" | "1m" => Some("1m"),
        "hour" | "1h" => Some("1h"),
        "day" | "1d" => Some("1d"),
        "week" | "1w" => Some("7d"),
        _ => None,
    };
    if let Some(n) = named {
        return Some(n.to_owned());
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" | "s" | "m" | "h" | "d" => Some(format!("{n}{unit}")),
        "w" => Some(format!("{}d", n * 7)),
        _ => None,
    }
}

/// Shape tantivy's result the way Elasticsearch prints it.
pub fn postprocess(result: &mut Value, shapes: &BTreeMap<String, AggShape>) {
    let Some(object) = result.as_object_mut() else {
        return;
    };
    for (name, shape) in shapes {
        if let Extra::Filters { keys, keyed } = &shape.extra {
            let mut buckets: Vec<(String, Value)> = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                let mut bucket = object
                    .remove(&format!("{name}{PART_SEPARATOR}{i}"))
                    .unwrap_or_else(|| serde_json::json!({"doc_count": 0}));
                integral(bucket.get_mut("doc_count"));
                postprocess(&mut bucket, &shape.children);
                buckets.push((key.clone(), bucket));
            }
            let mut values: Vec<Value> = buckets.iter().map(|(_, b)| b.clone()).collect();
            pipeline::run(&mut values, &shape.children, None);
            let rendered = if *keyed {
                Value::Object(
                    buckets
                        .into_iter()
                        .zip(values)
                        .map(|((key, _), bucket)| (key, bucket))
                        .collect(),
                )
            } else {
                Value::Array(values)
            };
            object.insert(name.clone(), serde_json::json!({ "buckets": rendered }));
            continue;
        }
        if let Extra::Rate { .. } | Extra::Pipeline(_) = shape.extra {
            // Filled in by the parent histogram.
            continue;
        }
        let Some(agg) = object.get_mut(name) else {
            continue;
        };
        match (&shape.extra, shape.kind.as_str()) {
            (Extra::TopMetrics { metrics }, _) => {
                *agg = top_metrics(agg, metrics);
            }
            (_, "value_count" | "cardinality") => integral(agg.get_mut("value")),
            (Extra::Calendar(calendar), _) => {
                let buckets = match agg.get_mut("buckets") {
                    Some(Value::Array(buckets)) => std::mem::take(buckets),
                    _ => Vec::new(),
                };
                let mut kept = calendar_buckets(buckets, calendar, shape.format.as_deref());
                for bucket in &mut kept {
                    postprocess(bucket, &shape.children);
                }
                rates(&mut kept, &shape.children, |start| {
                    let end = calendar.bounds.get(&start).copied().unwrap_or(start);
                    (end - start, bucket_months(calendar))
                });
                pipeline::run(&mut kept, &shape.children, Some(&shape.kind));
                *agg = serde_json::json!({ "buckets": kept });
            }
            (_, "date_histogram" | "histogram" | "terms" | "range") => {
                let mut visit = |bucket: &mut Value| {
                    if shape.kind == "date_histogram" {
                        if let Some(key) = bucket.get("key").and_then(Value::as_f64) {
                            let ms = key as i64;
                            bucket["key"] = Value::from(ms);
                            bucket["key_as_string"] =
                                Value::String(match shape.format.as_deref() {
                                    Some("epoch_millis") => ms.to_string(),
                                    Some("epoch_second") => (ms / 1000).to_string(),
                                    _ => format_timestamp_ms(ms.saturating_mul(1_000_000)),
                                });
                        }
                    }
                    postprocess(bucket, &shape.children);
                };
                match agg.get_mut("buckets") {
                    Some(Value::Array(buckets)) => {
                        buckets.iter_mut().for_each(&mut visit);
                        if let Extra::FixedHistogram { width_ms } = shape.extra {
                            rates(buckets, &shape.children, |_| (width_ms, None));
                        }
                        pipeline::run(buckets, &shape.children, Some(&shape.kind));
                    }
                    Some(Value::Object(buckets)) => {
                        buckets.values_mut().for_each(&mut visit);
                        let mut values: Vec<Value> = buckets.values().cloned().collect();
                        pipeline::run(&mut values, &shape.children, Some(&shape.kind));
                        for (slot, value) in buckets.values_mut().zip(values) {
                            *slot = value;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Calendar buckets from tantivy's ranges: keys back to epoch ms, the
/// empty buckets Elasticsearch would not print left out.
fn calendar_buckets(
    buckets: Vec<Value>,
    calendar: &CalendarHistogram,
    format: Option<&str>,
) -> Vec<Value> {
    let mut ours: Vec<(i64, Value)> = buckets
        .into_iter()
        .filter_map(|mut bucket| {
            let start: i64 = bucket.get("key")?.as_str()?.parse().ok()?;
            calendar.bounds.contains_key(&start).then_some(())?;
            let object = bucket.as_object_mut()?;
            for key in ["from", "to", "from_as_string", "to_as_string"] {
                object.remove(key);
            }
            object.insert("key".into(), Value::from(start));
            object.insert(
                "key_as_string".into(),
                Value::String(match format {
                    Some("epoch_millis") => start.to_string(),
                    Some("epoch_second") => start.div_euclid(1000).to_string(),
                    _ => calendar.zone.format(start),
                }),
            );
            integral(object.get_mut("doc_count"));
            Some((start, bucket))
        })
        .collect();
    ours.sort_by_key(|(start, _)| *start);
    let count = |b: &Value| b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
    if calendar.min_doc_count > 0 {
        return ours
            .into_iter()
            .filter(|(_, b)| count(b) >= calendar.min_doc_count)
            .map(|(_, b)| b)
            .collect();
    }
    // As Elasticsearch: from the first to the last non-empty bucket,
    // widened to `extended_bounds`.
    let nonempty: Vec<i64> = ours
        .iter()
        .filter(|(_, b)| count(b) > 0)
        .map(|(s, _)| *s)
        .collect();
    let mut lo = nonempty.first().copied().unwrap_or(i64::MAX);
    let mut hi = nonempty.last().copied().unwrap_or(i64::MIN);
    if let Some((min, max)) = calendar.extended {
        let first = min
            .checked_sub(calendar.offset_ms)
            .and_then(|t| calendar::floor(t, calendar.interval, calendar.zone))
            .and_then(|t| t.checked_add(calendar.offset_ms))
            .unwrap_or(min);
        lo = lo.min(first);
        hi = hi.max(max);
    }
    ours.into_iter()
        .filter(|(start, _)| *start >= lo && *start <= hi)
        .map(|(_, b)| b)
        .collect()
}

/// Months in a month-based calendar bucket.
fn bucket_months(calendar: &CalendarHistogram) -> Option<i64> {
    match calendar.interval {
        Interval::Calendar(unit) => unit.months(),
        Interval::Fixed(_) => None,
    }
}

/// Fill in `rate` children of date histogram buckets: the bucket's sum (or
/// doc count) per `unit`. `length` gives a bucket's length in ms and, for
/// month-based buckets, in months.
fn rates(
    buckets: &mut [Value],
    children: &BTreeMap<String, AggShape>,
    length: impl Fn(i64) -> (i64, Option<i64>),
) {
    for (name, child) in children {
        let Extra::Rate { has_field, unit } = child.extra else {
            continue;
        };
        for bucket in buckets.iter_mut() {
            let key = bucket.get("key").and_then(Value::as_i64).unwrap_or(0);
            let total = if has_field {
                bucket
                    .get(name)
                    .and_then(|v| v.get("value"))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            } else {
                bucket
                    .get("doc_count")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            };
            let (ms, months) = length(key);
            let per_unit = match unit {
                None => 1.0,
                Some(unit) => match (unit.months(), months) {
                    (Some(unit_months), Some(months)) => months as f64 / unit_months as f64,
                    _ => ms as f64 / unit.nominal_ms() as f64,
                },
            };
            let value = total / per_unit;
            bucket[name.as_str()] = serde_json::json!({
                "value": if value.is_finite() { Value::from(value) } else { Value::Null }
            });
        }
    }
}

/// tantivy's `top_hits` result as Elasticsearch's `top_metrics`.
fn top_metrics(agg: &Value, metrics: &[(String, String)]) -> Value {
    let hits = agg
        .get("hits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let top: Vec<Value> = hits
        .iter()
        .map(|hit| {
            let sort = hit
                .get("sort")
                .and_then(Value::as_array)
                .and_then(|s| s.first())
                .and_then(Value::as_u64)
                // tantivy's order-preserving u64 of an i64 of nanoseconds.
                .map(|u| ((u ^ (1 << 63)) as i64).div_euclid(1_000_000))
                .map_or(Value::Null, |ms| {
                    Value::String(format_timestamp_ms(ms.saturating_mul(1_000_000)))
                });
            let fields = hit.get("docvalue_fields");
            let mut values = Map::new();
            for (es_name, fast) in metrics {
                let value = fields
                    .and_then(|f| f.get(fast.as_str()))
                    .map(first_number)
                    .unwrap_or(Value::Null);
                values.insert(es_name.clone(), value);
            }
            serde_json::json!({"sort": [sort], "metrics": values})
        })
        .collect();
    serde_json::json!({ "top": top })
}

fn first_number(value: &Value) -> Value {
    match value {
        Value::Number(_) => value.clone(),
        Value::Array(items) => items
            .iter()
            .map(first_number)
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        _ => Value::Null,
    }
}

fn integral(value: Option<&mut Value>) {
    if let Some(v) = value {
        if let Some(x) = v.as_f64() {
            if x.fract() == 0.0 && x.abs() < 9e15 {
                *v = Value::from(x as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn translation() {
        let text = FieldMapping::from_es_type("text").map(|mut m| {
            m.keyword = true;
            m
        });
        let text = text.unwrap();
        let body = FieldMapping::from_es_type("match_only_text").unwrap();
        let mut fields = BTreeMap::new();
        fields.insert("host.name", &text);
        fields.insert("message", &body);
        let (t, shapes) = translate(
            &json!({"2": {"date_histogram": {"field": "@timestamp", "interval": "1m", "format": "epoch_millis",
                "extended_bounds": {"min": 1000, "max": "2000"}, "min_doc_count": 0},
                "aggs": {"1": {"terms": {"field": "host.name.keyword", "order": {"_term": "asc"}}}}}}),
            &mut Context::new(&fields, 0),
        )
        .unwrap();
        assert_eq!(t["2"]["date_histogram"]["field"], "ts");
        assert_eq!(t["2"]["date_histogram"]["fixed_interval"], "1m");
        assert_eq!(t["2"]["date_histogram"]["extended_bounds"]["max"], 2000);
        assert_eq!(t["2"]["aggs"]["1"]["terms"]["field"], "kw.host.name");
        assert_eq!(
            t["2"]["aggs"]["1"]["terms"]["order"],
            json!({"_key": "asc"})
        );
        assert_eq!(shapes["2"].format.as_deref(), Some("epoch_millis"));
        let mut ctx = Context::new(&fields, 0);
        let err = translate(&json!({"x": {"geohash_grid": {"field": "p"}}}), &mut ctx).unwrap_err();
        assert!(err.reason.contains("[geohash_grid]"));
        let err = translate(&json!({"x": {"terms": {"field": "message"}}}), &mut ctx).unwrap_err();
        assert_eq!(err.kind, "illegal_argument_exception");
        let err = translate(
            &json!({"x": {"date_histogram": {"field": "@timestamp", "calendar_interval": "fortnight"}}}),
            &mut ctx,
        )
        .unwrap_err();
        assert!(err.reason.contains("fortnight"));
        // A calendar month in Berlin over two months of data: range buckets
        // at local midnight.
        let march = 1_709_247_600_000; // 2024-03-01T00:00:00+01:00
        ctx.data_bounds = Some((march + 86_400_000, march + 40 * 86_400_000));
        let (t, shapes) = translate(
            &json!({"m": {"date_histogram": {"field": "@timestamp", "calendar_interval": "1M", "time_zone": "Europe/Berlin"}}}),
            &mut ctx,
        )
        .unwrap();
        let ranges = t["m"]["range"]["ranges"].as_array().unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0]["key"], march.to_string());
        // April starts at 00:00+02:00 (daylight saving began on 31 March).
        assert_eq!(
            ranges[1]["key"],
            (march + 31 * 86_400_000 - 3_600_000).to_string()
        );
        assert!(matches!(shapes["m"].extra, Extra::Calendar(_)));
        ctx.max_buckets = 10;
        let err = translate(
            &json!({"m": {"date_histogram": {"field": "@timestamp", "calendar_interval": "1d", "time_zone": "+01:00"}}}),
            &mut ctx,
        )
        .unwrap_err();
        assert_eq!(err.kind, "too_many_buckets_exception");
        let err = translate(
            &json!({"m": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                "aggs": {"r": {"rate": {"unit": "month"}}}}}),
            &mut ctx,
        )
        .unwrap_err();
        assert!(err.reason.contains("month-based"), "{err}");
        let err = translate(&json!({"r": {"rate": {}}}), &mut ctx).unwrap_err();
        assert!(err.reason.contains("inside a date histogram"), "{err}");
    }
}
