//! The evaluator: walks the `promql-parser` AST over a range of steps.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use promql_parser::label::MatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use super::value::{effective_labels, RangeSeries, StepSeries, Value};
use super::{aggregate, binary, functions, EngineOptions, EvalError, SeriesSource};
use crate::model::{is_stale_nan, Labels, Sample, METRIC_NAME};
use crate::storage::metrics::matcher::{self, Matcher};

/// A range-vector argument: raw series plus the window end for each step;
/// the window of step `i` is `(ends[i] - range, ends[i]]`.
pub struct RangeInput {
    pub series: Vec<RangeSeries>,
    pub range: i64,
    pub ends: Vec<i64>,
}

impl RangeInput {
    /// The samples of `series` inside step `i`'s window.
    pub fn window<'s>(&self, series: &'s RangeSeries, i: usize) -> &'s [Sample] {
        let end = self.ends[i];
        let start = end.saturating_sub(self.range);
        let lo = series.samples.partition_point(|s| s.t <= start);
        let hi = series.samples.partition_point(|s| s.t <= end);
        &series.samples[lo..hi]
    }
}

pub struct Evaluator<'a> {
    pub source: &'a dyn SeriesSource,
    pub options: &'a EngineOptions,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub steps: Vec<i64>,
    deadline: Instant,
    samples: Cell<usize>,
}

pub fn millis(duration: &Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_ms(time: &SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => millis(&d),
        Err(e) => millis(&e.duration()).saturating_neg(),
    }
}

/// Matchers of a vector selector, with `name{…}` turned into `__name__="name"`.
pub fn selector_matchers(selector: &VectorSelector) -> Result<Vec<Matcher>, EvalError> {
    let mut out = Vec::new();
    if let Some(name) = &selector.name {
        out.push(Matcher::equal(METRIC_NAME, name.as_str()));
    }
    if !selector.matchers.or_matchers.is_empty() {
        return Err(EvalError::BadData(
            "\"or\" in series selectors is not supported".into(),
        ));
    }
    for m in &selector.matchers.matchers {
        out.push(match &m.op {
            MatchOp::Equal => Matcher::equal(m.name.as_str(), m.value.as_str()),
            MatchOp::NotEqual => Matcher {
                name: m.name.clone(),
                op: matcher::MatchOp::NotEqual(m.value.clone()),
            },
            MatchOp::Re(regex) | MatchOp::NotRe(regex) => {
                let negate = matches!(m.op, MatchOp::NotRe(_));
                Matcher::regex(m.name.as_str(), &m.value, negate).unwrap_or_else(|_| Matcher {
                    name: m.name.clone(),
                    op: if negate {
                        matcher::MatchOp::NotRegex(regex.clone())
                    } else {
                        matcher::MatchOp::Regex(regex.clone())
                    },
                })
            }
        });
    }
    Ok(out)
}

impl<'a> Evaluator<'a> {
    /// An evaluator for the steps `start, start + step, … ≤ end`. The steps
    /// are counted against `max_samples` before they are allocated (each
    /// step holds at least one point), so no range or subquery can ask for
    /// more memory than the sample limit allows.
    pub fn new(
        source: &'a dyn SeriesSource,
        options: &'a EngineOptions,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Self, EvalError> {
        let evaluator = Evaluator {
            source,
            options,
            start,
            end,
            step,
            steps: Vec::new(),
            deadline: Instant::now() + options.timeout,
            samples: Cell::new(0),
        };
        evaluator.with_steps()
    }

    fn with_steps(mut self) -> Result<Self, EvalError> {
        // Instant queries have step 0 (what `step()` reports) and one step.
        let stride = self.step.max(1);
        let n = super::step_count(self.start, self.end, stride);
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.account(n, "query steps")?;
        // start + i * stride <= end for every i < n, so nothing overflows.
        self.steps = (0..n as i64).map(|i| self.start + i * stride).collect();
        Ok(self)
    }

    fn child(&self, start: i64, end: i64, step: i64) -> Result<Evaluator<'a>, EvalError> {
        Evaluator {
            source: self.source,
            options: self.options,
            start,
            end,
            step,
            steps: Vec::new(),
            deadline: self.deadline,
            samples: Cell::new(self.samples.get()),
        }
        .with_steps()
    }

    pub fn n(&self) -> usize {
        self.steps.len()
    }

    pub fn check_deadline(&self, what: &str) -> Result<(), EvalError> {
        if Instant::now() >= self.deadline {
            return Err(EvalError::Timeout(what.into()));
        }
        Ok(())
    }

    pub fn account(&self, samples: usize, what: &str) -> Result<(), EvalError> {
        let total = self.samples.get().saturating_add(samples);
        self.samples.set(total);
        if total > self.options.max_samples {
            return Err(EvalError::TooManySamples(what.into()));
        }
        Ok(())
    }

    /// Evaluate and apply pending `__name__` drops.
    pub fn run(&self, expr: &Expr) -> Result<Value, EvalError> {
        let value = self.eval(expr)?;
        Ok(match value {
            Value::Vector(series) => Value::Vector(finalize(series, self.n())?),
            Value::Matrix(series) => Value::Matrix(
                series
                    .into_iter()
                    .filter(|s| !s.samples.is_empty())
                    .collect(),
            ),
            other => other,
        })
    }

    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        self.check_deadline("query evaluation")?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.n()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(values) => Ok(Value::Scalar(values.into_iter().map(|v| -v).collect())),
                Value::Vector(series) => Ok(Value::Vector(
                    series
                        .into_iter()
                        .map(|mut s| {
                            s.values.iter_mut().flatten().for_each(|v| *v = -*v);
                            s.drop_name = true;
                            s
                        })
                        .collect(),
                )),
                other => Err(EvalError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(selector) => self.vector_selector(selector).map(Value::Vector),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if self.n() != 1 {
                    return Err(EvalError::BadData(
                        "range vector results are only possible for instant queries".into(),
                    ));
                }
                let input = self.range_input(expr)?;
                Ok(Value::Matrix(
                    input
                        .series
                        .iter()
                        .map(|s| RangeSeries {
                            labels: s.labels.clone(),
                            samples: input.window(s, 0).to_vec(),
                        })
                        .collect(),
                ))
            }
            Expr::Call(call) => functions::call(self, call),
            Expr::Aggregate(aggregate) => aggregate::eval(self, aggregate),
            Expr::Binary(binary) => binary::eval(self, binary),
            Expr::Extension(_) => Err(EvalError::BadData("unsupported expression".into())),
        }
    }

    /// Effective evaluation time of each step for a selector with `@`/`offset`.
    pub fn selector_times(&self, at: &Option<AtModifier>, offset: &Option<Offset>) -> Vec<i64> {
        let offset_ms = match offset {
            None => 0,
            Some(Offset::Pos(d)) => millis(d),
            Some(Offset::Neg(d)) => millis(d).saturating_neg(),
        };
        let fixed = at.as_ref().map(|at| match at {
            AtModifier::Start => self.start,
            AtModifier::End => self.end,
            AtModifier::At(time) => system_time_ms(time),
        });
        self.steps
            .iter()
            .map(|t| fixed.unwrap_or(*t).saturating_sub(offset_ms))
            .collect()
    }

    fn load(
        &self,
        selector: &VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<super::SelectedSeries>, EvalError> {
        // The parser already refuses user selectors whose matchers all match
        // "" (they would select every series); internal ones (info()) may.
        let matchers = selector_matchers(selector)?;
        let found = self.source.select(&matchers, mint, maxt);
        self.account(found.iter().map(|(_, s)| s.len()).sum(), "series selection")?;
        self.check_deadline("series selection")?;
        Ok(found)
    }

    pub fn vector_selector(&self, selector: &VectorSelector) -> Result<Vec<StepSeries>, EvalError> {
        let times = self.selector_times(&selector.at, &selector.offset);
        let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
            return Ok(Vec::new());
        };
        let lookback = self.options.lookback_ms;
        let found = self.load(selector, lo.saturating_sub(lookback).saturating_add(1), hi)?;
        let mut out = Vec::with_capacity(found.len());
        for (labels, samples) in found {
            let values: Vec<Option<f64>> = times
                .iter()
                .map(|&t| {
                    let idx = samples.partition_point(|s| s.t <= t);
                    let sample = samples.get(idx.checked_sub(1)?)?;
                    (sample.t > t.saturating_sub(lookback) && !is_stale_nan(sample.v))
                        .then_some(sample.v)
                })
                .collect();
            if values.iter().any(Option::is_some) {
                out.push(StepSeries {
                    labels,
                    values,
                    drop_name: false,
                });
            }
        }
        Ok(out)
    }

    /// Timestamps of the samples a vector selector picks at each step (for `timestamp()`).
    pub fn selector_sample_times(
        &self,
        selector: &VectorSelector,
    ) -> Result<Vec<StepSeries>, EvalError> {
        let times = self.selector_times(&selector.at, &selector.offset);
        let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
            return Ok(Vec::new());
        };
        let lookback = self.options.lookback_ms;
        let found = self.load(selector, lo.saturating_sub(lookback).saturating_add(1), hi)?;
        Ok(found
            .into_iter()
            .map(|(labels, samples)| StepSeries {
                labels,
                values: times
                    .iter()
                    .map(|&t| {
                        let idx = samples.partition_point(|s| s.t <= t);
                        let sample = samples.get(idx.checked_sub(1)?)?;
                        (sample.t > t.saturating_sub(lookback) && !is_stale_nan(sample.v))
                            .then_some(sample.t as f64 / 1000.0)
                    })
                    .collect(),
                drop_name: true,
            })
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect())
    }

    /// A matrix selector or subquery as raw series with per-step windows.
    pub fn range_input(&self, expr: &Expr) -> Result<RangeInput, EvalError> {
        match expr {
            Expr::Paren(p) => self.range_input(&p.expr),
            Expr::MatrixSelector(ms) => {
                let range = millis(&ms.range);
                let ends = self.selector_times(&ms.vs.at, &ms.vs.offset);
                let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
                    return Ok(RangeInput {
                        series: Vec::new(),
                        range,
                        ends,
                    });
                };
                let found = self.load(&ms.vs, lo.saturating_sub(range).saturating_add(1), hi)?;
                let series = found
                    .into_iter()
                    .map(|(labels, mut samples)| {
                        samples.retain(|s| !is_stale_nan(s.v));
                        RangeSeries { labels, samples }
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect();
                Ok(RangeInput {
                    series,
                    range,
                    ends,
                })
            }
            Expr::Subquery(sq) => self.subquery(sq),
            other => Err(EvalError::BadData(format!(
                "expected type range vector, got {}",
                match other {
                    Expr::StringLiteral(_) => "string",
                    Expr::NumberLiteral(_) => "scalar",
                    _ => "instant vector",
                }
            ))),
        }
    }

    fn subquery(&self, sq: &SubqueryExpr) -> Result<RangeInput, EvalError> {
        let range = millis(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(millis)
            .filter(|s| *s > 0)
            .unwrap_or(self.options.default_subquery_step_ms);
        let ends = self.selector_times(&sq.at, &sq.offset);
        let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(RangeInput {
                series: Vec::new(),
                range,
                ends,
            });
        };
        // First step-aligned time after lo - range (Go's truncating division).
        let from = lo.saturating_sub(range);
        let mut start = step * (from / step);
        if start <= from {
            start = start.saturating_add(step);
        }
        let child = self.child(start, hi, step)?;
        let value = child.eval(&sq.expr)?;
        self.samples.set(child.samples.get());
        let series = match value {
            Value::Vector(series) => series
                .into_iter()
                .map(|s| {
                    let labels = effective_labels(&s);
                    let samples = child
                        .steps
                        .iter()
                        .zip(&s.values)
                        .filter_map(|(t, v)| v.map(|v| Sample { t: *t, v }))
                        .collect();
                    RangeSeries { labels, samples }
                })
                .filter(|s: &RangeSeries| !s.samples.is_empty())
                .collect(),
            Value::Scalar(values) => vec![RangeSeries {
                labels: Arc::new(Labels::default()),
                samples: child
                    .steps
                    .iter()
                    .zip(values)
                    .map(|(t, v)| Sample { t: *t, v })
                    .collect(),
            }],
            other => {
                return Err(EvalError::BadData(format!(
                    "subquery is only allowed on instant vector, got {}",
                    other.type_name()
                )))
            }
        };
        Ok(RangeInput {
            series,
            range,
            ends,
        })
    }

    /// Evaluate an expression that must be a scalar (per step).
    pub fn scalar(&self, expr: &Expr) -> Result<Vec<f64>, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(values) => Ok(values),
            other => Err(EvalError::BadData(format!(
                "expected type scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn vector(&self, expr: &Expr) -> Result<Vec<StepSeries>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(series) => Ok(series),
            other => Err(EvalError::BadData(format!(
                "expected type instant vector, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Drop pending names and refuse duplicate label sets at any step. Series
/// are keyed by their label hash; labels are compared only on a hash match.
pub fn finalize(series: Vec<StepSeries>, _steps: usize) -> Result<Vec<StepSeries>, EvalError> {
    let mut out: Vec<StepSeries> = Vec::with_capacity(series.len());
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::with_capacity(series.len());
    for mut s in series {
        if !s.values.iter().any(Option::is_some) {
            continue;
        }
        s.labels = effective_labels(&s);
        s.drop_name = false;
        let candidates = by_hash.entry(s.labels.hash()).or_default();
        match candidates
            .iter()
            .copied()
            .find(|&i| out[i].labels == s.labels)
        {
            Some(existing) => {
                for (slot, value) in out[existing].values.iter_mut().zip(&s.values) {
                    if let Some(value) = value {
                        if slot.is_some() {
                            return Err(EvalError::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        *slot = Some(*value);
                    }
                }
            }
            None => {
                candidates.push(out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}
