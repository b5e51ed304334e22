//! HTTP and gRPC faces. Each external API has its own module; all of them
//! share [`AppState`] and map errors through [`crate::error::Error`].

pub mod auth;
pub mod browser;
pub mod dashboards;
pub mod elasticsearch;
pub mod jaeger;
pub mod logs;
pub mod otlp;
pub mod params;
pub mod postgres;
pub mod prometheus;
pub mod query;
pub mod recommendations;
pub mod remote_read;
pub mod rules;
pub mod sql;
pub mod status;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::Config;
use crate::ingest::logs::LogsIngest;
use crate::ingest::pipeline::MetricsIngest;
use crate::ingest::traces::TracesIngest;
use crate::selfmon::SelfMetrics;
use crate::storage::metrics::MetricsStore;

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<MetricsStore>,
    pub ingest: Arc<MetricsIngest>,
    pub logs: Arc<LogsIngest>,
    pub traces: Arc<TracesIngest>,
    /// Index templates, ILM policies, pipelines, data streams (`kind/name` → body).
    pub es_settings: Arc<parking_lot::Mutex<std::collections::BTreeMap<String, serde_json::Value>>>,
    /// Becomes true when shutdown begins (ends long-lived streams).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<SelfMetrics>,
    /// False until start-up finished and again once shutdown begins.
    pub ready: Arc<AtomicBool>,
    pub started: std::time::SystemTime,
    /// Bounds concurrent PromQL queries (`query.max_concurrent`); others wait.
    pub query_slots: Arc<tokio::sync::Semaphore>,
    /// Credentials and roles (`[auth]`), checked on every listener.
    pub auth: Arc<auth::Authenticator>,
    /// Recording and alerting rules, and alert delivery.
    pub rules: Arc<crate::rules::RuleManager>,
    /// `[cache]`: range queries over the past answered from earlier ones.
    pub results_cache: Option<Arc<crate::query::cache::ResultsCache>>,
    /// SQL over every signal (`POST /api/v1/sql`, the PostgreSQL listener).
    pub sql: Arc<crate::query::sql::SqlEngine>,
    /// Saved dashboards (`/api/v1/dashboards`, `/ui/dashboards`).
    pub dashboards: Arc<crate::dashboards::DashboardStore>,
    /// `[forward]` destinations and their figures.
    pub forwarders: Arc<crate::forward::Forwarders>,
}

/// 503 with `Retry-After`: ingest refused for now (`forward.on_backlog =
/// "block"`); every sender retries it.
pub fn retry_later(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "5")],
        format!("{why}\n"),
    )
        .into_response()
}

impl AppState {
    /// A `query.max_concurrent` slot, counted in `oxeye_queries_waiting`
    /// while it is awaited; `None` when shutting down. Move it into the
    /// blocking work, so that it lasts as long as the work does.
    pub async fn query_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(slot) = self.query_slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        let gauge = &self.metrics.queries_waiting;
        gauge.inc();
        // Decremented however the wait ends (also when the client leaves).
        struct Waiting<'a>(&'a prometheus_client::metrics::gauge::Gauge<i64>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        let _waiting = Waiting(gauge);
        self.query_slots.clone().acquire_owned().await.ok()
    }
}

/// The main HTTP listener's routes.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.limits.max_body_size.as_usize();
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(self_metrics))
        .merge(prometheus::routes())
        .merge(query::routes())
        .merge(sql::routes())
        .merge(dashboards::routes(
            state.config.dashboards.max_size.as_usize(),
        ))
        .merge(rules::routes())
        .merge(recommendations::routes())
        .merge(status::routes())
        .merge(otlp::http_routes())
        .merge(logs::routes())
        .merge(jaeger::routes())
        .merge(crate::ui::routes())
        // The Elasticsearch API under /es on this listener too, so that the
        // dashboard pages (and a Grafana data source given one URL) reach
        // it from the same origin.
        .nest_service("/es", elasticsearch::router(state.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            auth::Guard {
                auth: state.auth.clone(),
                rule: auth::main_listener_role,
                realm: "oxeye",
                elasticsearch: false,
            },
            auth::require,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(browser::BrowserPolicy::from_config(&state.config.server)),
            browser::guard,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The OTLP/HTTP listener's routes (`/v1/metrics`, …).
pub fn otlp_http_router(state: AppState) -> Router {
    let max_body = state.config.limits.max_body_size.as_usize();
    otlp::http_routes()
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            auth::Guard {
                auth: state.auth.clone(),
                rule: |_, _| Some(auth::Role::Write),
                realm: "oxeye",
                elasticsearch: false,
            },
            auth::require,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn healthy() -> &'static str {
    "Oxeye is Healthy.\n"
}

async fn ready(State(state): State<AppState>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response();
    }
    // A store whose WAL stopped takes no writes: not ready (still healthy,
    // and still answering reads).
    let stopped = [
        state.store.wal_failure(),
        state.logs.store.wal_failure(),
        state.traces.store.wal_failure(),
    ];
    if let Some(why) = stopped.into_iter().flatten().next() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    "Oxeye is Ready.\n".into_response()
}

async fn self_metrics(State(state): State<AppState>) -> Response {
    // Rendering walks the data directories for sizes: off the runtime.
    let body = tokio::task::spawn_blocking(move || {
        let mut text = state
            .metrics
            .render(&state.store, &state.logs.store, &state.traces.store);
        let mut forward = String::new();
        state.forwarders.render(&mut forward);
        match text.rfind("# EOF") {
            Some(at) => text.insert_str(at, &forward),
            None => text.push_str(&forward),
        }
        text
    })
    .await;
    let Ok(body) = body else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics worker failed\n").into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found(request: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("404 page not found: {}\n", request.uri().path()),
    )
        .into_response()
}

/// Records request latency per route for the self-metrics.
pub(crate) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe_http(&route, response.status().as_u16(), started.elapsed());
    response
}
