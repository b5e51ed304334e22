//! The Elasticsearch-compatible face (its own listener, `server.elasticsearch`):
//! what Beats, Logstash, Fluent Bit, the Elasticsearch and OpenSearch
//! clients and Grafana's Elasticsearch data source call.
//!
//! Every response carries `X-Elastic-Product: Elasticsearch` (the official
//! clients refuse to talk to a server without it) and errors have
//! Elasticsearch's shape: `{"error":{"root_cause":[…],"type","reason"},"status"}`.
//! Index templates, ILM policies, ingest pipelines and data-stream
//! definitions are accepted and kept so that shippers' start-up checks pass;
//! they do not change how records are stored (see the README).

// Handlers return early with a ready `Response` as the error: that is the
// point of these helpers, boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};

use super::AppState;
use crate::ingest::logs::item_json;
use crate::ingest::otlp;
use crate::model::log::{LogDoc, WriteOp};
use crate::now_ms;
use crate::query::logs::ast::LogQuery;
use crate::query::logs::search::{self, SearchLimits, SearchRequest};
use crate::query::logs::{dsl, lucene, QueryError};
use crate::storage::logs::catalog::{FieldKind, FieldMapping};
use crate::storage::logs::LogStore;

/// The Elasticsearch version we answer as (clients check the major).
pub const COMPAT_VERSION: &str = "8.17.0";

type Params = Query<HashMap<String, String>>;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.limits.max_body_size.as_usize();
    Router::new()
        .route("/", get(info).head(ok_empty))
        .route("/_bulk", post(bulk).put(bulk))
        .route("/{index}/_bulk", post(bulk).put(bulk))
        .route("/{index}/_doc", post(doc_auto_id))
        .route(
            "/{index}/_doc/{id}",
            put(doc_with_id).post(doc_with_id).get(get_doc),
        )
        .route(
            "/{index}/_create/{id}",
            put(create_with_id).post(create_with_id),
        )
        .route("/_search", get(search_docs).post(search_docs))
        .route("/{index}/_search", get(search_docs).post(search_docs))
        .route("/_msearch", get(msearch).post(msearch))
        .route("/{index}/_msearch", get(msearch).post(msearch))
        .route("/_count", get(count).post(count))
        .route("/{index}/_count", get(count).post(count))
        .route("/_mapping", get(mapping))
        .route("/{index}/_mapping", get(mapping))
        .route("/_field_caps", get(field_caps).post(field_caps))
        .route("/{index}/_field_caps", get(field_caps).post(field_caps))
        .route("/_refresh", get(refresh).post(refresh))
        .route("/{index}/_refresh", get(refresh_index).post(refresh_index))
        .route("/_cluster/health", get(health))
        .route("/_cluster/health/{index}", get(health_index))
        .route("/_nodes", get(nodes))
        .route("/_nodes/{*rest}", get(nodes_rest))
        .route("/_license", get(license))
        .route("/_xpack", get(xpack))
        .route("/_cat/indices", get(cat_indices))
        .route("/_cat/indices/{index}", get(cat_indices_index))
        .route(
            "/{index}/{name}",
            get(get_setting)
                .head(head_setting)
                .put(put_setting)
                .delete(delete_setting),
        )
        .route(
            "/_ilm/policy/{name}",
            get(get_ilm).head(head_ilm).put(put_ilm).delete(delete_ilm),
        )
        .route(
            "/_ingest/pipeline/{name}",
            get(get_pipeline)
                .head(head_pipeline)
                .put(put_pipeline)
                .delete(delete_pipeline),
        )
        .route(
            "/{index}",
            put(create_index)
                .head(index_exists)
                .get(get_index)
                .delete(delete_index),
        )
        .fallback(unknown)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::map_response(product_header))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::observe,
        ))
        .with_state(state)
}

async fn product_header(mut response: Response) -> Response {
    // The body-size limit rejects before any handler runs: give it
    // Elasticsearch's shape too (Beats split a batch on 413).
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        response = es_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "content_too_long_exception",
            "request body is larger than limits.max_body_size",
        );
    }
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

fn es_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An Elasticsearch error response.
pub fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    es_json(status, error_body(status, kind, reason, None))
}

fn error_body(status: StatusCode, kind: &str, reason: &str, index: Option<&str>) -> Value {
    let mut cause = json!({"type": kind, "reason": reason});
    if let Some(index) = index {
        cause["index"] = json!(index);
        cause["resource.type"] = json!("index_or_alias");
        cause["resource.id"] = json!(index);
    }
    let mut error = cause.clone();
    error["root_cause"] = json!([cause]);
    json!({"error": error, "status": status.as_u16()})
}

fn query_error(err: QueryError) -> Response {
    es_error(StatusCode::BAD_REQUEST, err.kind, &err.reason)
}

async fn unknown(request: axum::extract::Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    es_error(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        &format!(
            "request [{method} {path}] is not supported by Oxeye's Elasticsearch-compatible API"
        ),
    )
}

async fn ok_empty() -> StatusCode {
    StatusCode::OK
}

/// Decompressed request body (gzip allowed), bounded by `limits.max_body_size`.
fn body_bytes(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Response> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    otlp::decompress(encoding, body, state.config.limits.max_body_size.as_usize())
        .map_err(|err| es_error(err.http_status(), "parse_exception", &err.to_string()))
}

fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Value>, Response> {
    let bytes = body_bytes(state, headers, body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|err| {
        es_error(
            StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            &format!(
                "[{}:{}] failed to parse request body: {err}",
                err.line(),
                err.column()
            ),
        )
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|err| {
        es_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            &format!("worker failed: {err}"),
        )
    })
}

fn wants_refresh(params: &HashMap<String, String>) -> bool {
    params
        .get("refresh")
        .is_some_and(|v| v.is_empty() || v == "true" || v == "wait_for")
}

async fn commit(store: std::sync::Arc<LogStore>) -> Result<(), Response> {
    blocking(move || store.commit()).await?.map_err(|err| {
        es_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            &err.to_string(),
        )
    })
}

async fn info(State(state): State<AppState>) -> Response {
    let listen = state.config.server.elasticsearch.to_string();
    let uuid = format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(
            state
                .config
                .storage
                .data_dir
                .display()
                .to_string()
                .as_bytes()
        )
    );
    es_json(
        StatusCode::OK,
        json!({
            "name": "oxeye",
            "cluster_name": "oxeye",
            "cluster_uuid": uuid,
            "version": {
                "number": COMPAT_VERSION,
                "build_flavor": "default",
                "build_type": "oxeye",
                "build_hash": env!("CARGO_PKG_VERSION"),
                "build_date": "2026-01-01T00:00:00.000Z",
                "build_snapshot": false,
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search",
            "oxeye": {"version": env!("CARGO_PKG_VERSION"), "listen": listen}
        }),
    )
}

// ---- writes ----

async fn bulk(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index);
    let bytes = match body_bytes(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ingest = state.logs.clone();
    let result = match blocking(move || ingest.bulk(&bytes, index.as_deref(), now_ms())).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match result {
        Ok((body, errors)) => {
            if wants_refresh(&params) {
                if let Err(r) = commit(state.logs.store.clone()).await {
                    return r;
                }
            }
            let outcome = if errors { "partial" } else { "ok" };
            state.metrics.ingest_request("elasticsearch", outcome);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(err) => {
            state.metrics.ingest_request("elasticsearch", "bad_request");
            es_error(StatusCode::BAD_REQUEST, err.kind, &err.reason)
        }
    }
}

async fn doc_auto_id(
    state: State<AppState>,
    Path(index): Path<String>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write_one(state, index, None, WriteOp::Index, params, headers, body).await
}

async fn doc_with_id(
    state: State<AppState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = if params.0.get("op_type").is_some_and(|o| o == "create") {
        WriteOp::Create
    } else {
        WriteOp::Index
    };
    write_one(state, index, Some(id), op, params, headers, body).await
}

async fn create_with_id(
    state: State<AppState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write_one(
        state,
        index,
        Some(id),
        WriteOp::Create,
        params,
        headers,
        body,
    )
    .await
}

async fn write_one(
    State(state): State<AppState>,
    index: String,
    id: Option<String>,
    op: WriteOp,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let source = match json_body(&state, &headers, &body) {
        Ok(Some(Value::Object(map))) => map,
        Ok(_) => {
            return es_error(
                StatusCode::BAD_REQUEST,
                "document_parsing_exception",
                "the document must be a JSON object",
            )
        }
        Err(r) => return r,
    };
    let ingest = state.logs.clone();
    let doc = LogDoc::new(index, id, op, source);
    let outcome = match blocking(move || ingest.one(doc, now_ms())).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => return es_error(err.http_status(), "exception", &err.to_string()),
        Err(r) => return r,
    };
    if wants_refresh(&params) {
        if let Err(r) = commit(state.logs.store.clone()).await {
            return r;
        }
    }
    let item = item_json(&outcome);
    let mut body = item[outcome.op.as_str()].clone();
    let status = body["status"].as_u64().unwrap_or(500) as u16;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(error) = body.get("error") {
        let kind = error["type"].as_str().unwrap_or("exception").to_owned();
        let reason = error["reason"].as_str().unwrap_or("").to_owned();
        return es_error(status, &kind, &reason);
    }
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    es_json(status, body)
}

async fn get_doc(
    State(state): State<AppState>,
    Path((index, id)): Path<(String, String)>,
) -> Response {
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let (index2, id2) = (index.clone(), id.clone());
    let result = blocking(move || {
        if !store.catalog.read().indices.contains_key(&index2) {
            return Ok(None);
        }
        let mut req = SearchRequest::parse(None, &HashMap::new())?;
        req.query = LogQuery::Ids(vec![id2]);
        req.size = 1;
        search::search(&store, &[index2], &req, limits, now_ms()).map(Some)
    })
    .await;
    match result {
        Ok(Ok(Some(found))) => match found["hits"]["hits"].get(0) {
            Some(hit) => es_json(
                StatusCode::OK,
                json!({"_index": index, "_id": id, "_version": 1, "_seq_no": 0, "_primary_term": 1,
                    "found": true, "_source": hit["_source"]}),
            ),
            None => es_json(
                StatusCode::NOT_FOUND,
                json!({"_index": index, "_id": id, "found": false}),
            ),
        },
        Ok(Ok(None)) => index_not_found(&index),
        Ok(Err(err)) => query_error(err),
        Err(r) => r,
    }
}

// ---- searches ----

fn limits(state: &AppState) -> SearchLimits {
    SearchLimits {
        max_result_window: state.config.logs.max_result_window,
        max_buckets: state.config.logs.max_buckets,
    }
}

fn index_not_found(index: &str) -> Response {
    es_json(
        StatusCode::NOT_FOUND,
        error_body(
            StatusCode::NOT_FOUND,
            "index_not_found_exception",
            &format!("no such index [{index}]"),
            Some(index),
        ),
    )
}

/// Resolve an index expression; a concrete name that does not exist is an
/// error unless `ignore_unavailable`.
fn resolve(
    store: &LogStore,
    expression: &str,
    ignore_unavailable: bool,
) -> Result<Vec<String>, String> {
    let catalog = store.catalog.read();
    if !ignore_unavailable {
        for part in expression.split(',').map(str::trim) {
            let concrete =
                !part.is_empty() && !part.contains('*') && !part.starts_with('-') && part != "_all";
            if concrete && !catalog.indices.contains_key(part) {
                return Err(part.to_owned());
            }
        }
    }
    Ok(catalog.resolve(expression))
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.is_empty() || v == "true")
}

async fn search_docs(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = match SearchRequest::parse(body.as_ref(), &params) {
        Ok(r) => r,
        Err(err) => return query_error(err),
    };
    let Ok(_permit) = state.query_slots.clone().acquire_owned().await else {
        return es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "exception",
            "shutting down",
        );
    };
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let ignore = flag(&params, "ignore_unavailable");
    let result = blocking(move || {
        let indices = resolve(&store, &index, ignore).map_err(Err)?;
        search::search(&store, &indices, &req, limits, now_ms()).map_err(Ok)
    })
    .await;
    match result {
        Ok(Ok(body)) => es_json(StatusCode::OK, body),
        Ok(Err(Ok(err))) => query_error(err),
        Ok(Err(Err(missing))) => index_not_found(&missing),
        Err(r) => r,
    }
}

async fn msearch(
    State(state): State<AppState>,
    default_index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let default_index = default_index.map(|Path(index)| index).unwrap_or_default();
    let bytes = match body_bytes(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut pairs = Vec::new();
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(header_line) = lines.next() {
        let header: Value = match serde_json::from_slice(header_line) {
            Ok(v) => v,
            Err(err) => {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "parse_exception",
                    &format!("_msearch header line is not JSON: {err}"),
                )
            }
        };
        let Some(body_line) = lines.next() else {
            return es_error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                "_msearch header without a body line",
            );
        };
        let body: Value = match serde_json::from_slice(body_line) {
            Ok(v) => v,
            Err(err) => {
                return es_error(
                    StatusCode::BAD_REQUEST,
                    "parse_exception",
                    &format!("_msearch body line is not JSON: {err}"),
                )
            }
        };
        pairs.push((header, body));
    }
    let Ok(_permit) = state.query_slots.clone().acquire_owned().await else {
        return es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "exception",
            "shutting down",
        );
    };
    let store = state.logs.store.clone();
    let limits = limits(&state);
    let started = std::time::Instant::now();
    let responses = blocking(move || {
        pairs
            .into_iter()
            .map(|(header, body)| {
                let index = match header.get("index") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => default_index.clone(),
                };
                let ignore = header
                    .get("ignore_unavailable")
                    .and_then(Value::as_bool)
                    .unwrap_or_else(|| flag(&params, "ignore_unavailable"));
                let indices = match resolve(&store, &index, ignore) {
                    Ok(i) => i,
                    Err(missing) => {
                        return error_body(
                            StatusCode::NOT_FOUND,
                            "index_not_found_exception",
                            &format!("no such index [{missing}]"),
                            Some(&missing),
                        )
                    }
                };
                let result = SearchRequest::parse(Some(&body), &params)
                    .and_then(|req| search::search(&store, &indices, &req, limits, now_ms()));
                match result {
                    Ok(mut r) => {
                        r["status"] = json!(200);
                        r
                    }
                    Err(err) => error_body(StatusCode::BAD_REQUEST, err.kind, &err.reason, None),
                }
            })
            .collect::<Vec<Value>>()
    })
    .await;
    match responses {
        Ok(responses) => es_json(
            StatusCode::OK,
            json!({"took": started.elapsed().as_millis() as u64, "responses": responses}),
        ),
        Err(r) => r,
    }
}

async fn count(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let query = match (params.get("q"), body.as_ref().and_then(|b| b.get("query"))) {
        (Some(q), _) => lucene::parse(q, &[], false),
        (None, Some(q)) => dsl::parse(q),
        (None, None) => Ok(LogQuery::All),
    };
    let query = match query {
        Ok(q) => q,
        Err(err) => return query_error(err),
    };
    let store = state.logs.store.clone();
    let ignore = flag(&params, "ignore_unavailable");
    let result = blocking(move || {
        let indices = resolve(&store, &index, ignore).map_err(Err)?;
        search::count(&store, &indices, query, now_ms()).map_err(Ok)
    })
    .await;
    match result {
        Ok(Ok(n)) => es_json(
            StatusCode::OK,
            json!({"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
        ),
        Ok(Err(Ok(err))) => query_error(err),
        Ok(Err(Err(missing))) => index_not_found(&missing),
        Err(r) => r,
    }
}

// ---- mappings and field capabilities ----

/// Flat field mappings as Elasticsearch's nested `properties`.
pub fn properties(fields: &BTreeMap<String, FieldMapping>) -> Value {
    let mut root = Map::new();
    for (path, mapping) in fields {
        let mut node = &mut root;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entry = node.entry(part.to_string()).or_insert_with(|| json!({}));
            if last {
                if mapping.kind != FieldKind::Object {
                    entry["type"] = json!(mapping.es_type);
                    if mapping.keyword {
                        entry["fields"] =
                            json!({"keyword": {"type": "keyword", "ignore_above": 256}});
                    }
                }
                break;
            }
            if entry.get("properties").is_none() {
                entry["properties"] = json!({});
            }
            node = entry["properties"]
                .as_object_mut()
                .expect("properties is an object");
        }
    }
    Value::Object(root)
}

async fn mapping(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let store = &state.logs.store;
    let indices = match resolve(store, &index, flag(&params, "ignore_unavailable")) {
        Ok(i) => i,
        Err(missing) => return index_not_found(&missing),
    };
    let catalog = store.catalog.read();
    let mut out = Map::new();
    for name in indices {
        if let Some(meta) = catalog.indices.get(&name) {
            out.insert(
                name,
                json!({"mappings": {"properties": properties(&meta.fields)}}),
            );
        }
    }
    es_json(StatusCode::OK, Value::Object(out))
}

async fn field_caps(
    State(state): State<AppState>,
    index: Option<Path<String>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = index.map(|Path(index)| index).unwrap_or_default();
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut patterns: Vec<String> = params
        .get("fields")
        .map(|f| f.split(',').map(str::trim).map(str::to_owned).collect())
        .unwrap_or_default();
    match body.as_ref().and_then(|b| b.get("fields")) {
        Some(Value::Array(fields)) => {
            patterns.extend(fields.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        Some(Value::String(fields)) => {
            patterns.extend(fields.split(',').map(str::trim).map(str::to_owned))
        }
        _ => {}
    }
    if patterns.is_empty() {
        return es_error(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: specified fields can't be null or empty;",
        );
    }
    let store = &state.logs.store;
    let indices = match resolve(store, &index, flag(&params, "ignore_unavailable")) {
        Ok(i) => i,
        Err(missing) => return index_not_found(&missing),
    };
    let catalog = store.catalog.read();
    // field → type → (searchable, aggregatable, indices having it)
    type Caps = BTreeMap<String, BTreeMap<String, (bool, bool, Vec<String>)>>;
    let mut caps: Caps = BTreeMap::new();
    let mut add =
        |field: String, es_type: &str, searchable: bool, aggregatable: bool, index: &str| {
            if !patterns
                .iter()
                .any(|p| crate::query::logs::catalog_glob(p, &field))
            {
                return;
            }
            caps.entry(field)
                .or_default()
                .entry(es_type.to_owned())
                .or_insert((searchable, aggregatable, Vec::new()))
                .2
                .push(index.to_owned());
        };
    for name in &indices {
        let Some(meta) = catalog.indices.get(name) else {
            continue;
        };
        add("_id".into(), "_id", true, false, name);
        add("_index".into(), "_index", true, true, name);
        for (path, mapping) in &meta.fields {
            let aggregatable = !matches!(mapping.kind, FieldKind::Text | FieldKind::Object);
            add(
                path.clone(),
                &mapping.es_type,
                mapping.kind != FieldKind::Object,
                aggregatable,
                name,
            );
            if mapping.keyword {
                add(format!("{path}.keyword"), "keyword", true, true, name);
            }
        }
    }
    let mut fields = Map::new();
    for (field, types) in caps {
        let mut entry = Map::new();
        let several = types.len() > 1;
        for (es_type, (searchable, aggregatable, names)) in types {
            let mut cap = json!({
                "type": es_type,
                "metadata_field": field.starts_with('_'),
                "searchable": searchable,
                "aggregatable": aggregatable,
            });
            if several {
                cap["indices"] = json!(names);
            }
            entry.insert(es_type, cap);
        }
        fields.insert(field, Value::Object(entry));
    }
    es_json(
        StatusCode::OK,
        json!({"indices": indices, "fields": fields}),
    )
}

// ---- index management ----

async fn refresh(State(state): State<AppState>) -> Response {
    match commit(state.logs.store.clone()).await {
        Ok(()) => es_json(
            StatusCode::OK,
            json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
        ),
        Err(r) => r,
    }
}

async fn refresh_index(state: State<AppState>, Path(_index): Path<String>) -> Response {
    refresh(state).await
}

/// Field mappings from a `mappings.properties` object.
fn parse_properties(
    props: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<(String, FieldMapping)>,
) -> Result<(), String> {
    for (name, spec) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let es_type = spec.get("type").and_then(Value::as_str);
        if let Some(children) = spec.get("properties").and_then(Value::as_object) {
            if es_type.is_some_and(|t| t != "object" && t != "nested") {
                return Err(format!(
                    "field [{path}] of type [{}] cannot have properties",
                    es_type.unwrap_or("")
                ));
            }
            out.push((
                path.clone(),
                FieldMapping::from_es_type("object").expect("object type"),
            ));
            parse_properties(children, &path, out)?;
            continue;
        }
        let es_type = es_type.unwrap_or("object");
        let mut mapping = FieldMapping::from_es_type(es_type)
            .ok_or_else(|| format!("No handler for type [{es_type}] declared on field [{name}]"))?;
        if mapping.kind == FieldKind::Text
            && spec
                .get("fields")
                .and_then(Value::as_object)
                .is_some_and(|f| f.values().any(|v| v.get("type") == Some(&json!("keyword"))))
        {
            mapping.keyword = true;
        }
        out.push((path, mapping));
    }
    Ok(())
}

async fn create_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if index.starts_with('_') {
        return unknown_path(&index);
    }
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b.unwrap_or(json!({})),
        Err(r) => return r,
    };
    let mut fields = Vec::new();
    if let Some(props) = body
        .get("mappings")
        .and_then(|m| m.get("properties"))
        .and_then(Value::as_object)
    {
        if let Err(reason) = parse_properties(props, "", &mut fields) {
            return es_error(StatusCode::BAD_REQUEST, "mapper_parsing_exception", &reason);
        }
    }
    let store = state.logs.store.clone();
    let name = index.clone();
    match blocking(move || store.create_index(&name, fields, now_ms())).await {
        Ok(Ok(true)) => es_json(
            StatusCode::OK,
            json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
        ),
        Ok(Ok(false)) => es_json(
            StatusCode::BAD_REQUEST,
            error_body(
                StatusCode::BAD_REQUEST,
                "resource_already_exists_exception",
                &format!("index [{index}] already exists"),
                Some(&index),
            ),
        ),
        Ok(Err(reason)) => es_error(
            StatusCode::BAD_REQUEST,
            "invalid_index_name_exception",
            &reason,
        ),
        Err(r) => r,
    }
}

fn unknown_path(path: &str) -> Response {
    es_error(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        &format!("[/{path}] is not supported by Oxeye's Elasticsearch-compatible API"),
    )
}

async fn index_exists(State(state): State<AppState>, Path(index): Path<String>) -> StatusCode {
    let resolved = resolve(&state.logs.store, &index, false);
    match resolved {
        Ok(found) if !found.is_empty() => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

async fn get_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    Query(params): Params,
) -> Response {
    if index.starts_with('_') {
        return unknown_path(&index);
    }
    let store = &state.logs.store;
    let indices = match resolve(store, &index, flag(&params, "ignore_unavailable")) {
        Ok(i) => i,
        Err(missing) => return index_not_found(&missing),
    };
    let catalog = store.catalog.read();
    let mut out = Map::new();
    for name in indices {
        if let Some(meta) = catalog.indices.get(&name) {
            out.insert(
                name.clone(),
                json!({
                    "aliases": {},
                    "mappings": {"properties": properties(&meta.fields)},
                    "settings": {"index": {
                        "number_of_shards": "1",
                        "number_of_replicas": "0",
                        "uuid": meta.uuid,
                        "creation_date": meta.created_ms.to_string(),
                        "provided_name": name,
                    }},
                }),
            );
        }
    }
    es_json(StatusCode::OK, Value::Object(out))
}

async fn delete_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    Query(params): Params,
) -> Response {
    if index.contains('*') || index == "_all" {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "Wildcard expressions or all indices are not allowed",
        );
    }
    let store = state.logs.store.clone();
    let names: Vec<String> = index.split(',').map(str::to_owned).collect();
    if !flag(&params, "ignore_unavailable") {
        let catalog = store.catalog.read();
        if let Some(missing) = names.iter().find(|n| !catalog.indices.contains_key(*n)) {
            return index_not_found(missing);
        }
    }
    let result = blocking(move || {
        for name in names {
            store.delete_index(&name)?;
        }
        Ok::<(), crate::storage::logs::LogStoreError>(())
    })
    .await;
    match result {
        Ok(Ok(())) => es_json(StatusCode::OK, json!({"acknowledged": true})),
        Ok(Err(err)) => es_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            &err.to_string(),
        ),
        Err(r) => r,
    }
}

async fn health(State(state): State<AppState>) -> Response {
    let n = state.logs.store.catalog.read().indices.len();
    es_json(
        StatusCode::OK,
        json!({
            "cluster_name": "oxeye", "status": "green", "timed_out": false,
            "number_of_nodes": 1, "number_of_data_nodes": 1,
            "active_primary_shards": n, "active_shards": n,
            "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
            "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0
        }),
    )
}

async fn health_index(state: State<AppState>, Path(_index): Path<String>) -> Response {
    health(state).await
}

async fn nodes(State(state): State<AppState>) -> Response {
    let address = state.config.server.elasticsearch.to_string();
    es_json(
        StatusCode::OK,
        json!({
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": "oxeye",
            "nodes": {"oxeye": {
                "name": "oxeye", "version": COMPAT_VERSION,
                "roles": ["master", "data", "ingest"],
                "http": {"publish_address": address, "bound_address": [address]},
                "ingest": {"processors": []}
            }}
        }),
    )
}

async fn nodes_rest(state: State<AppState>, Path(_rest): Path<String>) -> Response {
    nodes(state).await
}

async fn license() -> Response {
    es_json(
        StatusCode::OK,
        json!({"license": {"status": "active", "uid": "oxeye", "type": "basic",
            "issue_date_in_millis": 0, "max_nodes": 1000, "issued_to": "oxeye",
            "issuer": "oxeye", "start_date_in_millis": -1}}),
    )
}

async fn xpack() -> Response {
    es_json(
        StatusCode::OK,
        json!({
            "build": {"hash": env!("CARGO_PKG_VERSION"), "date": "2026-01-01T00:00:00.000Z"},
            "license": {"uid": "oxeye", "type": "basic", "mode": "basic", "status": "active"},
            "features": {"ilm": {"available": true, "enabled": true}}
        }),
    )
}

async fn cat_indices(state: State<AppState>, params: Params) -> Response {
    cat_impl(state, "*".into(), params).await
}

async fn cat_indices_index(
    state: State<AppState>,
    Path(index): Path<String>,
    params: Params,
) -> Response {
    cat_impl(state, index, params).await
}

async fn cat_impl(State(state): State<AppState>, index: String, Query(params): Params) -> Response {
    let store = state.logs.store.clone();
    let result = blocking(move || {
        let names = store.catalog.read().resolve(&index);
        names
            .into_iter()
            .map(|name| {
                let uuid = store
                    .catalog
                    .read()
                    .indices
                    .get(&name)
                    .map(|m| m.uuid.clone())
                    .unwrap_or_default();
                let docs =
                    search::count(&store, std::slice::from_ref(&name), LogQuery::All, now_ms())
                        .unwrap_or(0);
                (name, uuid, docs)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(r) => return r,
    };
    if params.get("format").is_some_and(|f| f == "json") {
        let items: Vec<Value> = rows
            .iter()
            .map(|(name, uuid, docs)| {
                json!({"health": "green", "status": "open", "index": name, "uuid": uuid,
                    "pri": "1", "rep": "0", "docs.count": docs.to_string(), "docs.deleted": "0"})
            })
            .collect();
        return es_json(StatusCode::OK, Value::Array(items));
    }
    let mut text = String::new();
    for (name, uuid, docs) in rows {
        text.push_str(&format!("green open {name} {uuid} 1 0 {docs} 0\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], text).into_response()
}

// ---- templates, ILM policies, pipelines, data streams: kept, not applied ----

const SETTING_KINDS: [&str; 4] = [
    "_template",
    "_index_template",
    "_component_template",
    "_data_stream",
];

fn setting_key(kind: &str, name: &str) -> Option<String> {
    SETTING_KINDS
        .contains(&kind)
        .then(|| format!("{kind}/{name}"))
}

async fn get_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    if !SETTING_KINDS.contains(&kind.as_str()) {
        // `/{index}/{something}` that no other route took.
        return unknown_path(&format!("{kind}/{name}"));
    }
    let settings = state.es_settings.lock();
    let found: Vec<(String, Value)> = settings
        .iter()
        .filter_map(|(k, v)| {
            let (k_kind, k_name) = k.split_once('/')?;
            (k_kind == kind && crate::query::logs::catalog_glob(&name, k_name))
                .then(|| (k_name.to_owned(), v.clone()))
        })
        .collect();
    if found.is_empty() {
        return es_json(StatusCode::NOT_FOUND, json!({}));
    }
    match kind.as_str() {
        "_index_template" => es_json(
            StatusCode::OK,
            json!({"index_templates": found.into_iter().map(|(n, v)| json!({"name": n, "index_template": v})).collect::<Vec<_>>()}),
        ),
        "_component_template" => es_json(
            StatusCode::OK,
            json!({"component_templates": found.into_iter().map(|(n, v)| json!({"name": n, "component_template": v})).collect::<Vec<_>>()}),
        ),
        "_data_stream" => es_json(
            StatusCode::OK,
            json!({"data_streams": found.into_iter().map(|(n, _)| json!({"name": n, "timestamp_field": {"name": "@timestamp"}, "status": "GREEN"})).collect::<Vec<_>>()}),
        ),
        _ => es_json(StatusCode::OK, Value::Object(found.into_iter().collect())),
    }
}

async fn head_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> StatusCode {
    match setting_key(&kind, &name) {
        Some(key) if state.es_settings.lock().contains_key(&key) => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    }
}

async fn put_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = setting_key(&kind, &name) else {
        return unknown_path(&format!("{kind}/{name}"));
    };
    let body = match json_body(&state, &headers, &body) {
        Ok(b) => b.unwrap_or(json!({})),
        Err(r) => return r,
    };
    state.es_settings.lock().insert(key, body);
    es_json(StatusCode::OK, json!({"acknowledged": true}))
}

async fn delete_setting(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    match setting_key(&kind, &name) {
        Some(key) if state.es_settings.lock().remove(&key).is_some() => {
            es_json(StatusCode::OK, json!({"acknowledged": true}))
        }
        Some(_) => es_error(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            &format!("{kind} [{name}] missing"),
        ),
        None => unknown_path(&format!("{kind}/{name}")),
    }
}

macro_rules! named_setting {
    ($kind:literal, $get:ident, $head:ident, $put:ident, $delete:ident) => {
        async fn $get(state: State<AppState>, Path(name): Path<String>) -> Response {
            let key = format!("{}/{name}", $kind);
            match state.es_settings.lock().get(&key) {
                Some(v) => es_json(StatusCode::OK, json!({ name: v })),
                None => es_json(StatusCode::NOT_FOUND, json!({})),
            }
        }
        async fn $head(state: State<AppState>, Path(name): Path<String>) -> StatusCode {
            if state.es_settings.lock().contains_key(&format!("{}/{name}", $kind)) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            }
        }
        async fn $put(
            State(state): State<AppState>,
            Path(name): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let body = match json_body(&state, &headers, &body) {
                Ok(b) => b.unwrap_or(json!({})),
                Err(r) => return r,
            };
            state.es_settings.lock().insert(format!("{}/{name}", $kind), body);
            es_json(StatusCode::OK, json!({"acknowledged": true}))
        }
        async fn $delete(state: State<AppState>, Path(name): Path<String>) -> Response {
            if state.es_settings.lock().remove(&format!("{}/{name}", $kind)).is_some() {
                es_json(StatusCode::OK, json!({"acknowledged": true}))
            } else {
                es_error(StatusCode::NOT_FOUND, "resource_not_found_exception", &format!("[{name}] missing"))
            }
        }
    };
}

named_setting!("_ilm/policy", get_ilm, head_ilm, put_ilm, delete_ilm);
named_setting!(
    "_ingest/pipeline",
    get_pipeline,
    head_pipeline,
    put_pipeline,
    delete_pipeline
);
