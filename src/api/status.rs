//! Prometheus' status and utility endpoints: `/api/v1/status/*`,
//! `/api/v1/format_query`, `/api/v1/parse_query`, and `/federate`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::params::Params;
use super::prometheus::{params, run_blocking, success, ApiError};
use super::AppState;
use crate::error::Error;

/// The Prometheus HTTP API version Oxeye answers like, reported (with
/// Oxeye's own version) by buildinfo so that clients enable the right features.
const PROMETHEUS_API_VERSION: &str = "3.0.0";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/tsdb", get(tsdb))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/parse_query", get(parse_query).post(parse_query))
        .route("/federate", get(federate))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": format!("{PROMETHEUS_API_VERSION}+oxeye.{}", env!("CARGO_PKG_VERSION")),
        "revision": option_env!("OXEYE_GIT_REVISION").unwrap_or("unknown"),
        "branch": option_env!("OXEYE_GIT_BRANCH").unwrap_or("unknown"),
        "buildUser": "oxeye",
        "buildDate": option_env!("OXEYE_BUILD_DATE").unwrap_or("unknown"),
        "goVersion": "n/a (Rust)",
        "application": "oxeye",
        "oxeyeVersion": env!("CARGO_PKG_VERSION"),
    }))
}

fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

async fn runtimeinfo(State(state): State<AppState>) -> Response {
    let retention = humantime::format_duration(state.config.storage.retention).to_string();
    success(json!({
        "startTime": rfc3339(state.started),
        "CWD": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": state.rules.last_reload_error.lock().is_none(),
        "lastConfigTime": rfc3339(state.started),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": retention,
    }))
}

/// The effective configuration as `section.key` → value strings.
fn flattened(state: &AppState) -> BTreeMap<String, String> {
    let text = config_toml(state);
    let mut out = BTreeMap::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        for (section, value) in table {
            if let toml::Value::Table(keys) = value {
                for (key, value) in keys {
                    let text = match value {
                        toml::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(format!("{section}.{key}"), text);
                }
            }
        }
    }
    out
}

fn config_toml(state: &AppState) -> String {
    let c = &state.config;
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    format!(
        "[server]\nlisten = \"{}\"\notlp_grpc = \"{}\"\notlp_http = \"{}\"\nshutdown_timeout = \"{}\"\n\n\
         [storage]\ndata_dir = {:?}\nretention = \"{}\"\nblock_duration = \"{}\"\nout_of_order_window = \"{}\"\nmaintenance_interval = \"{}\"\n\n\
         [wal]\nfsync = \"{}\"\nfsync_interval = \"{}\"\nsegment_size = \"{}\"\n\n\
         [limits]\nmax_body_size = \"{}\"\nmax_series_per_request = {}\nmax_labels_per_series = {}\nmax_label_name_length = {}\nmax_label_value_length = {}\nmax_active_series = {}\nmax_exemplars = {}\n\n\
         [query]\nlookback_delta = \"{}\"\nmax_samples = {}\ntimeout = \"{}\"\nmax_concurrent = {}\n\n\
         [log]\nlevel = {:?}\n",
        c.server.listen,
        c.server.otlp_grpc,
        c.server.otlp_http,
        d(c.server.shutdown_timeout),
        c.storage.data_dir.display().to_string(),
        d(c.storage.retention),
        d(c.storage.block_duration),
        d(c.storage.out_of_order_window),
        d(c.storage.maintenance_interval),
        match c.wal.fsync {
            crate::config::FsyncPolicy::Always => "always",
            crate::config::FsyncPolicy::Interval => "interval",
        },
        d(c.wal.fsync_interval),
        c.wal.segment_size,
        c.limits.max_body_size,
        c.limits.max_series_per_request,
        c.limits.max_labels_per_series,
        c.limits.max_label_name_length,
        c.limits.max_label_value_length,
        c.limits.max_active_series,
        c.limits.max_exemplars,
        d(c.query.lookback_delta),
        c.query.max_samples,
        d(c.query.timeout),
        c.query.max_concurrent,
        c.log.level,
    )
}

async fn flags(State(state): State<AppState>) -> Response {
    success(json!(flattened(&state)))
}

/// Prometheus names the field `yaml`; Oxeye's configuration is TOML.
async fn config(State(state): State<AppState>) -> Response {
    success(json!({"yaml": config_toml(&state)}))
}

async fn tsdb(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::from_request(
        &Method::GET,
        raw.as_deref(),
        &HeaderMap::new(),
        &Bytes::new(),
    );
    let limit = params.limit()?.unwrap_or(10);
    let store = state.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.index_stats(limit))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let list = |items: &[(String, u64)]| {
        items
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect::<Vec<_>>()
    };
    Ok(success(json!({
        "headStats": {
            "numSeries": stats.num_series,
            "numLabelPairs": stats.num_label_pairs,
            "chunkCount": stats.chunk_count,
            "minTime": stats.min_time.unwrap_or(i64::MAX),
            "maxTime": stats.max_time.unwrap_or(i64::MIN),
        },
        "seriesCountByMetricName": list(&stats.series_count_by_metric_name),
        "labelValueCountByLabelName": list(&stats.label_value_count_by_label_name),
        "memoryInBytesByLabelName": list(&stats.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": list(&stats.series_count_by_label_value_pair),
    })))
}

async fn format_query(
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(&method, &raw, &headers, &body);
    let text = run_blocking(move || {
        crate::query::promql::with_stack(|| params.expr().map(|expr| expr.prettify()))
    })
    .await?;
    Ok(success(Value::String(text)))
}

async fn parse_query(
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(&method, &raw, &headers, &body);
    let tree = run_blocking(move || {
        crate::query::promql::with_stack(|| {
            let expr = params.expr()?;
            serde_json::to_value(&expr).map_err(|e| Error::Internal(e.to_string()))
        })
    })
    .await?;
    Ok(success(tree))
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints it, which
/// the Prometheus text format uses (`1e+06`, `0.0001`, `1e-05`).
pub fn go_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest digits; Go's 'g' uses exponent form when the decimal
    // exponent is below -4 or at least 6 (its precision for shortest output).
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    if !(-4..6).contains(&exponent) {
        return format!(
            "{mantissa}e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    }
    format!("{value}")
}

/// `GET /federate?match[]=…`: the newest sample of every matching series in
/// the text exposition format, for Prometheus' federation scrapes.
async fn federate(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let params = Params::from_request(
        &Method::GET,
        raw.as_deref(),
        &HeaderMap::new(),
        &Bytes::new(),
    );
    let sets = match run_blocking(move || params.matcher_sets()).await {
        Ok(sets) => sets,
        Err(err) => return (err.http_status(), format!("{err}\n")).into_response(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let lookback = state.config.query.lookback_delta.as_millis() as i64;
    let store = state.store.clone();
    let text = tokio::task::spawn_blocking(move || {
        let mut latest: BTreeMap<String, Vec<(String, f64, i64)>> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for set in &sets {
            for series in store.select(set, now - lookback + 1, now) {
                let Some(last) = series.samples.last() else {
                    continue;
                };
                if crate::model::is_stale_nan(last.v) || !seen.insert(series.labels.clone()) {
                    continue;
                }
                let name = series.labels.metric_name().unwrap_or("").to_owned();
                let mut line = name.clone();
                let others: Vec<String> = series
                    .labels
                    .iter()
                    .filter(|l| l.name != crate::model::METRIC_NAME)
                    .map(|l| format!("{}=\"{}\"", l.name, escape_label_value(l.value)))
                    .collect();
                line.push('{');
                line.push_str(&others.join(","));
                line.push('}');
                latest.entry(name).or_default().push((line, last.v, last.t));
            }
        }
        let mut out = String::new();
        for (name, lines) in latest {
            out.push_str(&format!("# TYPE {name} untyped\n"));
            for (line, value, t) in lines {
                out.push_str(&format!("{line} {} {t}\n", go_float(value)));
            }
        }
        out
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::go_float;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}
