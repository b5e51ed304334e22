//! Oxeye's own log API on the main listener:
//!
//! - `GET|POST /api/v1/logs/search?query=<lucene>&start=&end=&limit=&index=&order=`:
//!   records in a time range (default: the last hour), newest first.
//! - `GET /api/v1/logs/tail?query=<lucene>&index=`: a live tail as
//!   server-sent events, one `log` event per matching record as it is
//!   written (before it is searchable).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::params::Params;
use super::prometheus::ApiError;
use super::AppState;
use crate::error::Error;
use crate::model::log::format_timestamp_ms;
use crate::now_ms;
use crate::query::logs::ast::LogQuery;
use crate::query::logs::lucene;
use crate::query::logs::matcher::{self, Flat};
use crate::query::logs::search::{self, SearchLimits, SearchRequest, SortSpec, TrackTotal};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/logs/search", get(search_logs).post(search_logs))
        .route("/api/v1/logs/tail", get(tail))
}

async fn search_logs(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&method, uri.query(), &headers, &body);
    let now = now_ms();
    let end = params.time_ms("end", now)?;
    let start = params.time_ms("start", end - 3_600_000)?;
    if start > end {
        return Err(Error::BadRequest("invalid parameters: end is before start".into()).into());
    }
    let max = state.config.logs.max_result_window;
    let limit = params.limit()?.unwrap_or(100).min(max);
    let text = params.get("query").unwrap_or("*");
    let query = lucene::parse(text, &[], false)
        .map_err(|err| Error::BadRequest(format!("invalid parameter \"query\": {}", err.reason)))?;
    let desc = match params.get("order") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "invalid parameter \"order\": {other:?} (use asc or desc)"
            ))
            .into())
        }
    };
    let index = params.get("index").unwrap_or("*").to_owned();
    let mut req = SearchRequest::parse(None, &HashMap::new()).expect("the empty request parses");
    req.query = LogQuery::and(vec![
        query,
        LogQuery::Range {
            field: "@timestamp".into(),
            lower: Some((json!(start), true)),
            upper: Some((json!(end), true)),
            format: Some("epoch_millis".into()),
        },
    ]);
    req.size = limit;
    req.sort = vec![SortSpec {
        field: "@timestamp".into(),
        desc,
        missing_first: false,
    }];
    req.explicit_sort = true;
    req.track_total_hits = TrackTotal::Exact;
    let limits = SearchLimits {
        max_result_window: max,
        max_buckets: state.config.logs.max_buckets,
    };
    let _permit = state
        .query_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Unavailable("shutting down".into()))?;
    let store = state.logs.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let indices = store.catalog.read().resolve(&index);
        search::search(&store, &indices, &req, limits, now)
    })
    .await
    .map_err(|err| Error::Internal(format!("worker failed: {err}")))?
    .map_err(|err| Error::BadRequest(err.reason))?;
    let records: Vec<Value> = result["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|hit| {
                    let ts = hit["sort"][0].as_i64().unwrap_or(0);
                    json!({
                        "timestamp": format_timestamp_ms(ts.saturating_mul(1_000_000)),
                        "index": hit["_index"],
                        "id": hit["_id"],
                        "source": hit["_source"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(super::prometheus::success(json!({
        "total": result["hits"]["total"]["value"],
        "records": records,
    })))
}

async fn tail(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let text = params.get("query").map_or("*", String::as_str);
    let query = match lucene::parse(text, &[], false) {
        Ok(q) => q,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "error", "errorType": "bad_data",
                    "error": format!("invalid parameter \"query\": {}", err.reason)})),
            )
                .into_response()
        }
    };
    let index = params.get("index").cloned().unwrap_or_else(|| "*".into());
    let Some(receiver) = state
        .logs
        .store
        .subscribe(state.config.logs.max_tail_subscribers)
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "error", "errorType": "unavailable",
                "error": format!("{} live tails are open already (logs.max_tail_subscribers)",
                    state.config.logs.max_tail_subscribers)})),
        )
            .into_response();
    };
    let stopping = state.stopping.clone();
    let stream = futures_util::stream::unfold(
        (receiver, stopping, query, index, Vec::<Event>::new()),
        |(mut receiver, mut stopping, query, index, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    return Some((
                        Ok::<Event, Infallible>(event),
                        (receiver, stopping, query, index, pending),
                    ));
                }
                if *stopping.borrow() {
                    return None;
                }
                tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(batch) => {
                            let now = now_ms();
                            for doc in batch.iter().rev() {
                                if !crate::query::logs::catalog_glob(&index, &doc.index) {
                                    continue;
                                }
                                if matcher::matches(&query, &Flat::new(doc), now) {
                                    let record = json!({
                                        "timestamp": format_timestamp_ms(doc.timestamp_ns),
                                        "index": doc.index,
                                        "id": doc.id,
                                        "source": *doc.source,
                                    });
                                    pending.push(Event::default().event("log").data(record.to_string()));
                                }
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                            pending.push(Event::default().event("lagged").data(skipped.to_string()));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = stopping.changed() => return None,
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
