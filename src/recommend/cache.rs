//! Cache advice from the stored spans.
//!
//! - **Cache opportunities** for database reads (`SELECT`s): each read is
//!   keyed by its statement text with its literals and, where recorded,
//!   its parameters (`db.statement.parameters`, `db.query.parameter.*`); a
//!   template whose reads carry neither is keyed by the template alone and
//!   its figures are an **upper bound** (said so). Per template: reads,
//!   distinct keys, the achievable hit ratio (every repeat a hit), the LRU
//!   hit-ratio curve against cache size (`lru.rs`: exact by Mattson's
//!   stack distances, by SHARDS sampling beyond `exact_limit` reads), and
//!   TTL advice: for each candidate TTL the hit ratio of an unbounded cache
//!   whose entries expire, and the share of those hits that would return
//!   stale rows because an `INSERT`/`UPDATE`/`DELETE` on one of the
//!   template's tables came between; the advice is the smallest TTL that
//!   reaches 90 % of the achievable hit ratio with stale hits under
//!   `max_stale`. Also the database time a cache would save per hour and
//!   the memory it would take at an assumed entry size.
//! - **Existing Redis caches**: per key pattern (ids as `?`), `GET`s, hits
//!   and misses (a `GET` followed in the same trace by a `SET` of the same
//!   key counts as a miss, as cache-aside code does), and keys written but
//!   never read in the window. opentelemetry-instrumentation-redis records
//!   `GET ?`: keys then come from a `db.redis.key` attribute that a
//!   request hook sets, else they are counted together as "(keys not
//!   recorded)".

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};

use super::database::DbRequest;
use super::lru;
use super::sql;
use crate::model::span::{hex, Span, TraceId};
use crate::storage::traces::TraceStore;

const KIND_CLIENT: u8 = 3;
/// Candidate TTLs, seconds.
const TTLS: [f64; 9] = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];
const SIZES: [u64; 6] = [10, 100, 1_000, 10_000, 100_000, 1_000_000];

#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub max_spans: usize,
    /// Reads per template computed exactly; SHARDS beyond.
    pub exact_limit: usize,
    /// Largest tolerated share of stale hits for TTL advice.
    pub max_stale: f64,
    /// Assumed size of a cached entry, for the memory estimate.
    pub entry_bytes: f64,
    /// Templates with fewer reads are not considered.
    pub min_reads: usize,
}

fn text(span: &Span, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| {
        span.attributes
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_text())
            .filter(|s| !s.is_empty())
    })
}

fn parameters(span: &Span) -> Option<String> {
    let mut out = String::new();
    for (k, v) in &span.attributes {
        if k == "db.statement.parameters" || k.starts_with("db.query.parameter.") {
            out.push_str(k);
            out.push('=');
            out.push_str(&v.as_text());
            out.push('\u{1}');
        }
    }
    (!out.is_empty()).then_some(out)
}

#[derive(Default)]
struct Reads {
    system: String,
    tables: Vec<String>,
    /// (start ns, key hash, trace)
    accesses: Vec<(i64, u64, TraceId)>,
    keyed: bool,
    total_ms: f64,
}

#[derive(Default)]
struct RedisPattern {
    gets: u64,
    misses: u64,
    sets: u64,
    set_keys: HashSet<String>,
    get_keys: HashSet<String>,
}

/// Redis command and key of a span.
fn redis_command(span: &Span) -> Option<(String, String)> {
    let statement = text(span, &["db.query.text", "db.statement"]);
    let op = text(span, &["db.operation.name", "db.operation"]);
    let mut words = statement
        .as_deref()
        .unwrap_or(span.name.as_str())
        .split_whitespace();
    let command = op
        .clone()
        .or_else(|| words.next().map(str::to_string))?
        .to_ascii_uppercase();
    if op.is_some() {
        // The statement starts with the command too.
        words.next();
    }
    // opentelemetry-instrumentation-redis replaces every argument with `?`;
    // a `request_hook` can record the key as `db.redis.key`.
    let key = text(span, &["db.redis.key"]).or_else(|| words.next().map(str::to_string))?;
    Some((command, key))
}

/// What stands for keys the instrumentation did not record.
pub const UNRECORDED: &str = "(keys not recorded)";

/// A Redis key's pattern: runs of digits and long hex ids as `?`.
pub fn key_pattern(key: &str) -> String {
    key.split(':')
        .map(|part| {
            let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            let hexish =
                part.len() >= 8 && part.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if digits || hexish {
                "?".to_string()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

pub fn analyse(
    store: &TraceStore,
    options: &CacheOptions,
    request: &DbRequest,
) -> Result<Value, String> {
    let started = std::time::Instant::now();
    let mut reads: HashMap<(String, String), Reads> = HashMap::new();
    let mut templates: HashMap<(String, String), (String, Vec<String>, String)> = HashMap::new();
    let mut writes: HashMap<String, Vec<i64>> = HashMap::new();
    let mut redis: BTreeMap<String, RedisPattern> = BTreeMap::new();
    let mut redis_trace_gets: HashMap<(TraceId, String), u32> = HashMap::new();
    let (mut scanned, mut truncated) = (0usize, false);
    store
        .for_each_span(request.start_ns, request.end_ns, &[KIND_CLIENT], |span| {
            scanned += 1;
            if scanned > options.max_spans {
                truncated = true;
                return false;
            }
            if request
                .service
                .as_deref()
                .is_some_and(|s| s != span.service)
            {
                return true;
            }
            let Some(system) = text(span, &["db.system.name", "db.system"]) else {
                return true;
            };
            if system == "redis" || system == "memcached" {
                if let Some((command, key)) = redis_command(span) {
                    let pattern = if key == "?" {
                        UNRECORDED.to_string()
                    } else {
                        key_pattern(&key)
                    };
                    let p = redis.entry(pattern).or_default();
                    match command.as_str() {
                        "GET" | "MGET" | "HGET" | "HGETALL" | "EXISTS" => {
                            p.gets += 1;
                            if p.get_keys.len() < 100_000 {
                                p.get_keys.insert(key.clone());
                            }
                            *redis_trace_gets.entry((span.trace_id, key)).or_default() += 1;
                        }
                        "SET" | "SETEX" | "PSETEX" | "SETNX" | "HSET" | "MSET" => {
                            p.sets += 1;
                            if p.set_keys.len() < 100_000 {
                                p.set_keys.insert(key.clone());
                            }
                            // cache-aside: a GET of this key earlier in the trace missed
                            if let Some(n) = redis_trace_gets.get_mut(&(span.trace_id, key)) {
                                if *n > 0 {
                                    *n -= 1;
                                    p.misses += 1;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                return true;
            }
            let Some(statement) = text(span, &["db.query.text", "db.statement"]) else {
                return true;
            };
            let tkey = (system.clone(), statement.clone());
            if !templates.contains_key(&tkey) && templates.len() < 200_000 {
                let n = sql::normalise(&statement, &system);
                templates.insert(tkey.clone(), (n.template, n.tables, n.operation));
            }
            let Some((template, tables, operation)) = templates.get(&tkey) else {
                return true;
            };
            match operation.as_str() {
                "SELECT" | "WITH" => {
                    let params = parameters(span);
                    // The statement itself carries the values when its
                    // text differs from its template.
                    let keyed = params.is_some() || statement.trim() != template;
                    let key_text = format!("{statement}\u{2}{}", params.unwrap_or_default());
                    let key = xxhash_rust::xxh3::xxh3_64(key_text.as_bytes());
                    let r = reads
                        .entry((system.clone(), template.clone()))
                        .or_insert_with(|| Reads {
                            system: system.clone(),
                            tables: tables.clone(),
                            keyed: true,
                            ..Default::default()
                        });
                    r.keyed &= keyed;
                    r.total_ms += span.duration_ns() as f64 / 1e6;
                    if r.accesses.len() < options.max_spans {
                        r.accesses.push((span.start_ns, key, span.trace_id));
                    }
                }
                "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "MERGE" | "UPSERT" => {
                    for t in tables {
                        let w = writes.entry(t.clone()).or_default();
                        if w.len() < options.max_spans {
                            w.push(span.start_ns);
                        }
                    }
                }
                _ => {}
            }
            true
        })
        .map_err(|e| e.to_string())?;
    for w in writes.values_mut() {
        w.sort_unstable();
    }
    let hours = ((request.end_ns - request.start_ns).max(1) as f64 / 3.6e12).max(1e-9);
    let mut candidates = Vec::new();
    for ((_, template), mut r) in reads {
        if r.accesses.len() < options.min_reads {
            continue;
        }
        r.accesses.sort_by_key(|a| a.0);
        let keys: Vec<u64> = r.accesses.iter().map(|a| a.1).collect();
        let reads_n = keys.len();
        let distinct = keys.iter().collect::<HashSet<_>>().len();
        let achievable = (reads_n - distinct) as f64 / reads_n as f64;
        let (curve, rate) = lru::curve(&keys, &SIZES, options.exact_limit);
        // TTL: hits of an unbounded cache whose entries live `ttl`, and the
        // hits a write on one of the tables made stale.
        let mut last: HashMap<u64, i64> = HashMap::new();
        let mut gaps: Vec<(f64, bool)> = Vec::new();
        for (t, key, _) in &r.accesses {
            if let Some(prev) = last.insert(*key, *t) {
                let stale = r.tables.iter().any(|table| {
                    writes.get(table).is_some_and(|w| {
                        let i = w.partition_point(|x| *x <= prev);
                        i < w.len() && w[i] < *t
                    })
                });
                gaps.push(((t - prev) as f64 / 1e9, stale));
            }
        }
        let ttl_rows: Vec<(f64, f64, f64)> = TTLS
            .iter()
            .map(|ttl| {
                let hits: Vec<&(f64, bool)> = gaps.iter().filter(|(g, _)| g <= ttl).collect();
                let stale = hits.iter().filter(|(_, s)| *s).count();
                let ratio = hits.len() as f64 / reads_n as f64;
                let stale_share = if hits.is_empty() {
                    0.0
                } else {
                    stale as f64 / hits.len() as f64
                };
                (*ttl, ratio, stale_share)
            })
            .collect();
        let advised = ttl_rows
            .iter()
            .find(|(_, ratio, stale)| *ratio >= 0.9 * achievable && *stale <= options.max_stale)
            .or_else(|| {
                ttl_rows
                    .iter()
                    .filter(|(_, _, stale)| *stale <= options.max_stale)
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            })
            .copied();
        let mean_ms = r.total_ms / reads_n as f64;
        let saved = advised.map_or(0.0, |(_, ratio, _)| {
            ratio * reads_n as f64 * mean_ms / 1000.0 / hours
        });
        // The smallest cache size reaching 90 % of the achievable ratio.
        let size_needed = SIZES
            .iter()
            .zip(&curve)
            .find(|(_, h)| h.is_some_and(|h| h >= 0.9 * achievable))
            .map(|(s, _)| (*s).min(distinct as u64));
        let mut examples: Vec<String> = Vec::new();
        for (_, _, t) in &r.accesses {
            let h = hex(t);
            if !examples.contains(&h) {
                examples.push(h);
            }
            if examples.len() == 5 {
                break;
            }
        }
        candidates.push(json!({
            "template": template,
            "system": r.system,
            "tables": r.tables,
            "keyed": if r.keyed { "exact" } else { "upper bound (no parameters recorded: keyed by template)" },
            "reads": reads_n,
            "distinct_keys": distinct,
            "achievable_hit_ratio": achievable,
            "curve": SIZES.iter().zip(&curve).map(|(s, h)| json!({"entries": s, "hit_ratio": h})).collect::<Vec<_>>(),
            "sampling_rate": rate,
            "ttl": ttl_rows.iter().map(|(t, h, s)| json!({"seconds": t, "hit_ratio": h, "stale_share": s})).collect::<Vec<_>>(),
            "advised_ttl_seconds": advised.map(|a| a.0),
            "advised_hit_ratio": advised.map(|a| a.1),
            "entries_for_90_percent": size_needed,
            "memory_estimate_bytes": size_needed.map(|n| n as f64 * options.entry_bytes),
            "db_time_saved_per_hour_seconds": saved,
            "mean_ms": mean_ms,
            "example_trace_ids": examples,
        }));
    }
    candidates.sort_by(|a, b| {
        b["db_time_saved_per_hour_seconds"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["db_time_saved_per_hour_seconds"].as_f64().unwrap_or(0.0))
    });
    candidates.truncate(100);
    let redis_rows: Vec<Value> = redis
        .iter()
        .map(|(pattern, p)| {
            let hits = p.gets.saturating_sub(p.misses);
            let never_read = (pattern != UNRECORDED).then(|| {
                p.set_keys
                    .iter()
                    .filter(|k| !p.get_keys.contains(*k))
                    .count()
            });
            json!({
                "pattern": pattern,
                "gets": p.gets,
                "hits": hits,
                "misses": p.misses,
                "hit_ratio": if p.gets > 0 { hits as f64 / p.gets as f64 } else { 0.0 },
                "sets": p.sets,
                "keys_written_never_read": never_read,
            })
        })
        .collect();
    let mut notes = vec![format!(
        "memory estimates assume {} bytes an entry; misses are inferred from a GET followed by a SET of the same key in one trace (cache-aside)",
        options.entry_bytes
    )];
    if truncated {
        notes.push(format!(
            "stopped after {} spans: narrow the window or the service",
            options.max_spans
        ));
    }
    Ok(json!({
        "window": {"start": request.start_ns as f64 / 1e9, "end": request.end_ns as f64 / 1e9},
        "candidates": candidates,
        "redis": redis_rows,
        "ttls_considered_seconds": TTLS,
        "max_stale_share": options.max_stale,
        "duration_seconds": started.elapsed().as_secs_f64(),
        "notes": notes,
    }))
}

#[cfg(test)]
mod tests {
    use super::key_pattern;

    #[test]
    fn key_patterns() {
        assert_eq!(key_pattern("cart:42"), "cart:?");
        assert_eq!(key_pattern("session:3f2a9c1d7e"), "session:?");
        assert_eq!(key_pattern("config"), "config");
    }
}
