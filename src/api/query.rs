//! `/api/v1/query` and `/api/v1/query_range`: PromQL over HTTP with
//! Prometheus' result shapes, error types and limits.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value as Json_};

use super::prometheus::{labels_json, params, success};
use super::AppState;
use crate::query::format_value;
use crate::query::promql::{self, EngineOptions, EvalError, QueryResult, Value};

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

pub fn routes() -> axum::Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
}

fn error(status: StatusCode, error_type: &str, message: String) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": error_type, "error": message})),
    )
        .into_response()
}

fn bad_data(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_data", message)
}

fn eval_error(err: EvalError) -> Response {
    match err {
        EvalError::BadData(message) => bad_data(format!("invalid parameter \"query\": {message}")),
        EvalError::Execution(message) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "execution", message)
        }
        EvalError::TooManySamples(_) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "execution",
            err.to_string(),
        ),
        EvalError::Timeout(_) => error(StatusCode::SERVICE_UNAVAILABLE, "timeout", err.to_string()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A step or timeout: float seconds or a Prometheus duration.
fn parse_duration_ms(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds
            .is_finite()
            .then(|| (seconds * 1000.0).round() as i64);
    }
    promql_parser::util::duration::parse_duration(text)
        .ok()
        .map(|d| d.as_millis() as i64)
}

fn options(state: &AppState, timeout: Option<i64>) -> EngineOptions {
    let config = &state.config.query;
    let mut timeout_duration = config.timeout;
    if let Some(ms) = timeout.filter(|ms| *ms > 0) {
        timeout_duration = timeout_duration.min(std::time::Duration::from_millis(ms as u64));
    }
    EngineOptions {
        lookback_ms: config.lookback_delta.as_millis() as i64,
        max_samples: config.max_samples,
        timeout: timeout_duration,
        ..EngineOptions::default()
    }
}

fn point(t: i64, v: f64) -> Json_ {
    json!([t as f64 / 1000.0, format_value(v)])
}

/// Prometheus' `data` object for a result.
pub fn result_json(result: &QueryResult, range: bool) -> Json_ {
    match &result.value {
        Value::Scalar(values) => {
            if range {
                json!({"resultType": "matrix", "result": [{
                    "metric": {},
                    "values": result.steps.iter().zip(values).map(|(t, v)| point(*t, *v)).collect::<Vec<_>>(),
                }]})
            } else {
                json!({"resultType": "scalar", "result": point(result.steps[0], values[0])})
            }
        }
        Value::String(s) => {
            json!({"resultType": "string", "result": [result.steps[0] as f64 / 1000.0, s]})
        }
        Value::Vector(series) => {
            if range {
                let mut sorted: Vec<&promql::StepSeries> = series.iter().collect();
                sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
                let items: Vec<Json_> = sorted
                    .iter()
                    .map(|s| {
                        json!({
                            "metric": labels_json(&s.labels),
                            "values": result.steps.iter().zip(&s.values)
                                .filter_map(|(t, v)| v.map(|v| point(*t, v)))
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({"resultType": "matrix", "result": items})
            } else {
                let items: Vec<Json_> = series
                    .iter()
                    .filter_map(|s| {
                        s.values[0].map(|v| json!({"metric": labels_json(&s.labels), "value": point(result.steps[0], v)}))
                    })
                    .collect();
                json!({"resultType": "vector", "result": items})
            }
        }
        Value::Matrix(series) => {
            let items: Vec<Json_> = series
                .iter()
                .map(|s| {
                    json!({
                        "metric": labels_json(&s.labels),
                        "values": s.samples.iter().map(|p| point(p.t, p.v)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"resultType": "matrix", "result": items})
        }
    }
}

/// Prometheus' error for a missing or empty `query` parameter.
fn missing_query() -> Response {
    bad_data("invalid parameter \"query\": 1:1: parse error: no expression found in input".into())
}

async fn query(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = params(&method, &raw, &headers, &body);
    let Some(text) = params.get("query").map(str::to_owned) else {
        return missing_query();
    };
    let t = match params.time_ms("time", now_ms()) {
        Ok(t) => t,
        Err(err) => return bad_data(err.to_string()),
    };
    let timeout = params.get("timeout").and_then(parse_duration_ms);
    let options = options(&state, timeout);
    evaluate(&state, false, options, move |store, options| {
        promql::instant_query(store, options, &text, t)
    })
    .await
}

/// Run a query on a blocking thread once a concurrency slot is free, and
/// shape its result or error as Prometheus does.
async fn evaluate(
    state: &AppState,
    range: bool,
    options: EngineOptions,
    work: impl FnOnce(
            &crate::storage::metrics::MetricsStore,
            &EngineOptions,
        ) -> Result<QueryResult, EvalError>
        + Send
        + 'static,
) -> Response {
    let Ok(_slot) = state.query_slots.clone().acquire_owned().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down".into(),
        );
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || work(store.as_ref(), &options)).await {
        Ok(Ok(result)) => success(result_json(&result, range)),
        Ok(Err(err)) => eval_error(err),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("query worker failed: {err}"),
        ),
    }
}

async fn query_range(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = params(&method, &raw, &headers, &body);
    let Some(text) = params.get("query").map(str::to_owned) else {
        return missing_query();
    };
    let (Some(_), Some(_)) = (params.get("start"), params.get("end")) else {
        return bad_data(format!(
            "invalid parameter \"{}\": cannot parse \"\" to a valid timestamp",
            if params.get("start").is_none() {
                "start"
            } else {
                "end"
            }
        ));
    };
    let start = match params.time_ms("start", 0) {
        Ok(t) => t,
        Err(err) => return bad_data(err.to_string()),
    };
    let end = match params.time_ms("end", 0) {
        Ok(t) => t,
        Err(err) => return bad_data(err.to_string()),
    };
    if end < start {
        return bad_data("end timestamp must not be before start time".into());
    }
    let Some(step) = params.get("step").and_then(parse_duration_ms) else {
        return bad_data(format!(
            "invalid parameter \"step\": cannot parse \"{}\" to a valid duration",
            params.get("step").unwrap_or("")
        ));
    };
    if step <= 0 {
        return bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        );
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        );
    }
    let timeout = params.get("timeout").and_then(parse_duration_ms);
    let options = options(&state, timeout);
    evaluate(&state, true, options, move |store, options| {
        promql::range_query(store, options, &text, start, end, step)
    })
    .await
}
