//! The one representation of a log query. The Elasticsearch query DSL
//! (`dsl.rs`) and Lucene query strings (`lucene.rs`) both parse into it; it
//! is compiled to a tantivy query (`compile.rs`) for stored records and
//! evaluated directly (`matcher.rs`) for the live tail.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// Elasticsearch 8's `indices.query.bool.max_nested_depth`.
pub const DEFAULT_MAX_QUERY_DEPTH: usize = 30;

static MAX_QUERY_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_QUERY_DEPTH);

/// The deepest nesting of groups, negations and `bool` clauses a log query
/// may have (`logs.max_query_depth`). Like Elasticsearch's setting it is
/// node-wide: set once at start-up.
pub fn max_query_depth() -> usize {
    MAX_QUERY_DEPTH.load(Ordering::Relaxed)
}

pub fn set_max_query_depth(depth: usize) {
    MAX_QUERY_DEPTH.store(depth.max(1), Ordering::Relaxed);
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogQuery {
    All,
    Nothing,
    /// Exact value (keyword, number, boolean, date).
    Term {
        field: String,
        value: Value,
    },
    Terms {
        field: String,
        values: Vec<Value>,
    },
    /// Analysed text: any (`and == false`) or all of the words. `field: None`
    /// searches the default fields (the body and every text field).
    Match {
        field: Option<String>,
        text: String,
        and: bool,
        minimum_should_match: Option<MinimumShouldMatch>,
    },
    /// Words in order, at most `slop` positions apart.
    Phrase {
        field: Option<String>,
        text: String,
        slop: u32,
    },
    Range {
        field: String,
        lower: Option<(Value, bool)>,
        upper: Option<(Value, bool)>,
        /// Date format of the bounds (`epoch_millis`, `strict_date_optional_time`, …).
        format: Option<String>,
    },
    Exists {
        field: String,
    },
    Prefix {
        field: Option<String>,
        value: String,
        case_insensitive: bool,
    },
    /// `*` and `?` wildcards.
    Wildcard {
        field: Option<String>,
        pattern: String,
        case_insensitive: bool,
    },
    Regexp {
        field: Option<String>,
        pattern: String,
        case_insensitive: bool,
    },
    Ids(Vec<String>),
    Bool(Box<BoolQuery>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BoolQuery {
    pub must: Vec<LogQuery>,
    pub filter: Vec<LogQuery>,
    pub should: Vec<LogQuery>,
    pub must_not: Vec<LogQuery>,
    pub minimum_should_match: Option<MinimumShouldMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinimumShouldMatch {
    Count(i64),
    Percent(i64),
}

impl MinimumShouldMatch {
    /// Parse `2`, `"2"`, `"-1"`, `"75%"`, `"-25%"`.
    pub fn parse(value: &Value) -> Option<MinimumShouldMatch> {
        match value {
            Value::Number(n) => n.as_i64().map(MinimumShouldMatch::Count),
            Value::String(s) => {
                let s = s.trim();
                if let Some(p) = s.strip_suffix('%') {
                    p.trim().parse().ok().map(MinimumShouldMatch::Percent)
                } else {
                    s.parse().ok().map(MinimumShouldMatch::Count)
                }
            }
            _ => None,
        }
    }

    /// How many of `n` optional clauses must match.
    pub fn required(self, n: usize) -> usize {
        // i128: `c` and `p` come from the request and may be any i64.
        let n = n as i128;
        let k = match self {
            MinimumShouldMatch::Count(c) if c < 0 => n + c as i128,
            MinimumShouldMatch::Count(c) => c as i128,
            MinimumShouldMatch::Percent(p) if p < 0 => n - (n * -(p as i128)) / 100,
            MinimumShouldMatch::Percent(p) => (n * p as i128) / 100,
        };
        k.clamp(0, n) as usize
    }
}

impl LogQuery {
    /// Nesting depth: 1 for a leaf, one more per enclosing `bool`.
    pub fn depth(&self) -> usize {
        match self {
            LogQuery::Bool(b) => {
                1 + [&b.must, &b.filter, &b.should, &b.must_not]
                    .into_iter()
                    .flatten()
                    .map(LogQuery::depth)
                    .max()
                    .unwrap_or(0)
            }
            _ => 1,
        }
    }

    pub fn and(clauses: Vec<LogQuery>) -> LogQuery {
        LogQuery::Bool(Box::new(BoolQuery {
            must: clauses,
            ..BoolQuery::default()
        }))
    }

    pub fn or(clauses: Vec<LogQuery>) -> LogQuery {
        LogQuery::Bool(Box::new(BoolQuery {
            should: clauses,
            minimum_should_match: Some(MinimumShouldMatch::Count(1)),
            ..BoolQuery::default()
        }))
    }
}

impl BoolQuery {
    /// Optional clauses that must match: explicit, or 1 when there is
    /// nothing else to match (Elasticsearch's rule), else 0.
    pub fn required_should(&self) -> usize {
        match self.minimum_should_match {
            Some(m) => m.required(self.should.len()),
            None if self.must.is_empty() && self.filter.is_empty() && !self.should.is_empty() => 1,
            None => 0,
        }
    }
}
