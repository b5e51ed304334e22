//! Log rules in PromQL clothing: the selector
//! `oxeye_log_records{query="<Lucene>", window="5m", by="<field>", index="<pattern>"}`
//! is, during rule evaluation, the number of log records matching the query
//! in the `window` before the evaluation time, one series per value of the
//! `by` field (its name with `.` as `_`, e.g. `service_name`). It is valid
//! PromQL, so `promtool check rules` accepts the file, and it combines with
//! everything PromQL does (`oxeye_log_records{…} > 10`, ratios, `on()`).
//! Everything else reads the metrics store.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::model::{Labels, Sample};
use crate::query::logs::search::{self, SearchLimits, SearchRequest};
use crate::query::promql::{SelectedSeries, SeriesSource};
use crate::storage::logs::LogStore;
use crate::storage::metrics::matcher::{MatchOp, Matcher};
use crate::storage::metrics::MetricsStore;

pub const LOG_RECORDS: &str = "oxeye_log_records";
/// Most groups a log rule may produce.
const MAX_GROUPS: u32 = 10_000;

pub struct RuleSource<'a> {
    pub metrics: &'a MetricsStore,
    pub logs: Option<&'a Arc<LogStore>>,
}

/// The parameters of a log selector.
#[derive(Debug, PartialEq)]
struct LogSelector {
    query: String,
    window_ms: i64,
    by: Option<String>,
    index: String,
}

fn parse(matchers: &[Matcher]) -> Option<Result<LogSelector, String>> {
    let equal = |name: &str| {
        matchers.iter().find_map(|m| match &m.op {
            MatchOp::Equal(v) if m.name == name => Some(v.clone()),
            _ => None,
        })
    };
    if equal(crate::model::METRIC_NAME).as_deref() != Some(LOG_RECORDS) {
        return None;
    }
    Some((|| {
        for m in matchers {
            let known = matches!(
                m.name.as_str(),
                "__name__" | "query" | "window" | "by" | "index"
            );
            if !known || !matches!(m.op, MatchOp::Equal(_)) {
                return Err(format!(
                    "{LOG_RECORDS} takes only query=, window=, by= and index= (with =), not {}",
                    m.name
                ));
            }
        }
        let window = equal("window").unwrap_or_else(|| "5m".into());
        let window_ms = promql_parser::util::duration::parse_duration(&window)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .filter(|ms| *ms > 0)
            .ok_or_else(|| format!("{LOG_RECORDS}: window {window:?} is not a duration"))?;
        Ok(LogSelector {
            query: equal("query").unwrap_or_else(|| "*".into()),
            window_ms,
            by: equal("by").filter(|b| !b.is_empty()),
            index: equal("index").unwrap_or_else(|| "*".into()),
        })
    })())
}

impl RuleSource<'_> {
    fn log_counts(&self, selector: &LogSelector, t: i64) -> Result<Vec<(Labels, f64)>, String> {
        let logs = self
            .logs
            .ok_or_else(|| format!("{LOG_RECORDS}: no log store"))?;
        let mut body = json!({
            "size": 0,
            "track_total_hits": true,
            "query": {"bool": {
                "must": [{"query_string": {"query": selector.query}}],
                "filter": [{"range": {"@timestamp": {
                    "gt": t.saturating_sub(selector.window_ms),
                    "lte": t,
                    "format": "epoch_millis",
                }}}],
            }},
        });
        if let Some(by) = &selector.by {
            body["aggs"] = json!({"by": {"terms": {"field": by, "size": MAX_GROUPS}}});
        }
        let req = SearchRequest::parse(Some(&body), &Default::default()).map_err(|e| e.reason)?;
        let indices = logs.catalog.read().resolve(&selector.index);
        let limits = SearchLimits {
            max_result_window: 0,
            max_buckets: MAX_GROUPS,
        };
        let result = search::search(logs, &indices, &req, limits, t).map_err(|e| e.reason)?;
        let name = (crate::model::METRIC_NAME, LOG_RECORDS.to_owned());
        match &selector.by {
            None => {
                let total = result["hits"]["total"]["value"].as_f64().unwrap_or(0.0);
                Ok(vec![(Labels::from_pairs([name]), total)])
            }
            Some(by) => {
                let label: String = by
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let label = if label.starts_with(|c: char| c.is_ascii_digit()) {
                    format!("_{label}")
                } else {
                    label
                };
                let buckets = result["aggregations"]["by"]["buckets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                Ok(buckets
                    .iter()
                    .map(|b| {
                        let key = match &b["key"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let labels = Labels::from_pairs([name.clone(), (label.as_str(), key)]);
                        (labels, b["doc_count"].as_f64().unwrap_or(0.0))
                    })
                    .collect())
            }
        }
    }
}

impl SeriesSource for RuleSource<'_> {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SelectedSeries> {
        match parse(matchers) {
            None => self
                .metrics
                .select(matchers, mint, maxt)
                .into_iter()
                .map(|s| (s.labels, s.samples))
                .collect(),
            Some(Ok(selector)) => match self.log_counts(&selector, maxt) {
                Ok(rows) => rows
                    .into_iter()
                    .map(|(labels, v)| (Arc::new(labels), vec![Sample { t: maxt, v }]))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "log rule selector failed");
                    LAST_ERROR.with(|last| *last.borrow_mut() = Some(e));
                    Vec::new()
                }
            },
            Some(Err(e)) => {
                LAST_ERROR.with(|last| *last.borrow_mut() = Some(e));
                Vec::new()
            }
        }
    }
}

thread_local! {
    /// A log selector's error during the current evaluation (the
    /// `SeriesSource` interface has no error path); the rule reports it.
    static LAST_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Take the log-selector error of the evaluation that just ran, if any.
pub fn take_error() -> Option<String> {
    LAST_ERROR.with(|last| last.borrow_mut().take())
}
