//! The results cache: range queries over the past are answered from
//! earlier evaluations, as a Cortex/Thanos query-frontend does, inside the
//! server.
//!
//! A range query's steps are grouped by split interval (`t div
//! cache.split_interval`); each group has one entry, keyed by everything
//! that changes the answer (the query as the parser prints it, the step,
//! the grid's phase `start mod step`, the lookback delta and the default
//! subquery step) and the interval. An entry holds one *extent*: the
//! points of consecutive steps and the wall-clock time before they were
//! evaluated. A lookup uses the part of the extent that is still valid —
//! older than `now − cache.max_freshness`, and older than the oldest sample
//! written late since the extent was computed (`storage::metrics::late`) —
//! evaluates the rest (merged into as few evaluations as possible), answers
//! from both and stores the group's grown extent.
//!
//! Each step of a range query is evaluated on its own, from samples at or
//! before it, so cached and fresh points stitch into exactly the answer of
//! one evaluation. Expressions for which that does not hold are not cached:
//! `@` modifiers (`@ start()` moves with the range) and negative offsets
//! (they read after the step).

mod backend;
pub mod extent;
mod logs;
pub mod metrics;
mod traces;

use promql_parser::parser::{Expr, Offset};
use xxhash_rust::xxh3::Xxh3;

use crate::config::CacheConfig;
use crate::query::promql::{self, EngineOptions, EvalError, QueryResult};
use crate::storage::metrics::MetricsStore;
use backend::{Backend, RedisBackend};
use extent::Extent;
pub use metrics::CacheMetrics;

/// Version of the key scheme: bump when what an entry means changes.
const KEY_VERSION: u8 = 1;

/// zstd level for entries: fast, and still about 4× on query results.
const ZSTD_LEVEL: i32 = 1;

/// Decompressed PromQL entries are refused beyond this (a compression
/// bomb in a shared Redis); larger ones are not stored.
const MAX_RAW_BYTES: usize = 64 << 20;

pub struct ResultsCache {
    backend: Backend,
    metrics: CacheMetrics,
    max_freshness_ms: i64,
    split_ms: i64,
    max_entry_bytes: usize,
    ttl_ms: i64,
    prefix: String,
}

/// Where the points of a stretch of steps come from.
enum Part {
    Cached(Extent),
    Evaluate { first: i64, last: i64 },
}

/// The steps of one split interval within a request.
struct Group {
    bucket: i64,
    first: i64,
    last: i64,
    key: Option<String>,
    /// The entry's extent, still valid (before truncation to the group).
    valid: Option<Extent>,
    /// Steps evaluated now inside the cacheable part of the group.
    evaluated: bool,
}

impl ResultsCache {
    /// The cache `[cache]` asks for (`None` when disabled); Redis when
    /// `redis_url` is set, else in-process. Records late writes in `store`
    /// from now on.
    pub fn new(
        config: &CacheConfig,
        store: &MetricsStore,
        metrics: CacheMetrics,
        runtime: tokio::runtime::Handle,
    ) -> Result<Option<ResultsCache>, String> {
        if !config.enabled {
            return Ok(None);
        }
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let backend = if config.redis_url.is_empty() {
            Backend::in_process(config.max_bytes.0, config.ttl, metrics.clone())
        } else {
            Backend::Redis(Box::new(RedisBackend::new(
                &config.redis_url,
                config.redis_timeout,
                config.ttl,
                runtime,
                metrics.clone(),
            )?))
        };
        let cache = ResultsCache {
            backend,
            metrics,
            max_freshness_ms: ms(config.max_freshness),
            split_ms: ms(config.split_interval).max(1),
            max_entry_bytes: config.max_entry_bytes.as_usize(),
            ttl_ms: ms(config.ttl),
            prefix: config.redis_key_prefix.clone(),
        };
        cache.track(&store.late);
        Ok(Some(cache))
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Rows for the Status page.
    pub fn status_rows(&self) -> Vec<(String, String)> {
        let s = self.metrics.summary(self.backend.name());
        let mut rows = vec![(
            "backend".to_owned(),
            match &self.backend {
                Backend::InProcess(_) => "in-process".to_owned(),
                Backend::Redis(r) => format!("Redis {}", r.address()),
            },
        )];
        for (cache, hit, partial, miss) in &s.lookups {
            let all = hit + partial + miss;
            if all == 0 {
                continue;
            }
            rows.push((
                format!("{cache} lookups (hit / partial / miss)"),
                format!(
                    "{hit} / {partial} / {miss} ({:.1}% hit)",
                    100.0 * *hit as f64 / all as f64
                ),
            ));
        }
        rows.push((
            "points from cache / evaluated".to_owned(),
            format!("{} / {}", s.points_cached, s.points_evaluated),
        ));
        if let Some((entries, bytes)) = self.usage() {
            rows.push(("entries".to_owned(), format!("{entries} ({bytes} bytes)")));
        }
        rows.push((
            "bytes written / evictions / too large".to_owned(),
            format!("{} / {} / {}", s.stored_bytes, s.evictions, s.skipped),
        ));
        let errors: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        rows.push((
            "errors (each a miss)".to_owned(),
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            },
        ));
        for (op, count, mean) in &s.latency {
            rows.push((
                format!("Redis {op}"),
                format!("{count} round trips, mean {:.2} ms", mean * 1000.0),
            ));
        }
        rows
    }

    /// Entries and bytes of the in-process backend (also set as gauges).
    pub fn usage(&self) -> Option<(u64, u64)> {
        let usage = self.backend.usage();
        if let Some((entries, bytes)) = usage {
            let labels = metrics::BackendLabels {
                backend: self.backend.name().into(),
            };
            self.metrics
                .entries
                .get_or_create(&labels)
                .set(entries as i64);
            self.metrics.bytes.get_or_create(&labels).set(bytes as i64);
        }
        usage
    }

    /// A range query over `(start, end, step)` as [`promql::range_query`]
    /// answers it, from the cache where it can. `now_ms` places the
    /// freshness bound. Run inside [`promql::with_stack`] (it parses and
    /// walks the expression).
    pub fn range_query(
        &self,
        store: &MetricsStore,
        options: &EngineOptions,
        query: &str,
        (start, end, step): (i64, i64, i64),
        now_ms: i64,
    ) -> Result<QueryResult, EvalError> {
        if step <= 0 || end < start {
            return promql::range_query(store, options, query, start, end, step);
        }
        let expr = promql::parse(query)?;
        if !cacheable(&expr) {
            return promql::range_query_expr(store, options, &expr, start, end, step);
        }
        let boundary = now_ms.saturating_sub(self.max_freshness_ms);
        // Points strictly before the boundary: a sample stamped exactly
        // `now − max_freshness` is not a late write.
        let last_cacheable = align_down(boundary.saturating_sub(1), start, step);
        let scalar = matches!(
            expr.value_type(),
            promql_parser::parser::value::ValueType::Scalar
        );
        let base = self.key_base(&expr, start, step, options);

        // The steps, grouped by split interval.
        let count = promql::step_count(start, end, step);
        let mut groups: Vec<Group> = Vec::new();
        for k in 0..count as i64 {
            let t = start + k * step;
            let bucket = t.div_euclid(self.split_ms);
            match groups.last_mut() {
                Some(g) if g.bucket == bucket => g.last = t,
                _ => groups.push(Group {
                    bucket,
                    first: t,
                    last: t,
                    key: (t <= last_cacheable).then(|| format!("{base}:{bucket}")),
                    valid: None,
                    evaluated: false,
                }),
            }
        }

        // Wall clock before the lookup: late writes recorded from now on
        // are checked against what is stored below.
        let checked_ns = crate::now_ns();
        let keys: Vec<String> = groups.iter().filter_map(|g| g.key.clone()).collect();
        let mut found = self.backend.get(&keys).into_iter();
        let mut parts: Vec<Part> = Vec::new();
        let push_evaluate = |parts: &mut Vec<Part>, first: i64, last: i64| {
            if let Some(Part::Evaluate { last: l, .. }) = parts.last_mut() {
                if *l + step == first {
                    *l = last;
                    return;
                }
            }
            parts.push(Part::Evaluate { first, last });
        };
        for g in groups.iter_mut() {
            let cached = match &g.key {
                Some(_) => found
                    .next()
                    .flatten()
                    .and_then(|bytes| self.decode(&bytes, self.split_ms / step + 1))
                    .and_then(|e| {
                        self.still_valid(store, e, (start, step, scalar), last_cacheable, g)
                    }),
                None => None,
            };
            let cacheable_last = g.last.min(last_cacheable);
            let Some(extent) = cached else {
                if g.key.is_some() {
                    self.metrics.lookup(self.backend.name(), "promql", "miss");
                    g.evaluated = true;
                }
                push_evaluate(&mut parts, g.first, g.last);
                continue;
            };
            let (a, b) = (extent.first.max(g.first), extent.last().min(g.last));
            self.metrics.lookup(
                self.backend.name(),
                "promql",
                if a == g.first && b >= cacheable_last {
                    "hit"
                } else {
                    "partial"
                },
            );
            if a > g.first {
                push_evaluate(&mut parts, g.first, a - step);
                g.evaluated = true;
            }
            parts.push(Part::Cached(extent.slice(a, b)));
            if b < g.last {
                push_evaluate(&mut parts, b + step, g.last);
                g.evaluated |= b < cacheable_last;
            }
            g.valid = Some(extent);
        }

        // Evaluate what is missing, then answer from all parts in order.
        let deadline = std::time::Instant::now().checked_add(options.timeout);
        let mut pieces = Vec::with_capacity(parts.len());
        let (mut from_cache, mut evaluated) = (0u64, 0u64);
        for part in parts {
            match part {
                Part::Cached(e) => {
                    from_cache += e.len as u64;
                    pieces.push(e);
                }
                Part::Evaluate { first, last } => {
                    // One timeout for all the parts (max_samples applies to
                    // each, as to each split of a query-frontend).
                    let left = deadline.map_or(options.timeout, |d| {
                        d.saturating_duration_since(std::time::Instant::now())
                    });
                    if left.is_zero() {
                        return Err(EvalError::Timeout("query evaluation".into()));
                    }
                    let options = EngineOptions {
                        timeout: left,
                        ..options.clone()
                    };
                    let result =
                        promql::range_query_expr(store, &options, &expr, first, last, step)?;
                    evaluated += result.steps.len() as u64;
                    pieces.push(Extent::from_result(result, first, step, checked_ns));
                }
            }
        }
        self.metrics.points("cache", from_cache);
        self.metrics.points("evaluated", evaluated);
        let Some(mut answer) = Extent::join(pieces) else {
            return promql::range_query_expr(store, options, &expr, start, end, step);
        };
        answer.computed_ns = checked_ns;

        // Keep each group's grown extent.
        let mut entries = Vec::new();
        for g in &groups {
            let (Some(key), true) = (&g.key, g.evaluated) else {
                continue;
            };
            let last = g.last.min(last_cacheable);
            if last < g.first {
                continue;
            }
            let mut pieces = Vec::with_capacity(3);
            let old = g.valid.as_ref();
            if let Some(old) = old.filter(|o| o.first < g.first && o.last() >= g.first - step) {
                pieces.push(old.slice(old.first, g.first - step));
            }
            pieces.push(answer.slice(g.first, last));
            if let Some(old) = old.filter(|o| o.last() > last && o.first <= last + step) {
                pieces.push(old.slice(last + step, old.last()));
            }
            if let Some(mut grown) = Extent::join(pieces) {
                grown.computed_ns = checked_ns;
                if let Some(bytes) = self.encode(&grown) {
                    entries.push((key.clone(), bytes));
                }
            }
        }
        self.backend.put(entries);
        Ok(answer.into_result())
    }

    /// The part of a found extent that still holds, or `None`.
    fn still_valid(
        &self,
        store: &MetricsStore,
        mut extent: Extent,
        (start, step, scalar): (i64, i64, bool),
        last_cacheable: i64,
        group: &Group,
    ) -> Option<Extent> {
        // Another grid, interval or type under this key (a hash collision,
        // or an entry from elsewhere): unusable.
        if extent.step != step
            || (extent.first as i128 - start as i128).rem_euclid(step as i128) != 0
            || extent.first.div_euclid(self.split_ms) != group.bucket
            || extent.last().div_euclid(self.split_ms) != group.bucket
            || matches!(extent.points, extent::Points::Scalar(_)) != scalar
        {
            self.metrics.error(self.backend.name(), "decode");
            return None;
        }
        let mut last = extent.last().min(last_cacheable);
        if let Some(late) = store.late.oldest_since(extent.computed_ns) {
            last = last.min(align_down(late.saturating_sub(1), start, step));
        }
        // Only a stretch overlapping the group's steps is of use.
        if last < extent.first || last < group.first || extent.first > group.last {
            return None;
        }
        if last < extent.last() {
            extent = extent.slice(extent.first, last);
        }
        Some(extent)
    }

    /// Everything that changes an answer but the split interval.
    fn key_base(&self, expr: &Expr, start: i64, step: i64, options: &EngineOptions) -> String {
        let mut h = Xxh3::new();
        h.update(&[KEY_VERSION]);
        h.update(expr.to_string().as_bytes());
        for n in [
            step,
            start.rem_euclid(step),
            self.split_ms,
            options.lookback_ms,
            options.default_subquery_step_ms,
        ] {
            h.update(&n.to_le_bytes());
        }
        format!("{}promql:{:032x}", self.prefix, h.digest128())
    }

    /// An extent as stored (see [`ResultsCache::pack`]).
    fn encode(&self, extent: &Extent) -> Option<Vec<u8>> {
        if extent.values() > extent::MAX_VALUES {
            self.metrics.skipped(self.backend.name());
            return None;
        }
        self.pack(extent.encode())
    }

    /// Compressed, with its decompressed length first; `None` (counted)
    /// beyond `cache.max_entry_bytes`.
    fn pack(&self, raw: Vec<u8>) -> Option<Vec<u8>> {
        let too_large = || {
            self.metrics.skipped(self.backend.name());
            None
        };
        if raw.len() > MAX_RAW_BYTES {
            return too_large();
        }
        let mut out = (raw.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&zstd::bulk::compress(&raw, ZSTD_LEVEL).ok()?);
        if out.len() > self.max_entry_bytes {
            return too_large();
        }
        self.metrics.stored(self.backend.name(), out.len() as u64);
        Some(out)
    }

    fn decode(&self, bytes: &[u8], max_len: i64) -> Option<Extent> {
        let decoded = self
            .unpack(bytes, MAX_RAW_BYTES)
            .and_then(|raw| Extent::decode(&raw, usize::try_from(max_len).unwrap_or(0)));
        if decoded.is_none() {
            self.metrics.error(self.backend.name(), "decode");
        }
        decoded
    }

    /// What [`ResultsCache::pack`] stored, if it decompresses to at most
    /// `max_raw` bytes; `None` for anything else.
    fn unpack(&self, bytes: &[u8], max_raw: usize) -> Option<Vec<u8>> {
        if bytes.len() > self.max_entry_bytes {
            return None;
        }
        let (len, frame) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > max_raw {
            return None;
        }
        let raw = zstd::bulk::decompress(frame, len).ok()?;
        (raw.len() == len).then_some(raw)
    }

    /// Record late writes in `late` (a store's) from now on. Entries
    /// computed before (by an earlier run of this server, into a shared
    /// Redis) may have missed writes this server has replayed from its WAL:
    /// they count as changed from the start of time. Records are kept for
    /// twice the entries' lifetime (an entry is stored after its evaluation,
    /// which can start long before).
    pub fn track(&self, late: &crate::storage::metrics::late::LateWrites) {
        late.track(self.max_freshness_ms, self.ttl_ms.saturating_mul(2));
        late.note(i64::MIN, crate::now_ns());
    }
}

/// The last step of the grid through `start` at or before `t`.
fn align_down(t: i64, start: i64, step: i64) -> i64 {
    t.saturating_sub((t as i128 - start as i128).rem_euclid(step as i128) as i64)
}

/// Whether every step's value depends only on samples at or before it and
/// not on the range: no `@` modifier, no negative offset, no `start()`,
/// `end()` or `range()`.
pub fn cacheable(expr: &Expr) -> bool {
    let plain = |offset: &Option<Offset>, at: bool| !at && !matches!(offset, Some(Offset::Neg(_)));
    match expr {
        Expr::VectorSelector(v) => plain(&v.offset, v.at.is_some()),
        Expr::MatrixSelector(m) => plain(&m.vs.offset, m.vs.at.is_some()),
        Expr::Subquery(s) => plain(&s.offset, s.at.is_some()) && cacheable(&s.expr),
        Expr::Aggregate(a) => cacheable(&a.expr) && a.param.as_deref().is_none_or(cacheable),
        Expr::Unary(u) => cacheable(&u.expr),
        Expr::Binary(b) => cacheable(&b.lhs) && cacheable(&b.rhs),
        Expr::Paren(p) => cacheable(&p.expr),
        // start(), end() and range() are the evaluation's own range.
        Expr::Call(c) => {
            !matches!(c.func.name, "start" | "end" | "range")
                && c.args.args.iter().all(|a| cacheable(a))
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Extension(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_cacheable() {
        let yes = [
            "up",
            "rate(http_requests_total[5m] offset 1h)",
            "sum by (job) (rate(x[1m]))",
            "max_over_time(rate(x[1m])[10m:1m])",
            "time() - timestamp(up)",
            "topk(3, up)",
            "histogram_quantile(0.9, sum by (le) (rate(b[5m])))",
        ];
        for q in yes {
            assert!(cacheable(&promql::parse(q).unwrap()), "{q}");
        }
        let no = [
            "up @ 100",
            "rate(x[5m] @ end())",
            "up offset -5m",
            "sum(rate(x[5m] offset -1m))",
            "max_over_time(up[10m:1m] @ start())",
            "topk(3, up @ 5)",
            "up + end()",
            "vector(range())",
            "up - on() group_left vector(start())",
        ];
        for q in no {
            assert!(!cacheable(&promql::parse(q).unwrap()), "{q}");
        }
    }

    #[test]
    fn alignment() {
        assert_eq!(align_down(105, 0, 10), 100);
        assert_eq!(align_down(100, 0, 10), 100);
        assert_eq!(align_down(99, 3, 10), 93);
        assert_eq!(align_down(-7, 0, 10), -10);
        assert_eq!(align_down(i64::MIN + 5, 0, 10), i64::MIN);
    }
}
