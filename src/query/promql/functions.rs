//! PromQL functions, with Prometheus' algorithms (extrapolated rates, Kahan
//! sums, linear regression, bucket quantiles).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::eval::{Evaluator, RangeInput};
use super::histogram::{bucket_fraction, bucket_quantile, classic_buckets};
use super::stats::{
    cmp_nan_last, fold_max, fold_min, kahan_sum, linear_regression, mean, quantile, variance,
};
use super::value::{effective_labels, SeriesBuilder, StepSeries, Value};
use super::EvalError;
use crate::model::{is_valid_label_name, Labels, Sample, METRIC_NAME};

pub fn call(ev: &Evaluator, call: &Call) -> Result<Value, EvalError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
    let n = ev.n();
    match name {
        "time" => Ok(Value::Scalar(
            ev.steps.iter().map(|t| *t as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; n])),
        "step" => Ok(Value::Scalar(vec![ev.step as f64 / 1000.0; n])),
        "range" => Ok(Value::Scalar(vec![(ev.end - ev.start) as f64 / 1000.0; n])),
        "start" => Ok(Value::Scalar(vec![ev.start as f64 / 1000.0; n])),
        "end" => Ok(Value::Scalar(vec![ev.end as f64 / 1000.0; n])),
        "min_of" | "max_of" => {
            let a = ev.scalar(args[0])?;
            let b = ev.scalar(args[1])?;
            let min = name == "min_of";
            Ok(Value::Scalar(
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| {
                        if x.is_nan() || y.is_nan() {
                            f64::NAN
                        } else if min {
                            x.min(*y)
                        } else {
                            x.max(*y)
                        }
                    })
                    .collect(),
            ))
        }
        "vector" => {
            let values = ev.scalar(args[0])?;
            Ok(Value::Vector(vec![StepSeries {
                labels: Arc::new(Labels::default()),
                values: values.into_iter().map(Some).collect(),
                drop_name: false,
            }]))
        }
        "scalar" => {
            let series = ev.vector(args[0])?;
            Ok(Value::Scalar(
                (0..n)
                    .map(|i| {
                        let mut present = series.iter().filter_map(|s| s.values[i]);
                        match (present.next(), present.next()) {
                            (Some(v), None) => v,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "sin"
        | "cos" | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh"
        | "acosh" | "atanh" | "deg" | "rad" => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |v: f64| {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        v
                    }
                },
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => f64::to_degrees,
                _ => f64::to_radians,
            };
            map_values(ev.vector(args[0])?, |v, _| Some(f(v)), true)
        }
        "round" => {
            let to_nearest = match args.get(1) {
                Some(arg) => ev.scalar(arg)?,
                None => vec![1.0; n],
            };
            map_values(
                ev.vector(args[0])?,
                |v, i| {
                    let inverse = 1.0 / to_nearest[i];
                    Some((v * inverse + 0.5).floor() / inverse)
                },
                true,
            )
        }
        "clamp" => {
            let lo = ev.scalar(args[1])?;
            let hi = ev.scalar(args[2])?;
            let series = ev.vector(args[0])?;
            map_values(
                series,
                // min > max gives nothing; a NaN bound gives NaN values.
                |v, i| {
                    (lo[i].partial_cmp(&hi[i]) != Some(std::cmp::Ordering::Greater))
                        .then(|| clamp(v, lo[i], hi[i]))
                },
                true,
            )
        }
        "clamp_min" => {
            let lo = ev.scalar(args[1])?;
            map_values(
                ev.vector(args[0])?,
                |v, i| {
                    Some(if v < lo[i] || lo[i].is_nan() {
                        lo[i]
                    } else {
                        v
                    })
                },
                true,
            )
        }
        "clamp_max" => {
            let hi = ev.scalar(args[1])?;
            map_values(
                ev.vector(args[0])?,
                |v, i| {
                    Some(if v > hi[i] || hi[i].is_nan() {
                        hi[i]
                    } else {
                        v
                    })
                },
                true,
            )
        }
        "timestamp" => {
            let inner = strip_parens(args[0]);
            if let Expr::VectorSelector(selector) = inner {
                Ok(Value::Vector(ev.selector_sample_times(selector)?))
            } else {
                let series = ev.vector(args[0])?;
                map_values(series, |_, i| Some(ev.steps[i] as f64 / 1000.0), true)
            }
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            let series = match args.first() {
                Some(arg) => ev.vector(arg)?,
                None => vec![StepSeries {
                    labels: Arc::new(Labels::default()),
                    values: ev.steps.iter().map(|t| Some(*t as f64 / 1000.0)).collect(),
                    drop_name: false,
                }],
            };
            let part = name;
            map_values(series, |v, _| date_part(part, v), true)
        }
        "sort" | "sort_desc" => {
            let mut series = ev.vector(args[0])?;
            if n == 1 {
                let desc = name == "sort_desc";
                series.sort_by(|a, b| {
                    let (x, y) = (
                        a.values[0].unwrap_or(f64::NAN),
                        b.values[0].unwrap_or(f64::NAN),
                    );
                    cmp_nan_last(x, y, desc)
                });
            }
            Ok(Value::Vector(series))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut series = ev.vector(args[0])?;
            let mut names = Vec::new();
            for arg in &args[1..] {
                names.push(string_arg(ev, arg)?);
            }
            let desc = name == "sort_by_label_desc";
            series.sort_by(|a, b| {
                let (la, lb) = (effective_labels(a), effective_labels(b));
                let mut order = std::cmp::Ordering::Equal;
                for name in &names {
                    order = natural_cmp(la.get(name).unwrap_or(""), lb.get(name).unwrap_or(""));
                    if order != std::cmp::Ordering::Equal {
                        break;
                    }
                }
                if order == std::cmp::Ordering::Equal {
                    order = la.cmp(&lb);
                }
                if desc {
                    order.reverse()
                } else {
                    order
                }
            });
            Ok(Value::Vector(series))
        }
        "label_replace" => {
            let series = ev.vector(args[0])?;
            let dst = string_arg(ev, args[1])?;
            let replacement = string_arg(ev, args[2])?;
            let src = string_arg(ev, args[3])?;
            let pattern = string_arg(ev, args[4])?;
            let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
                EvalError::BadData(format!(
                    "invalid regular expression in label_replace(): {pattern}: {e}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(EvalError::BadData(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            relabel(series, n, &dst, |labels| {
                let value = labels.get(&src).unwrap_or("");
                let captures = regex.captures(value)?;
                let mut out = String::new();
                captures.expand(&go_template(&replacement), &mut out);
                Some(set_label(labels, &dst, &out))
            })
        }
        "label_join" => {
            let series = ev.vector(args[0])?;
            let dst = string_arg(ev, args[1])?;
            let sep = string_arg(ev, args[2])?;
            let mut srcs = Vec::new();
            for arg in &args[3..] {
                srcs.push(string_arg(ev, arg)?);
            }
            if !is_valid_label_name(&dst) {
                return Err(EvalError::BadData(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            relabel(series, n, &dst, |labels| {
                let joined: Vec<&str> = srcs.iter().map(|s| labels.get(s).unwrap_or("")).collect();
                Some(set_label(labels, &dst, &joined.join(&sep)))
            })
        }
        "absent" => {
            let series = ev.vector(args[0])?;
            Ok(absent(
                args[0],
                (0..n).map(|i| series.iter().any(|s| s.values[i].is_some())),
            ))
        }
        "histogram_quantile" => {
            let q = ev.scalar(args[0])?;
            classic_buckets(ev, args[1], |i, buckets| bucket_quantile(q[i], buckets))
        }
        "histogram_quantiles" => {
            // histogram_quantiles(v, "label", q1, q2, …): one series per quantile.
            let label = string_arg(ev, args[1])?;
            let mut out = Vec::new();
            for q_expr in &args[2..] {
                let q = ev.scalar(q_expr)?;
                let Value::Vector(series) =
                    classic_buckets(ev, args[0], |i, buckets| bucket_quantile(q[i], buckets))?
                else {
                    unreachable!("classic_buckets returns a vector")
                };
                for mut s in series {
                    // Quantile labels always carry a decimal point ("1.0").
                    let text = q
                        .first()
                        .map(|q| {
                            if q.is_finite() && q.fract() == 0.0 {
                                format!("{q:.1}")
                            } else {
                                crate::query::format_value(*q)
                            }
                        })
                        .unwrap_or_default();
                    s.labels = Arc::new(set_label(&s.labels, &label, &text));
                    out.push(s);
                }
            }
            Ok(Value::Vector(out))
        }
        "histogram_fraction" => {
            let lower = ev.scalar(args[0])?;
            let upper = ev.scalar(args[1])?;
            classic_buckets(ev, args[2], |i, buckets| {
                bucket_fraction(lower[i], upper[i], buckets)
            })
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Native histograms are not stored; float series yield nothing.
            for arg in &args[..args.len() - 1] {
                ev.eval(arg)?;
            }
            ev.vector(args[args.len() - 1])?;
            Ok(Value::Vector(Vec::new()))
        }
        "rate" | "increase" | "delta" => {
            let input = ev.range_input(args[0])?;
            let (counter, rate) = (name != "delta", name == "rate");
            over_time(ev, &input, true, |w, i| {
                extrapolated_rate(w, &input, i, counter, rate)
            })
        }
        "irate" | "idelta" => {
            let input = ev.range_input(args[0])?;
            let rate = name == "irate";
            over_time(ev, &input, true, |w, _| instant_value(w, rate))
        }
        "deriv" => {
            let input = ev.range_input(args[0])?;
            over_time(ev, &input, true, |w, _| {
                (w.len() >= 2).then(|| linear_regression(w, w[0].t).0)
            })
        }
        "predict_linear" => {
            let input = ev.range_input(args[0])?;
            let duration = ev.scalar(args[1])?;
            over_time(ev, &input, true, |w, i| {
                (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, ev.steps[i]);
                    intercept + slope * duration[i]
                })
            })
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let input = ev.range_input(args[0])?;
            let sf = ev.scalar(args[1])?;
            let tf = ev.scalar(args[2])?;
            for i in 0..n {
                if sf[i] <= 0.0 || sf[i] >= 1.0 {
                    return Err(EvalError::BadData(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                        sf[i]
                    )));
                }
                if tf[i] <= 0.0 || tf[i] >= 1.0 {
                    return Err(EvalError::BadData(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                        tf[i]
                    )));
                }
            }
            over_time(ev, &input, true, |w, i| holt_winters(w, sf[i], tf[i]))
        }
        "changes" | "resets" => {
            let input = ev.range_input(args[0])?;
            let resets = name == "resets";
            over_time(ev, &input, true, |w, _| {
                if w.is_empty() {
                    return None;
                }
                let count = w
                    .windows(2)
                    .filter(|p| {
                        if resets {
                            p[1].v < p[0].v
                        } else {
                            p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan())
                        }
                    })
                    .count();
                Some(count as f64)
            })
        }
        "avg_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "min_over_time"
        | "max_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "first_over_time"
        | "present_over_time"
        | "mad_over_time"
        | "ts_of_min_over_time"
        | "ts_of_max_over_time"
        | "ts_of_last_over_time"
        | "ts_of_first_over_time" => {
            let input = ev.range_input(args[0])?;
            let keep_name = matches!(name, "last_over_time" | "first_over_time");
            over_time(ev, &input, !keep_name, |w, _| {
                if w.is_empty() {
                    return None;
                }
                Some(match name {
                    "avg_over_time" => mean(w.iter().map(|s| s.v)),
                    "sum_over_time" => kahan_sum(w.iter().map(|s| s.v)),
                    "count_over_time" => w.len() as f64,
                    "min_over_time" => fold_min(w.iter().map(|s| s.v)),
                    "max_over_time" => fold_max(w.iter().map(|s| s.v)),
                    "stddev_over_time" => variance(w.iter().map(|s| s.v)).sqrt(),
                    "stdvar_over_time" => variance(w.iter().map(|s| s.v)),
                    "last_over_time" => w[w.len() - 1].v,
                    "first_over_time" => w[0].v,
                    "present_over_time" => 1.0,
                    "ts_of_last_over_time" => w[w.len() - 1].t as f64 / 1000.0,
                    "ts_of_first_over_time" => w[0].t as f64 / 1000.0,
                    "ts_of_min_over_time" => ts_of_extreme(w, |a, b| a < b),
                    "ts_of_max_over_time" => ts_of_extreme(w, |a, b| a > b),
                    _ if w.iter().any(|s| s.v.is_nan()) => f64::NAN,
                    _ => {
                        let values: Vec<f64> = w.iter().map(|s| s.v).collect();
                        let median = quantile(0.5, values.clone());
                        quantile(0.5, values.iter().map(|v| (v - median).abs()).collect())
                    }
                })
            })
        }
        "quantile_over_time" => {
            let q = ev.scalar(args[0])?;
            let input = ev.range_input(args[1])?;
            over_time(ev, &input, true, |w, i| {
                (!w.is_empty()).then(|| quantile(q[i], w.iter().map(|s| s.v).collect()))
            })
        }
        "absent_over_time" => {
            let input = ev.range_input(args[0])?;
            Ok(absent(
                args[0],
                (0..n).map(|i| input.series.iter().any(|s| !input.window(s, i).is_empty())),
            ))
        }
        "info" => info(ev, &args),
        other => Err(EvalError::BadData(format!(
            "function {other:?} is not supported"
        ))),
    }
}

fn strip_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

fn string_arg(ev: &Evaluator, expr: &Expr) -> Result<String, EvalError> {
    match ev.eval(expr)? {
        Value::String(s) => Ok(s),
        other => Err(EvalError::BadData(format!(
            "expected type string, got {}",
            other.type_name()
        ))),
    }
}

/// Go's `math.Max(lo, math.Min(hi, v))`: a NaN anywhere gives NaN.
fn clamp(v: f64, lo: f64, hi: f64) -> f64 {
    if v.is_nan() || lo.is_nan() || hi.is_nan() {
        return f64::NAN;
    }
    v.min(hi).max(lo)
}

/// Apply `f` to every present value; series keep their labels.
fn map_values(
    series: Vec<StepSeries>,
    f: impl Fn(f64, usize) -> Option<f64>,
    drop_name: bool,
) -> Result<Value, EvalError> {
    Ok(Value::Vector(
        series
            .into_iter()
            .map(|mut s| {
                for (i, slot) in s.values.iter_mut().enumerate() {
                    *slot = slot.and_then(|v| f(v, i));
                }
                s.drop_name |= drop_name;
                s
            })
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect(),
    ))
}

/// Apply a function to each series' window at each step.
fn over_time(
    ev: &Evaluator,
    input: &RangeInput,
    drop_name: bool,
    f: impl Fn(&[Sample], usize) -> Option<f64>,
) -> Result<Value, EvalError> {
    let mut out = Vec::with_capacity(input.series.len());
    for series in &input.series {
        let values: Vec<Option<f64>> = (0..ev.n())
            .map(|i| {
                let window = input.window(series, i);
                if window.is_empty() {
                    None
                } else {
                    f(window, i)
                }
            })
            .collect();
        if values.iter().any(Option::is_some) {
            out.push(StepSeries {
                labels: series.labels.clone(),
                values,
                drop_name,
            });
        }
    }
    ev.check_deadline("range function")?;
    Ok(Value::Vector(out))
}

/// Re-label series (label_replace/label_join): `f` returns the new labels.
fn relabel(
    series: Vec<StepSeries>,
    steps: usize,
    destination: &str,
    f: impl Fn(&Labels) -> Option<Labels>,
) -> Result<Value, EvalError> {
    let mut builder = SeriesBuilder::new(steps);
    for s in series {
        // A pending `__name__` drop is still visible here; writing
        // `__name__` explicitly cancels the drop.
        let labels = Arc::new(f(&s.labels).unwrap_or_else(|| (*s.labels).clone()));
        let drop_name = s.drop_name && destination != METRIC_NAME;
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                builder.push(labels.clone(), i, *v, drop_name)?;
            }
        }
    }
    Ok(Value::Vector(builder.finish()))
}

fn set_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut pairs: Vec<(String, String)> = labels
        .pairs()
        .iter()
        .filter(|(n, _)| n != name)
        .cloned()
        .collect();
    if !value.is_empty() {
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Labels::from_pairs(pairs)
}

/// Go's `$1`/`${name}` template syntax maps onto the regex crate's, except
/// that Go takes the longest name after `$` (`$1x` is group "1x").
fn go_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push_str("$$");
            }
            Some('{') => out.push('$'),
            Some(c) if c.is_alphanumeric() || *c == '_' => {
                let mut name = String::new();
                while let Some(c) = chars.peek() {
                    if c.is_alphanumeric() || *c == '_' {
                        name.push(*c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str("${");
                out.push_str(&name);
                out.push('}');
            }
            _ => out.push_str("$$"),
        }
    }
    out
}

/// The labels that tie a series to its info series (as Prometheus' `info()`).
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

/// `info(v [, selector])`: add the data labels of the info series
/// (`target_info` by default) that share `v`'s `instance` and `job`.
fn info(ev: &Evaluator, args: &[&Expr]) -> Result<Value, EvalError> {
    use promql_parser::label::{MatchOp, Matcher as PromMatcher, Matchers};
    use promql_parser::parser::VectorSelector;
    let base = ev.vector(args[0])?;
    let n = ev.n();
    let selector = match args.get(1).map(|a| strip_parens(a)) {
        None => None,
        Some(Expr::VectorSelector(vs)) => Some(vs),
        Some(_) => {
            return Err(EvalError::BadData(
                "info(): the second argument must be a series selector".into(),
            ))
        }
    };
    let mut name_matchers: Vec<PromMatcher> = Vec::new();
    let mut data_matchers: Vec<PromMatcher> = Vec::new();
    if let Some(vs) = selector {
        if let Some(name) = &vs.name {
            name_matchers.push(PromMatcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
        for m in &vs.matchers.matchers {
            if m.name == METRIC_NAME {
                name_matchers.push(m.clone());
            } else {
                data_matchers.push(m.clone());
            }
        }
    }
    let has_positive = |ms: &[PromMatcher]| {
        ms.iter()
            .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Re(_)))
    };
    if name_matchers.is_empty() {
        name_matchers.push(PromMatcher::new(MatchOp::Equal, METRIC_NAME, "target_info"));
    } else if !has_positive(&name_matchers) {
        // Only exclusions: the candidates are still info metrics (`*_info`).
        let info_names = regex::Regex::new("^(?:.+_info)$").expect("valid regex");
        name_matchers.push(PromMatcher {
            op: MatchOp::Re(info_names),
            name: METRIC_NAME.into(),
            value: ".+_info".into(),
        });
    }
    let matches = |m: &PromMatcher, value: &str| match &m.op {
        MatchOp::Equal => m.value == value,
        MatchOp::NotEqual => m.value != value,
        MatchOp::Re(re) => re.is_match(value),
        MatchOp::NotRe(re) => !re.is_match(value),
    };
    // Info series are read as of the base selector's `@`/`offset`, if any.
    let (at, offset) = match strip_parens(args[0]) {
        Expr::VectorSelector(vs) => (vs.at.clone(), vs.offset.clone()),
        _ => (None, None),
    };
    let info_selector = VectorSelector {
        name: None,
        matchers: Matchers::new(name_matchers.clone()),
        offset,
        at,
    };
    let infos: Vec<StepSeries> = ev
        .selector_sample_times(&info_selector)?
        .into_iter()
        .filter(|s| {
            data_matchers
                .iter()
                .all(|m| matches(m, s.labels.get(&m.name).unwrap_or("")))
        })
        .collect();
    let required = data_matchers.iter().any(|m| !matches(m, ""));
    let identity = |labels: &Labels| -> Vec<String> {
        IDENTIFYING_LABELS
            .iter()
            .map(|l| labels.get(l).unwrap_or("").to_owned())
            .collect()
    };
    let mut builder = SeriesBuilder::new(n);
    for series in &base {
        let name = series.labels.metric_name().unwrap_or("");
        // A base series that is itself an info series passes through.
        let is_info = name_matchers.iter().all(|m| matches(m, name));
        let key = identity(&series.labels);
        for i in 0..n {
            let Some(value) = series.values[i] else {
                continue;
            };
            if is_info {
                builder.push(series.labels.clone(), i, value, series.drop_name)?;
                continue;
            }
            // Per info metric name, the series with the newest sample wins.
            let mut chosen: Vec<(&str, f64, &StepSeries)> = Vec::new();
            for candidate in &infos {
                let Some(sample_time) = candidate.values[i] else {
                    continue;
                };
                if identity(&candidate.labels) != key {
                    continue;
                }
                let info_name = candidate.labels.metric_name().unwrap_or("");
                match chosen.iter_mut().find(|(n, _, _)| *n == info_name) {
                    Some(entry) if sample_time > entry.1 => {
                        *entry = (info_name, sample_time, candidate)
                    }
                    Some(_) => {}
                    None => chosen.push((info_name, sample_time, candidate)),
                }
            }
            if chosen.is_empty() {
                if !required {
                    builder.push(series.labels.clone(), i, value, series.drop_name)?;
                }
                continue;
            }
            let mut pairs: Vec<(String, String)> = series.labels.pairs().to_vec();
            for (_, _, info) in &chosen {
                for label in info.labels.iter() {
                    let wanted = data_matchers.is_empty()
                        || data_matchers.iter().any(|m| m.name == label.name);
                    let excluded = label.name == METRIC_NAME
                        || IDENTIFYING_LABELS.contains(&label.name)
                        || pairs.iter().any(|(n, _)| n == label.name);
                    if wanted && !excluded {
                        pairs.push((label.name.to_owned(), label.value.to_owned()));
                    }
                }
            }
            builder.push(
                Arc::new(Labels::from_pairs(pairs)),
                i,
                value,
                series.drop_name,
            )?;
        }
    }
    Ok(Value::Vector(builder.finish()))
}

/// `absent*()`'s result: 1 at every step where nothing was `present`.
fn absent(expr: &Expr, present: impl Iterator<Item = bool>) -> Value {
    let values: Vec<Option<f64>> = present.map(|p| (!p).then_some(1.0)).collect();
    if !values.iter().any(Option::is_some) {
        return Value::Vector(Vec::new());
    }
    Value::Vector(vec![StepSeries {
        labels: Arc::new(absent_labels(expr)),
        values,
        drop_name: false,
    }])
}

/// Labels of `absent()`'s output: the equality matchers of a plain selector.
fn absent_labels(expr: &Expr) -> Labels {
    let selector = match strip_parens(expr) {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let Some(selector) = selector else {
        return Labels::default();
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &selector.matchers.matchers {
        *seen.entry(m.name.clone()).or_default() += 1;
    }
    for m in &selector.matchers.matchers {
        if matches!(m.op, promql_parser::label::MatchOp::Equal)
            && m.name != METRIC_NAME
            && seen[&m.name] == 1
        {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    Labels::from_pairs(pairs)
}

fn date_part(part: &str, seconds: f64) -> Option<f64> {
    if !seconds.is_finite() {
        return Some(f64::NAN);
    }
    let secs = seconds.floor() as i64;
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    Some(match part {
        "minute" => ((second_of_day / 60) % 60) as f64,
        "hour" => (second_of_day / 3600) as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_month" => day as f64,
        "day_of_year" => (month_days[..(month - 1) as usize].iter().sum::<i64>() + day) as f64,
        "days_in_month" => month_days[(month - 1) as usize] as f64,
        "month" => month as f64,
        _ => year as f64,
    })
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Natural ordering of label values (digit runs compare as numbers).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let mut p = String::new();
                while let Some(c) = x.peek().copied().filter(char::is_ascii_digit) {
                    p.push(c);
                    x.next();
                }
                let mut q = String::new();
                while let Some(d) = y.peek().copied().filter(char::is_ascii_digit) {
                    q.push(d);
                    y.next();
                }
                let (pt, qt) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                let order = pt.len().cmp(&qt.len()).then_with(|| pt.cmp(qt));
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                x.next();
                y.next();
            }
        }
    }
}

fn ts_of_extreme(w: &[Sample], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = w[0];
    for s in &w[1..] {
        if better(s.v, best.v) || best.v.is_nan() {
            best = *s;
        }
    }
    best.t as f64 / 1000.0
}

fn extrapolated_rate(
    w: &[Sample],
    input: &RangeInput,
    i: usize,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    extrapolate(w, input.ends[i], input.range, counter, rate)
}

/// `rate` (`rate`), `increase` (`!rate`) or `delta` (`!counter`) of the
/// samples `w` of the left-open window `(range_end - range, range_end]`,
/// with Prometheus' extrapolation to the window's edges; `None` with fewer
/// than two samples. Also used by the recommender, which evaluates
/// `rate(x[step])` straight from the store.
pub fn extrapolate(
    w: &[Sample],
    range_end: i64,
    range: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let range_start = range_end.saturating_sub(range);
    let first = w[0];
    let last = w[w.len() - 1];
    let mut result = last.v - first.v;
    if counter {
        let mut previous = 0.0;
        for s in w {
            if s.v < previous {
                result += previous;
            }
            previous = s.v;
        }
    }
    let mut duration_to_start = first.t.saturating_sub(range_start) as f64 / 1000.0;
    let mut duration_to_end = range_end.saturating_sub(last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let average = sampled / (w.len() - 1) as f64;
    let threshold = average * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average / 2.0;
    }
    if counter && result > 0.0 && first.v >= 0.0 {
        let duration_to_zero = sampled * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average / 2.0;
    }
    let mut factor = (sampled + duration_to_start + duration_to_end) / sampled;
    if rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(w: &[Sample], rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let last = w[w.len() - 1];
    let previous = w[w.len() - 2];
    let mut value = if rate && last.v < previous.v {
        last.v
    } else {
        last.v - previous.v
    };
    let interval = last.t - previous.t;
    if interval == 0 {
        return None;
    }
    if rate {
        value /= interval as f64 / 1000.0;
    }
    Some(value)
}

fn holt_winters(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, sample) in w.iter().enumerate().skip(1) {
        let x = sf * sample.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}
