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

use super::{datemath, QueryError};
use crate::model::log::{format_timestamp_ms, BODY_FIELDS, TIMESTAMP_FIELD};
use crate::storage::logs::catalog::{FieldKind, FieldMapping};

/// What post-processing needs to know of each aggregation.
#[derive(Debug, Default, Clone)]
pub struct AggShape {
    pub kind: String,
    pub format: Option<String>,
    pub children: BTreeMap<String, AggShape>,
}

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

/// Translate an `aggs` object for tantivy; returns it and its shape.
pub fn translate(
    aggs: &Value,
    fields: &BTreeMap<&str, &FieldMapping>,
    now_ms: i64,
) -> Result<(Value, BTreeMap<String, AggShape>), QueryError> {
    let object = aggs
        .as_object()
        .ok_or_else(|| QueryError::parsing("[aggs] must be an object"))?;
    let mut out = Map::new();
    let mut shapes = BTreeMap::new();
    for (name, body) in object {
        let body = body.as_object().ok_or_else(|| {
            QueryError::parsing(format!("aggregation [{name}] must be an object"))
        })?;
        let mut translated = Map::new();
        let mut shape = AggShape::default();
        for (key, value) in body {
            match key.as_str() {
                "aggs" | "aggregations" => {
                    let (sub, sub_shapes) = translate(value, fields, now_ms)?;
                    translated.insert("aggs".into(), sub);
                    shape.children = sub_shapes;
                }
                "meta" => {}
                kind if SUPPORTED.contains(&kind) => {
                    if !shape.kind.is_empty() {
                        return Err(QueryError::parsing(format!(
                            "Found two aggregation type definitions in [{name}]: [{}] and [{kind}]",
                            shape.kind
                        )));
                    }
                    shape.kind = kind.to_owned();
                    let params = value.as_object().ok_or_else(|| {
                        QueryError::parsing(format!("[{kind}] of [{name}] must be an object"))
                    })?;
                    let (params, format) = translate_params(kind, name, params, fields, now_ms)?;
                    shape.format = format;
                    translated.insert(kind.to_owned(), Value::Object(params));
                }
                other => {
                    return Err(QueryError::parsing(format!(
                        "unknown aggregation type [{other}] in [{name}] (supported: {})",
                        SUPPORTED.join(", ")
                    ))
                    .with_kind("x_content_parse_exception"))
                }
            }
        }
        if shape.kind.is_empty() {
            return Err(QueryError::parsing(format!(
                "Missing definition for aggregation [{name}]"
            )));
        }
        out.insert(name.clone(), Value::Object(translated));
        shapes.insert(name.clone(), shape);
    }
    Ok((Value::Object(out), shapes))
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
        let Some(agg) = object.get_mut(name) else {
            continue;
        };
        match shape.kind.as_str() {
            "value_count" | "cardinality" => integral(agg.get_mut("value")),
            "date_histogram" | "histogram" | "terms" | "range" => {
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
                    Some(Value::Array(buckets)) => buckets.iter_mut().for_each(&mut visit),
                    Some(Value::Object(buckets)) => buckets.values_mut().for_each(&mut visit),
                    _ => {}
                }
            }
            _ => {}
        }
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
            &fields,
            0,
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
        let err =
            translate(&json!({"x": {"geohash_grid": {"field": "p"}}}), &fields, 0).unwrap_err();
        assert!(err.reason.contains("[geohash_grid]"));
        let err =
            translate(&json!({"x": {"terms": {"field": "message"}}}), &fields, 0).unwrap_err();
        assert_eq!(err.kind, "illegal_argument_exception");
        let err = translate(&json!({"x": {"date_histogram": {"field": "@timestamp", "calendar_interval": "month"}}}), &fields, 0).unwrap_err();
        assert!(err.reason.contains("month"));
    }
}
