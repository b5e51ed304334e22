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

// These imports double as the prelude of the submodules (`use super::*`).
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

mod indices;
mod searches;
mod settings;
mod writes;

use indices::*;
use searches::*;
use settings::*;
use writes::*;

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
        .layer(middleware::from_fn_with_state(
            super::auth::Guard {
                auth: state.auth.clone(),
                rule: |method, path| Some(super::auth::elasticsearch_role(method, path)),
                realm: "security",
                elasticsearch: true,
            },
            super::auth::require,
        ))
        .layer(middleware::from_fn_with_state(
            std::sync::Arc::new(super::browser::BrowserPolicy::from_config(
                &state.config.server,
            )),
            super::browser::guard,
        ))
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
/// Decompression runs on a blocking thread (a 32 MiB gzip body is work).
async fn body_bytes(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<u8>, Response> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (body, limit) = (body.clone(), state.config.limits.max_body_size.as_usize());
    blocking(move || otlp::decompress(encoding.as_deref(), &body, limit))
        .await?
        .map_err(|err| es_error(err.http_status(), "parse_exception", &err.to_string()))
}

/// The request body as JSON (`None` when empty), parsed on a blocking thread.
async fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<Value>, Response> {
    with_json_body(state, headers, body, Ok).await
}

/// Decompress and parse the body as JSON, then hand it to `f`, all on one
/// blocking thread, where the (possibly huge) JSON tree is also dropped.
async fn with_json_body<T: Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    f: impl FnOnce(Option<Value>) -> Result<T, Response> + Send + 'static,
) -> Result<T, Response> {
    let bytes = body_bytes(state, headers, body).await?;
    blocking(move || {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return f(None);
        }
        let value = serde_json::from_slice(&bytes).map_err(|err| {
            es_error(
                StatusCode::BAD_REQUEST,
                "x_content_parse_exception",
                &format!(
                    "[{}:{}] failed to parse request body: {err}",
                    err.line(),
                    err.column()
                ),
            )
        })?;
        f(Some(value))
    })
    .await?
}

/// A `query.max_concurrent` slot for a search ([`AppState::query_slot`]).
async fn search_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
    state.query_slot().await.ok_or_else(|| {
        es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "exception",
            "shutting down",
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

fn unknown_path(path: &str) -> Response {
    es_error(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        &format!("[/{path}] is not supported by Oxeye's Elasticsearch-compatible API"),
    )
}
