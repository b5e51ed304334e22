//! Oxeye: a self-hosted, all-in-one observability server.
//!
//! Data flows one way: [`ingest`] (wire formats) → [`storage`] (WAL, head,
//! blocks, index) → [`api`] (the HTTP and gRPC faces). [`start`] wires it all
//! together; the binary in `main.rs` is a thin shell around it.

pub mod api;
pub mod config;
pub mod dashboards;
pub mod error;
pub mod forward;
pub mod ingest;
pub mod loadgen;
pub mod model;
pub mod query;
pub mod recommend;
pub mod rules;
pub mod selfmon;
pub mod storage;
pub mod ui;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::config::Config;
use crate::ingest::logs::LogsIngest;
use crate::ingest::pipeline::MetricsIngest;
use crate::ingest::spanmetrics::SpanMetrics;
use crate::ingest::traces::TracesIngest;
use crate::ingest::LabelCheck;
use crate::selfmon::SelfMetrics;
use crate::storage::logs::{LogStore, LogStoreOptions};
use crate::storage::metrics::{MetricsStore, StoreOptions};
use crate::storage::traces::{TraceStore, TraceStoreOptions};

pub use crate::error::{Error, Result};

/// A started server: its bound addresses and a handle to stop it.
pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub elasticsearch_addr: SocketAddr,
    pub postgres_addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stop accepting requests, finish in-flight ones (bounded by
    /// `server.shutdown_timeout`) and make the store durable.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        self.state.rules.stop();
        let timeout = self.state.config.server.shutdown_timeout;
        for task in self.tasks {
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!(?timeout, "a listener did not stop in time");
            }
        }
        let traces = self.state.traces.clone();
        let store = self.state.store.clone();
        let logs = self.state.logs.store.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if let Some(span_metrics) = &traces.span_metrics {
                span_metrics.flush(&store, now_ms())?;
            }
            store.close()?;
            logs.close()?;
            traces.store.close()?;
            Ok(())
        })
        .await??;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Wall-clock nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr} for {what}: {err}"))
}

/// Refuse to expose a listener beyond loopback without credentials, unless
/// the operator said so (`server.insecure_listen`, `--insecure-listen`).
fn check_exposure(config: &Config, credentials: bool) -> anyhow::Result<()> {
    if credentials || config.server.insecure_listen {
        return Ok(());
    }
    let s = &config.server;
    let exposed: Vec<String> = [
        ("server.listen", s.listen),
        ("server.otlp_grpc", s.otlp_grpc),
        ("server.otlp_http", s.otlp_http),
        ("server.elasticsearch", s.elasticsearch),
        ("server.postgres", s.postgres),
    ]
    .iter()
    .filter(|(_, addr)| !addr.ip().is_loopback())
    .map(|(key, addr)| format!("{key} = {addr}"))
    .collect();
    if exposed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen beyond loopback without credentials ({}): configure [auth] users or tokens, or set server.insecure_listen = true (--insecure-listen)",
        exposed.join(", ")
    )
}

/// Open the stores, bind every listener and serve until [`RunningServer::shutdown`].
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let auth =
        Arc::new(api::auth::Authenticator::from_config(&config.auth).map_err(anyhow::Error::msg)?);
    check_exposure(&config, auth.enabled())?;
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(api::tls::TlsFiles::read(cert, key)?),
        _ => None,
    };
    // Node-wide parser limits (like Elasticsearch's static settings).
    query::promql::set_max_expression_depth(config.query.max_expression_depth);
    query::logs::ast::set_max_query_depth(config.logs.max_query_depth);
    let options = StoreOptions::from_config(&config);
    let store = tokio::task::spawn_blocking(move || MetricsStore::open(options))
        .await?
        .map_err(|err| anyhow::anyhow!("cannot open the metrics store: {err}"))?;
    let log_options = LogStoreOptions::from_config(&config);
    let log_store = tokio::task::spawn_blocking(move || LogStore::open(log_options))
        .await?
        .map_err(|err| anyhow::anyhow!("cannot open the log store: {err}"))?;
    let trace_options = TraceStoreOptions::from_config(&config);
    let trace_store = tokio::task::spawn_blocking(move || TraceStore::open(trace_options))
        .await?
        .map_err(|err| anyhow::anyhow!("cannot open the trace store: {err}"))?;
    let metrics = SelfMetrics::new();
    {
        let metrics = metrics.clone();
        let _ = store
            .wal_stats()
            .fsync_observer
            .set(Box::new(move |seconds| metrics.observe_fsync(seconds)));
    }
    let budget = ingest::otlp::budget::Budget::from_config(&config.limits);
    let ingest = Arc::new(
        MetricsIngest::new(
            store.clone(),
            LabelCheck::from_limits(&config.limits),
            config.limits.max_body_size.as_usize(),
            metrics.clone(),
        )
        .with_budget(budget)
        .with_promoted_resource_attributes(config.otlp.promote_resource_attributes.clone()),
    );
    let logs = Arc::new(
        LogsIngest::new(
            log_store.clone(),
            config.limits.max_body_size.as_usize(),
            config.logs.max_bulk_documents,
            config.logs.otlp_index.clone(),
            metrics.clone(),
        )
        .with_budget(budget),
    );
    let span_metrics = config.traces.span_metrics.then(|| {
        SpanMetrics::new(
            config.traces.span_metrics_buckets_ms.clone(),
            config.traces.span_metrics_max_series,
        )
        .with_label_limit(config.limits.max_label_value_length)
    });
    let traces = Arc::new(
        TracesIngest::new(
            trace_store.clone(),
            span_metrics.clone(),
            config.limits.max_body_size.as_usize(),
            metrics.clone(),
        )
        .with_budget(budget)
        .with_grace(
            i64::try_from(config.limits.creation_grace_period.as_millis()).unwrap_or(i64::MAX),
        ),
    );
    let rules = rules::RuleManager::new(
        &config,
        store.clone(),
        Some(log_store.clone()),
        metrics.clone(),
    );
    rules
        .reload()
        .map_err(|e| anyhow::anyhow!("cannot load the rule files:\n{e}"))?;
    let results_cache = query::cache::ResultsCache::new(
        &config.cache,
        &store,
        metrics.cache.clone(),
        tokio::runtime::Handle::current(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .map(Arc::new);
    if let Some(cache) = &results_cache {
        cache.track(&log_store.late);
        cache.track(&trace_store.late);
    }
    let sql = Arc::new(
        query::sql::SqlEngine::new(
            &config,
            store.clone(),
            log_store.clone(),
            trace_store.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot start SQL: {e}"))?,
    );
    let dashboards = {
        let options = dashboards::Options::from_config(&config);
        let builtin = config.dashboards.builtin;
        let dir = config.dashboards.provision_path(&config.dir);
        tokio::task::spawn_blocking(move || {
            let store = dashboards::DashboardStore::open(options)?;
            let saved = dashboards::provision_all(&store, builtin, dir.as_deref());
            if saved > 0 {
                tracing::info!("{saved} dashboards provisioned");
            }
            Ok::<_, dashboards::DashboardError>(store)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("cannot open the dashboards: {e}"))?
    };
    let (shutdown, stopping) = watch::channel(false);
    let (forwarders, forward_tasks) =
        forward::Forwarders::start(&config, &store, &trace_store, &log_store, stopping.clone())?;
    let state = AppState {
        config: config.clone(),
        store: store.clone(),
        ingest: ingest.clone(),
        logs: logs.clone(),
        traces: traces.clone(),
        es_settings: Default::default(),
        stopping,
        metrics,
        ready: Arc::new(AtomicBool::new(false)),
        started: SystemTime::now(),
        query_slots: Arc::new(tokio::sync::Semaphore::new(config.query.max_concurrent)),
        auth: auth.clone(),
        rules: rules.clone(),
        results_cache,
        sql: sql.clone(),
        dashboards: Arc::new(dashboards),
        forwarders,
    };

    let http = bind(config.server.listen, "HTTP").await?;
    let otlp_http = bind(config.server.otlp_http, "OTLP/HTTP").await?;
    let otlp_grpc = bind(config.server.otlp_grpc, "OTLP/gRPC").await?;
    let elasticsearch = bind(config.server.elasticsearch, "the Elasticsearch API").await?;
    let postgres = bind(
        config.server.postgres,
        "the PostgreSQL protocol (server.postgres, --postgres)",
    )
    .await?;
    let postgres_addr = postgres.local_addr()?;
    let addrs = (
        http.local_addr()?,
        otlp_http.local_addr()?,
        otlp_grpc.local_addr()?,
        elasticsearch.local_addr()?,
    );
    let signal = |tx: &watch::Sender<bool>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = forward_tasks;
    let tls_config = tls
        .as_ref()
        .map(|files| files.server_config())
        .transpose()?;
    for (listener, app, name) in [
        (http, api::router(state.clone()), "HTTP"),
        (otlp_http, api::otlp_http_router(state.clone()), "OTLP/HTTP"),
        (
            elasticsearch,
            api::elasticsearch::router(state.clone()),
            "Elasticsearch API",
        ),
    ] {
        let stop = signal(&shutdown);
        let result = match &tls_config {
            None => tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }),
            Some(config) => {
                let listener = api::tls::TlsListener::new(listener, config.clone())?;
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                })
            }
        };
        tasks.push(tokio::spawn(async move {
            match result.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "{name} server failed"),
                Err(err) => tracing::error!(error = %err, "{name} server task failed"),
            }
        }));
    }
    tasks.push(tokio::spawn(api::postgres::serve(
        postgres,
        sql,
        auth.clone(),
        state.metrics.clone(),
        signal(&shutdown),
    )));
    let max_message = config.limits.max_body_size.as_usize();
    let forwarders = state.forwarders.clone();
    let grpc = api::otlp::MetricsGrpc::server(ingest, forwarders.clone(), max_message);
    let logs_grpc = api::otlp::LogsGrpc::server(logs, forwarders.clone(), max_message);
    let traces_grpc = api::otlp::TracesGrpc::server(traces, forwarders, max_message);
    let stop = signal(&shutdown);
    let mut grpc_server = tonic::transport::Server::builder();
    if let Some(files) = &tls {
        let identity = tonic::transport::Identity::from_pem(&files.cert_pem, &files.key_pem);
        grpc_server = grpc_server
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| anyhow::anyhow!("OTLP/gRPC TLS: {e}"))?;
    }
    tasks.push(tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(otlp_grpc);
        if let Err(err) = grpc_server
            .layer(api::auth::GrpcAuthLayer { auth })
            .add_service(grpc)
            .add_service(logs_grpc)
            .add_service(traces_grpc)
            .serve_with_incoming_shutdown(incoming, stop)
            .await
        {
            tracing::error!(error = %err, "OTLP/gRPC server failed");
        }
    }));
    let span_metrics_store = store.clone();
    // Maintenance: head cuts and retention, off the async runtime.
    let mut stop = shutdown.subscribe();
    let interval = config.storage.maintenance_interval;
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let store = store.clone();
            let result = tokio::task::spawn_blocking(move || store.maintain(now_ms())).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "maintenance failed"),
                Err(err) => tracing::error!(error = %err, "maintenance task panicked"),
            }
        }
    }));
    // Log index commits (records become searchable), off the async runtime.
    let mut stop = shutdown.subscribe();
    let commit_every = config.logs.commit_interval;
    let commit_store = log_store.clone();
    tasks.push(tokio::spawn(async move {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + commit_every, commit_every);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let store = commit_store.clone();
            let idle_ms = i64::try_from(commit_every.as_millis() * 10).unwrap_or(i64::MAX);
            let result = tokio::task::spawn_blocking(move || {
                store.commit()?;
                store.maintain(now_ms(), idle_ms)
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "log index commit failed"),
                Err(err) => tracing::error!(error = %err, "log commit task panicked"),
            }
        }
    }));
    // Ingest totals for the dashboard's per-second rates.
    let mut stop = shutdown.subscribe();
    let sampler = state.metrics.clone();
    tasks.push(tokio::spawn(async move {
        let every = std::time::Duration::from_secs(10);
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticker.tick() => sampler.sample_rates(),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }));
    // Span blocks, trace retention and span metrics, off the async runtime.
    let mut stop = shutdown.subscribe();
    let every = config.traces.span_metrics_interval;
    let metrics_store = span_metrics_store;
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let (traces, metrics_store, span_metrics) = (
                trace_store.clone(),
                metrics_store.clone(),
                span_metrics.clone(),
            );
            let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                if let Some(span_metrics) = span_metrics {
                    span_metrics.flush(&metrics_store, now_ms())?;
                }
                traces.maintain(now_ms())?;
                Ok(())
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "trace maintenance failed"),
                Err(err) => tracing::error!(error = %err, "trace maintenance task panicked"),
            }
        }
    }));
    // Alert delivery to Alertmanager.
    let mut stop = shutdown.subscribe();
    let notifier = rules.notifier().clone();
    tasks.push(tokio::spawn(async move {
        tokio::select! {
            _ = notifier.run() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }));
    state.ready.store(true, Ordering::Release);
    tracing::info!(
        http = %addrs.0,
        otlp_http = %addrs.1,
        otlp_grpc = %addrs.2,
        elasticsearch = %addrs.3,
        postgres = %postgres_addr,
        data = %config.storage.data_dir.display(),
        "oxeye ready"
    );
    Ok(RunningServer {
        http_addr: addrs.0,
        otlp_http_addr: addrs.1,
        otlp_grpc_addr: addrs.2,
        elasticsearch_addr: addrs.3,
        postgres_addr,
        state,
        shutdown,
        tasks,
    })
}
