//! Aggregation operators (`sum`, `topk`, `quantile`, `count_values`, …),
//! evaluated step by step within each group.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::Evaluator;
use super::stats::{cmp_nan_last, fold_max, fold_min, kahan_sum, mean, quantile, variance};
use super::value::{effective_labels, project_labels, StepSeries, Value};
use super::EvalError;
use crate::model::Labels;

/// The labels that identify a series' group.
fn group_labels(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(modifier) => project_labels(labels, modifier),
    }
}

pub fn eval(ev: &Evaluator, agg: &AggregateExpr) -> Result<Value, EvalError> {
    let op = agg.op.to_string();
    let n = ev.n();
    let param = match &agg.param {
        Some(p) => Some(ev.eval(p)?),
        None => None,
    };
    let series = ev.vector(&agg.expr)?;
    // Group membership is fixed per series. Grouping sees a pending-drop
    // `__name__` (Prometheus 3's delayed name removal), and the group
    // inherits the drop.
    let mut groups: Vec<(Arc<Labels>, Vec<usize>)> = Vec::new();
    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let effective: Vec<Arc<Labels>> = series.iter().map(effective_labels).collect();
    for (i, s) in series.iter().enumerate() {
        let key = group_labels(&s.labels, &agg.modifier);
        let index = *group_index.entry(key.clone()).or_insert_with(|| {
            groups.push((Arc::new(key), Vec::new()));
            groups.len() - 1
        });
        groups[index].1.push(i);
    }
    let scalar_param = |what: &str| -> Result<Vec<f64>, EvalError> {
        match &param {
            Some(Value::Scalar(values)) => Ok(values.clone()),
            _ => Err(EvalError::BadData(format!(
                "expected scalar parameter for {what}"
            ))),
        }
    };
    match op.as_str() {
        "sum" | "avg" | "count" | "group" | "min" | "max" | "stddev" | "stdvar" | "quantile" => {
            let q = if op == "quantile" {
                Some(scalar_param("quantile")?)
            } else {
                None
            };
            let mut out = Vec::with_capacity(groups.len());
            for (labels, members) in &groups {
                let drop_name = members.iter().any(|&m| series[m].drop_name);
                let values: Vec<Option<f64>> = (0..n)
                    .map(|i| {
                        let present = members.iter().filter_map(|&m| series[m].values[i]);
                        let count = present.clone().count();
                        if count == 0 {
                            return None;
                        }
                        Some(match op.as_str() {
                            "sum" => kahan_sum(present),
                            "avg" => mean(present),
                            "count" => count as f64,
                            "group" => 1.0,
                            "min" => fold_min(present),
                            "max" => fold_max(present),
                            "stddev" => variance(present).sqrt(),
                            "stdvar" => variance(present),
                            _ => {
                                quantile(q.as_ref().expect("quantile param")[i], present.collect())
                            }
                        })
                    })
                    .collect();
                out.push(StepSeries {
                    labels: labels.clone(),
                    values,
                    drop_name,
                });
            }
            Ok(Value::Vector(out))
        }
        "topk" | "bottomk" | "limitk" | "limit_ratio" => {
            let k = scalar_param(&op)?;
            if k.iter().any(|v| v.is_nan()) {
                return Err(EvalError::Execution(if op == "limit_ratio" {
                    "Ratio value is NaN".into()
                } else {
                    "Parameter value is NaN".into()
                }));
            }
            let mut out: Vec<StepSeries> = series
                .iter()
                .map(|s| StepSeries {
                    labels: s.labels.clone(),
                    values: vec![None; n],
                    drop_name: s.drop_name,
                })
                .collect();
            for (_, members) in &groups {
                for i in 0..n {
                    let mut present: Vec<(usize, f64)> = members
                        .iter()
                        .filter_map(|&m| series[m].values[i].map(|v| (m, v)))
                        .collect();
                    // k is checked for NaN above; beyond the group size it means all.
                    let count = |k: f64, len: usize| {
                        if k >= len as f64 {
                            len
                        } else {
                            k.max(0.0) as usize
                        }
                    };
                    let chosen: Vec<usize> = match op.as_str() {
                        "topk" | "bottomk" => {
                            let take = count(k[i], present.len());
                            let top = op == "topk";
                            present.sort_by(|a, b| cmp_nan_last(a.1, b.1, top));
                            present.iter().take(take).map(|(m, _)| *m).collect()
                        }
                        "limitk" => {
                            let take = count(k[i], present.len());
                            present.sort_by_key(|(m, _)| effective[*m].hash());
                            present.iter().take(take).map(|(m, _)| *m).collect()
                        }
                        _ => {
                            let ratio = k[i].clamp(-1.0, 1.0);
                            present
                                .iter()
                                .filter(|(m, _)| {
                                    let point = effective[*m].hash() as f64 / u64::MAX as f64;
                                    if ratio >= 0.0 {
                                        point < ratio
                                    } else {
                                        point >= 1.0 + ratio
                                    }
                                })
                                .map(|(m, _)| *m)
                                .collect()
                        }
                    };
                    for m in chosen {
                        out[m].values[i] = series[m].values[i];
                    }
                }
            }
            out.retain(|s| s.values.iter().any(Option::is_some));
            if n == 1 && (op == "topk" || op == "bottomk") {
                // Instant results come back in rank order within each group.
                let top = op == "topk";
                out.sort_by(|a, b| {
                    cmp_nan_last(
                        a.values[0].unwrap_or(f64::NAN),
                        b.values[0].unwrap_or(f64::NAN),
                        top,
                    )
                });
            }
            Ok(Value::Vector(out))
        }
        "count_values" => {
            let label = match &param {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(EvalError::BadData(
                        "expected string parameter for count_values".into(),
                    ))
                }
            };
            if !crate::model::is_valid_label_name(&label) {
                return Err(EvalError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            // Counts are keyed by the output labels: a group label that the
            // value label overwrites merges groups (as in Prometheus).
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut out: Vec<StepSeries> = Vec::new();
            for (labels, members) in &groups {
                for i in 0..n {
                    for &m in members {
                        let Some(v) = series[m].values[i] else {
                            continue;
                        };
                        let mut pairs: Vec<(String, String)> = labels
                            .pairs()
                            .iter()
                            .filter(|(n, _)| *n != label)
                            .cloned()
                            .collect();
                        pairs.push((label.clone(), crate::query::format_value(v)));
                        let key = Labels::from_pairs(pairs);
                        let slot = *index.entry(key.clone()).or_insert_with(|| {
                            out.push(StepSeries {
                                labels: Arc::new(key),
                                values: vec![None; n],
                                drop_name: false,
                            });
                            out.len() - 1
                        });
                        *out[slot].values[i].get_or_insert(0.0) += 1.0;
                    }
                }
            }
            Ok(Value::Vector(out))
        }
        other => Err(EvalError::BadData(format!(
            "aggregation {other:?} is not supported"
        ))),
    }
}
