//! `GET /api/v1/recommendations/workloads`: Kubernetes right-sizing in
//! KRR's JSON shape (plus evidence, backtest, HPA advice and patches), and
//! `GET /api/v1/recommendations/chart`: one workload's usage over the window
//! with today's and the recommended requests and the HPA replay, for the
//! dashboard's charts.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use super::params::{parse_time_ms, Params};
use super::query::bad_data;
use super::AppState;
use crate::recommend::{self, Filter, RecommendError, Report, Request, Strategy};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/recommendations/workloads", get(workloads))
        .route("/api/v1/recommendations/chart", get(chart))
        .route("/api/v1/recommendations/namespaces", get(namespaces))
        .route("/api/v1/recommendations/nodes", get(nodes))
        .route("/api/v1/recommendations/database", get(database))
        .route("/api/v1/recommendations/cache", get(cache))
}

fn duration_ms(params: &Params, name: &str, default: std::time::Duration) -> Result<i64, String> {
    match params.get(name) {
        None | Some("") => Ok(default.as_millis() as i64),
        Some(text) => promql_parser::util::duration::parse_duration(text)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .filter(|ms| *ms > 0)
            .ok_or_else(|| format!("invalid parameter {name:?}: {text:?} is not a positive duration such as 14d or 75s")),
    }
}

/// The request from query parameters, over the configured defaults.
pub fn request_from(
    params: &Params,
    config: &crate::config::RecommendationsConfig,
) -> Result<Request, String> {
    let strategy_name = params
        .get("strategy")
        .filter(|s| !s.is_empty())
        .unwrap_or(&config.strategy);
    let strategy = Strategy::parse(strategy_name).ok_or_else(|| {
        format!("invalid parameter \"strategy\": {strategy_name:?} (simple, simple_limit or vpa)")
    })?;
    let end_ms = match params.get("time") {
        None | Some("") => crate::now_ms(),
        Some(t) => parse_time_ms(t).ok_or_else(|| format!("invalid parameter \"time\": {t:?}"))?,
    };
    // KRR ends its window on a whole minute.
    let end_ms = end_ms.div_euclid(60_000) * 60_000;
    let nonempty = |name: &str| {
        params
            .get(name)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(Request {
        filter: Filter {
            namespace: nonempty("namespace"),
            workload: nonempty("workload"),
        },
        strategy,
        window_ms: duration_ms(params, "window", config.window)?,
        step_ms: duration_ms(params, "step", config.step)?,
        end_ms,
        keep_series: false,
    })
}

fn error(status: StatusCode, error_type: &str, message: String) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": error_type, "error": message})),
    )
        .into_response()
}

/// Runs a request on a blocking thread holding a query slot; errors as
/// (status, Prometheus error type, message).
pub(crate) async fn run(
    state: &AppState,
    request: Request,
) -> Result<Report, (StatusCode, &'static str, String)> {
    let Some(slot) = state.query_slot().await else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down".into(),
        ));
    };
    let store = state.store.clone();
    let mut options = state.config.recommendations.options();
    options.timeout = Some(state.config.query.timeout);
    let metrics = state.metrics.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let result = recommend::run(&store, &options, request);
        if let Ok(report) = &result {
            metrics.recommendation_runs.inc();
            metrics
                .recommendation_workloads
                .inc_by(report.workloads.len() as u64);
            metrics
                .recommendation_duration
                .observe(report.duration.as_secs_f64());
        }
        result
    })
    .await;
    match result {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(RecommendError::BadRequest(m))) => Err((StatusCode::BAD_REQUEST, "bad_data", m)),
        Ok(Err(RecommendError::TooLarge(m))) => {
            Err((StatusCode::UNPROCESSABLE_ENTITY, "execution", m))
        }
        Ok(Err(e @ RecommendError::Timeout(_))) => {
            Err((StatusCode::SERVICE_UNAVAILABLE, "timeout", e.to_string()))
        }
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("recommendation run failed: {e}"),
        )),
    }
}

async fn workloads(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_request(&method, raw.as_deref(), &headers, &Bytes::new());
    let request = match request_from(&params, &state.config.recommendations) {
        Ok(r) => r,
        Err(m) => return bad_data(m),
    };
    match run(&state, request).await {
        Ok(report) => Json(report.to_json(&state.config.recommendations.options())).into_response(),
        Err((status, kind, message)) => error(status, kind, message),
    }
}

/// `start`/`end` (Prometheus' formats; the last hour by default) and
/// `service` of a span analysis.
fn span_request(params: &Params) -> Result<recommend::database::DbRequest, String> {
    let time = |name: &str, default: i64| -> Result<i64, String> {
        match params.get(name) {
            None => Ok(default),
            Some(t) => parse_time_ms(t).ok_or_else(|| format!("invalid parameter {name:?}: {t:?}")),
        }
    };
    let end = time("end", crate::now_ms())?;
    let start = time("start", end.saturating_sub(3_600_000))?;
    if end < start {
        return Err("end timestamp must not be before start time".into());
    }
    let (Some(start_ns), Some(end_ns)) = (start.checked_mul(1_000_000), end.checked_mul(1_000_000))
    else {
        return Err("start and end must be within the years 1678..2262".into());
    };
    Ok(recommend::database::DbRequest {
        start_ns,
        end_ns,
        service: params.get("service").map(str::to_string),
    })
}

/// Runs a span analysis on a blocking thread holding a query slot.
async fn span_analysis(
    state: AppState,
    method: Method,
    raw: Option<String>,
    headers: HeaderMap,
    analyse: impl FnOnce(
            &crate::storage::traces::TraceStore,
            &recommend::database::DbRequest,
        ) -> Result<Value, String>
        + Send
        + 'static,
) -> Response {
    let params = Params::from_request(&method, raw.as_deref(), &headers, &Bytes::new());
    let request = match span_request(&params) {
        Ok(r) => r,
        Err(m) => return bad_data(m),
    };
    let Some(slot) = state.query_slot().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down".into(),
        );
    };
    let store = state.traces.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        analyse(&store, &request)
    })
    .await;
    match result {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Database and HTTP-client findings from the stored spans.
async fn database(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let options = state.config.recommendations.db_options();
    let metrics = state.store.clone();
    span_analysis(state, method, raw, headers, move |store, request| {
        let mut report = recommend::database::analyse(store, &options, request)?;
        // Connection pools come from metrics, over the same window.
        let (start_ms, end_ms) = (request.start_ns / 1_000_000, request.end_ns / 1_000_000);
        report["connection_pools"] = recommend::pools::analyse(&metrics, start_ms, end_ms);
        let slow: Vec<(String, Vec<String>)> = report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["kind"] == "slow_query")
            .map(|f| {
                let template = f["template"].as_str().unwrap_or("").to_string();
                let tables = report["templates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["template"] == f["template"])
                    .and_then(|t| t["tables"].as_array())
                    .map(|ts| {
                        ts.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                (template, tables)
            })
            .collect();
        report["index_usage"] = recommend::pgstats::analyse(&metrics, start_ms, end_ms, &slow);
        Ok(report)
    })
    .await
}

/// Cache opportunities and existing Redis caches from the stored spans.
async fn cache(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let options = state.config.recommendations.cache_options();
    span_analysis(state, method, raw, headers, move |store, request| {
        recommend::cache::analyse(store, &options, request)
    })
    .await
}

/// `ResourceQuota`/`LimitRange` suggestions per namespace.
async fn namespaces(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    cluster_view(state, method, raw, headers, recommend::cluster::namespaces).await
}

/// Nodes needed after right-sizing, per node shape.
async fn nodes(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    cluster_view(state, method, raw, headers, recommend::cluster::nodes).await
}

async fn cluster_view(
    state: AppState,
    method: Method,
    raw: Option<String>,
    headers: HeaderMap,
    view: fn(&crate::storage::metrics::MetricsStore, &Report) -> Value,
) -> Response {
    let params = Params::from_request(&method, raw.as_deref(), &headers, &Bytes::new());
    let request = match request_from(&params, &state.config.recommendations) {
        Ok(r) => r,
        Err(m) => return bad_data(m),
    };
    let report = match run(&state, request).await {
        Ok(r) => r,
        Err((status, kind, message)) => return error(status, kind, message),
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || view(&store, &report)).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// At most this many points per chart line (maxima of buckets).
const CHART_POINTS: usize = 720;

fn downsample(values: &[f64], every: usize) -> Vec<Value> {
    values
        .chunks(every.max(1))
        .map(|c| {
            c.iter()
                .copied()
                .filter(|v| !v.is_nan())
                .reduce(f64::max)
                .map_or(Value::Null, |v| json!(v))
        })
        .collect()
}

async fn chart(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_request(&method, raw.as_deref(), &headers, &Bytes::new());
    let mut request = match request_from(&params, &state.config.recommendations) {
        Ok(r) => r,
        Err(m) => return bad_data(m),
    };
    let (Some(ns), Some(name)) = (
        request.filter.namespace.clone(),
        request.filter.workload.clone(),
    ) else {
        return bad_data("namespace and workload are required".into());
    };
    request.filter = Filter {
        namespace: Some(ns),
        workload: Some(name),
    };
    request.keep_series = true;
    let kind = params.get("kind").map(str::to_string);
    let report = match run(&state, request).await {
        Ok(r) => r,
        Err((status, kind, message)) => return error(status, kind, message),
    };
    let Some((i, w)) = report
        .workloads
        .iter()
        .enumerate()
        .find(|(_, w)| kind.as_deref().is_none_or(|k| k.is_empty() || w.kind == k))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such workload in the window".into(),
        );
    };
    let Some(result) = report.results.get(i) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such workload in the window".into(),
        );
    };
    let grid = report.grid;
    let every = grid.len.div_ceil(CHART_POINTS).max(1);
    let times: Vec<f64> = (0..grid.len)
        .step_by(every)
        .map(|k| grid.at(k) as f64 / 1000.0)
        .collect();
    let mut containers = serde_json::Map::new();
    for c in &result.containers {
        let current = &w.containers[&c.container];
        let (cpu, memory) = &result.peaks[&c.container];
        containers.insert(
            c.container.clone(),
            json!({
                "cpu": downsample(cpu, every),
                "memory": downsample(memory, every),
                "current": {"requests": current.requests, "limits": current.limits},
                "recommended": {
                    "requests": {"cpu": c.outcome.cpu.request, "memory": c.outcome.memory.request},
                    "limits": {"cpu": c.outcome.cpu.limit, "memory": c.outcome.memory.limit},
                },
                "backtest": c.backtest,
            }),
        );
    }
    let replay =
        |r: &Option<recommend::hpa::Replay>| r.as_ref().map(|r| downsample(&r.replicas, every));
    Json(json!({
        "namespace": w.namespace,
        "kind": w.kind,
        "name": w.name,
        "times": times,
        "train_end": grid.at((grid.len as f64 * state.config.recommendations.backtest_train_fraction) as usize) as f64 / 1000.0,
        "containers": containers,
        "demand": downsample(&result.demand, every),
        "hpa": result.hpa,
        "current_hpa_replicas": replay(&result.hpa.current_hpa_replay),
        "advised_hpa_replicas": replay(&result.hpa.advised_hpa_replay),
    }))
    .into_response()
}
