//! Forwarding: everything Oxeye accepts, sent on to other systems (a central
//! Prometheus or Mimir, Jaeger or an OpenTelemetry Collector, Elasticsearch),
//! read back from the stores' own write-ahead logs.
//!
//! Each destination is a named reader of one store's WAL
//! (`storage::wal::WalReader`) and runs *rounds*: read what was fsynced since
//! its cursor (at most [`ROUND_BYTES`]), persist the round's end as an
//! intent, deliver it (the sink retries until the receiver takes it or
//! refuses it for good), then persist the cursor past it. The WAL keeps the
//! segments a destination still needs, so a receiver outage or an Oxeye
//! restart (even `kill -9`) loses nothing acknowledged: delivery is at least
//! once, and a round interrupted by a crash is sent again as the same
//! requests, so a receiver that refuses what it already has (Prometheus'
//! out-of-order check) refuses only those. A destination more than
//! `forward.max_backlog` bytes behind skips its oldest data, counted.
//!
//! Sinks: `remote_write` (metrics), `otlp` (spans, log records),
//! `elasticsearch` (log records).

pub mod elasticsearch;
pub mod http;
pub mod otlp;
pub mod relabel;
pub mod remote_write;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::storage::logs::LogStore;
use crate::storage::metrics::MetricsStore;
use crate::storage::traces::TraceStore;
use crate::storage::wal::WalReader;

/// WAL bytes read per round at most.
pub const ROUND_BYTES: usize = 4 << 20;

/// Which store's WAL a destination reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Metrics,
    Traces,
    Logs,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
            Signal::Logs => "logs",
        }
    }
}

/// The WAL reader of an OTLP destination for one signal (an OTLP
/// destination may read two WALs; other names are the destination's).
fn otlp_reader(name: &str, signal: &str) -> String {
    format!("{name}.{signal}")
}

/// The WAL readers a store must register: one per destination reading it.
pub fn wal_readers(config: &Config, signal: Signal) -> Vec<String> {
    let f = &config.forward;
    let has = |d: &crate::config::OtlpDestination, s: &str| d.signals.iter().any(|x| x == s);
    match signal {
        Signal::Metrics => f.remote_write.iter().map(|d| d.name.clone()).collect(),
        Signal::Traces => f
            .otlp
            .iter()
            .filter(|d| has(d, "traces"))
            .map(|d| otlp_reader(&d.name, "traces"))
            .collect(),
        Signal::Logs => f
            .elasticsearch
            .iter()
            .map(|d| d.name.clone())
            .chain(
                f.otlp
                    .iter()
                    .filter(|d| has(d, "logs"))
                    .map(|d| otlp_reader(&d.name, "logs")),
            )
            .collect(),
    }
}

/// A destination's figures, for `/metrics` and the Status page.
pub struct DestinationStats {
    pub name: String,
    pub kind: &'static str,
    /// Which store's WAL it reads.
    pub signal: Signal,
    /// With `forward.on_backlog = "block"`: over `max_backlog`, so ingest
    /// of its signal is refused until it catches up.
    pub blocking: std::sync::atomic::AtomicBool,
    pub url: String,
    /// Items delivered, by item kind (samples, exemplars, metadata, spans, log records).
    sent: Mutex<BTreeMap<&'static str, u64>>,
    /// Items not delivered, by reason.
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests by outcome (success, retried, rejected).
    requests: Mutex<BTreeMap<&'static str, u64>>,
    pub sent_bytes: AtomicU64,
    /// WAL bytes skipped: over `max_backlog`, or unreadable.
    pub dropped_backlog_bytes: AtomicU64,
    pub lost_wal_bytes: AtomicU64,
    pub backlog_bytes: AtomicU64,
    /// Wall-clock ms since which the destination has had a backlog (0: caught up).
    behind_since_ms: AtomicI64,
    /// Newest sample/span/record timestamp delivered (ms).
    pub highest_sent_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
}

impl DestinationStats {
    pub fn new(name: &str, kind: &'static str, url: &str, signal: Signal) -> Arc<DestinationStats> {
        Arc::new(DestinationStats {
            name: name.to_owned(),
            kind,
            signal,
            blocking: std::sync::atomic::AtomicBool::new(false),
            url: url.to_owned(),
            sent: Mutex::default(),
            dropped: Mutex::default(),
            requests: Mutex::default(),
            sent_bytes: AtomicU64::new(0),
            dropped_backlog_bytes: AtomicU64::new(0),
            lost_wal_bytes: AtomicU64::new(0),
            backlog_bytes: AtomicU64::new(0),
            behind_since_ms: AtomicI64::new(0),
            highest_sent_ms: AtomicI64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn sent(&self, item: &'static str, count: u64) {
        if count > 0 {
            *self.sent.lock().entry(item).or_default() += count;
        }
    }

    pub fn dropped(&self, reason: &'static str, count: u64) {
        if count > 0 {
            *self.dropped.lock().entry(reason).or_default() += count;
        }
    }

    pub fn request(&self, bytes: usize, outcome: &'static str) {
        *self.requests.lock().entry(outcome).or_default() += 1;
        if outcome == "success" {
            self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    pub fn error(&self, message: String) {
        tracing::warn!(destination = %self.name, "{message}");
        *self.last_error.lock() = Some(message);
    }

    pub fn sent_item(&self, t_ms: i64) {
        self.highest_sent_ms.fetch_max(t_ms, Ordering::Relaxed);
    }

    /// Items delivered so far, by item kind.
    pub fn sent_by_item(&self) -> Vec<(&'static str, u64)> {
        self.sent.lock().iter().map(|(k, n)| (*k, *n)).collect()
    }

    /// Items not delivered so far, by reason.
    pub fn dropped_by_reason(&self) -> Vec<(&'static str, u64)> {
        self.dropped.lock().iter().map(|(k, n)| (*k, *n)).collect()
    }

    /// The last delivery problem, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Seconds since the destination last had nothing left to deliver.
    pub fn lag_seconds(&self) -> f64 {
        match self.behind_since_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            since => (crate::now_ms().saturating_sub(since)).max(0) as f64 / 1000.0,
        }
    }

    fn backlog(&self, bytes: u64) {
        self.backlog_bytes.store(bytes, Ordering::Relaxed);
        if bytes == 0 {
            self.behind_since_ms.store(0, Ordering::Relaxed);
        } else {
            let _ = self.behind_since_ms.compare_exchange(
                0,
                crate::now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// How a sink's delivery of one round ended.
pub enum Delivery {
    /// Everything was delivered or refused for good (and counted).
    Done,
    /// Oxeye is stopping; the round stays in the WAL.
    Stopped,
}

/// What a destination does with a round of WAL records.
pub trait Sink: Send + 'static {
    fn deliver(&mut self, records: Vec<Vec<u8>>) -> impl Future<Output = Delivery> + Send;
}

/// Every configured destination.
#[derive(Default)]
pub struct Forwarders {
    pub destinations: Vec<Arc<DestinationStats>>,
}

impl Forwarders {
    /// Start a task per destination.
    pub fn start(
        config: &Config,
        metrics: &Arc<MetricsStore>,
        traces: &Arc<TraceStore>,
        logs: &Arc<LogStore>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<Forwarders>, Vec<JoinHandle<()>>)> {
        let f = &config.forward;
        let mut forwarders = Forwarders::default();
        let mut tasks = Vec::new();
        let options = DriveOptions {
            max_backlog: f.max_backlog.0,
            poll: f.poll_interval,
            block: f.on_backlog == "block",
        };
        for d in &f.remote_write {
            let stats = DestinationStats::new(&d.name, "remote_write", &d.url, Signal::Metrics);
            let reader = metrics
                .wal_reader(&d.name)
                .ok_or_else(|| anyhow::anyhow!("no WAL reader for {}", d.name))?;
            let sink = remote_write::RemoteWriteSink::new(
                d,
                metrics.clone(),
                stats.clone(),
                shutdown.clone(),
            )
            .map_err(|e| anyhow::anyhow!("forward.remote_write {}: {e}", d.name))?;
            forwarders.launch(&mut tasks, reader, sink, stats, options, &shutdown);
        }
        for d in &f.otlp {
            for signal in &d.signals {
                let kind = if signal == "traces" {
                    Signal::Traces
                } else {
                    Signal::Logs
                };
                let stats = DestinationStats::new(&d.name, "otlp", &d.url, kind);
                let name = otlp_reader(&d.name, signal);
                let reader = match signal.as_str() {
                    "traces" => traces.wal_reader(&name),
                    _ => logs.wal_reader(&name),
                }
                .ok_or_else(|| anyhow::anyhow!("no WAL reader for {name}"))?;
                let sink =
                    otlp::OtlpSink::new(d, signal == "traces", stats.clone(), shutdown.clone())
                        .map_err(|e| anyhow::anyhow!("forward.otlp {}: {e}", d.name))?;
                forwarders.launch(&mut tasks, reader, sink, stats, options, &shutdown);
            }
        }
        for d in &f.elasticsearch {
            let stats = DestinationStats::new(&d.name, "elasticsearch", &d.url, Signal::Logs);
            let reader = logs
                .wal_reader(&d.name)
                .ok_or_else(|| anyhow::anyhow!("no WAL reader for {}", d.name))?;
            let sink = elasticsearch::ElasticsearchSink::new(d, stats.clone(), shutdown.clone())
                .map_err(|e| anyhow::anyhow!("forward.elasticsearch {}: {e}", d.name))?;
            forwarders.launch(&mut tasks, reader, sink, stats, options, &shutdown);
        }
        Ok((Arc::new(forwarders), tasks))
    }

    /// Start delivering from `reader` through `sink`.
    fn launch<S: Sink>(
        &mut self,
        tasks: &mut Vec<JoinHandle<()>>,
        reader: WalReader,
        sink: S,
        stats: Arc<DestinationStats>,
        options: DriveOptions,
        shutdown: &watch::Receiver<bool>,
    ) {
        tasks.push(tokio::spawn(drive(
            reader,
            sink,
            stats.clone(),
            options,
            shutdown.clone(),
        )));
        self.destinations.push(stats);
    }

    /// The destinations' figures in the exposition format (OpenMetrics
    /// families, placed before `# EOF` by the caller).
    pub fn render(&self, out: &mut String) {
        if self.destinations.is_empty() {
            return;
        }
        let family =
            |out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
                let suffix = if kind == "counter" { "_total" } else { "" };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (labels, value) in rows {
                    let _ = writeln!(out, "{name}{suffix}{{{labels}}} {value}");
                }
            };
        let dest = |d: &DestinationStats| {
            format!(
                "destination=\"{}\",signal=\"{}\"",
                d.name.replace('\\', "\\\\").replace('"', "\\\""),
                d.signal.as_str()
            )
        };
        let each = |value: &dyn Fn(&DestinationStats) -> String| -> Vec<(String, String)> {
            self.destinations
                .iter()
                .map(|d| (dest(d), value(d)))
                .collect()
        };
        let by_key =
            |map: &dyn Fn(&DestinationStats) -> Vec<(String, u64)>| -> Vec<(String, String)> {
                self.destinations
                    .iter()
                    .flat_map(|d| {
                        map(d).into_iter().map(move |(labels, n)| {
                            (format!("{},{labels}", dest(d)), n.to_string())
                        })
                    })
                    .collect()
            };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        family(
            out,
            "oxeye_forward_sent",
            "counter",
            "Items delivered to a forwarding destination, by item kind.",
            by_key(&|d| {
                d.sent
                    .lock()
                    .iter()
                    .map(|(item, n)| (format!("kind=\"{}\",item=\"{item}\"", d.kind), *n))
                    .collect()
            }),
        );
        family(out, "oxeye_forward_dropped", "counter", "Items not delivered, by reason (rejected: a 4xx answer; relabel, filtered: by configuration; unknown_series).",
            by_key(&|d| d.dropped.lock().iter().map(|(reason, n)| (format!("reason=\"{reason}\""), *n)).collect()));
        family(
            out,
            "oxeye_forward_requests",
            "counter",
            "Requests to a forwarding destination, by outcome (success, retried, rejected).",
            by_key(&|d| {
                d.requests
                    .lock()
                    .iter()
                    .map(|(outcome, n)| (format!("outcome=\"{outcome}\""), *n))
                    .collect()
            }),
        );
        family(
            out,
            "oxeye_forward_sent_bytes",
            "counter",
            "Request body bytes delivered.",
            each(&|d| load(&d.sent_bytes)),
        );
        family(out, "oxeye_forward_dropped_wal_bytes", "counter", "WAL bytes a destination skipped: over forward.max_backlog (backlog) or unreadable (corrupt).",
            by_key(&|d| vec![
                ("reason=\"backlog\"".to_owned(), d.dropped_backlog_bytes.load(Ordering::Relaxed)),
                ("reason=\"corrupt\"".to_owned(), d.lost_wal_bytes.load(Ordering::Relaxed)),
            ]));
        family(
            out,
            "oxeye_forward_backlog_bytes",
            "gauge",
            "WAL bytes not yet delivered.",
            each(&|d| load(&d.backlog_bytes)),
        );
        family(out, "oxeye_forward_blocking", "gauge", "1 while ingest of the destination's signal is refused (forward.on_backlog = \"block\").",
            each(&|d| u8::from(d.blocking.load(Ordering::Relaxed)).to_string()));
        family(
            out,
            "oxeye_forward_lag_seconds",
            "gauge",
            "Seconds since the destination last had nothing left to deliver (0: caught up).",
            each(&|d| d.lag_seconds().to_string()),
        );
        family(
            out,
            "oxeye_forward_highest_sent_timestamp_seconds",
            "gauge",
            "Newest sample, span or record timestamp delivered.",
            each(&|d| (d.highest_sent_ms.load(Ordering::Relaxed) as f64 / 1000.0).to_string()),
        );
    }

    /// Why ingest of `signal` is refused now (`forward.on_backlog =
    /// "block"` and a destination reading its WAL is over `max_backlog`).
    pub fn refusing(&self, signal: Signal) -> Option<String> {
        let d = self
            .destinations
            .iter()
            .find(|d| d.signal == signal && d.blocking.load(Ordering::Relaxed))?;
        Some(format!(
            "forwarding destination {} is {} bytes behind, over forward.max_backlog (forward.on_backlog = \"block\"); retry later",
            d.name,
            d.backlog_bytes.load(Ordering::Relaxed)
        ))
    }
}

#[derive(Debug, Clone, Copy)]
struct DriveOptions {
    max_backlog: u64,
    poll: Duration,
    /// `forward.on_backlog = "block"`: never skip; refuse ingest instead.
    block: bool,
}

/// What the blocking part of a round found.
struct Round {
    start: crate::storage::wal::WalPosition,
    skipped: u64,
    records: Vec<Vec<u8>>,
    end: crate::storage::wal::WalPosition,
    lost: u64,
    problems: Vec<String>,
    backlog: u64,
}

fn read_round(reader: &mut WalReader, max_backlog: Option<u64>) -> std::io::Result<Round> {
    let skipped = match max_backlog {
        Some(max) => reader.skip_backlog(max)?,
        None => 0,
    };
    let start = reader.position();
    if skipped > 0 {
        reader.commit(start)?;
    }
    let batch = match reader.read(ROUND_BYTES) {
        Ok(batch) => batch,
        Err(err) => {
            reader.rewind(start);
            return Err(err);
        }
    };
    if !batch.records.is_empty() {
        if let Err(err) = reader.begin_round(start, batch.end) {
            reader.rewind(start);
            return Err(err);
        }
    } else if batch.end != start {
        reader.commit(batch.end)?;
    }
    let backlog = reader.backlog_bytes();
    Ok(Round {
        start,
        skipped,
        records: batch.records,
        end: batch.end,
        lost: batch.lost_bytes,
        problems: batch.problems,
        backlog,
    })
}

/// Watches the backlog while a round is delivered (every second). With
/// `block` it only keeps the destination's backlog and blocking flag
/// current (and never resolves); otherwise it resolves once the WAL after
/// `start` holds more than `max` bytes.
async fn over_backlog(
    dir: std::path::PathBuf,
    start: crate::storage::wal::WalPosition,
    max: u64,
    block: Option<&Arc<DestinationStats>>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let dir = dir.clone();
        let backlog =
            tokio::task::spawn_blocking(move || crate::storage::wal::backlog_from(&dir, start))
                .await
                .unwrap_or(0);
        match block {
            Some(stats) => {
                stats.backlog(backlog);
                stats.blocking.store(backlog > max, Ordering::Relaxed);
            }
            None if backlog > max => return,
            None => {}
        }
    }
}

async fn drive<S: Sink>(
    reader: WalReader,
    mut sink: S,
    stats: Arc<DestinationStats>,
    options: DriveOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reader = Some(reader);
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Idle: nothing new is fsynced, so no file needs reading.
        if reader.as_ref().is_some_and(WalReader::caught_up) {
            stats.backlog(0);
            if options.block {
                stats.blocking.store(false, Ordering::Relaxed);
            }
            tokio::select! {
                () = tokio::time::sleep(options.poll) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let mut r = reader.take().expect("the reader is put back every round");
        let (r, round) = match tokio::task::spawn_blocking(move || {
            let round = read_round(&mut r, (!options.block).then_some(options.max_backlog));
            (r, round)
        })
        .await
        {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(destination = %stats.name, error = %err, "forwarder read task failed; the destination stops");
                return;
            }
        };
        reader = Some(r);
        let round = match round {
            Ok(round) => round,
            Err(err) => {
                stats.error(format!("reading the WAL failed: {err}; retrying"));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        if round.skipped > 0 {
            stats
                .dropped_backlog_bytes
                .fetch_add(round.skipped, Ordering::Relaxed);
            stats.error(format!(
                "more than forward.max_backlog ({} bytes) behind: skipped the oldest {} bytes of WAL",
                options.max_backlog, round.skipped
            ));
        }
        if round.lost > 0 || !round.problems.is_empty() {
            stats
                .lost_wal_bytes
                .fetch_add(round.lost, Ordering::Relaxed);
            for problem in &round.problems {
                stats.error(problem.clone());
            }
        }
        stats.backlog(round.backlog);
        if options.block {
            stats
                .blocking
                .store(round.backlog > options.max_backlog, Ordering::Relaxed);
        }
        if round.records.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(options.poll) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let round_bytes: u64 = round.records.iter().map(|r| r.len() as u64 + 8).sum();
        let dir = reader.as_ref().map(WalReader::dir).unwrap_or_default();
        tokio::select! {
            delivered = sink.deliver(round.records) => match delivered {
                Delivery::Done => {}
                Delivery::Stopped => return,
            },
            () = over_backlog(dir, round.start, options.max_backlog, options.block.then_some(&stats)) => {
                // The receiver has been failing while the WAL grew past
                // the bound: give this round up (the next one skips ahead).
                stats
                    .dropped_backlog_bytes
                    .fetch_add(round_bytes, Ordering::Relaxed);
                stats.error(format!(
                    "more than forward.max_backlog ({} bytes) behind while retrying: dropped a round of {round_bytes} bytes",
                    options.max_backlog
                ));
            }
        }
        let mut r = reader.take().expect("the reader is put back every round");
        let end = round.end;
        let (r, committed) = match tokio::task::spawn_blocking(move || {
            let committed = r.commit(end);
            (r, committed)
        })
        .await
        {
            Ok(done) => done,
            Err(_) => return,
        };
        reader = Some(r);
        if let Err(err) = committed {
            stats.error(format!("saving the WAL cursor failed: {err}"));
        }
    }
}
