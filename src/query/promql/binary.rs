//! Binary operators: arithmetic, comparison (with and without `bool`), set
//! operators, and vector matching (`on`, `ignoring`, `group_left/right`).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::Evaluator;
use super::value::{project_labels, SeriesBuilder, StepSeries, Value};
use super::EvalError;
use crate::model::{Labels, METRIC_NAME};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(text: &str) -> Result<Op, EvalError> {
        Ok(match text {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => {
                return Err(EvalError::BadData(format!(
                    "unknown binary operator {other:?}"
                )))
            }
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }

    /// `(value, keep)`: arithmetic always keeps; comparisons keep when true.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

pub fn eval(ev: &Evaluator, expr: &BinaryExpr) -> Result<Value, EvalError> {
    let op = Op::parse(&expr.op.to_string())?;
    let return_bool = expr.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&expr.lhs)?;
    let rhs = ev.eval(&expr.rhs)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.iter()
                .zip(&r)
                .map(|(a, b)| {
                    let (value, keep) = op.apply(*a, *b);
                    if op.is_comparison() {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        value
                    }
                })
                .collect(),
        )),
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(v, &s, op, false, return_bool),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(v, &s, op, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let default = BinModifier {
                card: if op.is_set() {
                    VectorMatchCardinality::ManyToMany
                } else {
                    VectorMatchCardinality::OneToOne
                },
                matching: None,
                return_bool: false,
                fill_values: Default::default(),
            };
            let modifier = expr.modifier.as_ref().unwrap_or(&default);
            if op.is_set() {
                set_op(ev, l, r, op, modifier)
            } else {
                vector_vector(ev, l, r, op, modifier, return_bool)
            }
        }
        (l, r) => Err(EvalError::BadData(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    series: Vec<StepSeries>,
    scalar: &[f64],
    op: Op,
    swap: bool,
    return_bool: bool,
) -> Result<Value, EvalError> {
    let drop = !op.is_comparison() || return_bool;
    let out = series
        .into_iter()
        .map(|mut s| {
            for (i, slot) in s.values.iter_mut().enumerate() {
                let Some(v) = *slot else { continue };
                let (l, r) = if swap { (scalar[i], v) } else { (v, scalar[i]) };
                let (mut value, keep) = op.apply(l, r);
                if op.is_comparison() && swap {
                    value = v;
                }
                *slot = if return_bool {
                    Some(if keep { 1.0 } else { 0.0 })
                } else if keep {
                    Some(value)
                } else {
                    None
                };
            }
            s.drop_name |= drop;
            s
        })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect();
    Ok(Value::Vector(out))
}

/// The matching signature of a series under `on(...)`/`ignoring(...)`.
fn signature(labels: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(modifier) => project_labels(labels, modifier),
        None => labels.without(&[METRIC_NAME]),
    }
}

fn set_op(
    ev: &Evaluator,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    op: Op,
    modifier: &BinModifier,
) -> Result<Value, EvalError> {
    let n = ev.n();
    let lsig: Vec<Labels> = lhs
        .iter()
        .map(|s| signature(&s.labels, &modifier.matching))
        .collect();
    let rsig: Vec<Labels> = rhs
        .iter()
        .map(|s| signature(&s.labels, &modifier.matching))
        .collect();
    match op {
        Op::And | Op::Unless => {
            let out = lhs
                .into_iter()
                .enumerate()
                .map(|(li, mut s)| {
                    for i in 0..n {
                        if s.values[i].is_none() {
                            continue;
                        }
                        let matched = rhs
                            .iter()
                            .zip(&rsig)
                            .any(|(r, sig)| r.values[i].is_some() && *sig == lsig[li]);
                        if matched != (op == Op::And) {
                            s.values[i] = None;
                        }
                    }
                    s
                })
                .filter(|s| s.values.iter().any(Option::is_some))
                .collect();
            Ok(Value::Vector(out))
        }
        _ => {
            // or: all of lhs, plus rhs series whose signature lhs lacks at that step.
            let mut out = lhs.clone();
            for (ri, mut s) in rhs.into_iter().enumerate() {
                for i in 0..n {
                    if s.values[i].is_none() {
                        continue;
                    }
                    let present = lhs
                        .iter()
                        .zip(&lsig)
                        .any(|(l, sig)| l.values[i].is_some() && *sig == rsig[ri]);
                    if present {
                        s.values[i] = None;
                    }
                }
                if s.values.iter().any(Option::is_some) {
                    out.push(s);
                }
            }
            Ok(Value::Vector(out))
        }
    }
}

fn vector_vector(
    ev: &Evaluator,
    lhs: Vec<StepSeries>,
    rhs: Vec<StepSeries>,
    op: Op,
    modifier: &BinModifier,
    return_bool: bool,
) -> Result<Value, EvalError> {
    let n = ev.n();
    let (card, include): (&VectorMatchCardinality, Vec<String>) = (
        &modifier.card,
        modifier
            .card
            .labels()
            .map(|l| l.labels.clone())
            .unwrap_or_default(),
    );
    if matches!(card, VectorMatchCardinality::ManyToMany) {
        return Err(EvalError::BadData(
            "many-to-many matching is only allowed for set operators".into(),
        ));
    }
    // The "many" side is iterated; for group_right that is the right side.
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many {
        (&rhs, &lhs)
    } else {
        (&lhs, &rhs)
    };
    let many_labels: Vec<Arc<Labels>> = many.iter().map(|s| s.labels.clone()).collect();
    let one_labels: Vec<Arc<Labels>> = one.iter().map(|s| s.labels.clone()).collect();
    let many_sig: Vec<Labels> = many_labels
        .iter()
        .map(|l| signature(l, &modifier.matching))
        .collect();
    let one_sig: Vec<Labels> = one_labels
        .iter()
        .map(|l| signature(l, &modifier.matching))
        .collect();
    let drop_name = !op.is_comparison() || return_bool;
    // fill_left applies to the left side, fill_right to the right side.
    let (one_fill, many_fill) = if one_to_many {
        (modifier.fill_values.lhs, modifier.fill_values.rhs)
    } else {
        (modifier.fill_values.rhs, modifier.fill_values.lhs)
    };
    let mut builder = SeriesBuilder::new(n);
    let mut result_labels: HashMap<(usize, usize), Arc<Labels>> = HashMap::new();
    for i in 0..n {
        // Index the "one" side present at this step.
        let mut one_at: HashMap<&Labels, usize> = HashMap::new();
        for (oi, s) in one.iter().enumerate() {
            if s.values[i].is_none() {
                continue;
            }
            if let Some(previous) = one_at.insert(&one_sig[oi], oi) {
                let side = if one_to_many { "left" } else { "right" };
                let mut pair = [
                    prometheus_labels(&one_labels[previous]),
                    prometheus_labels(&one_labels[oi]),
                ];
                pair.sort();
                return Err(EvalError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    prometheus_labels(&one_sig[oi]),
                    pair[0],
                    pair[1]
                )));
            }
        }
        let mut seen_many: HashMap<&Labels, usize> = HashMap::new();
        let mut one_matched = vec![false; one.len()];
        let empty = Labels::default();
        let keep_value = |value: f64, keep: bool| -> Option<f64> {
            if return_bool {
                Some(if keep { 1.0 } else { 0.0 })
            } else {
                keep.then_some(value)
            }
        };
        for (mi, s) in many.iter().enumerate() {
            let Some(mv) = s.values[i] else { continue };
            let Some(&oi) = one_at.get(&many_sig[mi]) else {
                // fill(): an unmatched series meets the fill value instead.
                if let Some(fill) = one_fill {
                    let (l, r) = if one_to_many { (fill, mv) } else { (mv, fill) };
                    let (value, keep) = op.apply(l, r);
                    if let Some(value) = keep_value(value, keep) {
                        let labels = Arc::new(result_metric(
                            &many_labels[mi],
                            &empty,
                            card,
                            &modifier.matching,
                            &[],
                        ));
                        builder.push(labels, i, value, drop_name || many[mi].drop_name)?;
                    }
                }
                continue;
            };
            one_matched[oi] = true;
            if matches!(card, VectorMatchCardinality::OneToOne)
                && seen_many.insert(&many_sig[mi], mi).is_some()
            {
                return Err(EvalError::Execution(format!(
                    "found duplicate series for the match group {} on the left hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                    many_sig[mi]
                )));
            }
            let ov = one[oi].values[i].expect("present");
            let (l, r) = if one_to_many { (ov, mv) } else { (mv, ov) };
            let (value, keep) = op.apply(l, r);
            let Some(value) = keep_value(value, keep) else {
                continue;
            };
            let labels = result_labels
                .entry((mi, oi))
                .or_insert_with(|| {
                    Arc::new(result_metric(
                        &many_labels[mi],
                        &one_labels[oi],
                        card,
                        &modifier.matching,
                        &include,
                    ))
                })
                .clone();
            // Arithmetic drops the name (delayed, as Prometheus 3 does).
            let pending_drop = drop_name || many[mi].drop_name;
            builder.push(labels, i, value, pending_drop)?;
        }
        if let Some(fill) = many_fill {
            for (oi, s) in one.iter().enumerate() {
                let Some(ov) = s.values[i] else { continue };
                if one_matched[oi] {
                    continue;
                }
                let (l, r) = if one_to_many { (ov, fill) } else { (fill, ov) };
                let (value, keep) = op.apply(l, r);
                if let Some(value) = keep_value(value, keep) {
                    let labels = Arc::new(result_metric(
                        &one_labels[oi],
                        &empty,
                        card,
                        &modifier.matching,
                        &[],
                    ));
                    builder.push(labels, i, value, drop_name || one[oi].drop_name)?;
                }
            }
        }
        ev.check_deadline("binary operation")?;
    }
    Ok(Value::Vector(builder.finish()))
}

fn result_metric(
    many_labels: &Labels,
    one_labels: &Labels,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
    include: &[String],
) -> Labels {
    let mut pairs: Vec<(String, String)> = many_labels.pairs().to_vec();
    if matches!(card, VectorMatchCardinality::OneToOne) {
        match matching {
            Some(LabelModifier::Include(names)) => {
                pairs.retain(|(n, _)| names.labels.iter().any(|x| x == n))
            }
            Some(LabelModifier::Exclude(names)) => {
                pairs.retain(|(n, _)| !names.labels.iter().any(|x| x == n))
            }
            None => {}
        }
    }
    for name in include {
        pairs.retain(|(n, _)| n != name);
        if let Some(value) = one_labels.get(name) {
            pairs.push((name.clone(), value.to_owned()));
        }
    }
    Labels::from_pairs(pairs)
}

/// Labels as Prometheus prints them in errors: `{__name__="x", a="b"}`.
fn prometheus_labels(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}
