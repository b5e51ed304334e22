//! `/api/v1/query` and `/api/v1/query_range`: PromQL over HTTP with
//! Prometheus' result shapes, error types and limits.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::prometheus::params;
use super::AppState;
use crate::now_ms;
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

/// Prometheus' 400 `bad_data` error.
pub(crate) fn bad_data(message: String) -> Response {
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

/// A step or timeout: float seconds or a Prometheus duration.
fn parse_duration_ms(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds
            .is_finite()
            .then(|| (seconds * 1000.0).round() as i64);
    }
    promql_parser::util::duration::parse_duration(text)
        .ok()
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// Query results are written straight into one buffer, in exactly the form
/// Prometheus writes them: building a `serde_json::Value` per point costs
/// more than evaluating most queries.
mod write {
    use std::fmt::Write;

    use crate::model::Labels;
    use crate::query::format_value;

    /// A JSON string literal.
    pub fn string(out: &mut String, text: &str) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    pub fn labels(out: &mut String, labels: &Labels) {
        out.push('{');
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, label.name);
            out.push(':');
            string(out, label.value);
        }
        out.push('}');
    }

    /// Milliseconds as Prometheus prints timestamps: seconds, then `.` and
    /// three digits only when there is a fraction.
    pub fn timestamp(out: &mut String, t: i64) {
        if t < 0 {
            out.push('-');
        }
        let t = t.unsigned_abs();
        let _ = write!(out, "{}", t / 1000);
        let fraction = t % 1000;
        if fraction != 0 {
            let _ = write!(out, ".{fraction:03}");
        }
    }

    /// `[<timestamp>,"<value>"]`
    pub fn point(out: &mut String, t: i64, v: f64) {
        out.push('[');
        timestamp(out, t);
        out.push_str(",\"");
        if v.is_finite() {
            // As format_value prints it, without a String per point.
            let _ = write!(out, "{v}");
        } else {
            out.push_str(&format_value(v));
        }
        out.push_str("\"]");
    }
}

/// The whole success response for a result, in Prometheus' shape.
pub fn result_body(result: &QueryResult, range: bool) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":");
    let series_values = |out: &mut String,
                         labels: &crate::model::Labels,
                         points: &mut dyn Iterator<Item = (i64, f64)>| {
        out.push_str("{\"metric\":");
        write::labels(out, labels);
        out.push_str(",\"values\":[");
        for (i, (t, v)) in points.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write::point(out, t, v);
        }
        out.push_str("]}");
    };
    match &result.value {
        Value::Scalar(values) if range => {
            out.push_str("\"matrix\",\"result\":[");
            let mut points = result.steps.iter().copied().zip(values.iter().copied());
            series_values(&mut out, &crate::model::Labels::default(), &mut points);
            out.push(']');
        }
        Value::Scalar(values) => {
            out.push_str("\"scalar\",\"result\":");
            write::point(&mut out, result.steps[0], values[0]);
        }
        Value::String(s) => {
            out.push_str("\"string\",\"result\":[");
            write::timestamp(&mut out, result.steps[0]);
            out.push(',');
            write::string(&mut out, s);
            out.push(']');
        }
        Value::Vector(series) if range => {
            out.push_str("\"matrix\",\"result\":[");
            let mut sorted: Vec<&promql::StepSeries> = series.iter().collect();
            sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
            for (i, s) in sorted.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut points = result
                    .steps
                    .iter()
                    .zip(&s.values)
                    .filter_map(|(t, v)| v.map(|v| (*t, v)));
                series_values(&mut out, &s.labels, &mut points);
            }
            out.push(']');
        }
        Value::Vector(series) => {
            out.push_str("\"vector\",\"result\":[");
            let mut first = true;
            for s in series {
                let Some(v) = s.values[0] else { continue };
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str("{\"metric\":");
                write::labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write::point(&mut out, result.steps[0], v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut points = s.samples.iter().map(|p| (p.t, p.v));
                series_values(&mut out, &s.labels, &mut points);
            }
            out.push(']');
        }
    }
    out.push_str("}}");
    out
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
    let Some(slot) = state.query_slot().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down".into(),
        );
    };
    let store = state.store.clone();
    let running = state.metrics.queries_running.clone();
    // Parsing, evaluation and dropping the tree happen on a blocking thread
    // with a stack sized for the deepest expression the parser admits. The
    // slot moves there too: a client that disconnects drops this future,
    // but the evaluation goes on, and so must its claim on the limit.
    let run = move || {
        let _slot = slot;
        running.inc();
        let result = promql::with_stack(|| work(store.as_ref(), &options));
        running.dec();
        result
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(result)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            result_body(&result, range),
        )
            .into_response(),
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
    // Times are clamped, but count in i128 all the same.
    if (end as i128 - start as i128) / step as i128 > MAX_POINTS_PER_SERIES as i128 {
        return bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        );
    }
    let timeout = params.get("timeout").and_then(parse_duration_ms);
    let options = options(&state, timeout);
    let cache = state.results_cache.clone();
    evaluate(&state, true, options, move |store, options| match cache {
        Some(cache) => cache.range_query(store, options, &text, (start, end, step), now_ms()),
        None => promql::range_query(store, options, &text, start, end, step),
    })
    .await
}
