//! Log search: the Elasticsearch query DSL and Lucene query strings over the
//! log store's partitions, with sorting, paging and aggregations.

pub mod aggs;
pub mod ast;
pub mod calendar;
pub mod compile;
pub mod datemath;
pub mod dsl;
pub mod highlight;
pub mod lucene;
pub mod matcher;
pub mod pipeline;
pub mod script;
pub mod search;

pub use crate::storage::logs::catalog::glob_match as catalog_glob;

/// A refused query, shaped like Elasticsearch's errors (always HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub kind: &'static str,
    pub reason: String,
}

impl QueryError {
    pub fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        QueryError {
            kind,
            reason: reason.into(),
        }
    }

    pub fn parsing(reason: impl Into<String>) -> Self {
        QueryError::new("parsing_exception", reason)
    }

    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}
