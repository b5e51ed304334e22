//! Log volume histograms from the cache: a `_search` (or one search of an
//! `_msearch`) with `size: 0`, a range on a date field and one
//! `date_histogram` on that field — Grafana's logs volume and Kibana's
//! Discover histogram — keeps its buckets, per split interval, like range
//! queries keep their steps.
//!
//! Every bucket depends only on the records in it, so buckets are cached
//! one by one: those whole inside the range and older than
//! `now − cache.max_freshness` (and than any record made searchable late
//! since they were computed). The rest are computed by the same search with
//! the range narrowed to them (`min_doc_count: 0` and `extended_bounds` over
//! the narrowed range, so that empty buckets carry the same sub-aggregation
//! shapes), and the answer is built from all buckets as the search would
//! have: `min_doc_count` and `extended_bounds` of the request applied,
//! `hits.total` the sum of the buckets' counts (every record in the range is
//! in exactly one bucket) reported as `track_total_hits` asks.
//!
//! Searches that do not have that shape, or use what makes a bucket depend
//! on others (pipeline aggregations, `offset`, non-UTC `time_zone`,
//! `hard_bounds`, `order`, `keyed`), are run as they are.

use serde_json::{json, Map, Value};
use xxhash_rust::xxh3::Xxh3;

use crate::query::logs::ast::LogQuery;
use crate::query::logs::search::{self, SearchLimits, SearchRequest};
use crate::query::logs::QueryError;
use crate::storage::logs::LogStore;

use super::ResultsCache;

/// Aggregations whose value in a bucket depends on other buckets.
const PIPELINE: [&str; 14] = [
    "derivative",
    "cumulative_sum",
    "moving_fn",
    "moving_avg",
    "serial_diff",
    "bucket_script",
    "bucket_selector",
    "bucket_sort",
    "avg_bucket",
    "max_bucket",
    "min_bucket",
    "sum_bucket",
    "stats_bucket",
    "percentiles_bucket",
];

/// The histogram a search asks for, and its range.
#[derive(Debug)]
struct Plan {
    name: String,
    interval: i64,
    /// The range, inclusive, in epoch milliseconds.
    lo: i64,
    hi: i64,
    min_doc_count: u64,
    /// `extended_bounds` as bucket keys.
    bounds: Option<(i64, i64)>,
}

fn interval_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: i64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let unit_ms = match unit {
        "ms" => 1,
        "s" | "second" => 1_000,
        "m" | "minute" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        "w" | "week" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0)
}

fn epoch_ms(value: &Value, format: Option<&str>) -> Option<i64> {
    if format.is_some_and(|f| f != "epoch_millis") {
        return None;
    }
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Ranges on `field` anywhere in the query.
fn ranges_on(query: &LogQuery, field: &str) -> usize {
    match query {
        LogQuery::Range { field: f, .. } => usize::from(f == field),
        LogQuery::Bool(b) => b
            .must
            .iter()
            .chain(&b.filter)
            .chain(&b.should)
            .chain(&b.must_not)
            .map(|q| ranges_on(q, field))
            .sum(),
        _ => 0,
    }
}

/// The top-level `must`/`filter` range on `field` with both bounds in
/// epoch milliseconds, as an inclusive `(lo, hi)`.
fn top_range(query: &LogQuery, field: &str) -> Option<(i64, i64)> {
    let LogQuery::Bool(b) = query else {
        return None;
    };
    b.must.iter().chain(&b.filter).find_map(|q| match q {
        LogQuery::Range {
            field: f,
            lower: Some((lower, lower_inclusive)),
            upper: Some((upper, upper_inclusive)),
            format,
        } if f == field => {
            let lo = epoch_ms(lower, format.as_deref())?;
            let hi = epoch_ms(upper, format.as_deref())?;
            Some((
                if *lower_inclusive {
                    lo
                } else {
                    lo.checked_add(1)?
                },
                if *upper_inclusive {
                    hi
                } else {
                    hi.checked_sub(1)?
                },
            ))
        }
        _ => None,
    })
}

/// `query` with its range on `field` set to `[lo, hi]`.
fn narrowed(query: &LogQuery, field: &str, lo: i64, hi: i64) -> LogQuery {
    match query {
        LogQuery::Range { field: f, .. } if f == field => LogQuery::Range {
            field: f.clone(),
            lower: Some((json!(lo), true)),
            upper: Some((json!(hi), true)),
            format: Some("epoch_millis".into()),
        },
        LogQuery::Bool(b) => {
            let mut b = (**b).clone();
            for q in b.must.iter_mut().chain(b.filter.iter_mut()) {
                *q = narrowed(q, field, lo, hi);
            }
            LogQuery::Bool(Box::new(b))
        }
        other => other.clone(),
    }
}

fn has_pipeline(aggs: &Value) -> bool {
    match aggs {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| PIPELINE.contains(&k.as_str()) || has_pipeline(v)),
        Value::Array(items) => items.iter().any(has_pipeline),
        _ => false,
    }
}

/// Times beyond this (year 33658) are left to the search to refuse.
const MAX_TIME_MS: i64 = 1_000_000_000_000_000;

fn plan(req: &SearchRequest) -> Option<Plan> {
    if req.size != 0 || req.from != 0 {
        return None;
    }
    let aggs = req.aggs.as_ref()?.as_object()?;
    let (name, agg) = aggs.iter().next().filter(|_| aggs.len() == 1)?;
    let agg = agg.as_object()?;
    if agg
        .keys()
        .any(|k| !matches!(k.as_str(), "date_histogram" | "aggs" | "aggregations"))
    {
        return None;
    }
    if has_pipeline(&Value::Object(agg.clone())) {
        return None;
    }
    let h = agg.get("date_histogram")?.as_object()?;
    let mut interval = None;
    let mut min_doc_count = 0;
    let mut bounds = None;
    let mut field = None;
    for (key, value) in h {
        match key.as_str() {
            "field" => field = value.as_str(),
            "fixed_interval" | "interval" | "calendar_interval" => {
                // Calendar weeks start on Monday, not at the epoch's Thursday.
                if key != "fixed_interval" && matches!(value.as_str()?.trim(), "1w" | "w" | "week")
                {
                    return None;
                }
                interval = interval_ms(value.as_str()?);
                // Calendar months and years are not fixed.
                interval?;
            }
            "min_doc_count" => min_doc_count = value.as_u64()?,
            "format" => {}
            "time_zone" => {
                if !matches!(value.as_str()?, "UTC" | "Z" | "+00:00" | "Etc/UTC") {
                    return None;
                }
            }
            "extended_bounds" => {
                let b = value.as_object()?;
                bounds = Some((
                    epoch_ms(b.get("min")?, None)?,
                    epoch_ms(b.get("max")?, None)?,
                ));
            }
            _ => return None,
        }
    }
    let (field, interval) = (field?, interval?);
    // Tantivy refuses these together; so must the cache.
    if min_doc_count > 0 && bounds.is_some() {
        return None;
    }
    if ranges_on(&req.query, field) != 1 {
        return None;
    }
    let (lo, hi) = top_range(&req.query, field)?;
    if hi < lo || lo < -MAX_TIME_MS || hi > MAX_TIME_MS {
        return None;
    }
    if bounds.is_some_and(|(a, b)| a.abs() > MAX_TIME_MS || b.abs() > MAX_TIME_MS) {
        return None;
    }
    // Date math relative to now elsewhere (another range, an aggregation)
    // would be frozen in the cache.
    if format!("{:?}", narrowed(&req.query, field, 0, 0)).contains("now")
        || agg.values().any(|v| v.to_string().contains("now"))
    {
        return None;
    }
    let key = |t: i64| t.div_euclid(interval) * interval;
    let bounds = bounds.map(|(a, b)| (key(a), key(b)));
    // Empty buckets outside the range would be needed: not from here.
    if bounds.is_some_and(|(a, b)| a < key(lo) || b > key(hi) || a > b) {
        return None;
    }
    // A range of more buckets than a search may return is refused by
    // the search itself.
    if (key(hi) - key(lo)) / interval > 100_000 {
        return None;
    }
    Some(Plan {
        name: name.clone(),
        interval,
        lo,
        hi,
        min_doc_count,
        bounds,
    })
}

impl Plan {
    fn field<'a>(&self, req: &'a SearchRequest) -> &'a str {
        req.aggs
            .as_ref()
            .and_then(|a| a[&self.name]["date_histogram"]["field"].as_str())
            .unwrap_or("")
    }

    fn key(&self, t: i64) -> i64 {
        t.div_euclid(self.interval) * self.interval
    }

    /// The search for the buckets `[first, last]` (keys), within the range.
    fn narrowed(&self, req: &SearchRequest, first: i64, last: i64) -> SearchRequest {
        let field = self.field(req).to_owned();
        let lo = first.max(self.lo);
        let hi = last.saturating_add(self.interval - 1).min(self.hi);
        let mut r = req.clone();
        r.query = narrowed(&req.query, &field, lo, hi);
        if let Some(h) = r
            .aggs
            .as_mut()
            .and_then(|a| a.get_mut(&self.name))
            .and_then(|a| a.get_mut("date_histogram"))
            .and_then(Value::as_object_mut)
        {
            h.insert("min_doc_count".into(), json!(0));
            h.insert("extended_bounds".into(), json!({"min": first, "max": last}));
        }
        r.track_total_hits = search::TrackTotal::Off;
        r
    }
}

/// A cached stretch of buckets: consecutive keys from `first`.
struct Stretch {
    computed_ns: i64,
    first: i64,
    buckets: Vec<Value>,
}

impl Stretch {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "computed_ns": self.computed_ns, "first": self.first, "buckets": self.buckets,
        }))
        .unwrap_or_default()
    }

    fn decode(bytes: &[u8], interval: i64) -> Option<Stretch> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let first = v["first"].as_i64()?;
        let buckets = v["buckets"].as_array()?.clone();
        // Consecutive keys, as stored.
        for (i, b) in buckets.iter().enumerate() {
            if b["key"].as_i64()? != first.checked_add((i as i64).checked_mul(interval)?)? {
                return None;
            }
        }
        Some(Stretch {
            computed_ns: v["computed_ns"].as_i64()?,
            first,
            buckets,
        })
    }
}

impl ResultsCache {
    /// A log search as [`search::search`] answers it, from the cache where
    /// it has the shape of a volume histogram.
    pub fn log_search(
        &self,
        store: &LogStore,
        indices: &[String],
        req: &SearchRequest,
        limits: SearchLimits,
        now_ms: i64,
    ) -> Result<Value, QueryError> {
        let Some(plan) = plan(req) else {
            return search::search(store, indices, req, limits, now_ms);
        };
        let started = std::time::Instant::now();
        let boundary = now_ms.saturating_sub(self.max_freshness_ms);
        let checked_ns = crate::now_ns();
        let i = plan.interval;
        let (first_key, last_key) = (plan.key(plan.lo), plan.key(plan.hi));
        if (last_key - first_key) / i >= i64::from(limits.max_buckets) {
            return search::search(store, indices, req, limits, now_ms);
        }
        let keys: Vec<i64> = (0..=(last_key - first_key) / i)
            .map(|n| first_key + n * i)
            .collect();
        // Buckets whole inside the range and older than the boundary.
        let cacheable = |k: i64| k >= plan.lo && k + i - 1 <= plan.hi && k + i - 1 < boundary;
        let base = self.log_key_base(indices, req, &plan);
        let chunk = |k: i64| k.div_euclid(self.split_ms);
        let mut chunks: Vec<i64> = keys
            .iter()
            .filter(|k| cacheable(**k))
            .map(|k| chunk(*k))
            .collect();
        chunks.dedup();
        let chunk_keys: Vec<String> = chunks.iter().map(|c| format!("{base}:{c}")).collect();
        let found = self.backend.get(&chunk_keys);
        // Key → bucket, from the cache.
        let mut known: std::collections::BTreeMap<i64, Value> = Default::default();
        let mut stored: Vec<Option<Stretch>> = Vec::with_capacity(chunks.len());
        for (c, bytes) in chunks.iter().zip(found) {
            let stretch = bytes
                .and_then(|b| self.unpack(&b, self.max_entry_bytes))
                .and_then(|raw| {
                    let s = Stretch::decode(&raw, i);
                    if s.is_none() {
                        self.metrics.error(self.backend.name(), "decode");
                    }
                    s
                })
                .filter(|s| s.first.div_euclid(self.split_ms) == *c);
            let valid_until = stretch
                .as_ref()
                .and_then(|s| store.late.oldest_since(s.computed_ns))
                .unwrap_or(i64::MAX);
            let mut hit = 0;
            if let Some(s) = &stretch {
                for b in &s.buckets {
                    let k = b["key"].as_i64().unwrap_or(i64::MIN);
                    if cacheable(k) && k + i - 1 < valid_until && keys.binary_search(&k).is_ok() {
                        known.insert(k, b.clone());
                        hit += 1;
                    }
                }
            }
            let wanted = keys
                .iter()
                .filter(|k| cacheable(**k) && chunk(**k) == *c)
                .count();
            self.metrics.lookup(
                self.backend.name(),
                "logs",
                match hit {
                    0 => "miss",
                    n if n == wanted => "hit",
                    _ => "partial",
                },
            );
            // What of it still holds, for growing it.
            stored.push(stretch.map(|mut s| {
                let keep = s
                    .buckets
                    .iter()
                    .take_while(|b| {
                        b["key"]
                            .as_i64()
                            .is_some_and(|k| k + i - 1 < valid_until.min(boundary))
                    })
                    .count();
                s.buckets.truncate(keep);
                s
            }));
        }

        // Compute the missing runs of buckets.
        let mut computed: std::collections::BTreeMap<i64, Value> = Default::default();
        let mut n = 0;
        while n < keys.len() {
            if known.contains_key(&keys[n]) {
                n += 1;
                continue;
            }
            let mut m = n;
            while m + 1 < keys.len() && !known.contains_key(&keys[m + 1]) {
                m += 1;
            }
            let narrowed = plan.narrowed(req, keys[n], keys[m]);
            let answer = search::search(store, indices, &narrowed, limits, now_ms)?;
            let buckets = answer["aggregations"][&plan.name]["buckets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for b in buckets {
                if let Some(k) = b["key"].as_i64().filter(|k| *k >= keys[n] && *k <= keys[m]) {
                    computed.insert(k, b);
                }
            }
            n = m + 1;
        }

        // Keep each chunk's grown stretch.
        let mut entries = Vec::new();
        for ((c, key), old) in chunks.iter().zip(&chunk_keys).zip(stored) {
            let new: Vec<(i64, &Value)> = computed
                .range(c * self.split_ms..(c + 1) * self.split_ms)
                .filter(|(k, _)| cacheable(**k))
                .map(|(k, b)| (*k, b))
                .collect();
            if new.is_empty() {
                continue;
            }
            // Every cacheable bucket of this chunk in the request, in order.
            let mut buckets: Vec<(i64, Value)> = keys
                .iter()
                .filter(|k| cacheable(**k) && chunk(**k) == *c)
                .filter_map(|k| {
                    known
                        .get(k)
                        .or_else(|| computed.get(k))
                        .map(|b| (*k, b.clone()))
                })
                .collect();
            // The old stretch's buckets before these, when adjacent.
            if let (Some(old), Some((first, _))) = (old, buckets.first()) {
                let old_last = old.first + (old.buckets.len() as i64 - 1) * i;
                if old.first < *first && old_last >= first - i {
                    let before: Vec<(i64, Value)> = old
                        .buckets
                        .into_iter()
                        .enumerate()
                        .map(|(n, b)| (old.first + n as i64 * i, b))
                        .take_while(|(k, _)| k < first)
                        .collect();
                    buckets.splice(0..0, before);
                }
            }
            let contiguous = buckets.windows(2).all(|w| w[1].0 == w[0].0 + i);
            if let (true, Some((first, _))) = (contiguous, buckets.first()) {
                let stretch = Stretch {
                    computed_ns: checked_ns,
                    first: *first,
                    buckets: buckets.into_iter().map(|(_, b)| b).collect(),
                };
                if let Some(bytes) = self.pack(stretch.encode()) {
                    entries.push((key.clone(), bytes));
                }
            }
        }
        self.backend.put(entries);

        // The answer, as the search would give it.
        let all: Vec<Value> = keys
            .iter()
            .filter_map(|k| known.get(k).or_else(|| computed.get(k)).cloned())
            .collect();
        let count = |b: &Value| b["doc_count"].as_u64().unwrap_or(0);
        let total: u64 = all.iter().map(count).sum();
        let shown: Vec<Value> = if plan.min_doc_count > 0 {
            all.into_iter()
                .filter(|b| count(b) >= plan.min_doc_count)
                .collect()
        } else {
            let key = |b: &Value| b["key"].as_i64().unwrap_or(0);
            let nonempty: Vec<i64> = all.iter().filter(|b| count(b) > 0).map(key).collect();
            let from = nonempty
                .first()
                .copied()
                .into_iter()
                .chain(plan.bounds.map(|b| b.0))
                .min();
            let to = nonempty
                .last()
                .copied()
                .into_iter()
                .chain(plan.bounds.map(|b| b.1))
                .max();
            match (from, to) {
                (Some(from), Some(to)) => all
                    .into_iter()
                    .filter(|b| (from..=to).contains(&key(b)))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut aggregations = Map::new();
        aggregations.insert(plan.name.clone(), json!({ "buckets": shown }));
        Ok(search::response(
            req,
            total,
            None,
            Vec::new(),
            Some(Value::Object(aggregations)),
            started,
        ))
    }

    fn log_key_base(&self, indices: &[String], req: &SearchRequest, plan: &Plan) -> String {
        let mut h = Xxh3::new();
        h.update(&[super::KEY_VERSION]);
        let mut sorted = indices.to_vec();
        sorted.sort();
        for index in &sorted {
            h.update(index.as_bytes());
            h.update(&[0]);
        }
        // The query with the range's bounds taken out; the aggregation
        // with the parts that only decide which buckets are shown.
        let field = plan.field(req);
        h.update(format!("{:?}", narrowed(&req.query, field, 0, 0)).as_bytes());
        let mut aggs = req.aggs.clone().unwrap_or(Value::Null);
        if let Some(hist) = aggs
            .get_mut(&plan.name)
            .and_then(|a| a.get_mut("date_histogram"))
            .and_then(Value::as_object_mut)
        {
            hist.remove("extended_bounds");
            hist.remove("min_doc_count");
        }
        h.update(aggs.to_string().as_bytes());
        h.update(&plan.interval.to_le_bytes());
        h.update(&self.split_ms.to_le_bytes());
        format!("{}logs:{:032x}", self.prefix, h.digest128())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn request(body: Value) -> SearchRequest {
        SearchRequest::parse(Some(&body), &HashMap::new()).unwrap()
    }

    fn grafana_volume(lo: i64, hi: i64) -> Value {
        json!({
            "size": 0,
            "query": {"bool": {"filter": [
                {"range": {"@timestamp": {"gte": lo, "lte": hi, "format": "epoch_millis"}}},
                {"query_string": {"analyze_wildcard": true, "query": "*"}}]}},
            "aggs": {"2": {
                "date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 0,
                    "extended_bounds": {"min": lo, "max": hi}, "format": "epoch_millis"},
                "aggs": {"3": {"terms": {"field": "level", "size": 10}}}}},
        })
    }

    #[test]
    fn volume_histograms_are_planned_and_others_are_not() {
        let p = plan(&request(grafana_volume(60_000, 3_600_000))).unwrap();
        assert_eq!(
            (p.interval, p.lo, p.hi, p.min_doc_count),
            (60_000, 60_000, 3_600_000, 0)
        );
        assert_eq!(p.bounds, Some((60_000, 3_600_000)));
        for change in [
            json!({"size": 10}),
            json!({"aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "offset": "+30s"}}}}),
            json!({"aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                "aggs": {"d": {"derivative": {"buckets_path": "_count"}}}}}}),
            json!({"aggs": {"2": {"date_histogram": {"field": "@timestamp", "calendar_interval": "month"}}}}),
            json!({"aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "time_zone": "Europe/Paris"}}}}),
            json!({"query": {"match_all": {}}}),
            json!({"query": {"range": {"@timestamp": {"gte": "now-1h"}}}}),
        ] {
            let mut body = grafana_volume(60_000, 3_600_000);
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert!(plan(&request(body.clone())).is_none(), "{body}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(interval_ms("30s"), Some(30_000));
        assert_eq!(interval_ms("1m"), Some(60_000));
        assert_eq!(interval_ms("hour"), Some(3_600_000));
        assert_eq!(interval_ms("month"), None);
        assert_eq!(interval_ms("0s"), None);
        assert_eq!(interval_ms("99999999999999999d"), None);
    }
}
