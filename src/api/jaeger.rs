//! The Jaeger query APIs on the main listener, for Grafana's Jaeger data
//! source and Jaeger-UI-style clients:
//!
//! - v1 (`/api/services`, `/api/services/{service}/operations`,
//!   `/api/operations`, `/api/traces`, `/api/traces/{id}`,
//!   `/api/dependencies`) with Jaeger's UI model and its envelope
//!   `{"data","total","limit","offset","errors"}`;
//! - `/api/v3` (services, operations, trace by id, find traces, trace
//!   summaries) returning
//!   OTLP/JSON (`{"result":{"resourceSpans":[…]}}`) and
//!   `{"error":{"httpCode","message"}}` on failure.
//!
//! Spans become Jaeger spans the way the OpenTelemetry→Jaeger translator
//! does it: resource attributes are process tags, the span kind becomes
//! `span.kind`, an error status `otel.status_code=ERROR` and `error=true`,
//! events become logs with an `event` field, the parent a `CHILD_OF`
//! reference and links `FOLLOWS_FROM` references.

// Handlers return early with a ready `Response` as the error.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::AppState;
use crate::model::span::{hex, parse_trace_id, AttrValue, Attributes, Span, TraceId, KIND_NAMES};
use crate::now_ns;
use crate::storage::traces::TraceQuery;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{trace_id}", get(get_trace))
        .route("/api/dependencies", get(dependencies))
        .route("/api/v3/services", get(v3_services))
        .route("/api/v3/operations", get(v3_operations))
        .route("/api/v3/traces", get(v3_find_traces))
        .route("/api/v3/traces/{trace_id}", get(v3_get_trace))
        .route("/api/v3/trace-summaries", get(v3_trace_summaries))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Jaeger's v1 envelope around `data`.
fn envelope(data: Value, total: usize) -> Response {
    json_response(
        StatusCode::OK,
        json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null}),
    )
}

/// Jaeger's v1 error envelope.
fn v1_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": status.as_u16(), "msg": message}]}),
    )
}

fn v3_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"error": {"httpCode": status.as_u16(), "message": message}}),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| format!("worker failed: {err}"))
}

// ---- v1 ----

async fn services(State(state): State<AppState>) -> Response {
    let services = state.traces.store.services();
    let total = services.len();
    envelope(json!(services), total)
}

async fn service_operations(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Response {
    let mut names: Vec<String> = state
        .traces
        .store
        .operations(&service)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.dedup();
    let total = names.len();
    envelope(json!(names), total)
}

fn kind_filter(text: Option<&String>) -> Result<Option<u8>, String> {
    match text.map(|s| s.to_ascii_lowercase()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => KIND_NAMES
            .iter()
            .position(|k| *k == s)
            .map(|i| Some(i as u8))
            .ok_or_else(|| format!("unsupported spanKind {s:?}")),
    }
}

async fn operations(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(service) = params.get("service").filter(|s| !s.is_empty()) else {
        return v1_error(StatusCode::BAD_REQUEST, "parameter 'service' is required");
    };
    let kind = match kind_filter(params.get("spanKind")) {
        Ok(k) => k,
        Err(e) => return v1_error(StatusCode::BAD_REQUEST, &e),
    };
    let ops: Vec<Value> = state
        .traces
        .store
        .operations(service)
        .into_iter()
        .filter(|(_, k)| kind.is_none_or(|want| want == *k))
        .map(|(name, k)| json!({"name": name, "spanKind": kind_label(k)}))
        .collect();
    let total = ops.len();
    envelope(json!(ops), total)
}

fn kind_label(kind: u8) -> &'static str {
    match kind {
        0 => "",
        k => KIND_NAMES.get(k as usize).copied().unwrap_or(""),
    }
}

/// A Go duration (`1.5s`, `100ms`, `1m30s`, `250us`, `250µs`, `2h`) in ns.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total as i64)
}

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Jaeger's search parameters.
fn v1_query(params: &[(String, String)], max: usize) -> Result<(TraceQuery, Vec<TraceId>), String> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let mut ids = Vec::new();
    for (k, v) in params {
        if k == "traceID" {
            ids.push(parse_trace_id(v).ok_or_else(|| format!("malformed traceID {v:?}"))?);
        }
    }
    let service = get("service").map(str::to_owned);
    if service.is_none() && ids.is_empty() {
        return Err("parameter 'service' is required".into());
    }
    let micros = |name: &str, default: i64| -> Result<i64, String> {
        match get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .map(|us| us.saturating_mul(1000))
                .map_err(|_| {
                    format!("unable to parse param '{name}': {v:?} is not unix microseconds")
                }),
        }
    };
    let end_ns = micros("end", now_ns())?;
    let start_ns = micros("start", end_ns - 2 * 86_400 * 1_000_000_000)?;
    let duration = |name: &str| -> Result<Option<i64>, String> {
        get(name)
            .map(|v| {
                parse_go_duration(v).ok_or_else(|| {
                    format!("unable to parse param '{name}': {v:?} is not a duration")
                })
            })
            .transpose()
    };
    let min_duration_ns = duration("minDuration")?;
    let max_duration_ns = duration("maxDuration")?;
    if let (Some(min), Some(max)) = (min_duration_ns, max_duration_ns) {
        if max < min {
            return Err("'maxDuration' should be greater than 'minDuration'".into());
        }
    }
    let limit = match get("limit") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("unable to parse param 'limit': {v:?}"))?,
    }
    .clamp(1, max);
    let mut tags = Vec::new();
    if let Some(text) = get("tags") {
        let map: BTreeMap<String, Value> = serde_json::from_str(text)
            .map_err(|err| format!("malformed 'tags' parameter, expecting JSON object: {err}"))?;
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            tags.push((k, v));
        }
    }
    for (k, v) in params {
        if k == "tag" {
            let (key, value) = v
                .split_once(':')
                .ok_or_else(|| format!("malformed 'tag' parameter {v:?}, expecting key:value"))?;
            tags.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok((
        TraceQuery {
            service,
            operation: get("operation").map(str::to_owned),
            span_kind: None,
            tags,
            min_duration_ns,
            max_duration_ns,
            start_ns,
            end_ns,
            limit,
        },
        ids,
    ))
}

/// The ids of the traces a search finds, through the results cache when
/// there is one.
fn find_ids(
    cache: Option<&crate::query::cache::ResultsCache>,
    store: &crate::storage::traces::TraceStore,
    query: &crate::storage::traces::TraceQuery,
) -> Result<Vec<crate::model::span::TraceId>, String> {
    match cache {
        Some(cache) => cache.find_traces(store, query, crate::now_ms()),
        None => store.find_traces(query),
    }
    .map_err(|e| e.to_string())
}

/// The traces a search finds, each assembled (on a blocking thread).
async fn find_assembled(
    state: &AppState,
    query: crate::storage::traces::TraceQuery,
) -> Result<Result<Vec<Vec<crate::model::span::Span>>, String>, String> {
    let store = state.traces.store.clone();
    let cache = state.results_cache.clone();
    blocking(move || {
        store
            .assemble(&find_ids(cache.as_deref(), &store, &query)?)
            .map_err(|e| e.to_string())
    })
    .await
}

async fn find_traces(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let params = pairs(raw.as_deref());
    let (query, ids) = match v1_query(&params, state.config.traces.max_search_traces) {
        Ok(q) => q,
        Err(e) => return v1_error(StatusCode::BAD_REQUEST, &e),
    };
    let store = state.traces.store.clone();
    let cache = state.results_cache.clone();
    let result = blocking(move || {
        let mut errors = Vec::new();
        let searched = ids.is_empty();
        let found = if ids.is_empty() {
            find_ids(cache.as_deref(), &store, &query)?
        } else {
            ids
        };
        let mut traces = Vec::new();
        for id in found {
            let spans = store.trace(&id).map_err(|e| e.to_string())?;
            // A trace a (cached) search found may have expired since.
            if spans.is_empty() && searched {
                continue;
            }
            if spans.is_empty() {
                errors.push(json!({"msg": "trace not found", "traceID": jaeger_trace_id(&id)}));
            } else {
                traces.push(jaeger_trace(&spans));
            }
        }
        Ok::<_, String>((traces, errors))
    })
    .await;
    match result {
        Ok(Ok((traces, errors))) => {
            let total = traces.len();
            let errors = if errors.is_empty() {
                Value::Null
            } else {
                json!(errors)
            };
            json_response(
                StatusCode::OK,
                json!({"data": traces, "total": total, "limit": 0, "offset": 0, "errors": errors}),
            )
        }
        Ok(Err(e)) | Err(e) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn get_trace(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return v1_error(
            StatusCode::BAD_REQUEST,
            &format!("malformed trace id {id:?}"),
        );
    };
    let store = state.traces.store.clone();
    match blocking(move || store.trace(&trace_id)).await {
        Ok(Ok(spans)) if spans.is_empty() => v1_error(StatusCode::NOT_FOUND, "trace not found"),
        Ok(Ok(spans)) => envelope(json!([jaeger_trace(&spans)]), 1),
        Ok(Err(e)) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn dependencies(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let ms = |name: &str, default: i64| -> Result<i64, String> {
        match params.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .map_err(|_| format!("unable to parse param '{name}': {v:?} is not milliseconds")),
        }
    };
    let (end_ms, lookback_ms) = match (
        ms("endTs", now_ns() / 1_000_000),
        ms("lookback", 86_400_000),
    ) {
        (Ok(e), Ok(l)) => (e, l),
        (Err(e), _) | (_, Err(e)) => return v1_error(StatusCode::BAD_REQUEST, &e),
    };
    let store = state.traces.store.clone();
    let start_ns = (end_ms - lookback_ms).saturating_mul(1_000_000);
    match blocking(move || store.dependencies(start_ns, end_ms.saturating_mul(1_000_000))).await {
        Ok(Ok(deps)) => {
            let data: Vec<Value> = deps
                .iter()
                .map(|d| json!({"parent": d.parent, "child": d.child, "callCount": d.call_count}))
                .collect();
            let total = data.len();
            envelope(json!(data), total)
        }
        Ok(Err(e)) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Jaeger prints 64-bit-high-zero trace ids as 16 hex digits.
pub fn jaeger_trace_id(id: &TraceId) -> String {
    if id[..8] == [0; 8] {
        hex(&id[8..])
    } else {
        hex(id)
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn key_value(key: &str, value: &AttrValue) -> Value {
    match value {
        AttrValue::Str(s) | AttrValue::Json(s) => json!({"key": key, "type": "string", "value": s}),
        AttrValue::Bool(b) => json!({"key": key, "type": "bool", "value": b}),
        AttrValue::Int(i) => json!({"key": key, "type": "int64", "value": i}),
        AttrValue::Double(d) => json!({"key": key, "type": "float64", "value": d}),
        AttrValue::Bytes(b) => json!({"key": key, "type": "binary", "value": base64(b)}),
    }
}

fn tags(attrs: &Attributes) -> Vec<Value> {
    attrs.iter().map(|(k, v)| key_value(k, v)).collect()
}

/// A hash of resource attributes (equal attributes, equal hashes).
fn resource_hash(attrs: &Attributes) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (key, value) in attrs {
        key.hash(&mut hasher);
        format!("{value:?}").hash(&mut hasher);
    }
    hasher.finish()
}

/// A trace in Jaeger's UI model.
pub fn jaeger_trace(spans: &[Span]) -> Value {
    let trace_id = jaeger_trace_id(&spans[0].trace_id);
    let mut processes: Vec<(&str, &Attributes)> = Vec::new();
    // Processes by (service, hash of the resource): linear in the spans
    // however many distinct resources a trace has.
    let mut by_hash: HashMap<(&str, u64), Vec<usize>> = HashMap::new();
    let mut out_spans = Vec::with_capacity(spans.len());
    for span in spans {
        let key = (span.service.as_str(), resource_hash(&span.resource));
        let candidates = by_hash.entry(key).or_default();
        let position = candidates
            .iter()
            .copied()
            .find(|&i| *processes[i].1 == *span.resource)
            .unwrap_or_else(|| {
                processes.push((&span.service, &span.resource));
                candidates.push(processes.len() - 1);
                processes.len() - 1
            });
        let process_id = format!("p{}", position + 1);
        let mut references = Vec::new();
        if let Some(parent) = span.parent_span_id {
            references
                .push(json!({"refType": "CHILD_OF", "traceID": trace_id, "spanID": hex(&parent)}));
        }
        for link in &span.links {
            references.push(json!({"refType": "FOLLOWS_FROM", "traceID": jaeger_trace_id(&link.trace_id), "spanID": hex(&link.span_id)}));
        }
        let mut span_tags = tags(&span.attributes);
        if span.kind != 0 {
            span_tags.push(
                json!({"key": "span.kind", "type": "string", "value": kind_label(span.kind)}),
            );
        }
        match span.status_code {
            1 => {
                span_tags.push(json!({"key": "otel.status_code", "type": "string", "value": "OK"}))
            }
            2 => {
                span_tags
                    .push(json!({"key": "otel.status_code", "type": "string", "value": "ERROR"}));
                span_tags.push(json!({"key": "error", "type": "bool", "value": true}));
            }
            _ => {}
        }
        if !span.status_message.is_empty() {
            span_tags.push(json!({"key": "otel.status_description", "type": "string", "value": span.status_message}));
        }
        if !span.scope_name.is_empty() {
            span_tags.push(
                json!({"key": "otel.scope.name", "type": "string", "value": span.scope_name}),
            );
        }
        if !span.scope_version.is_empty() {
            span_tags.push(
                json!({"key": "otel.scope.version", "type": "string", "value": span.scope_version}),
            );
        }
        if !span.trace_state.is_empty() {
            span_tags.push(
                json!({"key": "w3c.tracestate", "type": "string", "value": span.trace_state}),
            );
        }
        let logs: Vec<Value> = span
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![json!({"key": "event", "type": "string", "value": e.name})];
                fields.extend(tags(&e.attributes));
                json!({"timestamp": e.time_ns / 1000, "fields": fields})
            })
            .collect();
        out_spans.push(json!({
            "traceID": trace_id,
            "spanID": hex(&span.span_id),
            "flags": span.flags,
            "operationName": span.name,
            "references": references,
            "startTime": span.start_ns / 1000,
            "duration": span.duration_ns() / 1000,
            "tags": span_tags,
            "logs": logs,
            "processID": process_id,
            "warnings": null,
        }));
    }
    let processes: serde_json::Map<String, Value> = processes
        .iter()
        .enumerate()
        .map(|(i, (service, resource))| {
            let process_tags: Vec<Value> = resource
                .iter()
                .filter(|(k, _)| k != "service.name")
                .map(|(k, v)| key_value(k, v))
                .collect();
            (
                format!("p{}", i + 1),
                json!({"serviceName": service, "tags": process_tags}),
            )
        })
        .collect();
    json!({"traceID": trace_id, "spans": out_spans, "processes": processes, "warnings": null})
}

// ---- v3 ----

async fn v3_services(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"services": state.traces.store.services()}),
    )
}

async fn v3_operations(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(service) = params.get("service").filter(|s| !s.is_empty()) else {
        return v3_error(
            StatusCode::BAD_REQUEST,
            "malformed parameter service: required",
        );
    };
    let kind = match kind_filter(params.get("spanKind").or_else(|| params.get("span_kind"))) {
        Ok(k) => k,
        Err(e) => {
            return v3_error(
                StatusCode::BAD_REQUEST,
                &format!("malformed parameter spanKind: {e}"),
            )
        }
    };
    let ops: Vec<Value> = state
        .traces
        .store
        .operations(service)
        .into_iter()
        .filter(|(_, k)| kind.is_none_or(|want| want == *k))
        .map(|(name, k)| json!({"name": name, "spanKind": kind_label(k)}))
        .collect();
    json_response(StatusCode::OK, json!({"operations": ops}))
}

fn rfc3339_ns(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()?
        .timestamp_nanos_opt()
}

async fn v3_get_trace(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(trace_id) = parse_trace_id(&id) else {
        return v3_error(
            StatusCode::BAD_REQUEST,
            &format!("malformed parameter trace_id: {id:?}"),
        );
    };
    let store = state.traces.store.clone();
    match blocking(move || store.trace(&trace_id)).await {
        Ok(Ok(spans)) if spans.is_empty() => v3_error(StatusCode::NOT_FOUND, "No traces found"),
        Ok(Ok(spans)) => json_response(StatusCode::OK, json!({"result": otlp_json(&[spans])})),
        Ok(Err(e)) => v3_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => v3_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Jaeger's `defaultSearchDepth` in `api_v3` (cmd/jaeger/.../apiv3/query_parser.go).
const V3_DEFAULT_SEARCH_DEPTH: usize = 100;

/// The `query.*` parameters of v3 searches.
fn v3_query(state: &AppState, raw: Option<&str>) -> Result<TraceQuery, Response> {
    let params = pairs(raw);
    let get = |names: &[&str]| {
        params
            .iter()
            .find(|(k, v)| names.contains(&k.as_str()) && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let bad = |name: &str, v: &str| {
        v3_error(
            StatusCode::BAD_REQUEST,
            &format!("malformed parameter {name}: {v:?}"),
        )
    };
    let time = |names: &[&str]| -> Result<Option<i64>, Response> {
        match get(names) {
            None => Ok(None),
            Some(v) => rfc3339_ns(&v).map(Some).ok_or_else(|| bad(names[0], &v)),
        }
    };
    let duration = |names: &[&str]| -> Result<Option<i64>, Response> {
        match get(names) {
            None => Ok(None),
            Some(v) => parse_go_duration(&v)
                .map(Some)
                .ok_or_else(|| bad(names[0], &v)),
        }
    };
    let (start_min, start_max, min_d, max_d) = match (
        time(&["query.start_time_min", "query.startTimeMin"]),
        time(&["query.start_time_max", "query.startTimeMax"]),
        duration(&["query.duration_min", "query.durationMin"]),
        duration(&["query.duration_max", "query.durationMax"]),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => return Err(r),
    };
    let end_ns = start_max.unwrap_or_else(now_ns);
    let mut tags = Vec::new();
    if let Some(text) = get(&["query.attributes"]) {
        match serde_json::from_str::<BTreeMap<String, Value>>(&text) {
            Ok(map) => {
                for (k, v) in map {
                    tags.push((k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
                }
            }
            Err(_) => return Err(bad("query.attributes", &text)),
        }
    }
    // Jaeger's api_v3 answers up to `defaultSearchDepth` (100) traces when
    // no depth is given, and Grafana's Jaeger data source sends none: it
    // trims to its own limit after the answer. A depth that is not
    // positive means the default too, as in Jaeger's gRPC handler.
    let limit = match get(&[
        "query.searchDepth",
        "query.search_depth",
        "query.num_traces",
    ]) {
        None => V3_DEFAULT_SEARCH_DEPTH,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Ok(_) => V3_DEFAULT_SEARCH_DEPTH,
            Err(_) => return Err(bad("query.search_depth", &v)),
        },
    }
    .clamp(1, state.config.traces.max_search_traces);
    let query = TraceQuery {
        service: get(&["query.service_name", "query.serviceName"]),
        operation: get(&["query.operation_name", "query.operationName"]),
        span_kind: None,
        tags,
        min_duration_ns: min_d,
        max_duration_ns: max_d,
        start_ns: start_min.unwrap_or(end_ns - 2 * 86_400 * 1_000_000_000),
        end_ns,
        limit,
    };
    Ok(query)
}

async fn v3_find_traces(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let query = match v3_query(&state, raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let result = find_assembled(&state, query).await;
    match result {
        Ok(Ok(traces)) if traces.is_empty() => v3_error(StatusCode::NOT_FOUND, "No traces found"),
        Ok(Ok(traces)) => json_response(StatusCode::OK, json!({"result": otlp_json(&traces)})),
        Ok(Err(e)) | Err(e) => v3_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/v3/trace-summaries`: one line per trace found (root, time
/// span, span and error counts per service), without the spans.
async fn v3_trace_summaries(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let query = match v3_query(&state, raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let result = find_assembled(&state, query).await;
    let traces = match result {
        Ok(Ok(traces)) => traces,
        Ok(Err(e)) | Err(e) => return v3_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let summaries: Vec<Value> = traces
        .iter()
        .filter(|t| !t.is_empty())
        .map(|spans| {
            let root = spans
                .iter()
                .find(|s| s.parent_span_id.is_none())
                .unwrap_or(&spans[0]);
            let mut services: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for s in spans {
                let entry = services.entry(s.service.as_str()).or_default();
                entry.0 += 1;
                entry.1 += u64::from(s.status_code == crate::model::span::STATUS_ERROR);
            }
            json!({
                "traceId": hex(&spans[0].trace_id),
                "rootServiceName": root.service,
                "rootOperationName": root.name,
                "minStartTimeUnixNano": spans.iter().map(|s| s.start_ns).min().unwrap_or(0).to_string(),
                "maxEndTimeUnixNano": spans.iter().map(|s| s.end_ns).max().unwrap_or(0).to_string(),
                "spanCount": spans.len(),
                "errorSpanCount": services.values().map(|v| v.1).sum::<u64>(),
                "services": services.iter().map(|(name, (count, errors))| json!({
                    "name": name, "spanCount": count, "errorSpanCount": errors})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_response(StatusCode::OK, json!({"summaries": summaries}))
}

fn any_value(value: &AttrValue) -> Value {
    match value {
        AttrValue::Str(s) => json!({"stringValue": s}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(d) => json!({"doubleValue": d}),
        AttrValue::Bytes(b) => json!({"bytesValue": base64(b)}),
        AttrValue::Json(s) => json!({"stringValue": s}),
    }
}

fn otlp_attributes(attrs: &Attributes) -> Vec<Value> {
    attrs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": any_value(v)}))
        .collect()
}

/// Traces as OTLP/JSON `resourceSpans` (hex ids, integer enums), spans
/// grouped by resource and scope.
pub fn otlp_json(traces: &[Vec<Span>]) -> Value {
    // resource → (scope name, version) → spans
    type Scopes<'a> = Vec<((&'a str, &'a str), Vec<Value>)>;
    let mut groups: Vec<(&Attributes, Scopes<'_>)> = Vec::new();
    for span in traces.iter().flatten() {
        let index = groups
            .iter()
            .position(|(r, _)| **r == *span.resource)
            .unwrap_or_else(|| {
                groups.push((&span.resource, Vec::new()));
                groups.len() - 1
            });
        let scopes = &mut groups[index].1;
        let scope = (span.scope_name.as_str(), span.scope_version.as_str());
        let at = scopes
            .iter()
            .position(|(s, _)| *s == scope)
            .unwrap_or_else(|| {
                scopes.push((scope, Vec::new()));
                scopes.len() - 1
            });
        let mut out = json!({
            "traceId": hex(&span.trace_id),
            "spanId": hex(&span.span_id),
            "name": span.name,
            "kind": span.kind,
            "startTimeUnixNano": span.start_ns.to_string(),
            "endTimeUnixNano": span.end_ns.to_string(),
            "attributes": otlp_attributes(&span.attributes),
            "events": span.events.iter().map(|e| json!({
                "timeUnixNano": e.time_ns.to_string(), "name": e.name,
                "attributes": otlp_attributes(&e.attributes)})).collect::<Vec<_>>(),
            "links": span.links.iter().map(|l| json!({
                "traceId": hex(&l.trace_id), "spanId": hex(&l.span_id),
                "attributes": otlp_attributes(&l.attributes)})).collect::<Vec<_>>(),
            "status": if span.status_message.is_empty() {
                json!({"code": span.status_code})
            } else {
                json!({"code": span.status_code, "message": span.status_message})
            },
        });
        if let Some(parent) = span.parent_span_id {
            out["parentSpanId"] = json!(hex(&parent));
        }
        if !span.trace_state.is_empty() {
            out["traceState"] = json!(span.trace_state);
        }
        if span.flags != 0 {
            out["flags"] = json!(span.flags);
        }
        scopes[at].1.push(out);
    }
    let resource_spans: Vec<Value> = groups
        .into_iter()
        .map(|(resource, scopes)| {
            json!({
                "resource": {"attributes": otlp_attributes(resource)},
                "scopeSpans": scopes.into_iter().map(|((name, version), spans)| json!({
                    "scope": {"name": name, "version": version},
                    "spans": spans,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ids() {
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("250µs"), Some(250_000));
        assert_eq!(parse_go_duration("250us"), Some(250_000));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("abc"), None);
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(jaeger_trace_id(&id), "0000000000000001");
        id[0] = 0xab;
        assert_eq!(jaeger_trace_id(&id).len(), 32);
        assert_eq!(base64(&[0, 0, 48, 57]), "AAAwOQ==");
    }
}
