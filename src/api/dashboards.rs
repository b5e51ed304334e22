//! Saved dashboards over HTTP.
//!
//! - `GET /api/v1/dashboards?query=&tag=` — the list (title, tags, panels,
//!   version, when saved, the provisioning file).
//! - `GET /api/v1/dashboards/{uid}` — `{"dashboard": …, "meta": …}`, the
//!   shape of Grafana's `GET /api/dashboards/uid/{uid}`.
//! - `PUT /api/v1/dashboards/{uid}` — the body is Grafana's dashboard JSON as
//!   exported, or Grafana's `{"dashboard": …, "overwrite": …, "message": …}`;
//!   `?overwrite=true` skips the version check (412 otherwise when the body's
//!   `version` is not the stored one). `POST /api/v1/dashboards` saves under
//!   the body's uid, or a new one.
//! - `DELETE /api/v1/dashboards/{uid}`.
//! - `GET …/{uid}/versions`, `GET …/{uid}/versions/{n}`,
//!   `POST …/{uid}/versions/{n}/restore`.
//!
//! Grafana's own paths for the same (`/api/search`, `/api/dashboards/db`,
//! `/api/dashboards/uid/{uid}`) are served too, so dashboard-as-code tools
//! written for Grafana can push to Oxeye.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::dashboards::{DashboardError, DashboardStore, Version};

pub fn routes(max_size: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v1/dashboards", get(list).post(create))
        .route(
            "/api/v1/dashboards/{uid}",
            get(fetch).put(save).delete(remove),
        )
        .route("/api/v1/dashboards/{uid}/versions", get(versions))
        .route("/api/v1/dashboards/{uid}/versions/{version}", get(version))
        .route(
            "/api/v1/dashboards/{uid}/versions/{version}/restore",
            post(restore),
        )
        .route("/api/search", get(grafana_search))
        .route("/api/dashboards/db", post(create))
        .route("/api/dashboards/uid/{uid}", get(fetch).delete(remove))
        // A dashboard may be larger than most request bodies (Node Exporter
        // Full is 460 KiB); `dashboards.max_size` is checked again inside.
        .layer(DefaultBodyLimit::max(max_size.saturating_add(4096)))
        // A body announced larger than that is refused before it is read:
        // answering after reading part of it would reset the connection of
        // a client still sending.
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                let announced = request
                    .headers()
                    .get(axum::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match announced {
                    Some(n) if n > max_size.saturating_add(4096) as u64 => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "a dashboard of {n} bytes is over dashboards.max_size ({max_size})\n"
                        ),
                    )
                        .into_response(),
                    _ => next.run(request).await,
                }
            },
        ))
}

fn error(err: DashboardError) -> Response {
    let (status, kind) = match &err {
        DashboardError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_data"),
        DashboardError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        DashboardError::Conflict(_) => (StatusCode::PRECONDITION_FAILED, "version-mismatch"),
        DashboardError::Full(_) => (StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        DashboardError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (
        status,
        Json(json!({"status": "error", "errorType": kind, "error": err.to_string(), "message": err.to_string()})),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&DashboardStore) -> Result<T, DashboardError> + Send + 'static,
) -> Result<T, Response> {
    let store = state.dashboards.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => result.map_err(error),
        Err(_) => Err(error(DashboardError::Io(std::io::Error::other(
            "the dashboard worker failed",
        )))),
    }
}

fn with_meta(uid: &str, v: Version) -> Value {
    json!({
        "dashboard": v.dashboard,
        "meta": {
            "uid": uid,
            "version": v.version,
            "updated": v.saved_at,
            "message": v.message,
            "provisioned": v.provisioned.is_some(),
            "provisionedExternalId": v.provisioned.map(|p| p.file),
            "url": format!("/ui/d/{uid}"),
            "type": "db",
        },
    })
}

/// `?tag=a&tag=b&query=…` (Grafana's search takes the same names).
fn filters(raw: Option<String>) -> (String, Vec<String>) {
    let mut query = String::new();
    let mut tags = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*k {
            "query" => query = v.into_owned(),
            "tag" => tags.push(v.into_owned()),
            _ => {}
        }
    }
    (query, tags)
}

async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let (query, tags) = filters(raw);
    let entries = state.dashboards.list(&query, &tags);
    Json(json!({"status": "success", "data": entries})).into_response()
}

async fn grafana_search(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let (query, tags) = filters(raw);
    let hits: Vec<Value> = state
        .dashboards
        .list(&query, &tags)
        .into_iter()
        .map(|e| {
            json!({"uid": e.uid, "title": e.title, "tags": e.tags, "type": "dash-db",
                   "url": format!("/ui/d/{}", e.uid), "uri": format!("db/{}", e.uid)})
        })
        .collect();
    Json(Value::Array(hits)).into_response()
}

async fn fetch(State(state): State<AppState>, Path(uid): Path<String>) -> Response {
    let key = uid.clone();
    match blocking(&state, move |s| s.get(&key)).await {
        Ok(v) => Json(with_meta(&uid, v)).into_response(),
        Err(response) => response,
    }
}

fn overwrite(params: &HashMap<String, String>) -> bool {
    params
        .get("overwrite")
        .is_some_and(|v| matches!(v.as_str(), "true" | "1"))
}

async fn save(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let force = overwrite(&params);
    match blocking(&state, move |s| s.save(Some(&uid), &body, force)).await {
        Ok(saved) => Json(saved).into_response(),
        Err(response) => response,
    }
}

async fn create(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let force = overwrite(&params);
    match blocking(&state, move |s| s.save(None, &body, force)).await {
        Ok(saved) => Json(saved).into_response(),
        Err(response) => response,
    }
}

async fn remove(State(state): State<AppState>, Path(uid): Path<String>) -> Response {
    match blocking(&state, move |s| s.delete(&uid)).await {
        Ok(entry) => Json(
            json!({"status": "success", "uid": entry.uid, "title": entry.title,
                                 "message": format!("Dashboard {} deleted", entry.title)}),
        )
        .into_response(),
        Err(response) => response,
    }
}

async fn versions(State(state): State<AppState>, Path(uid): Path<String>) -> Response {
    match blocking(&state, move |s| s.versions(&uid)).await {
        Ok(list) => {
            let data: Vec<Value> = list
                .into_iter()
                .map(|v| {
                    json!({"version": v.version, "saved_at": v.saved_at, "message": v.message,
                           "provisioned": v.provisioned.map(|p| p.file)})
                })
                .collect();
            Json(json!({"status": "success", "data": data})).into_response()
        }
        Err(response) => response,
    }
}

async fn version(State(state): State<AppState>, Path((uid, n)): Path<(String, u64)>) -> Response {
    let key = uid.clone();
    match blocking(&state, move |s| s.version(&key, n)).await {
        Ok(v) => Json(with_meta(&uid, v)).into_response(),
        Err(response) => response,
    }
}

async fn restore(State(state): State<AppState>, Path((uid, n)): Path<(String, u64)>) -> Response {
    match blocking(&state, move |s| s.restore(&uid, n)).await {
        Ok(saved) => Json(saved).into_response(),
        Err(response) => response,
    }
}
