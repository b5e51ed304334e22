//! The Prometheus HTTP API: remote_write receiver, series/label metadata
//! endpoints, admin flush, and a raw-sample export.
//!
//! Response envelopes follow Prometheus 2.42 (`{"status":"success","data":…}`
//! and `{"status":"error","errorType":…,"error":…}`), see
//! ../shared/reference/prometheus-2.42-responses/.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::params::{Params, MAX_TIME_MS, MIN_TIME_MS};
use super::AppState;
use crate::error::Error;
use crate::model::{is_valid_label_name, MetricType};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write))
        .route("/api/v1/read", post(super::remote_read::read))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/export", get(export).post(export))
        .route("/api/v1/admin/flush", post(flush))
}

/// A Prometheus API error: JSON envelope plus status code.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.http_status();
        let error_type = match status {
            StatusCode::BAD_REQUEST => "bad_data",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::UNPROCESSABLE_ENTITY => "execution",
            _ => "internal",
        };
        let body = json!({"status": "error", "errorType": error_type, "error": self.0.to_string()});
        (status, Json(body)).into_response()
    }
}

/// A label set as the JSON object Prometheus' API returns.
pub fn labels_json(labels: &crate::model::Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.to_owned(), Value::String(l.value.to_owned())))
            .collect(),
    )
}

pub fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

pub use crate::query::format_value;

pub async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::Internal(format!("worker failed: {err}")))?
}

/// `POST /api/v1/write`: Prometheus remote_write 1.0.
async fn remote_write(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(why) = state.forwarders.refusing(crate::forward::Signal::Metrics) {
        return super::retry_later(&why);
    }
    if let Err(err) = check_remote_write_headers(&headers) {
        return (err.http_status(), format!("{err}\n")).into_response();
    }
    let ingest = state.ingest.clone();
    match run_blocking(move || ingest.remote_write(&body)).await {
        Ok(summary) if summary.samples_rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        // Valid samples are kept; the sender must not retry the rest.
        Ok(summary) => (
            StatusCode::BAD_REQUEST,
            format!("{}\n", summary.error_message()),
        )
            .into_response(),
        Err(err) => {
            if matches!(err, Error::Storage(_) | Error::Internal(_)) {
                tracing::error!(error = %err, "remote write failed");
            }
            (err.http_status(), format!("{err}\n")).into_response()
        }
    }
}

fn check_remote_write_headers(headers: &HeaderMap) -> Result<(), Error> {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if let Some(content_type) = header_text(header::CONTENT_TYPE) {
        let mut parts = content_type.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let proto = parts.find_map(|p| p.strip_prefix("proto="));
        let supported_proto = proto.is_none_or(|p| p == "prometheus.writerequest");
        if media != "application/x-protobuf" || !supported_proto {
            return Err(Error::UnsupportedMediaType(format!(
                "unsupported Content-Type {content_type:?}: remote write 1.0 needs application/x-protobuf (proto=prometheus.WriteRequest)"
            )));
        }
    }
    if let Some(encoding) = header_text(header::CONTENT_ENCODING) {
        if encoding != "snappy" {
            return Err(Error::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {encoding:?}: remote write needs snappy"
            )));
        }
    }
    Ok(())
}

pub fn params(
    method: &Method,
    query: &Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Params {
    Params::from_request(method, query.as_deref(), headers, body)
}

/// `GET|POST /api/v1/series`
async fn series(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(&method, &query, &headers, &body);
    let limit = params.limit()?;
    let store = state.store.clone();
    let found = run_blocking(move || {
        let (sets, start, end) = params.selection(true)?;
        Ok(store.series(&sets, start, end))
    })
    .await?;
    let data: Vec<Value> = found
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|labels| labels_json(labels))
        .collect();
    Ok(success(Value::Array(data)))
}

/// `GET|POST /api/v1/labels`
async fn labels(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(&method, &query, &headers, &body);
    let limit = params.limit()?;
    let store = state.store.clone();
    let mut names = run_blocking(move || {
        let (sets, start, end) = params.selection(false)?;
        Ok(store.label_names(&sets, start, end))
    })
    .await?;
    if let Some(limit) = limit {
        names.truncate(limit);
    }
    Ok(success(json!(names)))
}

/// `GET /api/v1/label/<name>/values`
async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = params(&method, &query, &headers, &Bytes::new());
    // Prometheus 2.42 accepts only legacy label names here.
    if !is_valid_label_name(&name) {
        return Err(Error::BadRequest(format!("invalid label name: {name:?}")).into());
    }
    let limit = params.limit()?;
    let store = state.store.clone();
    let mut values = run_blocking(move || {
        let (sets, start, end) = params.selection(false)?;
        Ok(store.label_values(&name, &sets, start, end))
    })
    .await?;
    if let Some(limit) = limit {
        values.truncate(limit);
    }
    Ok(success(json!(values)))
}

/// `GET /api/v1/metadata?metric=&limit=`
async fn metadata(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::from_request(
        &Method::GET,
        query.as_deref(),
        &HeaderMap::new(),
        &Bytes::new(),
    );
    let metric = params.get("metric").map(str::to_owned);
    let limit = params.limit()?;
    let mut data = serde_json::Map::new();
    for m in state.store.metadata() {
        if metric.as_ref().is_some_and(|name| *name != m.metric_family) {
            continue;
        }
        if limit.is_some_and(|limit| data.len() >= limit) {
            break;
        }
        let metric_type = if m.metric_type == MetricType::Unknown {
            "unknown"
        } else {
            m.metric_type.as_str()
        };
        data.insert(
            m.metric_family.clone(),
            json!([{"type": metric_type, "help": m.help, "unit": m.unit}]),
        );
    }
    Ok(success(Value::Object(data)))
}

/// `GET|POST /api/v1/export?match[]=…&start=&end=`: raw samples as JSON
/// lines, one series per line (`{"metric":{…},"values":[…],"timestamps":[…]}`,
/// as VictoriaMetrics' export API shapes them).
async fn export(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(&method, &query, &headers, &body);
    let store = state.store.clone();
    let max_samples = state.config.query.max_samples;
    let text = run_blocking(move || {
        let (sets, start, end) = params.selection(true)?;
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        let mut samples = 0usize;
        for set in &sets {
            let mut found = store.select(set, start, end);
            // The same budget as a query's: an export of everything is
            // refused rather than built in memory.
            samples = samples.saturating_add(found.iter().map(|s| s.samples.len()).sum());
            if samples > max_samples {
                return Err(Error::BadRequest(format!(
                    "export would hold more than {max_samples} samples (query.max_samples); narrow match[] or start/end"
                )));
            }
            found.sort_by(|a, b| a.labels.cmp(&b.labels));
            for series in found {
                if !seen.insert(series.labels.clone()) {
                    continue;
                }
                let metric = labels_json(&series.labels);
                let line = json!({
                    "metric": metric,
                    "values": series.samples.iter().map(|s| format_value(s.v)).collect::<Vec<_>>(),
                    "timestamps": series.samples.iter().map(|s| s.t).collect::<Vec<_>>(),
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
        }
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/stream+json")], text).into_response())
}

/// `POST /api/v1/admin/flush`: cut the metrics head and the trace head into
/// blocks and commit the log index, now.
async fn flush(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let report = run_blocking(move || store.flush().map_err(Error::from)).await?;
    let (traces, logs) = (state.traces.store.clone(), state.logs.store.clone());
    run_blocking(move || {
        traces
            .cut()
            .map_err(|e| Error::Internal(format!("trace store: {e}")))?;
        logs.commit()
            .map_err(|e| Error::Internal(format!("log store: {e}")))
    })
    .await?;
    tracing::info!(
        blocks = report.blocks.len(),
        samples = report.samples,
        "head flushed on request"
    );
    Ok(success(
        serde_json::to_value(report).expect("report serializes"),
    ))
}

/// `GET|POST /api/v1/query_exemplars?query=&start=&end=`: exemplars of the
/// series selected by every vector selector in the query.
async fn query_exemplars(
    State(state): State<AppState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(&method, &query, &headers, &body);
    let start = params.time_ms("start", MIN_TIME_MS)?;
    let end = params.time_ms("end", MAX_TIME_MS)?;
    let sets = run_blocking(move || {
        crate::query::promql::with_stack(|| {
            let expr = params.expr()?;
            let mut selectors = Vec::new();
            collect_selectors(&expr, &mut selectors);
            selectors
                .into_iter()
                .map(crate::query::promql::selector_matchers)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::BadRequest(e.to_string()))
        })
    })
    .await?;
    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    for set in &sets {
        for (labels, exemplars) in state.store.exemplars(set, start, end) {
            if !seen.insert(labels.clone()) {
                continue;
            }
            let series_labels = labels_json(&labels);
            let items: Vec<Value> = exemplars
                .iter()
                .map(|e| {
                    let exemplar_labels = labels_json(&e.labels);
                    json!({
                        "labels": exemplar_labels,
                        "value": format_value(e.v),
                        "timestamp": e.t as f64 / 1000.0,
                    })
                })
                .collect();
            data.push(json!({"seriesLabels": series_labels, "exemplars": items}));
        }
    }
    Ok(success(Value::Array(data)))
}

/// Every vector selector in an expression (`@`/offset do not matter here:
/// exemplars are selected by the query's own time range).
fn collect_selectors<'e>(
    expr: &'e promql_parser::parser::Expr,
    out: &mut Vec<&'e promql_parser::parser::VectorSelector>,
) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(selector) => out.push(selector),
        Expr::MatrixSelector(matrix) => out.push(&matrix.vs),
        Expr::Aggregate(aggregate) => {
            collect_selectors(&aggregate.expr, out);
            if let Some(param) = &aggregate.param {
                collect_selectors(param, out);
            }
        }
        Expr::Unary(unary) => collect_selectors(&unary.expr, out),
        Expr::Binary(binary) => {
            collect_selectors(&binary.lhs, out);
            collect_selectors(&binary.rhs, out);
        }
        Expr::Paren(paren) => collect_selectors(&paren.expr, out),
        Expr::Subquery(subquery) => collect_selectors(&subquery.expr, out),
        Expr::Call(call) => {
            for arg in &call.args.args {
                collect_selectors(arg, out);
            }
        }
        _ => {}
    }
}
