//! The browser dashboard, served by Oxeye itself: server-rendered askama
//! pages (`web/templates/`) with a little JavaScript and vendored uPlot
//! (`web/static/`, embedded in the binary). Pages read the stores through
//! the same query code as the APIs, and every list is bounded (limits and
//! paging); nothing loads unbounded results into the browser.

mod alerts;
mod dashboards;
mod database;
mod recommendations;

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::api::AppState;
use crate::model::log::format_timestamp_ms;
use crate::model::span::{hex, parse_trace_id, Span, KIND_NAMES, STATUS_ERROR};
use crate::now_ms;
use crate::query::logs::ast::LogQuery;
use crate::query::logs::lucene;
use crate::query::logs::search::{self, SearchLimits, SearchRequest, SortSpec, TrackTotal};
use crate::storage::traces::TraceQuery;

const RANGES: [&str; 5] = ["15m", "1h", "6h", "24h", "7d"];
/// Log records per page.
const LOG_PAGE: usize = 100;
/// Traces per search.
const TRACE_PAGE: usize = 20;
/// Spans drawn in one waterfall.
const MAX_WATERFALL_SPANS: usize = 2000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/ui/metrics", get(metrics))
        .route("/ui/logs", get(logs))
        .route("/ui/traces", get(traces))
        .route("/ui/traces/{trace_id}", get(trace))
        .route("/ui/services", get(services))
        .route("/ui/sql", get(sql_page))
        .route("/ui/dashboards", get(dashboards::list))
        .route("/ui/d/{uid}", get(dashboards::view))
        .route("/ui/status", get(status))
        .route("/ui/alerts", get(alerts::alerts))
        .route("/ui/rules", get(alerts::rules_page))
        .route("/ui/recommendations", get(recommendations::page))
        .route("/ui/recommendations/database", get(database::page))
        .route("/static/{*path}", get(static_file))
}

fn range_ms(range: &str) -> i64 {
    match range {
        "15m" => 900_000,
        "6h" => 21_600_000,
        "24h" => 86_400_000,
        "7d" => 604_800_000,
        _ => 3_600_000,
    }
}

fn pick_range(params: &HashMap<String, String>) -> String {
    params
        .get("range")
        .filter(|r| RANGES.contains(&r.as_str()))
        .cloned()
        .unwrap_or_else(|| "1h".into())
}

fn render(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template error: {err}"),
        )
            .into_response(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("dashboard worker panicked")
}

pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn human_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

fn human_duration_ns(ns: i64) -> String {
    let us = ns as f64 / 1e3;
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1e6 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

// ---- overview ----

struct Rate {
    signal: &'static str,
    source: &'static str,
    rate: String,
    total: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: &'static str,
    cards: Vec<(String, String)>,
    window: String,
    rates: Vec<Rate>,
    storage: Vec<(String, String, String, String)>,
    errors: Vec<(String, String, String)>,
}

async fn overview(State(state): State<AppState>) -> Response {
    state.metrics.sample_rates();
    let (seconds, rates) = state.metrics.ingest_rates();
    let st = state.clone();
    let (summary, logs_bytes, logs_wal, indices, traces, traces_wal) = blocking(move || {
        (
            st.store.summary(),
            st.logs.store.disk_bytes(),
            st.logs.store.wal_bytes(),
            st.logs.store.catalog.read().indices.len(),
            st.traces.store.summary(),
            st.traces.store.wal_bytes(),
        )
    })
    .await;
    let services = state.traces.store.services().len();
    let per_signal = |signal: &str| -> f64 {
        rates
            .iter()
            .filter(|r| r.signal == signal)
            .map(|r| r.per_second)
            .sum()
    };
    let cards = vec![
        ("Samples/s".to_owned(), human_count(per_signal("samples"))),
        ("Spans/s".to_owned(), human_count(per_signal("spans"))),
        (
            "Log records/s".to_owned(),
            human_count(per_signal("log records")),
        ),
        (
            "Active series".to_owned(),
            human_count(summary.head_series as f64),
        ),
        ("Services".to_owned(), services.to_string()),
        ("Log indices".to_owned(), indices.to_string()),
    ];
    let storage = vec![
        (
            "Metrics".to_owned(),
            human_bytes(summary.block_bytes + summary.index_bytes),
            human_bytes(summary.wal_bytes),
            format!(
                "{} series, {} blocks, {} samples in the head",
                summary.series, summary.blocks, summary.head_samples
            ),
        ),
        (
            "Logs".to_owned(),
            human_bytes(logs_bytes),
            human_bytes(logs_wal),
            format!("{indices} indices"),
        ),
        (
            "Traces".to_owned(),
            human_bytes(traces.2),
            human_bytes(traces_wal),
            format!("{} blocks, {} spans in the head", traces.1, traces.0),
        ),
    ];
    let errors = state
        .metrics
        .recent_errors()
        .into_iter()
        .rev()
        .map(|e| {
            (
                format_timestamp_ms((e.time * 1e9) as i64),
                e.source,
                e.message,
            )
        })
        .collect();
    let rates = rates
        .into_iter()
        .filter(|r| r.total > 0)
        .map(|r| Rate {
            signal: r.signal,
            source: r.source,
            rate: human_count(r.per_second),
            total: human_count(r.total as f64),
        })
        .collect();
    render(OverviewPage {
        nav: "overview",
        cards,
        window: format!("{seconds:.0}s"),
        rates,
        storage,
        errors,
    })
}

// ---- metrics ----

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage {
    nav: &'static str,
    query: String,
    range: String,
    ranges: Vec<String>,
}

async fn metrics(Query(params): Query<HashMap<String, String>>) -> Response {
    render(MetricsPage {
        nav: "metrics",
        query: params.get("query").cloned().unwrap_or_default(),
        range: pick_range(&params),
        ranges: RANGES.iter().map(|r| r.to_string()).collect(),
    })
}

// ---- SQL ----

#[derive(Template)]
#[template(path = "sql.html")]
struct SqlPage {
    nav: &'static str,
    query: String,
    max_rows: usize,
    views: Vec<String>,
    postgres: String,
}

/// The editor; the query runs in the browser through `POST /api/v1/sql`.
async fn sql_page(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    render(SqlPage {
        nav: "sql",
        query: params.get("query").cloned().unwrap_or_default(),
        max_rows: state.config.sql.max_rows,
        views: state.sql.catalog.views.keys().cloned().collect(),
        postgres: state.config.server.postgres.to_string(),
    })
}

// ---- logs ----

struct LogRow {
    time: String,
    severity: String,
    severity_class: &'static str,
    index: String,
    message: String,
    fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    nav: &'static str,
    query: String,
    range: String,
    ranges: Vec<String>,
    error: Option<String>,
    total: usize,
    records: Vec<LogRow>,
    volume: String,
    older: Option<String>,
}

fn severity_class(severity: &str) -> &'static str {
    let s = severity.to_ascii_lowercase();
    if s.starts_with("err") || s.starts_with("fatal") || s.starts_with("crit") {
        "error"
    } else if s.starts_with("warn") {
        "warn"
    } else if s.starts_with("debug") || s.starts_with("trace") {
        "debug"
    } else {
        "info"
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Bars of record counts over the range, as inline SVG.
fn volume_svg(buckets: &[(i64, u64)]) -> String {
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let n = buckets.len().max(1);
    let width = 1000.0 / n as f64;
    let mut svg = String::from(
        "<svg viewBox=\"0 0 1000 70\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"record volume\" id=\"volume\">",
    );
    for (i, (t, count)) in buckets.iter().enumerate() {
        let h = 66.0 * *count as f64 / max as f64;
        svg.push_str(&format!(
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\"><title>{} {}</title></rect>",
            i as f64 * width,
            70.0 - h,
            (width - 1.0).max(0.5),
            h,
            format_timestamp_ms(t.saturating_mul(1_000_000)),
            count
        ));
    }
    svg.push_str("</svg>");
    svg
}

async fn logs(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let query_text = params.get("query").cloned().unwrap_or_default();
    let range = pick_range(&params);
    let now = now_ms();
    let end = params
        .get("end")
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(now);
    let start = now - range_ms(&range);
    let mut page = LogsPage {
        nav: "logs",
        query: query_text.clone(),
        range: range.clone(),
        ranges: RANGES.iter().map(|r| r.to_string()).collect(),
        error: None,
        total: 0,
        records: Vec::new(),
        volume: String::new(),
        older: None,
    };
    let parsed = match lucene::parse(
        if query_text.is_empty() {
            "*"
        } else {
            &query_text
        },
        &[],
        false,
    ) {
        Ok(q) => q,
        Err(err) => {
            page.error = Some(err.reason);
            return render(page);
        }
    };
    let time = |lo: i64, hi: i64| LogQuery::Range {
        field: "@timestamp".into(),
        lower: Some((json!(lo), true)),
        upper: Some((json!(hi), true)),
        format: Some("epoch_millis".into()),
    };
    let mut req = SearchRequest::parse(None, &HashMap::new()).expect("empty request parses");
    req.query = LogQuery::and(vec![parsed.clone(), time(start, end)]);
    req.size = LOG_PAGE;
    req.sort = vec![SortSpec {
        field: "@timestamp".into(),
        desc: true,
        missing_first: false,
    }];
    req.explicit_sort = true;
    req.track_total_hits = TrackTotal::Exact;
    let interval_ms = (range_ms(&range) / 60).max(1000);
    let mut volume_req = SearchRequest::parse(None, &HashMap::new()).expect("empty request parses");
    volume_req.query = LogQuery::and(vec![parsed, time(start, now)]);
    volume_req.size = 0;
    volume_req.aggs = Some(json!({"v": {"date_histogram": {"field": "@timestamp",
        "fixed_interval": format!("{}ms", interval_ms), "min_doc_count": 0,
        "extended_bounds": {"min": start, "max": now}}}}));
    let limits = SearchLimits {
        max_result_window: state.config.logs.max_result_window,
        max_buckets: state.config.logs.max_buckets,
    };
    let store = state.logs.store.clone();
    let result = blocking(move || {
        let indices = store.catalog.read().resolve("*");
        let hits = search::search(&store, &indices, &req, limits, now)?;
        let volume = search::search(&store, &indices, &volume_req, limits, now)?;
        Ok::<_, crate::query::logs::QueryError>((hits, volume))
    })
    .await;
    let (hits, volume) = match result {
        Ok(r) => r,
        Err(err) => {
            page.error = Some(err.reason);
            return render(page);
        }
    };
    page.total = hits["hits"]["total"]["value"].as_u64().unwrap_or(0) as usize;
    let buckets: Vec<(i64, u64)> = volume["aggregations"]["v"]["buckets"]
        .as_array()
        .map(|b| {
            b.iter()
                .map(|x| {
                    (
                        x["key"].as_i64().unwrap_or(0),
                        x["doc_count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    page.volume = volume_svg(&buckets);
    let mut last_ts = None;
    for hit in hits["hits"]["hits"].as_array().into_iter().flatten() {
        let source = &hit["_source"];
        let ts = hit["sort"][0].as_i64().unwrap_or(0);
        last_ts = Some(ts);
        let message = match (&source["message"], &source["body"]) {
            (Value::String(m), _) | (_, Value::String(m)) => m.clone(),
            _ => source.to_string(),
        };
        let severity = [
            &source["severity_text"],
            &source["log"]["level"],
            &source["level"],
        ]
        .iter()
        .find_map(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
        let mut fields = vec![
            (
                "_index".to_owned(),
                hit["_index"].as_str().unwrap_or("").to_owned(),
            ),
            (
                "_id".to_owned(),
                hit["_id"].as_str().unwrap_or("").to_owned(),
            ),
        ];
        flatten("", source, &mut fields);
        page.records.push(LogRow {
            time: format_timestamp_ms(ts.saturating_mul(1_000_000)),
            severity_class: severity_class(&severity),
            severity,
            index: hit["_index"].as_str().unwrap_or("").to_owned(),
            message: message.chars().take(400).collect(),
            fields,
        });
    }
    if page.total > page.records.len() {
        if let Some(ts) = last_ts {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("query", &query_text)
                .append_pair("range", &range)
                .append_pair("end", &(ts - 1).to_string())
                .finish();
            page.older = Some(format!("/ui/logs?{encoded}"));
        }
    }
    render(page)
}

// ---- traces ----

struct TraceRow {
    id: String,
    short_id: String,
    root: String,
    spans: usize,
    errors: usize,
    started: String,
    duration: String,
    width: f64,
}

#[derive(Template)]
#[template(path = "traces.html")]
struct TracesPage {
    nav: &'static str,
    services: Vec<String>,
    operations: Vec<String>,
    service: String,
    operation: String,
    tags: String,
    min_duration: String,
    max_duration: String,
    range: String,
    ranges: Vec<String>,
    error: Option<String>,
    results: Vec<TraceRow>,
}

async fn traces(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let store = state.traces.store.clone();
    let service = param("service");
    let range = pick_range(&params);
    let mut operations: Vec<String> = store
        .operations(&service)
        .into_iter()
        .map(|(n, _)| n)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    operations.truncate(500);
    let mut page = TracesPage {
        nav: "traces",
        services: store.services(),
        operations,
        operation: param("operation"),
        tags: param("tags"),
        min_duration: param("minDuration"),
        max_duration: param("maxDuration"),
        range: range.clone(),
        ranges: RANGES.iter().map(|r| r.to_string()).collect(),
        error: None,
        results: Vec::new(),
        service,
    };
    if page.service.is_empty() {
        return render(page);
    }
    let duration = |text: &str, name: &str| -> Result<Option<i64>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        crate::api::jaeger::parse_go_duration(text)
            .map(Some)
            .ok_or_else(|| format!("{name} {text:?} is not a duration such as 100ms or 1.5s"))
    };
    let mut tags = Vec::new();
    for pair in page.tags.split_whitespace() {
        match pair.split_once('=') {
            Some((k, v)) => tags.push((k.to_owned(), v.to_owned())),
            None => {
                page.error = Some(format!("tag {pair:?} should be key=value"));
                return render(page);
            }
        }
    }
    let (min, max) = match (
        duration(&page.min_duration, "min"),
        duration(&page.max_duration, "max"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            page.error = Some(e);
            return render(page);
        }
    };
    let now = now_ms();
    let query = TraceQuery {
        service: Some(page.service.clone()),
        operation: Some(page.operation.clone()).filter(|o| !o.is_empty()),
        span_kind: None,
        tags,
        min_duration_ns: min,
        max_duration_ns: max,
        start_ns: (now - range_ms(&range)).saturating_mul(1_000_000),
        end_ns: now.saturating_mul(1_000_000),
        limit: TRACE_PAGE,
    };
    let result = blocking(move || store.find_and_assemble(&query).map_err(|e| e.to_string())).await;
    let traces = match result {
        Ok(t) => t,
        Err(e) => {
            page.error = Some(e);
            return render(page);
        }
    };
    let longest = traces
        .iter()
        .map(|t| trace_bounds(t).1 - trace_bounds(t).0)
        .max()
        .unwrap_or(1)
        .max(1);
    for spans in traces.iter().filter(|t| !t.is_empty()) {
        let (start, end) = trace_bounds(spans);
        let root = spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .unwrap_or(&spans[0]);
        let id = hex(&spans[0].trace_id);
        page.results.push(TraceRow {
            short_id: id[..16].to_owned(),
            id,
            root: format!("{}: {}", root.service, root.name),
            spans: spans.len(),
            errors: spans
                .iter()
                .filter(|s| s.status_code == STATUS_ERROR)
                .count(),
            started: format_timestamp_ms(start),
            duration: human_duration_ns(end - start),
            width: 100.0 * (end - start) as f64 / longest as f64,
        });
    }
    render(page)
}

fn trace_bounds(spans: &[Span]) -> (i64, i64) {
    let start = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_ns).max().unwrap_or(start);
    (start, end)
}

struct SpanRow {
    depth: usize,
    service: String,
    name: String,
    span_id: String,
    kind: &'static str,
    status: String,
    error: bool,
    offset: f64,
    width: f64,
    duration: String,
    attributes: Vec<(String, String)>,
    events: Vec<(String, String)>,
    /// The service's RED dashboard (span metrics), with the service chosen.
    red_url: String,
}

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    nav: &'static str,
    trace_id: String,
    short_id: String,
    services: String,
    duration: String,
    spans: Vec<SpanRow>,
}

async fn trace(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("malformed trace id {id:?}"),
        )
            .into_response();
    };
    let store = state.traces.store.clone();
    let spans = blocking(move || store.trace(&trace_id))
        .await
        .unwrap_or_default();
    let (start, end) = trace_bounds(&spans);
    let total = (end - start).max(1) as f64;
    // Depth-first order from the roots; spans whose parent is missing are roots.
    let ids: std::collections::HashSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<[u8; 8], Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_span_id.filter(|p| ids.contains(p)) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut order: Vec<(usize, usize)> = Vec::new();
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if order.len() >= MAX_WATERFALL_SPANS {
            break;
        }
        order.push((i, depth));
        if let Some(kids) = children.get(&spans[i].span_id) {
            for &k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
    let rows = order
        .into_iter()
        .map(|(i, depth)| {
            let s = &spans[i];
            let mut attributes: Vec<(String, String)> = s
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.as_text()))
                .collect();
            attributes.extend(
                s.resource
                    .iter()
                    .map(|(k, v)| (format!("resource.{k}"), v.as_text())),
            );
            let events = s
                .events
                .iter()
                .map(|e| {
                    let attrs: Vec<String> = e
                        .attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_text()))
                        .collect();
                    (
                        human_duration_ns(e.time_ns - s.start_ns),
                        format!("{} {}", e.name, attrs.join(" ")),
                    )
                })
                .collect();
            SpanRow {
                depth,
                service: s.service.clone(),
                name: s.name.clone(),
                span_id: hex(&s.span_id),
                kind: KIND_NAMES.get(s.kind as usize).copied().unwrap_or(""),
                status: match s.status_code {
                    1 => "OK".to_owned(),
                    STATUS_ERROR => format!("ERROR {}", s.status_message),
                    _ => "UNSET".to_owned(),
                },
                error: s.status_code == STATUS_ERROR,
                offset: 100.0 * (s.start_ns - start) as f64 / total,
                width: (100.0 * s.duration_ns() as f64 / total).max(0.3),
                duration: human_duration_ns(s.duration_ns()),
                attributes,
                events,
                red_url: format!(
                    "/ui/d/oxeye-red?var-service={}",
                    form_urlencoded::byte_serialize(s.service.as_bytes()).collect::<String>()
                ),
            }
        })
        .collect();
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    let trace_id = hex(&trace_id);
    render(TracePage {
        nav: "traces",
        short_id: trace_id[..16].to_owned(),
        trace_id,
        services: services.into_iter().collect::<Vec<_>>().join(", "),
        duration: human_duration_ns(end - start),
        spans: rows,
    })
}

// ---- service map ----

struct EdgeRow {
    parent: String,
    child: String,
    calls: u64,
    error_rate: String,
    p50: String,
    p95: String,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    nav: &'static str,
    range: String,
    ranges: Vec<String>,
    edges: Vec<EdgeRow>,
    svg: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn services(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let range = pick_range(&params);
    let now = now_ms();
    let start_ns = (now - range_ms(&range)).saturating_mul(1_000_000);
    let store = state.traces.store.clone();
    let deps = blocking(move || store.dependencies(start_ns, now.saturating_mul(1_000_000)))
        .await
        .unwrap_or_default();
    let mut nodes: Vec<&str> = deps
        .iter()
        .flat_map(|d| [d.parent.as_str(), d.child.as_str()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    nodes.truncate(60);
    let (cx, cy, radius) = (450.0, 300.0, 220.0);
    let position = |name: &str| -> Option<(f64, f64)> {
        let i = nodes.iter().position(|n| *n == name)?;
        let angle =
            std::f64::consts::TAU * i as f64 / nodes.len() as f64 - std::f64::consts::FRAC_PI_2;
        Some((cx + radius * angle.cos(), cy + radius * angle.sin()))
    };
    let mut svg = String::from(
        "<svg viewBox=\"0 0 900 600\" id=\"service-map\" role=\"img\" aria-label=\"service map\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#8a94a6\"/></marker></defs>",
    );
    let mut edges = Vec::new();
    for d in &deps {
        let rate = d.error_count as f64 / d.call_count.max(1) as f64;
        let row = EdgeRow {
            parent: d.parent.clone(),
            child: d.child.clone(),
            calls: d.call_count,
            error_rate: format!("{:.1}%", rate * 100.0),
            p50: human_duration_ns(d.p50_ns),
            p95: human_duration_ns(d.p95_ns),
        };
        if let (Some((x1, y1)), Some((x2, y2))) = (position(&d.parent), position(&d.child)) {
            // Stop short of the target circle.
            let (dx, dy) = (x2 - x1, y2 - y1);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let (ex, ey) = (x2 - dx / len * 44.0, y2 - dy / len * 44.0);
            let (sx, sy) = (x1 + dx / len * 44.0, y1 + dy / len * 44.0);
            svg.push_str(&format!(
                "<g class=\"edge{}\"><line x1=\"{sx:.1}\" y1=\"{sy:.1}\" x2=\"{ex:.1}\" y2=\"{ey:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{} calls · {} err · p95 {}</text></g>",
                if rate > 0.0 { " bad" } else { "" },
                (sx + ex) / 2.0,
                (sy + ey) / 2.0 - 4.0,
                row.calls,
                row.error_rate,
                row.p95
            ));
        }
        edges.push(row);
    }
    for name in &nodes {
        if let Some((x, y)) = position(name) {
            svg.push_str(&format!(
                "<g class=\"node\"><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"40\"/><text x=\"{x:.1}\" y=\"{:.1}\">{}</text></g>",
                y + 4.0,
                escape(name)
            ));
        }
    }
    svg.push_str("</svg>");
    render(ServicesPage {
        nav: "services",
        range,
        ranges: RANGES.iter().map(|r| r.to_string()).collect(),
        edges,
        svg,
    })
}

// ---- status ----

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    nav: &'static str,
    build: Vec<(String, String)>,
    storage: Vec<(String, String)>,
    forward: Vec<ForwardRow>,
    cache: Vec<(String, String)>,
    limits: Vec<(String, String)>,
    config: String,
}

/// One `[forward]` destination on the Status page.
struct ForwardRow {
    name: String,
    kind: &'static str,
    url: String,
    sent: String,
    dropped: String,
    backlog: String,
    lag: String,
    last_error: String,
}

fn forward_rows(forwarders: &crate::forward::Forwarders) -> Vec<ForwardRow> {
    use std::sync::atomic::Ordering::Relaxed;
    let list = |counts: Vec<(&'static str, u64)>| {
        if counts.is_empty() {
            return "0".to_owned();
        }
        counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    forwarders
        .destinations
        .iter()
        .map(|d| {
            let skipped = d.dropped_backlog_bytes.load(Relaxed) + d.lost_wal_bytes.load(Relaxed);
            let mut dropped = list(d.dropped_by_reason());
            if skipped > 0 {
                dropped.push_str(&format!(", {} of WAL skipped", human_bytes(skipped)));
            }
            ForwardRow {
                name: d.name.clone(),
                kind: d.kind,
                url: redact(&d.url),
                sent: list(d.sent_by_item()),
                dropped,
                backlog: human_bytes(d.backlog_bytes.load(Relaxed)),
                lag: format!("{:.1} s", d.lag_seconds()),
                last_error: d.last_error().unwrap_or_default(),
            }
        })
        .collect()
}

/// Hide values of keys that look like credentials.
pub fn redact(text: &str) -> String {
    text.lines()
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            let secret = [
                "password",
                "secret",
                "token",
                "api_key",
                "apikey",
                "credential",
                "authorization",
            ]
            .iter()
            .any(|w| lower.contains(w));
            match (secret, line.split_once(':')) {
                (true, Some((key, _))) => format!("{key}: \"<redacted>\","),
                // Credentials in a URL (redis://user:password@host).
                _ => match (line.find("://"), line.rfind('@')) {
                    (Some(scheme), Some(at)) if at > scheme => {
                        format!("{}<redacted>{}", &line[..scheme + 3], &line[at..])
                    }
                    _ => line.to_owned(),
                },
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn status(State(state): State<AppState>) -> Response {
    let st = state.clone();
    let (summary, logs_bytes, logs_wal, traces, traces_wal) = blocking(move || {
        (
            st.store.summary(),
            st.logs.store.disk_bytes(),
            st.logs.store.wal_bytes(),
            st.traces.store.summary(),
            st.traces.store.wal_bytes(),
        )
    })
    .await;
    let c = &state.config;
    let uptime = state.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    let build = vec![
        ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        (
            "uptime".to_owned(),
            format!("{}h {}m {}s", uptime / 3600, uptime / 60 % 60, uptime % 60),
        ),
        (
            "data directory".to_owned(),
            c.storage.data_dir.display().to_string(),
        ),
        (
            "listeners".to_owned(),
            format!(
                "HTTP {}, OTLP/gRPC {}, OTLP/HTTP {}, Elasticsearch {}",
                c.server.listen, c.server.otlp_grpc, c.server.otlp_http, c.server.elasticsearch
            ),
        ),
    ];
    let storage = vec![
        ("series".to_owned(), summary.series.to_string()),
        (
            "head series / samples".to_owned(),
            format!("{} / {}", summary.head_series, summary.head_samples),
        ),
        (
            "metric blocks".to_owned(),
            format!("{} ({})", summary.blocks, human_bytes(summary.block_bytes)),
        ),
        ("series index".to_owned(), human_bytes(summary.index_bytes)),
        ("metrics WAL".to_owned(), human_bytes(summary.wal_bytes)),
        ("log index".to_owned(), human_bytes(logs_bytes)),
        ("logs WAL".to_owned(), human_bytes(logs_wal)),
        (
            "span blocks".to_owned(),
            format!("{} ({})", traces.1, human_bytes(traces.2)),
        ),
        ("trace head spans".to_owned(), traces.0.to_string()),
        ("traces WAL".to_owned(), human_bytes(traces_wal)),
    ];
    let l = &c.limits;
    let limits = vec![
        (
            "limits.max_body_size".to_owned(),
            l.max_body_size.as_usize().to_string(),
        ),
        (
            "limits.max_series_per_request".to_owned(),
            l.max_series_per_request.to_string(),
        ),
        (
            "limits.max_active_series".to_owned(),
            l.max_active_series.to_string(),
        ),
        (
            "query.max_samples".to_owned(),
            c.query.max_samples.to_string(),
        ),
        ("query.timeout".to_owned(), format!("{:?}", c.query.timeout)),
        (
            "query.max_concurrent".to_owned(),
            c.query.max_concurrent.to_string(),
        ),
        (
            "logs.max_result_window".to_owned(),
            c.logs.max_result_window.to_string(),
        ),
        (
            "logs.max_bulk_documents".to_owned(),
            c.logs.max_bulk_documents.to_string(),
        ),
        (
            "traces.max_search_traces".to_owned(),
            c.traces.max_search_traces.to_string(),
        ),
    ];
    let cache = match &state.results_cache {
        Some(cache) => {
            let cache = cache.clone();
            blocking(move || cache.status_rows()).await
        }
        None => vec![(
            "backend".to_owned(),
            "off (cache.enabled = false)".to_owned(),
        )],
    };
    render(StatusPage {
        nav: "status",
        build,
        storage,
        forward: forward_rows(&state.forwarders),
        cache,
        limits,
        config: redact(&format!("{:#?}", state.config)),
    })
}

// ---- static assets (embedded) ----

async fn static_file(Path(path): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match path.as_str() {
        "app.css" => (include_bytes!("../../web/static/app.css"), "text/css"),
        "app.js" => (include_bytes!("../../web/static/app.js"), "text/javascript"),
        "dashboards.js" => (
            include_bytes!("../../web/static/dashboards.js"),
            "text/javascript",
        ),
        "vendor/uplot/uPlot.iife.min.js" => (
            include_bytes!("../../web/static/vendor/uplot/uPlot.iife.min.js"),
            "text/javascript",
        ),
        "vendor/uplot/uPlot.min.css" => (
            include_bytes!("../../web/static/vendor/uplot/uPlot.min.css"),
            "text/css",
        ),
        "vendor/uplot/LICENSE" => (
            include_bytes!("../../web/static/vendor/uplot/LICENSE"),
            "text/plain",
        ),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_duration_ns(1_500_000), "1.5ms");
        assert_eq!(severity_class("ERROR"), "error");
        assert_eq!(severity_class("Warning"), "warn");
        assert!(redact("    api_key: \"abc\",\n    listen: x").contains("<redacted>"));
        let url = redact("    redis_url: \"redis://user:hunter2@127.0.0.1:6379/0\",");
        assert!(
            !url.contains("hunter2") && url.contains("@127.0.0.1:6379/0"),
            "{url}"
        );
        assert!(volume_svg(&[(0, 1), (1, 3)]).contains("<rect"));
    }
}
