//! Parent pipeline aggregations, computed from the buckets of the
//! histogram (or other multi-bucket aggregation) they sit in, the way
//! Elasticsearch's reducers compute them: `derivative`, `cumulative_sum`,
//! `moving_fn`, `moving_avg`, `serial_diff` and `bucket_script`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::aggs::{AggShape, Extra};
use super::script::{self, Expr};
use super::QueryError;

pub const KINDS: [&str; 6] = [
    "derivative",
    "cumulative_sum",
    "moving_fn",
    "moving_avg",
    "serial_diff",
    "bucket_script",
];

/// Elasticsearch's default `moving_avg`/`moving_fn`-free window.
const DEFAULT_MOVING_AVG_WINDOW: usize = 5;
/// Longest window or lag accepted (a window wider than the buckets is pointless).
const MAX_WINDOW: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GapPolicy {
    Skip,
    InsertZeros,
    KeepValues,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MovingAvgModel {
    Simple,
    Linear,
    Ewma(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Derivative {
        unit_ms: Option<i64>,
    },
    CumulativeSum,
    MovingFn {
        window: usize,
        shift: i64,
        script: Expr,
        params: BTreeMap<String, f64>,
    },
    MovingAvg {
        window: usize,
        model: MovingAvgModel,
    },
    SerialDiff {
        lag: usize,
    },
    BucketScript {
        script: Expr,
        params: BTreeMap<String, f64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub kind: Kind,
    /// `(variable, buckets_path)`; the variable is empty for single-path kinds.
    pub paths: Vec<(String, String)>,
    pub gap: GapPolicy,
}

fn invalid(reason: String) -> QueryError {
    QueryError::new(
        "action_request_validation_exception",
        format!("Validation Failed: 1: {reason};"),
    )
}

/// The sibling aggregation a `buckets_path` starts with.
fn head(path: &str) -> &str {
    let end = path.find(['>', '.', '[']).unwrap_or(path.len());
    &path[..end]
}

fn positive(name: &str, key: &str, value: &Value) -> Result<usize, QueryError> {
    // Grafana sends `window` and `lag` as floats (`5.0`) or strings ("5").
    integer(value)
        .filter(|n| *n >= 1 && *n as usize <= MAX_WINDOW)
        .map(|n| n as usize)
        .ok_or_else(|| {
            QueryError::parsing(format!(
                "[{name}]: [{key}] must be a positive integer of at most {MAX_WINDOW}, got {value}"
            ))
        })
}

/// An integer given as a number (integral floats too) or a string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
                .map(|x| x as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn script_source(name: &str, value: &Value) -> Result<(String, BTreeMap<String, f64>), QueryError> {
    let mut params = BTreeMap::new();
    let source = match value {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            if let Some(lang) = o.get("lang").and_then(Value::as_str) {
                if lang != "painless" && lang != "expression" {
                    return Err(QueryError::new(
                        "illegal_argument_exception",
                        format!("[{name}]: script lang [{lang}] is not supported"),
                    ));
                }
            }
            if let Some(Value::Object(p)) = o.get("params") {
                for (k, v) in p {
                    let x = v.as_f64().ok_or_else(|| {
                        QueryError::new(
                            "illegal_argument_exception",
                            format!("[{name}]: script parameter [{k}] must be a number"),
                        )
                    })?;
                    params.insert(k.clone(), x);
                }
            }
            o.get("source")
                .or_else(|| o.get("inline"))
                .and_then(Value::as_str)
                .ok_or_else(|| QueryError::parsing(format!("[{name}]: [script] needs a [source]")))?
                .to_owned()
        }
        _ => {
            return Err(QueryError::parsing(format!(
                "[{name}]: [script] must be a string or an object"
            )))
        }
    };
    Ok((source, params))
}

fn compile(name: &str, source: &str) -> Result<Expr, QueryError> {
    script::parse(source).map_err(|reason| {
        QueryError::new(
            "script_exception",
            format!("[{name}]: compile error in [{source}]: {reason}"),
        )
    })
}

/// Parse a pipeline aggregation `name` of `kind` under a `parent` of that kind,
/// next to the aggregations in `siblings`.
pub fn parse(
    kind: &str,
    name: &str,
    params: &Map<String, Value>,
    parent: Option<&str>,
    siblings: &Map<String, Value>,
) -> Result<Pipeline, QueryError> {
    let histogram_parent = matches!(parent, Some("date_histogram" | "histogram"));
    if kind != "bucket_script" && !histogram_parent {
        return Err(invalid(format!(
            "{kind} aggregation [{name}] must have a histogram, date_histogram or auto_date_histogram as parent"
        )));
    }
    if kind == "bucket_script" && parent.is_none() {
        return Err(invalid(format!(
            "bucket_script aggregation [{name}] must be declared inside of another aggregation"
        )));
    }
    let mut paths = Vec::new();
    let mut gap = GapPolicy::Skip;
    let mut window = None;
    let mut shift = 0i64;
    let mut lag = 1usize;
    let mut unit_ms = None;
    let mut script = None;
    let mut model = "simple".to_owned();
    let mut alpha = 0.3;
    for (key, value) in params {
        match key.as_str() {
            "buckets_path" => match value {
                Value::String(path) if kind != "bucket_script" => {
                    paths.push((String::new(), path.clone()))
                }
                Value::Array(items) if kind != "bucket_script" && items.len() == 1 => {
                    paths.push((String::new(), items[0].as_str().unwrap_or("").to_owned()))
                }
                Value::Object(map) if kind == "bucket_script" => {
                    for (var, path) in map {
                        let path = path.as_str().ok_or_else(|| {
                            QueryError::parsing(format!("[{name}]: buckets_path [{var}] must be a string"))
                        })?;
                        paths.push((var.clone(), path.to_owned()));
                    }
                }
                Value::String(path) => paths.push(("_value".into(), path.clone())),
                _ => {
                    return Err(QueryError::parsing(format!(
                        "[{name}]: [buckets_path] of {kind} must be {}",
                        if kind == "bucket_script" { "an object of variable to path" } else { "a string" }
                    )))
                }
            },
            "gap_policy" => {
                gap = match value.as_str() {
                    Some("skip") => GapPolicy::Skip,
                    Some("insert_zeros") => GapPolicy::InsertZeros,
                    Some("keep_values") => GapPolicy::KeepValues,
                    _ => {
                        return Err(QueryError::parsing(format!(
                            "[{name}]: Invalid gap policy: {value}, accepted values: [skip, insert_zeros, keep_values]"
                        )))
                    }
                }
            }
            "format" => {}
            "window" if kind == "moving_fn" || kind == "moving_avg" => {
                window = Some(positive(name, key, value)?)
            }
            // Grafana leaves an unset shift empty.
            "shift" if kind == "moving_fn" && value.as_str().is_some_and(|s| s.trim().is_empty()) => {}
            "shift" if kind == "moving_fn" => {
                shift = integer(value)
                    .filter(|s| s.unsigned_abs() <= MAX_WINDOW as u64)
                    .ok_or_else(|| QueryError::parsing(format!("[{name}]: [shift] must be an integer")))?
            }
            "lag" if kind == "serial_diff" => lag = positive(name, key, value)?,
            "unit" if kind == "derivative" => {
                let text = value.as_str().unwrap_or("");
                let ms = super::calendar::Unit::parse(text)
                    .map(|u| u.nominal_ms())
                    .or_else(|| super::aggs::fixed_ms(text));
                unit_ms = Some(ms.ok_or_else(|| {
                    QueryError::new(
                        "illegal_argument_exception",
                        format!("[{name}]: unknown unit [{text}]"),
                    )
                })?);
            }
            "script" if kind == "moving_fn" || kind == "bucket_script" => {
                script = Some(script_source(name, value)?)
            }
            "model" if kind == "moving_avg" => model = value.as_str().unwrap_or("").to_owned(),
            "settings" if kind == "moving_avg" => {
                if let Some(a) = value.get("alpha") {
                    alpha = a
                        .as_f64()
                        .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
                        .filter(|a| (0.0..=1.0).contains(a))
                        .ok_or_else(|| QueryError::parsing(format!("[{name}]: [alpha] must be between 0 and 1")))?;
                }
            }
            "minimize" if kind == "moving_avg" => {}
            "predict" if kind == "moving_avg" && integer(value).unwrap_or(0) == 0 => {}
            other => {
                return Err(QueryError::parsing(format!("[{name}]: [{kind}] does not support [{other}]")))
            }
        }
    }
    if paths.is_empty() {
        return Err(invalid(format!(
            "[buckets_path] must be set for aggregation [{name}]"
        )));
    }
    for (_, path) in &paths {
        let first = head(path);
        let known =
            matches!(first, "_count" | "_key") || (siblings.contains_key(first) && first != name);
        if !known {
            return Err(invalid(format!("No aggregation found for path [{path}]")));
        }
    }
    let kind = match kind {
        "derivative" => Kind::Derivative { unit_ms },
        "cumulative_sum" => Kind::CumulativeSum,
        "serial_diff" => Kind::SerialDiff { lag },
        "moving_fn" => {
            let (source, params) = script
                .ok_or_else(|| QueryError::parsing(format!("[{name}]: [moving_fn] requires a [script]")))?;
            let window = window.ok_or_else(|| {
                QueryError::parsing(format!("[{name}]: [window] must be a positive, non-zero integer."))
            })?;
            let script = compile(name, &source)?;
            let mut used = Vec::new();
            script.params(&mut used);
            if let Some(p) = used.iter().find(|p| !params.contains_key(*p)) {
                return Err(QueryError::new(
                    "script_exception",
                    format!("[{name}]: [params.{p}] is not in the script's [params]"),
                ));
            }
            Kind::MovingFn { window, shift, script, params }
        }
        "moving_avg" => Kind::MovingAvg {
            window: window.unwrap_or(DEFAULT_MOVING_AVG_WINDOW),
            model: match model.as_str() {
                "simple" => MovingAvgModel::Simple,
                "linear" => MovingAvgModel::Linear,
                "ewma" => MovingAvgModel::Ewma(alpha),
                other => {
                    return Err(QueryError::new(
                        "illegal_argument_exception",
                        format!("[{name}]: moving_avg model [{other}] is not supported (simple, linear, ewma)"),
                    ))
                }
            },
        },
        _ => {
            let (source, params) = script
                .ok_or_else(|| QueryError::parsing(format!("[{name}]: [bucket_script] requires a [script]")))?;
            let script = compile(name, &source)?;
            let mut used = Vec::new();
            script.params(&mut used);
            for p in used {
                if !params.contains_key(&p) && !paths.iter().any(|(var, _)| *var == p) {
                    return Err(QueryError::new(
                        "script_exception",
                        format!("[{name}]: [params.{p}] is neither in [buckets_path] nor in the script's [params]"),
                    ));
                }
            }
            if script_reads_values(&script) {
                return Err(QueryError::new(
                    "script_exception",
                    format!("[{name}]: bucket_script has no [values]"),
                ));
            }
            Kind::BucketScript { script, params }
        }
    };
    Ok(Pipeline { kind, paths, gap })
}

fn script_reads_values(expr: &Expr) -> bool {
    match expr {
        Expr::Values | Expr::Call(..) => true,
        Expr::Neg(inner) => script_reads_values(inner),
        Expr::Binary(_, a, b) => script_reads_values(a) || script_reads_values(b),
        Expr::Num(_) | Expr::Param(_) => false,
    }
}

/// Whether a pipeline's inputs form a cycle among the siblings.
pub fn check_cycles(shapes: &BTreeMap<String, AggShape>) -> Result<(), QueryError> {
    for start in shapes.keys() {
        let mut current = start.as_str();
        for _ in 0..=shapes.len() {
            let Some(Extra::Pipeline(p)) = shapes.get(current).map(|s| &s.extra) else {
                break;
            };
            let Some((_, path)) = p.paths.iter().find(|(_, path)| {
                matches!(
                    shapes.get(head(path)).map(|s| &s.extra),
                    Some(Extra::Pipeline(_))
                )
            }) else {
                break;
            };
            current = head(path);
            if current == start {
                return Err(invalid(format!(
                    "pipeline aggregation [{start}] depends on itself"
                )));
            }
        }
    }
    Ok(())
}

/// A bucket's value at `path` (`None` when the path names nothing there,
/// NaN when its value is null), and whether the path is the document count.
fn raw_value(bucket: &Value, path: &str) -> Option<(f64, bool)> {
    if path == "_count" {
        return Some((
            bucket
                .get("doc_count")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            true,
        ));
    }
    if path == "_key" {
        return Some((
            bucket
                .get("key")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN),
            false,
        ));
    }
    let mut current = bucket;
    let steps: Vec<&str> = path.split('>').collect();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        if !last {
            current = current.get(*step)?;
            continue;
        }
        let (agg, metric) = if let Some(open) = step.find('[') {
            (&step[..open], Some(step[open + 1..].trim_end_matches(']')))
        } else if let Some((agg, metric)) = step.split_once('.') {
            (agg, Some(metric))
        } else {
            (*step, None)
        };
        let agg = current.get(agg)?;
        let value = match metric {
            None if agg.get("value").is_some() => agg.get("value"),
            None => agg.get("doc_count"),
            Some("_count") => agg.get("doc_count"),
            Some(m) => agg.get(m).or_else(|| {
                agg.get("values").and_then(|values| {
                    values.get(m).or_else(|| {
                        // Percentile keys print as `99.0`.
                        let wanted: f64 = m.parse().ok()?;
                        values
                            .as_object()?
                            .iter()
                            .find(|(k, _)| k.parse::<f64>().ok() == Some(wanted))
                            .map(|(_, v)| v)
                    })
                })
            }),
        };
        return Some((value.and_then(Value::as_f64).unwrap_or(f64::NAN), false));
    }
    None
}

/// Elasticsearch's `BucketHelpers.resolveBucketValue`: NaN stands for a
/// gap, `None` for a path that names nothing in this bucket (such as a
/// derivative's first bucket).
fn resolve_opt(bucket: &Value, path: &str, gap: GapPolicy) -> Option<f64> {
    let (value, is_count) = raw_value(bucket, path)?;
    let empty = bucket.get("doc_count").and_then(Value::as_f64) == Some(0.0);
    if !value.is_finite() || (empty && !is_count) {
        return Some(match gap {
            GapPolicy::InsertZeros => 0.0,
            GapPolicy::Skip => f64::NAN,
            GapPolicy::KeepValues if value.is_finite() => value,
            GapPolicy::KeepValues => f64::NAN,
        });
    }
    Some(value)
}

/// As [`resolve_opt`], with a missing value as a gap.
fn resolve(bucket: &Value, path: &str, gap: GapPolicy) -> f64 {
    resolve_opt(bucket, path, gap).unwrap_or(f64::NAN)
}

fn simple_value(value: f64) -> Value {
    serde_json::json!({ "value": if value.is_finite() { Value::from(value) } else { Value::Null } })
}

/// Compute the pipeline aggregations among `children` over `buckets`, in
/// dependency order (a pipeline may read another's output).
pub fn run(buckets: &mut [Value], children: &BTreeMap<String, AggShape>, _parent: Option<&str>) {
    let mut pending: Vec<(&String, &Pipeline)> = children
        .iter()
        .filter_map(|(name, shape)| match &shape.extra {
            Extra::Pipeline(p) => Some((name, p)),
            _ => None,
        })
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        let waiting: Vec<String> = pending.iter().map(|(n, _)| (*n).clone()).collect();
        pending.retain(|(name, p)| {
            let ready = p
                .paths
                .iter()
                .all(|(_, path)| !waiting.iter().any(|w| w == head(path)));
            if ready {
                apply(name, p, buckets);
            }
            !ready
        });
        if pending.len() == before {
            // A cycle: refused when the request was translated.
            break;
        }
    }
}

fn apply(name: &str, p: &Pipeline, buckets: &mut [Value]) {
    let path = p
        .paths
        .first()
        .map(|(_, path)| path.as_str())
        .unwrap_or("_count");
    match &p.kind {
        Kind::Derivative { unit_ms } => {
            let mut last: Option<(f64, Option<f64>)> = None;
            for bucket in buckets.iter_mut() {
                let value = resolve_opt(bucket, path, p.gap);
                let key = bucket
                    .get("key")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN);
                if let (Some((last_key, Some(last_value))), Some(value)) = (last, value) {
                    let gradient = value - last_value;
                    let mut out = simple_value(gradient);
                    if let Some(unit) = unit_ms {
                        let x = (key - last_key) / *unit as f64;
                        let normalized = gradient / x;
                        out["normalized_value"] = if normalized.is_finite() {
                            Value::from(normalized)
                        } else {
                            Value::Null
                        };
                    }
                    bucket[name] = out;
                }
                last = Some((key, value));
            }
        }
        Kind::CumulativeSum => {
            let mut sum = 0.0;
            for bucket in buckets.iter_mut() {
                let value = resolve_opt(bucket, path, GapPolicy::InsertZeros).unwrap_or(0.0);
                if value.is_finite() {
                    sum += value;
                }
                bucket[name] = simple_value(sum);
            }
        }
        Kind::SerialDiff { lag } => {
            let values: Vec<f64> = buckets.iter().map(|b| resolve(b, path, p.gap)).collect();
            for (i, bucket) in buckets.iter_mut().enumerate() {
                if i < *lag || values[i].is_nan() || values[i - lag].is_nan() {
                    continue;
                }
                bucket[name] = simple_value(values[i] - values[i - lag]);
            }
        }
        Kind::MovingFn {
            window,
            shift,
            script,
            params,
        } => {
            let values: Vec<f64> = buckets
                .iter()
                .map(|b| resolve(b, path, p.gap))
                .filter(|v| !v.is_nan())
                .collect();
            let clamp = |i: i64| i.clamp(0, values.len() as i64) as usize;
            let mut index = 0i64;
            for bucket in buckets.iter_mut() {
                if resolve(bucket, path, p.gap).is_nan() {
                    continue;
                }
                let from = clamp(index - *window as i64 + shift);
                let to = clamp(index + shift);
                let window_values = if from < to {
                    &values[from..to]
                } else {
                    &[][..]
                };
                bucket[name] = simple_value(script.eval(params, window_values));
                index += 1;
            }
        }
        Kind::MovingAvg { window, model } => {
            let mut previous: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
            for bucket in buckets.iter_mut() {
                let value = resolve(bucket, path, p.gap);
                if value.is_nan() {
                    continue;
                }
                if !previous.is_empty() {
                    let avg = match model {
                        MovingAvgModel::Simple => {
                            previous.iter().sum::<f64>() / previous.len() as f64
                        }
                        MovingAvgModel::Linear => {
                            let (mut avg, mut total, mut current) = (0.0, 1.0, 1.0);
                            for v in &previous {
                                avg += v * current;
                                total += current;
                                current += 1.0;
                            }
                            avg / total
                        }
                        MovingAvgModel::Ewma(alpha) => {
                            let mut avg = f64::NAN;
                            for v in &previous {
                                avg = if avg.is_nan() {
                                    *v
                                } else {
                                    v * alpha + (1.0 - alpha) * avg
                                };
                            }
                            avg
                        }
                    };
                    bucket[name] = simple_value(avg);
                }
                previous.push_back(value);
                if previous.len() > *window {
                    previous.pop_front();
                }
            }
        }
        Kind::BucketScript { script, params } => {
            'bucket: for bucket in buckets.iter_mut() {
                let mut vars = params.clone();
                for (var, path) in &p.paths {
                    let value = resolve(bucket, path, p.gap);
                    if p.gap == GapPolicy::Skip && value.is_nan() {
                        continue 'bucket;
                    }
                    vars.insert(var.clone(), value);
                }
                bucket[name] = simple_value(script.eval(&vars, &[]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shapes(aggs: Value) -> BTreeMap<String, AggShape> {
        let siblings = aggs.as_object().unwrap().clone();
        let mut out = BTreeMap::new();
        for (name, body) in &siblings {
            let (kind, params) = body.as_object().unwrap().iter().next().unwrap();
            let extra = if KINDS.contains(&kind.as_str()) {
                Extra::Pipeline(
                    parse(
                        kind,
                        name,
                        params.as_object().unwrap(),
                        Some("date_histogram"),
                        &siblings,
                    )
                    .unwrap(),
                )
            } else {
                Extra::None
            };
            out.insert(
                name.clone(),
                AggShape {
                    kind: kind.clone(),
                    extra,
                    ..AggShape::default()
                },
            );
        }
        out
    }

    fn buckets(values: &[(u64, Option<f64>)]) -> Vec<Value> {
        values
            .iter()
            .enumerate()
            .map(|(i, (count, v))| json!({"key": i as i64 * 60_000, "doc_count": count, "1": {"value": v}}))
            .collect()
    }

    fn column(buckets: &[Value], name: &str) -> Vec<Option<f64>> {
        buckets
            .iter()
            .map(|b| b.get(name).map(|v| v["value"].as_f64().unwrap_or(f64::NAN)))
            .collect()
    }

    #[test]
    fn derivative_cumulative_sum_and_serial_diff() {
        let data = [
            (1, Some(10.0)),
            (2, Some(15.0)),
            (0, None),
            (3, Some(30.0)),
            (1, Some(25.0)),
        ];
        let mut b = buckets(&data);
        let s = shapes(json!({
            "1": {"avg": {}},
            "d": {"derivative": {"buckets_path": "1"}},
            "dz": {"derivative": {"buckets_path": "1", "gap_policy": "insert_zeros"}},
            "c": {"cumulative_sum": {"buckets_path": "1"}},
            "cc": {"cumulative_sum": {"buckets_path": "_count"}},
            "s": {"serial_diff": {"buckets_path": "1", "lag": 2}},
            "dd": {"derivative": {"buckets_path": "d"}},
        }));
        run(&mut b, &s, Some("date_histogram"));
        let nan = f64::NAN;
        let same = |got: Vec<Option<f64>>, want: Vec<Option<f64>>| {
            let eq = got.len() == want.len()
                && got.iter().zip(&want).all(|(g, w)| match (g, w) {
                    (Some(g), Some(w)) => g == w || (g.is_nan() && w.is_nan()),
                    (None, None) => true,
                    _ => false,
                });
            assert!(eq, "got {got:?}, want {want:?}");
        };
        same(
            column(&b, "d"),
            vec![None, Some(5.0), Some(nan), Some(nan), Some(-5.0)],
        );
        same(
            column(&b, "dz"),
            vec![None, Some(5.0), Some(-15.0), Some(30.0), Some(-5.0)],
        );
        same(
            column(&b, "c"),
            vec![Some(10.0), Some(25.0), Some(25.0), Some(55.0), Some(80.0)],
        );
        same(
            column(&b, "cc"),
            vec![Some(1.0), Some(3.0), Some(3.0), Some(6.0), Some(7.0)],
        );
        same(column(&b, "s"), vec![None, None, None, Some(15.0), None]);
        // A derivative of a derivative reads the first one's output.
        same(
            column(&b, "dd"),
            vec![None, None, Some(nan), Some(nan), Some(nan)],
        );
    }

    #[test]
    fn moving_functions_and_bucket_script() {
        let data = [
            (1, Some(1.0)),
            (1, Some(2.0)),
            (0, None),
            (1, Some(4.0)),
            (1, Some(8.0)),
        ];
        let mut b = buckets(&data);
        let s = shapes(json!({
            "1": {"avg": {}},
            "m": {"moving_fn": {"buckets_path": "1", "window": 2, "script": "MovingFunctions.unweightedAvg(values)"}},
            "mx": {"moving_fn": {"buckets_path": "1", "window": 5, "shift": 1, "script": {"source": "MovingFunctions.max(values)"}}},
            "ma": {"moving_avg": {"buckets_path": "1", "window": 2, "model": "simple"}},
            "bs": {"bucket_script": {"buckets_path": {"a": "1", "n": "_count"}, "script": "params.a / params.n * 100"}},
        }));
        run(&mut b, &s, Some("date_histogram"));
        let nan = f64::NAN;
        let m = column(&b, "m");
        assert!(m[0].unwrap().is_nan());
        assert_eq!(&m[1..], &[Some(1.0), None, Some(1.5), Some(3.0)]);
        assert_eq!(
            column(&b, "mx"),
            vec![Some(1.0), Some(2.0), None, Some(4.0), Some(8.0)]
        );
        assert_eq!(
            column(&b, "ma"),
            vec![None, Some(1.0), None, Some(1.5), Some(3.0)]
        );
        let bs = column(&b, "bs");
        assert_eq!(
            bs,
            vec![Some(100.0), Some(200.0), None, Some(400.0), Some(800.0)]
        );
        let _ = nan;
    }

    #[test]
    fn refusals() {
        let siblings = json!({"1": {"avg": {}}}).as_object().unwrap().clone();
        let p = |kind: &str, params: Value, parent: Option<&str>| {
            parse(kind, "x", params.as_object().unwrap(), parent, &siblings).unwrap_err()
        };
        let e = p(
            "derivative",
            json!({"buckets_path": "2"}),
            Some("date_histogram"),
        );
        assert!(
            e.reason.contains("No aggregation found for path [2]"),
            "{e}"
        );
        let e = p("derivative", json!({"buckets_path": "1"}), Some("terms"));
        assert!(e.reason.contains("must have a histogram"), "{e}");
        let e = p(
            "bucket_script",
            json!({"buckets_path": {"a": "1"}, "script": "params.b * 2"}),
            Some("terms"),
        );
        assert_eq!(e.kind, "script_exception");
        let e = p(
            "bucket_script",
            json!({"buckets_path": {"a": "1"}, "script": "params.a +"}),
            Some("terms"),
        );
        assert!(e.reason.contains("unexpected end"), "{e}");
        let e = p(
            "moving_fn",
            json!({"buckets_path": "1", "window": 0, "script": "MovingFunctions.max(values)"}),
            Some("histogram"),
        );
        assert!(e.reason.contains("[window]"), "{e}");
        let e = p(
            "moving_avg",
            json!({"buckets_path": "1", "model": "holt_winters"}),
            Some("histogram"),
        );
        assert!(e.reason.contains("holt_winters"), "{e}");
        let e = p(
            "derivative",
            json!({"buckets_path": "1", "gap_policy": "fill"}),
            Some("histogram"),
        );
        assert!(e.reason.contains("gap policy"), "{e}");
    }
}
