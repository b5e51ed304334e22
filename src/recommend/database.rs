//! Database and HTTP-client advice from the stored spans: `pg_stat_statements`
//! from the outside, and the findings of Sentry's performance detectors.
//!
//! Input (OpenTelemetry semantic conventions, current and older names):
//! database client spans (`db.system.name`/`db.system`,
//! `db.query.text`/`db.statement`, `db.operation.name`/`db.operation`,
//! `db.collection.name`/`db.sql.table`, `db.namespace`/`db.name`,
//! `db.query.summary`) and HTTP client spans (`http.request.method`/
//! `http.method`, `url.template`, `url.full`/`http.url`, `server.address`).
//!
//! - **Templates**: statements normalised by `sql.rs`; per template calls,
//!   total/mean/p50/p95/p99 time, share of all database time, calls per
//!   trace, the services and endpoints (the nearest server span above)
//!   that issue it, and the slowest example traces.
//! - **Slow queries**: templates whose p95 reaches `db_slow_query`.
//! - **Consecutive queries**: reads of different templates one after the
//!   other under one parent that would save at least
//!   `n_plus_one_min_total` if run concurrently (Sentry's
//!   consecutive-DB-queries detector; whether they depend on each other
//!   the spans cannot tell).
//! - **N+1 queries**: the same template called at least
//!   `n_plus_one_min_count` times one after the other under one parent
//!   span, together taking at least `n_plus_one_min_total` (Sentry's N+1
//!   DB detector defaults: 5 calls, 100 ms); **N+1 HTTP calls** likewise per
//!   method and URL template.
//! - **Index candidates**: for slow templates, the columns a statement
//!   compares with values, joins and sorts on, per table, with a `CREATE
//!   INDEX` in the dialect of `db.system` — from the query's shape, not
//!   from the database's planner.
//!
//! Every finding carries example trace ids and the time it costs per hour
//! over the window. Bounded by `max_spans` scanned and `max_templates`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{json, Value};

use super::sql::{self, Normalised};
use crate::model::span::{hex, AttrValue, Span, SpanId, TraceId};
use crate::storage::traces::TraceStore;

const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;
const EXAMPLES: usize = 5;

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub slow_query_ms: f64,
    pub n_plus_one_min_count: usize,
    pub n_plus_one_min_total_ms: f64,
    pub max_spans: usize,
    pub max_templates: usize,
}

#[derive(Debug, Clone)]
pub struct DbRequest {
    pub start_ns: i64,
    pub end_ns: i64,
    pub service: Option<String>,
}

fn attr<'a>(span: &'a Span, keys: &[&str]) -> Option<&'a AttrValue> {
    keys.iter().find_map(|k| {
        span.attributes
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v)
    })
}

fn text(span: &Span, keys: &[&str]) -> Option<String> {
    attr(span, keys)
        .map(AttrValue::as_text)
        .filter(|s| !s.is_empty())
}

/// An HTTP URL's template: `url.template` when instrumented, else the
/// path with ids (numbers, UUIDs, long hex) as `{id}` and no query.
pub fn url_template(span: &Span) -> Option<String> {
    if let Some(t) = text(span, &["url.template", "http.route"]) {
        let host = text(span, &["server.address", "net.peer.name"]).unwrap_or_default();
        return Some(format!("{host}{t}"));
    }
    let url = text(span, &["url.full", "http.url"])?;
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let segments: Vec<String> = path
        .split('/')
        .map(|seg| {
            let hexish = seg.len() >= 8 && seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())) || hexish {
                "{id}".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    Some(format!("{host}/{}", segments.join("/")))
}

#[derive(Default)]
struct TemplateStats {
    system: String,
    operation: String,
    tables: Vec<String>,
    filter_columns: BTreeMap<String, Vec<String>>,
    parsed: bool,
    durations_ms: Vec<f64>,
    traces: HashSet<TraceId>,
    services: BTreeSet<String>,
    endpoints: BTreeMap<String, u64>,
    /// (duration, trace) of the slowest calls.
    slowest: Vec<(f64, TraceId)>,
}

impl TemplateStats {
    fn add(&mut self, ms: f64, trace: TraceId, service: &str) {
        self.durations_ms.push(ms);
        self.traces.insert(trace);
        if !self.services.contains(service) {
            self.services.insert(service.to_string());
        }
        if self.slowest.len() < EXAMPLES || self.slowest.iter().any(|(d, _)| *d < ms) {
            if !self.slowest.iter().any(|(_, t)| *t == trace) {
                self.slowest.push((ms, trace));
            }
            self.slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
            self.slowest.truncate(EXAMPLES);
        }
    }
}

/// One client call, for the N+1 grouping.
struct Call {
    trace: TraceId,
    parent: Option<SpanId>,
    span: SpanId,
    template: u32,
    start: i64,
    end: i64,
}

impl Call {
    /// `span` as a call of template `template`.
    fn of(span: &Span, template: u32) -> Call {
        Call {
            trace: span.trace_id,
            parent: span.parent_span_id,
            span: span.span_id,
            template,
            start: span.start_ns,
            end: span.end_ns,
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Runs every analysis over the window.
pub fn analyse(
    store: &TraceStore,
    options: &DbOptions,
    request: &DbRequest,
) -> Result<Value, String> {
    let started = std::time::Instant::now();
    // Parents and names of every span (endpoints are the nearest server
    // span above a call).
    let mut names: Vec<String> = Vec::new();
    let mut name_ids: HashMap<String, u32> = HashMap::new();
    let mut parents: HashMap<(TraceId, SpanId), (Option<SpanId>, u8, u32)> = HashMap::new();
    let mut statements: HashMap<(String, String), u32> = HashMap::new();
    let mut templates: Vec<(String, TemplateStats)> = Vec::new();
    let mut template_ids: HashMap<(String, String), u32> = HashMap::new();
    let mut db_calls: Vec<Call> = Vec::new();
    let mut http_calls: Vec<Call> = Vec::new();
    let mut http_templates: Vec<(String, TemplateStats)> = Vec::new();
    let mut http_ids: HashMap<String, u32> = HashMap::new();
    let (mut scanned, mut truncated, mut without_statement) = (0usize, false, 0u64);
    let mut too_many_templates = false;
    let mut intern = |s: &str, names: &mut Vec<String>| -> u32 {
        if let Some(&i) = name_ids.get(s) {
            return i;
        }
        names.push(s.to_string());
        let i = (names.len() - 1) as u32;
        name_ids.insert(s.to_string(), i);
        i
    };
    let mut endpoint_of: Vec<(usize, bool, TraceId, Option<SpanId>)> = Vec::new();
    store
        .for_each_span(request.start_ns, request.end_ns, &[], |span| {
            scanned += 1;
            if scanned > options.max_spans {
                truncated = true;
                return false;
            }
            let name = intern(&format!("{}: {}", span.service, span.name), &mut names);
            parents.insert(
                (span.trace_id, span.span_id),
                (span.parent_span_id, span.kind, name),
            );
            if span.kind != KIND_CLIENT
                || request
                    .service
                    .as_deref()
                    .is_some_and(|s| s != span.service)
            {
                return true;
            }
            let ms = span.duration_ns() as f64 / 1e6;
            let system = text(span, &["db.system.name", "db.system"]);
            if let Some(system) = system {
                let statement = text(span, &["db.query.text", "db.statement"]);
                let (key, normalised): ((String, String), Option<Normalised>) = match statement {
                    Some(s) => {
                        let key = (system.clone(), s);
                        let known = statements.contains_key(&key);
                        let n = (!known).then(|| sql::normalise(&key.1, &system));
                        (key, n)
                    }
                    None => {
                        // No statement recorded: the summary or operation and collection.
                        without_statement += 1;
                        let summary = text(span, &["db.query.summary"]).unwrap_or_else(|| {
                            format!(
                                "{} {}",
                                text(span, &["db.operation.name", "db.operation"])
                                    .unwrap_or_else(|| span.name.clone()),
                                text(
                                    span,
                                    &[
                                        "db.collection.name",
                                        "db.sql.table",
                                        "db.mongodb.collection"
                                    ]
                                )
                                .unwrap_or_default()
                            )
                            .trim()
                            .to_string()
                        });
                        // Keys and ids in span names (`GET cart:42`) as `?`.
                        let summary = sql::tokens(&summary).template;
                        let key = (system.clone(), format!("\u{0}{summary}"));
                        let n = (!statements.contains_key(&key)).then(|| Normalised {
                            template: summary.clone(),
                            parsed: false,
                            operation: summary
                                .split_whitespace()
                                .next()
                                .unwrap_or("")
                                .to_ascii_uppercase(),
                            tables: Vec::new(),
                            filter_columns: BTreeMap::new(),
                        });
                        (key, n)
                    }
                };
                let id = match (statements.get(&key), normalised) {
                    (Some(&id), _) => id,
                    (None, Some(n)) => {
                        let tkey = (system.clone(), n.template.clone());
                        let id = match template_ids.get(&tkey) {
                            Some(&id) => id,
                            None if templates.len() >= options.max_templates => {
                                too_many_templates = true;
                                return true;
                            }
                            None => {
                                templates.push((
                                    n.template.clone(),
                                    TemplateStats {
                                        system: system.clone(),
                                        operation: n.operation.clone(),
                                        tables: n.tables.clone(),
                                        filter_columns: n.filter_columns.clone(),
                                        parsed: n.parsed,
                                        ..Default::default()
                                    },
                                ));
                                let id = (templates.len() - 1) as u32;
                                template_ids.insert(tkey, id);
                                id
                            }
                        };
                        if statements.len() < options.max_templates * 16 {
                            statements.insert(key, id);
                        }
                        id
                    }
                    (None, None) => return true,
                };
                templates[id as usize]
                    .1
                    .add(ms, span.trace_id, &span.service);
                endpoint_of.push((id as usize, true, span.trace_id, span.parent_span_id));
                db_calls.push(Call::of(span, id));
            } else if let Some(method) = text(span, &["http.request.method", "http.method"]) {
                let Some(url) = url_template(span) else {
                    return true;
                };
                let key = format!("{method} {url}");
                let id = match http_ids.get(&key) {
                    Some(&id) => id,
                    None if http_templates.len() >= options.max_templates => {
                        too_many_templates = true;
                        return true;
                    }
                    None => {
                        http_templates.push((
                            key.clone(),
                            TemplateStats {
                                system: "http".into(),
                                operation: method,
                                ..Default::default()
                            },
                        ));
                        let id = (http_templates.len() - 1) as u32;
                        http_ids.insert(key, id);
                        id
                    }
                };
                http_templates[id as usize]
                    .1
                    .add(ms, span.trace_id, &span.service);
                endpoint_of.push((id as usize, false, span.trace_id, span.parent_span_id));
                http_calls.push(Call::of(span, id));
            }
            true
        })
        .map_err(|e| e.to_string())?;

    // Endpoints: the nearest server span above each call (bounded walk).
    for (id, is_db, trace, mut parent) in endpoint_of {
        let mut endpoint = None;
        for _ in 0..64 {
            let Some(p) = parent else { break };
            let Some(&(up, kind, name)) = parents.get(&(trace, p)) else {
                break;
            };
            if kind == KIND_SERVER {
                endpoint = Some(name);
                break;
            }
            parent = up;
        }
        if let Some(name) = endpoint {
            let stats = if is_db {
                &mut templates[id].1
            } else {
                &mut http_templates[id].1
            };
            *stats
                .endpoints
                .entry(names[name as usize].clone())
                .or_default() += 1;
        }
    }

    let hours = ((request.end_ns - request.start_ns).max(1) as f64 / 3.6e12).max(1e-9);
    let db_total_ms: f64 = templates
        .iter()
        .map(|(_, s)| s.durations_ms.iter().sum::<f64>())
        .sum();
    let trace_hex = |t: &TraceId| hex(t);

    // Per-template figures.
    let mut template_rows = Vec::new();
    let mut findings = Vec::new();
    for (template, stats) in templates.iter_mut() {
        stats.durations_ms.sort_by(f64::total_cmp);
        let d = &stats.durations_ms;
        let total: f64 = d.iter().sum();
        let calls = d.len();
        let p95 = percentile(d, 0.95);
        let examples: Vec<String> = stats.slowest.iter().map(|(_, t)| trace_hex(t)).collect();
        let mut endpoints: Vec<(&String, &u64)> = stats.endpoints.iter().collect();
        endpoints.sort_by(|a, b| b.1.cmp(a.1));
        template_rows.push(json!({
            "template": template,
            "system": stats.system,
            "operation": stats.operation,
            "tables": stats.tables,
            "parsed": stats.parsed,
            "calls": calls,
            "total_ms": total,
            "mean_ms": total / calls.max(1) as f64,
            "p50_ms": percentile(d, 0.5),
            "p95_ms": p95,
            "p99_ms": percentile(d, 0.99),
            "share_of_db_time": if db_total_ms > 0.0 { total / db_total_ms } else { 0.0 },
            "calls_per_trace": calls as f64 / stats.traces.len().max(1) as f64,
            "services": stats.services,
            "endpoints": endpoints.iter().take(10).map(|(e, n)| json!({"endpoint": e, "calls": n})).collect::<Vec<_>>(),
            "example_trace_ids": examples,
        }));
        if p95 >= options.slow_query_ms {
            findings.push(json!({
                "kind": "slow_query",
                "template": template,
                "system": stats.system,
                "calls": calls,
                "p95_ms": p95,
                "time_per_hour_seconds": total / 1000.0 / hours,
                "example_trace_ids": examples,
                "advice": format!("p95 {:.1} ms at or above the {} ms slow-query threshold; look at its plan (EXPLAIN) and the index candidates", p95, options.slow_query_ms),
            }));
            if matches!(stats.operation.as_str(), "SELECT" | "UPDATE" | "DELETE") {
                for (table, columns) in &stats.filter_columns {
                    let columns: Vec<String> = columns.iter().take(3).cloned().collect();
                    if columns.is_empty() {
                        continue;
                    }
                    findings.push(json!({
                        "kind": "index_candidate",
                        "template": template,
                        "system": stats.system,
                        "table": table,
                        "columns": columns,
                        "statement": sql::create_index(&stats.system, table, &columns),
                        "time_per_hour_seconds": total / 1000.0 / hours,
                        "example_trace_ids": examples,
                        "advice": "from the query's shape (columns compared with values, joined and sorted on), not from the database's planner: check with EXPLAIN that it is used, and that no existing index already covers it",
                    }));
                }
            }
        }
    }
    template_rows.sort_by(|a, b| {
        b["total_ms"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["total_ms"].as_f64().unwrap_or(0.0))
    });
    template_rows.truncate(200);

    // Consecutive independent reads: under one parent, a run of at least
    // two SELECTs of different templates, each starting after the previous
    // ended (as Sentry's consecutive-DB-queries detector): run together,
    // they would take about as long as the longest. Whether one needs the
    // other's result the spans cannot say; the advice says so.
    {
        let mut by_parent: Vec<&Call> = db_calls.iter().filter(|c| c.parent.is_some()).collect();
        by_parent.sort_by_key(|c| (c.trace, c.parent, c.start));
        // key: the sorted templates of the run → (occurrences, ms, saving, examples)
        let mut per: BTreeMap<Vec<u32>, (u64, f64, f64, Vec<TraceId>)> = BTreeMap::new();
        let is_read = |c: &Call| {
            matches!(
                templates[c.template as usize].1.operation.as_str(),
                "SELECT" | "WITH"
            )
        };
        let flush = |run: &[&Call], per: &mut BTreeMap<Vec<u32>, (u64, f64, f64, Vec<TraceId>)>| {
            let mut ids: Vec<u32> = run.iter().map(|c| c.template).collect();
            ids.sort_unstable();
            ids.dedup();
            if run.len() < 2 || ids.len() < 2 {
                return;
            }
            let durations: Vec<f64> = run.iter().map(|c| (c.end - c.start) as f64 / 1e6).collect();
            let total: f64 = durations.iter().sum();
            let saving = total - durations.iter().copied().fold(0.0, f64::max);
            if saving < options.n_plus_one_min_total_ms {
                return;
            }
            let e = per.entry(ids).or_default();
            e.0 += 1;
            e.1 += total;
            e.2 += saving;
            if e.3.len() < EXAMPLES && !e.3.contains(&run[0].trace) {
                e.3.push(run[0].trace);
            }
        };
        let mut run: Vec<&Call> = Vec::new();
        for c in by_parent {
            let continues = run.last().is_some_and(|p| {
                p.trace == c.trace
                    && p.parent == c.parent
                    && c.start >= p.end
                    && p.template != c.template
            });
            if !continues {
                flush(&run, &mut per);
                run.clear();
            }
            if is_read(c) {
                run.push(c);
            } else {
                flush(&run, &mut per);
                run.clear();
            }
        }
        flush(&run, &mut per);
        for (ids, (occurrences, ms, saving, examples)) in per {
            let names: Vec<&str> = ids
                .iter()
                .map(|i| templates[*i as usize].0.as_str())
                .collect();
            findings.push(json!({
                "kind": "consecutive_queries",
                "template": names.join(" ; "),
                "templates": names,
                "system": templates[ids[0] as usize].1.system,
                "occurrences": occurrences,
                "queries_per_occurrence": ids.len(),
                "time_per_occurrence_ms": ms / occurrences as f64,
                "time_per_hour_seconds": ms / 1000.0 / hours,
                "saving_per_hour_seconds": saving / 1000.0 / hours,
                "example_trace_ids": examples.iter().map(trace_hex).collect::<Vec<_>>(),
                "advice": "reads of different templates one after the other under one parent: if neither needs the other's result, run them concurrently (the spans cannot tell whether they depend on each other)",
            }));
        }
    }

    // N+1: repeated sequential calls of one template under one parent.
    for (calls, stats, kind) in [
        (&mut db_calls, &templates, "n_plus_one_query"),
        (&mut http_calls, &http_templates, "n_plus_one_http"),
    ] {
        calls.sort_by(|a, b| {
            (a.trace, a.parent, a.template, a.start).cmp(&(b.trace, b.parent, b.template, b.start))
        });
        // Per template: occurrences, calls in them, time, saving, examples.
        let mut per: BTreeMap<u32, (u64, u64, f64, f64, Vec<TraceId>)> = BTreeMap::new();
        let mut i = 0;
        while i < calls.len() {
            let mut j = i + 1;
            while j < calls.len()
                && calls[j].trace == calls[i].trace
                && calls[j].parent == calls[i].parent
                && calls[j].template == calls[i].template
            {
                j += 1;
            }
            let group = &calls[i..j];
            // The longest run of calls each starting after the previous ended.
            let (mut run, mut best, mut run_ms, mut best_ms, mut longest) =
                (1usize, 1usize, 0.0f64, 0.0f64, 0.0f64);
            if let Some(first) = group.first() {
                run_ms = (first.end - first.start) as f64 / 1e6;
                best_ms = run_ms;
                longest = run_ms;
            }
            for w in group.windows(2) {
                let ms = (w[1].end - w[1].start) as f64 / 1e6;
                longest = longest.max(ms);
                if w[1].start >= w[0].end && w[1].span != w[0].span {
                    run += 1;
                    run_ms += ms;
                } else {
                    run = 1;
                    run_ms = ms;
                }
                if run > best {
                    best = run;
                    best_ms = run_ms;
                }
            }
            if best >= options.n_plus_one_min_count && best_ms >= options.n_plus_one_min_total_ms {
                let e = per.entry(group[0].template).or_default();
                e.0 += 1;
                e.1 += best as u64;
                e.2 += best_ms;
                // Batched into one call, about the longest one remains.
                e.3 += (best_ms - longest).max(0.0);
                if e.4.len() < EXAMPLES && !e.4.contains(&group[0].trace) {
                    e.4.push(group[0].trace);
                }
            }
            i = j;
        }
        for (id, (occurrences, n, ms, saving, examples)) in per {
            let (template, stats) = &stats[id as usize];
            findings.push(json!({
                "kind": kind,
                "template": template,
                "system": stats.system,
                "occurrences": occurrences,
                "calls_per_occurrence": n as f64 / occurrences as f64,
                "time_per_occurrence_ms": ms / occurrences as f64,
                "time_per_hour_seconds": ms / 1000.0 / hours,
                "saving_per_hour_seconds": saving / 1000.0 / hours,
                "example_trace_ids": examples.iter().map(trace_hex).collect::<Vec<_>>(),
                "advice": if kind == "n_plus_one_query" {
                    format!("{:.0} calls one after the other under one parent span: fetch them in one query (a JOIN or WHERE … IN (…)) or eager-load them", n as f64 / occurrences as f64)
                } else {
                    format!("{:.0} calls of one endpoint one after the other: use a batch endpoint or make them concurrently", n as f64 / occurrences as f64)
                },
            }));
        }
    }
    findings.sort_by(|a, b| {
        let key = |v: &Value| {
            v["saving_per_hour_seconds"]
                .as_f64()
                .or(v["time_per_hour_seconds"].as_f64())
                .unwrap_or(0.0)
        };
        key(b).total_cmp(&key(a))
    });

    let mut notes = Vec::new();
    if truncated {
        notes.push(format!("stopped after {} spans (recommendations.db_max_spans): narrow the window or the service", options.max_spans));
    }
    if too_many_templates {
        notes.push(format!(
            "more than {} distinct templates: the rest were not counted",
            options.max_templates
        ));
    }
    if without_statement > 0 {
        notes.push(format!("{without_statement} database spans carried no statement (db.query.text/db.statement): grouped by operation and collection, no index advice for them"));
    }
    let http_rows: Vec<Value> = http_templates
        .iter_mut()
        .map(|(t, s)| {
            s.durations_ms.sort_by(f64::total_cmp);
            let total: f64 = s.durations_ms.iter().sum();
            json!({
                "template": t,
                "calls": s.durations_ms.len(),
                "total_ms": total,
                "p95_ms": percentile(&s.durations_ms, 0.95),
                "calls_per_trace": s.durations_ms.len() as f64 / s.traces.len().max(1) as f64,
                "services": s.services,
                "example_trace_ids": s.slowest.iter().map(|(_, t)| trace_hex(t)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "window": {"start": request.start_ns as f64 / 1e9, "end": request.end_ns as f64 / 1e9},
        "spans_scanned": scanned.min(options.max_spans),
        "db_calls": db_calls.len(),
        "db_time_seconds": db_total_ms / 1000.0,
        "http_calls": http_calls.len(),
        "templates": template_rows,
        "http_templates": http_rows,
        "findings": findings,
        "thresholds": {
            "slow_query_ms": options.slow_query_ms,
            "n_plus_one_min_count": options.n_plus_one_min_count,
            "n_plus_one_min_total_ms": options.n_plus_one_min_total_ms,
        },
        "duration_seconds": started.elapsed().as_secs_f64(),
        "notes": notes,
    }))
}
