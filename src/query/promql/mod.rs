//! PromQL: parsed by `promql-parser`, evaluated here over the metrics store.
//!
//! The evaluator works on whole step ranges at once: each instant-vector node
//! yields, per output series, one optional value per step. An instant query is
//! a range query with one step. Semantics follow Prometheus 3.x: left-open
//! range windows `(t - range, t]`, 5-minute lookback, staleness markers,
//! delayed `__name__` removal.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod histogram;
mod stats;
pub mod value;

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Labels, Sample};
use crate::storage::metrics::matcher::Matcher;
use crate::storage::metrics::MetricsStore;

pub use eval::{selector_matchers, Evaluator};
pub use value::{RangeSeries, StepSeries, Value};

/// A series with its samples, sorted by time.
pub type SelectedSeries = (Arc<Labels>, Vec<Sample>);

/// Where the evaluator reads series from.
pub trait SeriesSource: Send + Sync {
    /// Samples of every series matching `matchers` within `[mint, maxt]`.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SelectedSeries>;
}

impl SeriesSource for MetricsStore {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SelectedSeries> {
        MetricsStore::select(self, matchers, mint, maxt)
            .into_iter()
            .map(|s| (s.labels, s.samples))
            .collect()
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EvalError {
    /// The query text or its types are invalid (HTTP 400, `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (HTTP 422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its deadline (HTTP 503, `timeout`).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The query would hold too many samples (HTTP 422, `execution`).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
}

/// Limits and defaults of query evaluation.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub lookback_ms: i64,
    pub max_samples: usize,
    pub timeout: Duration,
    /// Step of subqueries written without one (`x[10m:]`).
    pub default_subquery_step_ms: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
        }
    }
}

/// A query's result with its evaluation times.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub value: Value,
    /// Step timestamps (ms).
    pub steps: Vec<i64>,
}

/// Parse and evaluate an instant query at `t` (ms).
pub fn instant_query(
    source: &dyn SeriesSource,
    options: &EngineOptions,
    query: &str,
    t: i64,
) -> Result<QueryResult, EvalError> {
    let expr = parse(query)?;
    instant_query_expr(source, options, &expr, t)
}

/// Evaluate an already parsed expression at `t` (ms).
pub fn instant_query_expr(
    source: &dyn SeriesSource,
    options: &EngineOptions,
    expr: &promql_parser::parser::Expr,
    t: i64,
) -> Result<QueryResult, EvalError> {
    let evaluator = Evaluator::new(source, options, t, t, 0);
    let value = evaluator.run(expr)?;
    Ok(QueryResult {
        value,
        steps: vec![t],
    })
}

/// Parse and evaluate a range query over `[start, end]` every `step` ms.
pub fn range_query(
    source: &dyn SeriesSource,
    options: &EngineOptions,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<QueryResult, EvalError> {
    if step <= 0 {
        return Err(EvalError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end < start {
        return Err(EvalError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    let expr = parse(query)?;
    match expr.value_type() {
        promql_parser::parser::value::ValueType::Vector
        | promql_parser::parser::value::ValueType::Scalar => {}
        other => {
            return Err(EvalError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match other {
                    promql_parser::parser::value::ValueType::Matrix => "range vector",
                    _ => "string",
                }
            )))
        }
    }
    let evaluator = Evaluator::new(source, options, start, end, step);
    let value = evaluator.run(&expr)?;
    let steps = (0..)
        .map(|i| start + i * step)
        .take_while(|t| *t <= end)
        .collect();
    Ok(QueryResult { value, steps })
}

pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, EvalError> {
    if query.trim().is_empty() {
        return Err(EvalError::BadData(
            "1:1: parse error: no expression found in input".into(),
        ));
    }
    promql_parser::parser::parse(query)
        .map_err(|e| EvalError::BadData(format!("1:1: parse error: {e}")))
}
