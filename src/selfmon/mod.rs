//! Oxeye's own metrics, served at `GET /metrics` in the Prometheus text
//! format (OpenMetrics flavour), plus a short list of recent ingest errors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod process;

use crate::storage::logs::LogStore;
use crate::storage::metrics::MetricsStore;
use crate::storage::traces::TraceStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    source: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
    code: String,
}

type Gauges = Gauge<i64>;

/// How many recent ingest errors are kept for the status page.
const RECENT_ERRORS: usize = 20;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleGroupLabels {
    rule_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertmanagerLabels {
    alertmanager: String,
}

/// Rule evaluation and alert delivery, under Prometheus' names with the
/// `oxeye_` prefix (`oxeye_rule_evaluation_failures_total`, …).
struct RuleMetrics {
    evaluations: Family<RuleGroupLabels, Counter>,
    failures: Family<RuleGroupLabels, Counter>,
    missed: Family<RuleGroupLabels, Counter>,
    last_duration: Family<RuleGroupLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    reload_success: Gauges,
    sent: Family<AlertmanagerLabels, Counter>,
    errors: Family<AlertmanagerLabels, Counter>,
    dropped: Counter,
    queue_length: Gauges,
}

impl RuleMetrics {
    fn register(registry: &mut Registry) -> RuleMetrics {
        let m = RuleMetrics {
            evaluations: Default::default(),
            failures: Default::default(),
            missed: Default::default(),
            last_duration: Default::default(),
            reload_success: Default::default(),
            sent: Default::default(),
            errors: Default::default(),
            dropped: Default::default(),
            queue_length: Default::default(),
        };
        registry.register(
            "rule_evaluations",
            "Rule evaluations, by group",
            m.evaluations.clone(),
        );
        registry.register(
            "rule_evaluation_failures",
            "Rule evaluations that failed, by group",
            m.failures.clone(),
        );
        registry.register(
            "rule_group_iterations_missed",
            "Rule group evaluations skipped because the previous one took too long",
            m.missed.clone(),
        );
        registry.register(
            "rule_group_last_duration_seconds",
            "Duration of the last evaluation of each rule group",
            m.last_duration.clone(),
        );
        registry.register(
            "rules_config_last_reload_successful",
            "Whether the last reload of the rule files succeeded",
            m.reload_success.clone(),
        );
        registry.register(
            "notifications_sent",
            "Alerts sent, by Alertmanager",
            m.sent.clone(),
        );
        registry.register(
            "notifications_errors",
            "Alerts whose sending failed, by Alertmanager",
            m.errors.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Alerts dropped: the queue was full, or no Alertmanager took them",
            m.dropped.clone(),
        );
        registry.register(
            "notifications_queue_length",
            "Alerts waiting to be sent",
            m.queue_length.clone(),
        );
        m
    }
}

pub struct SelfMetrics {
    registry: Registry,
    rules: RuleMetrics,
    /// The results cache's (`oxeye_results_cache_*`).
    pub cache: crate::query::cache::CacheMetrics,
    samples_ingested: Family<SourceLabels, Counter>,
    samples_rejected: Family<RejectLabels, Counter>,
    spans_ingested: Family<SourceLabels, Counter>,
    spans_rejected: Family<SourceLabels, Counter>,
    trace_head_spans: Gauges,
    trace_blocks: Gauges,
    trace_block_bytes: Gauges,
    trace_block_index_bytes: Gauges,
    span_metrics_dropped: Counter,
    /// Recommendation runs, workloads analysed and run durations.
    pub recommendation_runs: Counter,
    pub recommendation_workloads: Counter,
    pub recommendation_duration: Histogram,
    /// PromQL evaluations holding a `query.max_concurrent` slot, and
    /// queries and log searches waiting for one.
    pub queries_running: Gauges,
    pub queries_waiting: Gauges,
    log_records_ingested: Family<SourceLabels, Counter>,
    log_records_rejected: Family<SourceLabels, Counter>,
    log_commits: Counter,
    log_disk_bytes: Gauges,
    log_wal_bytes: Gauges,
    log_indices: Gauges,
    ingest_requests: Family<RequestLabels, Counter>,
    http_duration: Family<HandlerLabels, Histogram>,
    wal_fsync_duration: Histogram,
    sql_queries: Family<OutcomeLabels, Counter>,
    sql_duration: Histogram,
    // Set from the stores at scrape time.
    series_created: Counter,
    compactions: Counter,
    compaction_failures: Counter,
    compaction_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    compaction_cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    compaction_bytes: Counter,
    wal_bytes_written: Counter,
    wal_fsyncs: Counter,
    out_of_order_samples: Counter,
    series: Gauges,
    head_min_time: Gauges,
    head_max_time: Gauges,
    head_series: Gauges,
    head_samples: Gauges,
    blocks: Gauges,
    block_bytes: Gauges,
    wal_bytes: Gauges,
    index_bytes: Gauges,
    recent_errors: Mutex<VecDeque<RecentError>>,
    /// Totals sampled every few seconds, for per-second rates on the dashboard.
    rate_samples: Mutex<VecDeque<(std::time::Instant, Vec<IngestTotal>)>>,
}

/// Records of one signal from one receiver since start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestTotal {
    pub signal: &'static str,
    pub source: &'static str,
    pub total: u64,
}

/// A per-second rate over the sampled window.
#[derive(Debug, Clone)]
pub struct IngestRate {
    pub signal: &'static str,
    pub source: &'static str,
    pub per_second: f64,
    pub total: u64,
}

const RATE_SAMPLES: usize = 7;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentError {
    pub time: f64,
    pub source: String,
    pub message: String,
}

fn request_histogram() -> Histogram {
    // 100µs … ~6.5s
    Histogram::new(exponential_buckets(0.0001, 3.0, 11))
}

impl SelfMetrics {
    pub fn new() -> Arc<SelfMetrics> {
        let mut registry = Registry::with_prefix("oxeye");
        let samples_ingested = Family::<SourceLabels, Counter>::default();
        registry.register(
            "samples_ingested",
            "Samples stored, by receiver",
            samples_ingested.clone(),
        );
        let samples_rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "samples_rejected",
            "Samples refused, by receiver and reason",
            samples_rejected.clone(),
        );
        let spans_ingested = Family::<SourceLabels, Counter>::default();
        registry.register(
            "spans_ingested",
            "Spans stored, by receiver",
            spans_ingested.clone(),
        );
        let spans_rejected = Family::<SourceLabels, Counter>::default();
        registry.register(
            "spans_rejected",
            "Spans refused, by receiver",
            spans_rejected.clone(),
        );
        let trace_head_spans = Gauges::default();
        registry.register(
            "trace_head_spans",
            "Spans in the in-memory head of the trace store",
            trace_head_spans.clone(),
        );
        let trace_blocks = Gauges::default();
        registry.register("trace_blocks", "Span blocks on disk", trace_blocks.clone());
        let queries_running = Gauges::default();
        registry.register(
            "queries_running",
            "PromQL evaluations holding a query.max_concurrent slot (until evaluation ends, even if the client left)",
            queries_running.clone(),
        );
        let queries_waiting = Gauges::default();
        registry.register(
            "queries_waiting",
            "Queries and log searches waiting for a query.max_concurrent slot",
            queries_waiting.clone(),
        );
        let span_metrics_dropped = Counter::default();
        registry.register(
            "span_metrics_dropped_spans",
            "Spans not counted in span metrics because traces.span_metrics_max_series was reached",
            span_metrics_dropped.clone(),
        );
        let trace_block_bytes = Gauges::default();
        registry.register(
            "trace_block_bytes",
            "Bytes of span blocks on disk",
            trace_block_bytes.clone(),
        );
        let trace_block_index_bytes = Gauges::default();
        registry.register(
            "trace_block_index_bytes",
            "Bytes of memory held by the span blocks' in-memory indexes (batch id ranges, trace-id filters, service batches)",
            trace_block_index_bytes.clone(),
        );
        let log_records_ingested = Family::<SourceLabels, Counter>::default();
        registry.register(
            "log_records_ingested",
            "Log records stored, by receiver",
            log_records_ingested.clone(),
        );
        let log_records_rejected = Family::<SourceLabels, Counter>::default();
        registry.register(
            "log_records_rejected",
            "Log records refused, by receiver",
            log_records_rejected.clone(),
        );
        let log_commits = Counter::default();
        registry.register(
            "log_index_commits",
            "Log index commits (records become searchable)",
            log_commits.clone(),
        );
        let log_disk_bytes = Gauges::default();
        registry.register(
            "log_index_bytes",
            "Bytes of the log index partitions on disk",
            log_disk_bytes.clone(),
        );
        let log_wal_bytes = Gauges::default();
        registry.register(
            "log_wal_bytes",
            "Bytes of the log WAL on disk",
            log_wal_bytes.clone(),
        );
        let log_indices = Gauges::default();
        registry.register("log_indices", "Log indices", log_indices.clone());
        let ingest_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ingest_requests",
            "Write requests, by receiver and outcome (ok, partial, bad_request, too_large, unsupported_media_type, error)",
            ingest_requests.clone(),
        );
        let http_duration = Family::<HandlerLabels, Histogram>::new_with_constructor(
            request_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status code",
            http_duration.clone(),
        );
        let wal_fsync_duration = Histogram::new(exponential_buckets(0.00005, 2.5, 12));
        registry.register(
            "wal_fsync_duration_seconds",
            "Latency of WAL fsyncs",
            wal_fsync_duration.clone(),
        );
        let sql_queries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sql_queries",
            "SQL statements run (HTTP and PostgreSQL protocol), by outcome (ok or the error kind)",
            sql_queries.clone(),
        );
        let sql_duration = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        registry.register(
            "sql_query_duration_seconds",
            "Time from a SQL statement's arrival to its last row",
            sql_duration.clone(),
        );
        let series_created = Counter::default();
        registry.register("series_created", "Series created", series_created.clone());
        let compactions = Counter::default();
        registry.register(
            "compactions",
            "Block compactions (merges of small blocks into a larger one)",
            compactions.clone(),
        );
        let compaction_failures = Counter::default();
        registry.register(
            "compaction_failures",
            "Block compactions that failed (the source blocks stay)",
            compaction_failures.clone(),
        );
        let compaction_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "compaction_duration_seconds",
            "Wall-clock time spent compacting blocks",
            compaction_seconds.clone(),
        );
        let compaction_cpu_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "compaction_cpu_seconds",
            "CPU time spent compacting blocks",
            compaction_cpu_seconds.clone(),
        );
        let compaction_bytes = Counter::default();
        registry.register(
            "compaction_written_bytes",
            "Bytes of blocks written by compactions",
            compaction_bytes.clone(),
        );
        let wal_bytes_written = Counter::default();
        registry.register(
            "wal_written_bytes",
            "Bytes appended to the WAL",
            wal_bytes_written.clone(),
        );
        let wal_fsyncs = Counter::default();
        registry.register("wal_fsyncs", "WAL fsyncs", wal_fsyncs.clone());
        let out_of_order_samples = Counter::default();
        registry.register(
            "samples_out_of_order",
            "Samples accepted inside the out-of-order window",
            out_of_order_samples.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauges::default();
            registry.register(name, help, g.clone());
            g
        };
        let series = gauge(&mut registry, "series", "Series in the index");
        let head_series = gauge(
            &mut registry,
            "head_series",
            "Series with samples in the in-memory head",
        );
        let head_samples = gauge(
            &mut registry,
            "head_samples",
            "Samples in the in-memory head",
        );
        let blocks = gauge(&mut registry, "blocks", "Metrics blocks on disk");
        let block_bytes = gauge(
            &mut registry,
            "block_bytes",
            "Bytes of metrics blocks on disk",
        );
        let wal_bytes = gauge(&mut registry, "wal_bytes", "Bytes of WAL segments on disk");
        let index_bytes = gauge(
            &mut registry,
            "index_bytes",
            "Bytes of the series index on disk",
        );
        let head_min_time = gauge(
            &mut registry,
            "head_min_time_ms",
            "Oldest sample timestamp in the head (ms since the epoch)",
        );
        let head_max_time = gauge(
            &mut registry,
            "head_max_time_ms",
            "Newest sample timestamp in the head (ms since the epoch)",
        );
        let rules = RuleMetrics::register(&mut registry);
        let cache = crate::query::cache::CacheMetrics::register(&mut registry);
        let recommendation_runs = Counter::default();
        registry.register(
            "recommendation_runs",
            "Kubernetes recommendation runs",
            recommendation_runs.clone(),
        );
        let recommendation_workloads = Counter::default();
        registry.register(
            "recommendation_workloads",
            "Workloads analysed by recommendation runs",
            recommendation_workloads.clone(),
        );
        let recommendation_duration = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        registry.register(
            "recommendation_duration_seconds",
            "Duration of recommendation runs",
            recommendation_duration.clone(),
        );
        Arc::new(SelfMetrics {
            recommendation_runs,
            recommendation_workloads,
            recommendation_duration,
            rules,
            cache,
            registry,
            samples_ingested,
            samples_rejected,
            ingest_requests,
            http_duration,
            wal_fsync_duration,
            sql_queries,
            sql_duration,
            series_created,
            compactions,
            compaction_failures,
            compaction_seconds,
            compaction_cpu_seconds,
            compaction_bytes,
            wal_bytes_written,
            wal_fsyncs,
            out_of_order_samples,
            series,
            head_min_time,
            head_max_time,
            head_series,
            head_samples,
            blocks,
            block_bytes,
            wal_bytes,
            index_bytes,
            spans_ingested,
            spans_rejected,
            trace_head_spans,
            trace_blocks,
            trace_block_bytes,
            trace_block_index_bytes,
            span_metrics_dropped,
            queries_running,
            queries_waiting,
            log_records_ingested,
            log_records_rejected,
            log_commits,
            log_disk_bytes,
            log_wal_bytes,
            log_indices,
            recent_errors: Mutex::new(VecDeque::new()),
            rate_samples: Mutex::new(VecDeque::new()),
        })
    }

    pub fn rule_group_evaluated(&self, group: &str, seconds: f64) {
        let labels = RuleGroupLabels {
            rule_group: group.into(),
        };
        self.rules.evaluations.get_or_create(&labels).inc();
        self.rules.last_duration.get_or_create(&labels).set(seconds);
    }

    pub fn rule_evaluation_failed(&self, group: &str) {
        self.rules
            .failures
            .get_or_create(&RuleGroupLabels {
                rule_group: group.into(),
            })
            .inc();
    }

    pub fn rule_group_missed(&self, group: &str, count: u64) {
        self.rules
            .missed
            .get_or_create(&RuleGroupLabels {
                rule_group: group.into(),
            })
            .inc_by(count);
    }

    pub fn rule_reload(&self, success: bool) {
        self.rules.reload_success.set(i64::from(success));
    }

    pub fn notification_sent(&self, alertmanager: &str, count: usize, failed: bool) {
        let labels = AlertmanagerLabels {
            alertmanager: alertmanager.into(),
        };
        self.rules.sent.get_or_create(&labels).inc_by(count as u64);
        if failed {
            self.rules
                .errors
                .get_or_create(&labels)
                .inc_by(count as u64);
        }
    }

    pub fn notifications_dropped(&self, count: usize) {
        self.rules.dropped.inc_by(count as u64);
    }

    pub fn notification_queue(&self, length: usize) {
        self.rules
            .queue_length
            .set(i64::try_from(length).unwrap_or(i64::MAX));
    }

    pub fn samples_ingested(&self, source: &str, count: u64) {
        self.samples_ingested
            .get_or_create(&SourceLabels {
                source: source.into(),
            })
            .inc_by(count);
    }

    pub fn samples_rejected(&self, source: &str, reason: &str, count: u64) {
        self.samples_rejected
            .get_or_create(&RejectLabels {
                source: source.into(),
                reason: reason.into(),
            })
            .inc_by(count);
    }

    pub fn log_records(&self, source: &str, ingested: u64, rejected: u64) {
        let labels = SourceLabels {
            source: source.into(),
        };
        self.log_records_ingested
            .get_or_create(&labels)
            .inc_by(ingested);
        if rejected > 0 {
            self.log_records_rejected
                .get_or_create(&labels)
                .inc_by(rejected);
        }
    }

    pub fn spans(&self, source: &str, ingested: u64, rejected: u64) {
        let labels = SourceLabels {
            source: source.into(),
        };
        self.spans_ingested.get_or_create(&labels).inc_by(ingested);
        if rejected > 0 {
            self.spans_rejected.get_or_create(&labels).inc_by(rejected);
        }
    }

    pub fn span_metrics_dropped(&self, spans: u64) {
        if spans > 0 {
            self.span_metrics_dropped.inc_by(spans);
        }
    }

    pub fn ingest_request(&self, source: &str, outcome: &str) {
        self.ingest_requests
            .get_or_create(&RequestLabels {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn observe_http(&self, handler: &str, code: u16, elapsed: Duration) {
        self.http_duration
            .get_or_create(&HandlerLabels {
                handler: handler.into(),
                code: code.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One SQL statement: its error kind (`None`: it succeeded) and time.
    pub fn observe_sql(&self, error: Option<&str>, elapsed: std::time::Duration) {
        self.sql_queries
            .get_or_create(&OutcomeLabels {
                outcome: error.unwrap_or("ok").to_owned(),
            })
            .inc();
        self.sql_duration.observe(elapsed.as_secs_f64());
    }

    pub fn observe_fsync(&self, seconds: f64) {
        self.wal_fsync_duration.observe(seconds);
    }

    pub fn record_ingest_error(&self, source: &str, message: &str) {
        let mut errors = self.recent_errors.lock();
        if errors.len() >= RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(RecentError {
            time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            source: source.into(),
            message: message.chars().take(1000).collect(),
        });
    }

    /// Totals per signal and receiver.
    pub fn ingest_totals(&self) -> Vec<IngestTotal> {
        let get = |family: &Family<SourceLabels, Counter>, source: &str| {
            family
                .get(&SourceLabels {
                    source: source.into(),
                })
                .map_or(0, |c| c.get())
        };
        let mut out = Vec::new();
        for source in ["remote_write", "otlp_grpc", "otlp_http"] {
            out.push(IngestTotal {
                signal: "samples",
                source,
                total: get(&self.samples_ingested, source),
            });
        }
        for source in ["otlp_grpc", "otlp_http"] {
            out.push(IngestTotal {
                signal: "spans",
                source,
                total: get(&self.spans_ingested, source),
            });
        }
        for source in ["elasticsearch", "otlp_grpc", "otlp_http"] {
            out.push(IngestTotal {
                signal: "log records",
                source,
                total: get(&self.log_records_ingested, source),
            });
        }
        out
    }

    /// Record the current totals (called on a timer and by the dashboard).
    pub fn sample_rates(&self) {
        let totals = self.ingest_totals();
        let mut samples = self.rate_samples.lock();
        if samples.len() >= RATE_SAMPLES {
            samples.pop_front();
        }
        samples.push_back((std::time::Instant::now(), totals));
    }

    /// Per-second rates between the oldest and newest samples, and the
    /// window they cover in seconds.
    pub fn ingest_rates(&self) -> (f64, Vec<IngestRate>) {
        let samples = self.rate_samples.lock();
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
            return (0.0, Vec::new());
        };
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        let rates = last
            .1
            .iter()
            .zip(&first.1)
            .map(|(now, then)| IngestRate {
                signal: now.signal,
                source: now.source,
                per_second: if seconds > 0.0 {
                    now.total.saturating_sub(then.total) as f64 / seconds
                } else {
                    0.0
                },
                total: now.total,
            })
            .collect();
        (seconds, rates)
    }

    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors.lock().iter().cloned().collect()
    }

    /// The exposition text of the registry alone (no store figures).
    #[cfg(test)]
    pub fn render_text_for_tests(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// The exposition text, with store figures read now.
    pub fn render(&self, store: &MetricsStore, logs: &LogStore, traces: &TraceStore) -> String {
        let (head, blocks, bytes) = traces.summary();
        self.trace_head_spans.set(head as i64);
        self.trace_blocks.set(blocks as i64);
        self.trace_block_bytes.set(bytes as i64);
        self.trace_block_index_bytes
            .set(i64::try_from(traces.index_bytes()).unwrap_or(i64::MAX));
        let summary = store.summary();
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.series.set(as_i64(summary.series));
        self.head_series.set(as_i64(summary.head_series));
        self.head_samples.set(as_i64(summary.head_samples));
        self.blocks.set(as_i64(summary.blocks));
        self.block_bytes.set(as_i64(summary.block_bytes));
        self.wal_bytes.set(as_i64(summary.wal_bytes));
        self.index_bytes.set(as_i64(summary.index_bytes));
        self.head_min_time.set(summary.head_min_t.unwrap_or(0));
        self.head_max_time.set(summary.head_max_t.unwrap_or(0));
        let catch_up = |counter: &Counter, total: u64| {
            let current = counter.get();
            if total > current {
                counter.inc_by(total - current);
            }
        };
        use std::sync::atomic::Ordering::Relaxed;
        catch_up(
            &self.series_created,
            store.stats.series_created.load(Relaxed),
        );
        catch_up(&self.compactions, store.stats.compactions.load(Relaxed));
        catch_up(
            &self.compaction_failures,
            store.stats.compaction_failures.load(Relaxed),
        );
        catch_up(
            &self.compaction_bytes,
            store.stats.compaction_bytes.load(Relaxed),
        );
        let catch_up_seconds = |counter: &Counter<f64, std::sync::atomic::AtomicU64>,
                                micros: u64| {
            let total = micros as f64 / 1e6;
            let current = counter.get();
            if total > current {
                counter.inc_by(total - current);
            }
        };
        catch_up_seconds(
            &self.compaction_seconds,
            store.stats.compaction_micros.load(Relaxed),
        );
        catch_up_seconds(
            &self.compaction_cpu_seconds,
            store.stats.compaction_cpu_micros.load(Relaxed),
        );
        let wal = store.wal_stats();
        catch_up(&self.wal_bytes_written, wal.bytes_written.load(Relaxed));
        catch_up(&self.wal_fsyncs, wal.fsyncs.load(Relaxed));
        catch_up(
            &self.out_of_order_samples,
            store.stats.out_of_order_accepted.load(Relaxed),
        );
        catch_up(&self.log_commits, logs.stats.commits.load(Relaxed));
        self.log_disk_bytes.set(as_i64(logs.disk_bytes()));
        self.log_wal_bytes.set(as_i64(logs.wal_bytes()));
        self.log_indices
            .set(as_i64(logs.catalog.read().indices.len() as u64));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        // The process families go before OpenMetrics' closing `# EOF`.
        let process = process::render();
        match out.rfind("# EOF") {
            Some(at) => out.insert_str(at, &process),
            None => out.push_str(&process),
        }
        out
    }
}
