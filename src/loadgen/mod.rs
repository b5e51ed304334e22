//! `oxeye loadgen`: load over every ingest protocol Oxeye speaks —
//! remote_write, OTLP metrics, traces and logs over gRPC and HTTP, and
//! Elasticsearch `_bulk` — at a set rate or as fast as the server takes it,
//! with series churn and cardinality settings, a progress line and an end
//! report: items sent, acknowledged and rejected, failed requests by kind,
//! request latency percentiles, and the server's CPU (from its
//! `process_cpu_seconds_total`, which Oxeye and Prometheus both export).
//!
//! Each protocol has one driver: it paces batches (`rate` items per second,
//! or none), keeps at most `concurrency` requests in flight and stops at
//! `duration` or `items`, then waits for the requests still out.

pub mod exposition;
pub mod send;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use send::{Outcome, Sender};
use workload::{Batch, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    RemoteWrite,
    OtlpGrpcMetrics,
    OtlpHttpMetrics,
    OtlpGrpcTraces,
    OtlpHttpTraces,
    OtlpGrpcLogs,
    OtlpHttpLogs,
    EsBulk,
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Protocol::RemoteWrite,
        Protocol::OtlpGrpcMetrics,
        Protocol::OtlpHttpMetrics,
        Protocol::OtlpGrpcTraces,
        Protocol::OtlpHttpTraces,
        Protocol::OtlpGrpcLogs,
        Protocol::OtlpHttpLogs,
        Protocol::EsBulk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::RemoteWrite => "remote_write",
            Protocol::OtlpGrpcMetrics => "otlp-grpc-metrics",
            Protocol::OtlpHttpMetrics => "otlp-http-metrics",
            Protocol::OtlpGrpcTraces => "otlp-grpc-traces",
            Protocol::OtlpHttpTraces => "otlp-http-traces",
            Protocol::OtlpGrpcLogs => "otlp-grpc-logs",
            Protocol::OtlpHttpLogs => "otlp-http-logs",
            Protocol::EsBulk => "es-bulk",
        }
    }

    /// What one item is.
    pub fn unit(self) -> &'static str {
        match self {
            Protocol::RemoteWrite | Protocol::OtlpGrpcMetrics | Protocol::OtlpHttpMetrics => {
                "samples"
            }
            Protocol::OtlpGrpcTraces | Protocol::OtlpHttpTraces => "spans",
            _ => "records",
        }
    }

    /// A comma-separated list of names (`all`, `metrics`, `traces` and
    /// `logs` stand for groups).
    pub fn parse_list(text: &str) -> Result<Vec<Protocol>, String> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let group: Vec<Protocol> = match word {
                "all" => Protocol::ALL.to_vec(),
                "metrics" => vec![
                    Protocol::RemoteWrite,
                    Protocol::OtlpGrpcMetrics,
                    Protocol::OtlpHttpMetrics,
                ],
                "traces" => vec![Protocol::OtlpGrpcTraces, Protocol::OtlpHttpTraces],
                "logs" => vec![
                    Protocol::OtlpGrpcLogs,
                    Protocol::OtlpHttpLogs,
                    Protocol::EsBulk,
                ],
                other => vec![Protocol::ALL
                    .into_iter()
                    .find(|p| p.name() == other)
                    .ok_or_else(|| {
                        format!(
                            "unknown protocol {other:?}: one of {}, or all, metrics, traces, logs",
                            Protocol::ALL.map(|p| p.name()).join(", ")
                        )
                    })?],
            };
            for p in group {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        if out.is_empty() {
            return Err("no protocol given".into());
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Oxeye's HTTP base URL (remote_write; `/metrics` for the server's CPU).
    pub url: String,
    /// OTLP/HTTP base URL.
    pub otlp_http: String,
    /// OTLP/gRPC endpoint (`http://host:port`).
    pub otlp_grpc: String,
    /// Elasticsearch-compatible base URL.
    pub elasticsearch: String,
    pub protocols: Vec<Protocol>,
    /// Items per second per protocol; 0: as fast as possible.
    pub rate: f64,
    pub duration: Option<Duration>,
    /// Items per protocol, then stop.
    pub items: Option<u64>,
    pub batch: u64,
    pub series: u64,
    pub services: u64,
    pub churn: f64,
    pub churn_interval: Duration,
    /// Metric samples from this long ago up to now, one per series every
    /// `interval` (a history to query); sets `items` for metric protocols.
    pub backfill: Option<Duration>,
    pub interval: Duration,
    /// remote_write series taken from an exposition (`--series-from`)
    /// instead of generated ones; `series` becomes their number.
    pub template: Option<Arc<Vec<exposition::TemplateSeries>>>,
    pub concurrency: usize,
    pub run_id: String,
    pub index: String,
    pub token: Option<String>,
    pub timeout: Duration,
    pub progress: bool,
}

impl Options {
    pub fn check(&self) -> Result<(), String> {
        for (name, url) in [
            ("--url", &self.url),
            ("--otlp-http", &self.otlp_http),
            ("--otlp-grpc", &self.otlp_grpc),
            ("--elasticsearch", &self.elasticsearch),
        ] {
            if !url.starts_with("http://") {
                return Err(format!("{name} {url:?}: only http:// URLs are supported"));
            }
        }
        if self.duration.is_none() && self.items.is_none() && self.backfill.is_none() {
            return Err("give --duration, --items or --backfill: a run must end".into());
        }
        if self.backfill.is_some() {
            if self.interval.is_zero() {
                return Err("--interval must be greater than zero".into());
            }
            if let Some(p) = self.protocols.iter().find(|p| p.unit() != "samples") {
                return Err(format!(
                    "--backfill writes metric history: {} sends {} stamped now",
                    p.name(),
                    p.unit()
                ));
            }
        }
        if !(self.rate == 0.0 || (0.01..=1e9).contains(&self.rate)) {
            return Err(
                "--rate must be items per second between 0.01 and 1e9, or 0 for no limit".into(),
            );
        }
        if self.batch == 0 || self.batch > 100_000 {
            return Err("--batch must be between 1 and 100000".into());
        }
        if self.series == 0 || self.services == 0 || !(1..=10_000).contains(&self.concurrency) {
            return Err(
                "--series and --services must be at least 1, --concurrency 1 to 10000".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.churn) {
            return Err("--churn must be between 0 and 1".into());
        }
        if self.churn_interval.is_zero() {
            return Err("--churn-interval must be greater than zero".into());
        }
        if self.run_id.is_empty()
            || !self
                .run_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("--run-id: lowercase letters, digits, - and _ only".into());
        }
        Ok(())
    }
}

/// Counts for one protocol.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    failed_items: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    /// Request latency in microseconds.
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Stats {
    fn record(&self, items: u64, outcome: Outcome, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(items, Ordering::Relaxed);
        match outcome {
            Outcome::Answered { acked, rejected } => {
                self.acked.fetch_add(acked, Ordering::Relaxed);
                self.rejected.fetch_add(rejected, Ordering::Relaxed);
                if rejected > 0 {
                    *self
                        .failures
                        .lock()
                        .entry("items rejected".into())
                        .or_default() += 1;
                }
            }
            Outcome::Failed(kind) => {
                self.failed_items.fetch_add(items, Ordering::Relaxed);
                *self.failures.lock().entry(kind).or_default() += 1;
            }
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut latency = self.latency.lock();
        let h = latency.get_or_insert_with(|| {
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds")
        });
        h.saturating_record(micros);
    }
}

/// The server's CPU seconds and resident memory from its `/metrics`.
async fn server_process(sender: &Sender) -> Option<(f64, f64)> {
    let page = sender.get_text(&format!("{}/metrics", sender.url)).await?;
    let value = |name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((
        value("process_cpu_seconds_total")?,
        value("process_resident_memory_bytes").unwrap_or(0.0),
    ))
}

/// Run the load; the end report as JSON (see [`render`]).
pub fn run(options: Options) -> Result<Value, String> {
    options.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run_async(options))
}

async fn run_async(options: Options) -> Result<Value, String> {
    let grpc = if options
        .protocols
        .iter()
        .any(|p| p.name().starts_with("otlp-grpc"))
    {
        let endpoint = tonic::transport::Endpoint::from_shared(options.otlp_grpc.clone())
            .map_err(|e| format!("--otlp-grpc {:?}: {e}", options.otlp_grpc))?
            .timeout(options.timeout)
            .tcp_nodelay(true);
        Some(endpoint.connect_lazy())
    } else {
        None
    };
    let sender = Arc::new(Sender::new(
        options.url.trim_end_matches('/').to_owned(),
        options.otlp_http.trim_end_matches('/').to_owned(),
        options.elasticsearch.trim_end_matches('/').to_owned(),
        grpc,
        options.token.clone(),
        options.timeout,
        options.index.clone(),
    ));
    let mut options = options;
    if let Some(template) = &options.template {
        options.series = template.len() as u64;
    }
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (start_ms, sample_interval_ms) = match options.backfill {
        // Whole intervals back from now, every series once per interval.
        Some(back) => {
            let interval = ms(options.interval).max(1);
            let rounds = (ms(back) / interval).max(1);
            let now = crate::now_ms();
            let start = now - now.rem_euclid(interval) - (rounds - 1) * interval;
            let items = (rounds as u64).saturating_mul(options.series);
            options.items = Some(options.items.map_or(items, |i| i.min(items)));
            // One request at a time: concurrent batches would deliver a
            // series' older rounds after its newer ones, beyond the
            // out-of-order window.
            options.concurrency = 1;
            (start, interval)
        }
        // One sample per series per `series / rate` seconds, like a scrape
        // interval; 1 ms apart when unpaced.
        None if options.rate > 0.0 => (
            crate::now_ms(),
            ((options.series as f64 / options.rate) * 1000.0).max(1.0) as i64,
        ),
        None => (crate::now_ms(), 1),
    };
    let workload = Arc::new(Workload {
        run: options.run_id.clone(),
        series: options.series,
        services: options.services,
        churn: options.churn,
        sample_interval_ms,
        start_ms,
        template: options.template.clone(),
    });
    let cpu_before = server_process(&sender).await;
    let started = Instant::now();
    let stats: Vec<(Protocol, Arc<Stats>)> = options
        .protocols
        .iter()
        .map(|p| (*p, Arc::new(Stats::default())))
        .collect();
    let progress = options.progress.then(|| {
        let stats = stats.clone();
        tokio::spawn(async move {
            let tty = std::io::stderr().is_terminal();
            let every = if tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(10)
            };
            loop {
                tokio::time::sleep(every).await;
                let line = progress_line(&stats, started.elapsed());
                if tty {
                    eprint!("\r\x1b[2K{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        })
    });
    let drivers: Vec<_> = stats
        .iter()
        .map(|(protocol, stats)| {
            tokio::spawn(drive(
                *protocol,
                options.clone(),
                workload.clone(),
                sender.clone(),
                stats.clone(),
                started,
            ))
        })
        .collect();
    for d in drivers {
        d.await.map_err(|e| format!("a driver failed: {e}"))?;
    }
    let elapsed = started.elapsed();
    if let Some(p) = progress {
        p.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
    let cpu_after = server_process(&sender).await;
    Ok(report(&options, &stats, elapsed, cpu_before, cpu_after))
}

async fn drive(
    protocol: Protocol,
    options: Options,
    workload: Arc<Workload>,
    sender: Arc<Sender>,
    stats: Arc<Stats>,
    started: Instant,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(options.concurrency));
    let mut first = 0u64;
    loop {
        let count = match options.items {
            Some(max) => options.batch.min(max.saturating_sub(first)),
            None => options.batch,
        };
        if count == 0 {
            break;
        }
        if options.rate > 0.0 {
            let due = started + Duration::from_secs_f64(first as f64 / options.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let epoch = (started.elapsed().as_secs_f64() / options.churn_interval.as_secs_f64()) as u64;
        let batch = Batch {
            first,
            count,
            epoch,
            now_ms: crate::now_ms(),
        };
        let (sender, workload, stats) = (sender.clone(), workload.clone(), stats.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let outcome = sender.send(protocol, &workload, batch).await;
            stats.record(count, outcome, t.elapsed());
            drop(slot);
        });
        first += count;
    }
    // The requests still out.
    let _ = slots.acquire_many(options.concurrency as u32).await;
}

fn progress_line(stats: &[(Protocol, Arc<Stats>)], elapsed: Duration) -> String {
    let mut line = format!("[loadgen {:>5.0}s]", elapsed.as_secs_f64());
    for (p, s) in stats {
        let acked = s.acked.load(Ordering::Relaxed);
        let failed = s.failures.lock().values().sum::<u64>();
        let _ = write!(
            line,
            " {} {} ({:.0}/s){}",
            p.name(),
            acked,
            acked as f64 / elapsed.as_secs_f64().max(1e-9),
            if failed > 0 {
                format!(" {failed} failed")
            } else {
                String::new()
            }
        );
    }
    line
}

fn report(
    options: &Options,
    stats: &[(Protocol, Arc<Stats>)],
    elapsed: Duration,
    cpu_before: Option<(f64, f64)>,
    cpu_after: Option<(f64, f64)>,
) -> Value {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let server_cpu = cpu_before
        .zip(cpu_after)
        .map(|((a, _), (b, _))| (b - a).max(0.0));
    let mut total_acked = 0;
    let protocols: Vec<Value> = stats
        .iter()
        .map(|(p, s)| {
            let acked = s.acked.load(Ordering::Relaxed);
            total_acked += acked;
            let latency = s.latency.lock();
            let ms = |q: f64| {
                latency
                    .as_ref()
                    .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
            };
            json!({
                "protocol": p.name(),
                "unit": p.unit(),
                "requests": s.requests.load(Ordering::Relaxed),
                "sent": s.sent.load(Ordering::Relaxed),
                "acknowledged": acked,
                "rejected": s.rejected.load(Ordering::Relaxed),
                "failed": s.failed_items.load(Ordering::Relaxed),
                "failures": s.failures.lock().clone(),
                "per_second": acked as f64 / seconds,
                "latency_ms": {
                    "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99),
                    "max": latency.as_ref().map_or(0.0, |h| h.max() as f64 / 1000.0),
                },
            })
        })
        .collect();
    json!({
        "run_id": options.run_id,
        "seconds": seconds,
        "rate": options.rate,
        "batch": options.batch,
        "series": options.series,
        "concurrency": options.concurrency,
        "protocols": protocols,
        "server": {
            "cpu_seconds": server_cpu,
            "items_per_cpu_second": server_cpu.filter(|c| *c > 0.0).map(|c| total_acked as f64 / c),
            "rss_bytes": cpu_after.map(|(_, rss)| rss),
        },
    })
}

/// The report as a table.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} · {:.1} s · rate {} · batch {} · {} series · concurrency {}",
        report["run_id"].as_str().unwrap_or(""),
        report["seconds"].as_f64().unwrap_or(0.0),
        match report["rate"].as_f64() {
            Some(r) if r > 0.0 => format!("{r}/s"),
            _ => "unlimited".into(),
        },
        report["batch"].as_u64().unwrap_or(0),
        report["series"].as_u64().unwrap_or(0),
        report["concurrency"].as_u64().unwrap_or(0),
    );
    let _ = writeln!(
        out,
        "{:<18} {:>8} {:>10} {:>12} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}  failures",
        "protocol",
        "unit",
        "sent",
        "acknowledged",
        "rejected",
        "failed",
        "per s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    );
    for p in report["protocols"].as_array().into_iter().flatten() {
        let failures: Vec<String> = p["failures"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let l = &p["latency_ms"];
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>10} {:>12} {:>9} {:>9} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}",
            p["protocol"].as_str().unwrap_or(""),
            p["unit"].as_str().unwrap_or(""),
            p["sent"].as_u64().unwrap_or(0),
            p["acknowledged"].as_u64().unwrap_or(0),
            p["rejected"].as_u64().unwrap_or(0),
            p["failed"].as_u64().unwrap_or(0),
            p["per_second"].as_f64().unwrap_or(0.0),
            l["p50"].as_f64().unwrap_or(0.0),
            l["p90"].as_f64().unwrap_or(0.0),
            l["p99"].as_f64().unwrap_or(0.0),
            l["max"].as_f64().unwrap_or(0.0),
            if failures.is_empty() {
                "none".to_owned()
            } else {
                failures.join(", ")
            }
        );
    }
    let server = &report["server"];
    match server["cpu_seconds"].as_f64() {
        Some(cpu) => {
            let _ = writeln!(
                out,
                "server: {cpu:.2} CPU-seconds ({}), RSS {:.0} MiB",
                server["items_per_cpu_second"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.0} items per CPU-second")),
                server["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
            );
        }
        None => {
            let _ = writeln!(
                out,
                "server: CPU unknown (no process_cpu_seconds_total at {{url}}/metrics)"
            );
        }
    }
    out
}

/// Whether every request of the run was answered and every item taken.
pub fn clean(report: &Value) -> bool {
    report["protocols"].as_array().is_some_and(|list| {
        list.iter()
            .all(|p| p["failed"] == 0 && p["rejected"] == 0 && p["acknowledged"] == p["sent"])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lists() {
        assert_eq!(Protocol::parse_list("all").unwrap().len(), 8);
        assert_eq!(
            Protocol::parse_list("remote_write,logs,remote_write").unwrap(),
            vec![
                Protocol::RemoteWrite,
                Protocol::OtlpGrpcLogs,
                Protocol::OtlpHttpLogs,
                Protocol::EsBulk
            ]
        );
        assert!(Protocol::parse_list("carrier-pigeon")
            .unwrap_err()
            .contains("unknown protocol"));
        assert!(Protocol::parse_list("").is_err());
    }
}
