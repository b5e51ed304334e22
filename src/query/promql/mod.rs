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
pub mod functions;
mod histogram;
pub mod stats;
pub mod value;

use std::sync::atomic::{AtomicUsize, Ordering};
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
    let evaluator = Evaluator::new(source, options, t, t, 0)?;
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
    check_range(start, end, step)?;
    let expr = parse(query)?;
    range_query_expr(source, options, &expr, start, end, step)
}

fn check_range(start: i64, end: i64, step: i64) -> Result<(), EvalError> {
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
    Ok(())
}

/// Evaluate an already parsed expression over `[start, end]` every `step`.
pub fn range_query_expr(
    source: &dyn SeriesSource,
    options: &EngineOptions,
    expr: &promql_parser::parser::Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<QueryResult, EvalError> {
    check_range(start, end, step)?;
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
    let evaluator = Evaluator::new(source, options, start, end, step)?;
    let value = evaluator.run(expr)?;
    let steps = evaluator.steps.clone();
    Ok(QueryResult { value, steps })
}

/// Steps in `[start, end]` every `step` ms (0 when `end < start` or
/// `step <= 0`), computed without overflow for any inputs.
pub fn step_count(start: i64, end: i64, step: i64) -> u64 {
    if end < start || step <= 0 {
        return 0;
    }
    let span = (end as i128 - start as i128) as u128;
    (span / step as u128 + 1).min(u64::MAX as u128) as u64
}

/// Parse PromQL, after [`check_depth`]. Run it (and everything else that
/// walks the tree: evaluation, printing, dropping) inside [`with_stack`].
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, EvalError> {
    if query.trim().is_empty() {
        return Err(EvalError::BadData(
            "1:1: parse error: no expression found in input".into(),
        ));
    }
    check_depth(query, max_expression_depth())?;
    promql_parser::parser::parse(query)
        .map_err(|e| EvalError::BadData(format!("1:1: parse error: {e}")))
}

/// Default of `query.max_expression_depth`.
pub const DEFAULT_MAX_EXPRESSION_DEPTH: usize = 500;

static MAX_EXPRESSION_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_EXPRESSION_DEPTH);

/// How deep a PromQL expression tree may be (`query.max_expression_depth`),
/// set once at start-up.
pub fn max_expression_depth() -> usize {
    MAX_EXPRESSION_DEPTH.load(Ordering::Relaxed)
}

pub fn set_max_expression_depth(depth: usize) {
    MAX_EXPRESSION_DEPTH.store(depth.max(1), Ordering::Relaxed);
}

/// Stack every tree walk gets: enough for [`max_expression_depth`] levels of
/// the parser's checks, the evaluator, printing and dropping, with room.
const TREE_STACK: usize = 64 << 20;

/// Run `f` on a stack of at least [`TREE_STACK`] bytes (a fresh, lazily
/// committed mapping unless the current one has that much left).
pub fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(TREE_STACK, TREE_STACK, f)
}

/// Refuse, before the parser sees it, a query whose expression tree could be
/// deeper than `limit`. `promql-parser` and everything that walks its tree
/// recurse once per level (and type-check chains quadratically), so the
/// depth must be known before parsing. It is bounded from the text alone:
/// every tree node with children is either a bracket pair
/// (call, aggregation, parentheses, range, subquery) — all those above one
/// leaf are nested — or an operator, so
/// `depth ≤ deepest bracket nesting + number of operators + 1`.
pub fn check_depth(query: &str, limit: usize) -> Result<(), EvalError> {
    let bytes = query.as_bytes();
    let (mut nesting, mut deepest, mut operators, mut braces) = (0usize, 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                // Strings: skip to the closing quote (backslash escapes
                // except in raw strings).
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    if c != b'`' && bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                nesting += 1;
                deepest = deepest.max(nesting);
                if c == b'{' {
                    braces += 1;
                }
            }
            b')' | b']' | b'}' => {
                nesting = nesting.saturating_sub(1);
                if c == b'}' {
                    braces = braces.saturating_sub(1);
                }
            }
            // Matchers inside braces are not operators.
            _ if braces > 0 => {}
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => operators += 1,
            b'=' | b'!' | b'<' | b'>' => {
                operators += 1;
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                if matches!(&bytes[start..i], b"and" | b"or" | b"unless" | b"atan2") {
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let bound = deepest.saturating_add(operators).saturating_add(1);
    if bound > limit {
        return Err(EvalError::BadData(format!(
            "query is too complex: its expression tree may be {bound} levels deep \
             ({deepest} nested brackets and {operators} operators), more than \
             query.max_expression_depth = {limit}"
        )));
    }
    Ok(())
}
