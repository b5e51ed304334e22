//! Classic (`le`-bucket) histogram functions: `histogram_quantile`,
//! `histogram_fraction`, `histogram_quantiles`, with Prometheus'
//! `BucketQuantile`/`BucketFraction` algorithms.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::Expr;

use super::eval::Evaluator;
use super::value::{StepSeries, Value};
use super::EvalError;
use crate::model::Labels;

/// Apply `f` to the classic `le` buckets of each histogram at each step.
/// Groups keep `__name__` (dropped later), so buckets of different metrics
/// never mix and colliding results are an error, as in Prometheus.
pub fn classic_buckets(
    ev: &Evaluator,
    v_expr: &Expr,
    f: impl Fn(usize, &mut [(f64, f64)]) -> f64,
) -> Result<Value, EvalError> {
    let series = ev.vector(v_expr)?;
    let n = ev.n();
    let mut groups: Vec<(Labels, Vec<(f64, &StepSeries)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in &series {
        let Some(le) = s.labels.get("le") else {
            continue;
        };
        let Ok(bound) = parse_le(le) else { continue };
        let key = s.labels.without(&["le"]);
        let slot = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push((bound, s));
    }
    let mut out = Vec::new();
    for (labels, buckets) in groups {
        let values: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let mut present: Vec<(f64, f64)> = buckets
                    .iter()
                    .filter_map(|(bound, s)| s.values[i].map(|count| (*bound, count)))
                    .collect();
                if present.is_empty() {
                    return None;
                }
                Some(f(i, &mut present))
            })
            .collect();
        if values.iter().any(Option::is_some) {
            out.push(StepSeries {
                labels: Arc::new(labels),
                values,
                drop_name: true,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// Sort by bound and merge buckets with equal bounds; `None` without `+Inf`.
fn coalesce(buckets: &mut [(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return None;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(bound, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    Some(merged)
}

/// Prometheus' `BucketFraction`: the estimated share of observations
/// between `lower` and `upper`, interpolating linearly within buckets.
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    let Some(merged) = coalesce(buckets) else {
        return f64::NAN;
    };
    let count = merged[merged.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, &(upper_bound, bucket_count)) in merged.iter().enumerate() {
        let lower_bound = if i > 0 {
            merged[i - 1].0
        } else if upper_bound > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        // A bucket of infinite width contributes nothing: all of its
        // observations count as below the value.
        let interpolate = |v: f64| {
            if lower_bound.is_infinite() {
                bucket_count
            } else {
                rank + (bucket_count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bucket_count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn parse_le(text: &str) -> Result<f64, ()> {
    match text.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        other => other.parse().map_err(|_| ()),
    }
}

/// Prometheus' `BucketQuantile` for classic buckets `(upper bound, count)`.
pub fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(mut merged) = coalesce(buckets) else {
        return f64::NAN;
    };
    // Force monotonic counts, ignoring tiny floating-point deltas.
    let mut max = f64::NEG_INFINITY;
    for i in 0..merged.len() {
        let count = merged[i].1;
        if count >= max {
            max = count;
        } else {
            merged[i].1 = max;
        }
        if i > 0 {
            let previous = merged[i - 1].1;
            if (merged[i].1 - previous).abs() <= 1e-12 * previous.abs() {
                merged[i].1 = previous;
            }
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1]
        .iter()
        .position(|bucket| bucket.1 >= rank)
        .unwrap_or(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}
