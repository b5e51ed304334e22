//! Soak: all three signals at a steady rate into the release binary while
//! hostile requests arrive in a loop; then checks that every acknowledged
//! item is there and reports the server's memory over time.
//!
//! `cargo run --release --example soak -- [MINUTES] [OXEYE_BINARY]`
//! (defaults: 60 minutes, the release `oxeye` beside the example). Rates,
//! per second: `SOAK_SAMPLES` (20,000: 2,000 series every 100 ms),
//! `SOAK_DOCS` (2,000 log records), `SOAK_SPANS` (4,000: 400 ten-span traces).
//! Everything runs on loopback; every loop is bounded by the duration. The
//! metrics head is cut every 10 minutes instead of 2 hours, so that an hour
//! reaches the steady state of every store.
//!
//! Prints, every minute and at the end: acknowledged samples, records and
//! spans, failed writes (any non-success answer to a valid write), hostile
//! requests answered other than 4xx, RSS now and its slope (least squares
//! over the second half of the run, MiB per hour), the same for anonymous
//! memory alone (mapped block and segment files count in RSS but the kernel
//! can drop them), and at the end whether
//! the stored counts equal the acknowledged ones.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, peak_rss_mib, rss_anon_mib, rss_mib};

fn rate(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Default)]
struct Counters {
    samples: AtomicU64,
    docs: AtomicU64,
    spans: AtomicU64,
    failed_writes: AtomicU64,
    hostile: AtomicU64,
    hostile_unexpected: AtomicU64,
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// A snappy remote_write body: `series` series of one sample at `t`.
fn remote_write(series: usize, t: i64) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..series {
        let name = format!("s{i}");
        oxeye::ingest::remote_write::encode::timeseries(
            &mut body,
            &[
                ("__name__", "soak_samples"),
                ("job", "soak"),
                ("series", &name),
            ],
            &[(t, 1.0)],
        );
    }
    snap::raw::Encoder::new().compress_vec(&body).unwrap()
}

/// Run `tick` every `every` until `until`, each on time or as soon as the
/// previous one finished.
fn paced(until: Instant, every: Duration, mut tick: impl FnMut(u64)) {
    let mut next = Instant::now();
    let mut n = 0;
    while Instant::now() < until {
        tick(n);
        n += 1;
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(|p| p.parent()).unwrap().join("oxeye")
    });
    let samples_per_s = rate("SOAK_SAMPLES", 20_000);
    let docs_per_s = rate("SOAK_DOCS", 2_000);
    let spans_per_s = rate("SOAK_SPANS", 4_000);

    let data = tempfile::tempdir().unwrap();
    let (http_port, otlp_port, es_port) = (free_port(), free_port(), free_port());
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{http_port}")])
        .arg("--data")
        .arg(data.path())
        .args(["--otlp-grpc", "127.0.0.1:0"])
        .args(["--otlp-http", &format!("127.0.0.1:{otlp_port}")])
        .args(["--elasticsearch", &format!("127.0.0.1:{es_port}")])
        .args(["--postgres", "127.0.0.1:0"])
        // The final count queries read the whole run.
        .env("OXEYE_QUERY__MAX_SAMPLES", "500000000")
        // Cut the metrics head every 10 minutes (default 2h), so that an
        // hour's run reaches the steady state and a leak shows as a slope.
        .env("OXEYE_STORAGE__BLOCK_DURATION", "10m")
        .env("OXEYE_STORAGE__MAINTENANCE_INTERVAL", "30s")
        .env("OXEYE_QUERY__TIMEOUT", "10m")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start oxeye");
    let pid = child.id();
    let base = format!("http://127.0.0.1:{http_port}");
    let es = format!("http://127.0.0.1:{es_port}");
    let otlp = format!("http://127.0.0.1:{otlp_port}");
    let started = Instant::now();
    while client().get(format!("{base}/-/ready")).send().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "oxeye not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let start_ms = now_ms() - 1;
    let until = Instant::now() + Duration::from_secs(minutes * 60);
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    eprintln!(
        "soak: {minutes} min, {samples_per_s} samples/s, {docs_per_s} records/s, {spans_per_s} spans/s, pid {pid}"
    );

    let mut workers = Vec::new();
    // Metrics: every 100 ms, a tenth of the per-second rate as one sample
    // per series (series count = rate / 10).
    {
        let (c, base) = (counters.clone(), base.clone());
        workers.push(std::thread::spawn(move || {
            let http = client();
            let series = (samples_per_s / 10).max(1) as usize;
            paced(until, Duration::from_millis(100), |_| {
                let ok = http
                    .post(format!("{base}/api/v1/write"))
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .body(remote_write(series, now_ms()))
                    .send()
                    .is_ok_and(|r| r.status().as_u16() == 204);
                if ok {
                    c.samples.fetch_add(series as u64, Ordering::Relaxed);
                } else {
                    c.failed_writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }));
    }
    // Logs: every 100 ms, a _bulk of a tenth of the per-second rate.
    {
        let (c, es) = (counters.clone(), es.clone());
        workers.push(std::thread::spawn(move || {
            let http = client();
            let per_tick = (docs_per_s / 10).max(1);
            paced(until, Duration::from_millis(100), |tick| {
                let mut body = String::new();
                let t = now_ms();
                for i in 0..per_tick {
                    body.push_str("{\"create\":{\"_index\":\"soak\"}}\n");
                    body.push_str(
                        &json!({
                            "@timestamp": t, "message": format!("GET /api/items/{i} 200 in {} ms", (tick + i) % 500),
                            "level": if i % 50 == 0 { "error" } else { "info" },
                            "service": {"name": format!("svc-{}", i % 5)}, "tick": tick,
                        })
                        .to_string(),
                    );
                    body.push('\n');
                }
                let result = http
                    .post(format!("{es}/_bulk"))
                    .header("Content-Type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.json::<Value>().ok());
                match result {
                    Some(v) => {
                        let items = v["items"].as_array().map_or(0, Vec::len) as u64;
                        let failed = v["items"]
                            .as_array()
                            .map_or(0, |i| i.iter().filter(|x| x["create"]["status"] != 201).count())
                            as u64;
                        c.docs.fetch_add(items - failed, Ordering::Relaxed);
                        c.failed_writes.fetch_add(failed, Ordering::Relaxed);
                    }
                    None => {
                        c.failed_writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }));
    }
    // Traces: every 100 ms, ten-span traces over OTLP/HTTP JSON.
    {
        let (c, otlp) = (counters.clone(), otlp.clone());
        workers.push(std::thread::spawn(move || {
            let http = client();
            let traces_per_tick = (spans_per_s / 100).max(1);
            let mut trace_n: u64 = 0;
            paced(until, Duration::from_millis(100), |_| {
                let t = now_ms() * 1_000_000;
                let mut spans = Vec::new();
                for _ in 0..traces_per_tick {
                    trace_n += 1;
                    let trace_id = format!("{:016x}{:016x}", 0x50a4u64, trace_n);
                    for s in 0..10u64 {
                        spans.push(json!({
                            "traceId": trace_id,
                            "spanId": format!("{:016x}", trace_n * 16 + s + 1),
                            "parentSpanId": if s == 0 { String::new() } else { format!("{:016x}", trace_n * 16 + 1) },
                            "name": format!("op-{s}"), "kind": if s == 0 { 2 } else { 3 },
                            "startTimeUnixNano": (t - 5_000_000).to_string(),
                            "endTimeUnixNano": (t - (s as i64) * 100_000).to_string(),
                        }));
                    }
                }
                let n = spans.len() as u64;
                let body = json!({"resourceSpans": [{"resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "soak"}}]},
                    "scopeSpans": [{"spans": spans}]}]});
                let ok = http
                    .post(format!("{otlp}/v1/traces"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.json::<Value>().ok())
                    .is_some_and(|v| v.get("partialSuccess").is_none_or(|p| p["rejectedSpans"].as_u64().unwrap_or(0) == 0));
                if ok {
                    c.spans.fetch_add(n, Ordering::Relaxed);
                } else {
                    c.failed_writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }));
    }
    // Hostile requests, every 5 s.
    {
        let (c, base, es) = (counters.clone(), base.clone(), es.clone());
        workers.push(std::thread::spawn(move || {
            let http = client();
            let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
            let lucene = format!("{}a{}", "(".repeat(200_000), ")".repeat(200_000));
            paced(until, Duration::from_secs(5), |_| {
                let requests = [
                    http.post(format!("{base}/api/v1/query"))
                        .form(&[("query", deep.as_str())]),
                    http.get(format!("{base}/api/v1/query_range")).query(&[
                        ("query", "1"),
                        ("start", "-1e19"),
                        ("end", "1e19"),
                        ("step", "1"),
                    ]),
                    http.post(format!("{es}/_search"))
                        .json(&json!({"query": {"query_string": {"query": lucene}}})),
                    http.get(format!("{base}/api/v1/query"))
                        .query(&[("query", "max_over_time(vector(1)[100y:1ms])")]),
                    http.post(format!("{base}/api/v1/series"))
                        .form(&[("match[]", deep.as_str())]),
                ];
                for request in requests {
                    c.hostile.fetch_add(1, Ordering::Relaxed);
                    let status = request.send().map(|r| r.status().as_u16()).unwrap_or(0);
                    if !(400..500).contains(&status) {
                        c.hostile_unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }));
    }

    // Memory, every 10 s; a report every minute.
    let mut rss: Vec<(f64, f64)> = Vec::new();
    // The anonymous part (heap): mapped block and segment files count in
    // RSS too, but the kernel can drop them.
    let mut anon: Vec<(f64, f64)> = Vec::new();
    let report = |rss: &[(f64, f64)], anon: &[(f64, f64)], c: &Counters| {
        let slope = slope_mib_per_hour(rss);
        eprintln!(
            "{:5.1} min  samples {:>11}  records {:>9}  spans {:>9}  failed writes {}  hostile {} (unexpected {})  RSS {:.0} MiB  slope {:+.1} MiB/h  anon {:.0} MiB  slope {:+.1} MiB/h",
            rss.last().map_or(0.0, |r| r.0 / 60.0),
            c.samples.load(Ordering::Relaxed),
            c.docs.load(Ordering::Relaxed),
            c.spans.load(Ordering::Relaxed),
            c.failed_writes.load(Ordering::Relaxed),
            c.hostile.load(Ordering::Relaxed),
            c.hostile_unexpected.load(Ordering::Relaxed),
            rss.last().map_or(0.0, |r| r.1),
            slope,
            anon.last().map_or(0.0, |r| r.1),
            slope_mib_per_hour(anon),
        );
    };
    let t0 = Instant::now();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(10));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("oxeye exited during the soak: {status}");
        }
        rss.push((t0.elapsed().as_secs_f64(), rss_mib(pid)));
        anon.push((t0.elapsed().as_secs_f64(), rss_anon_mib(pid)));
        if rss.len().is_multiple_of(6) {
            report(&rss, &anon, &counters);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    report(&rss, &anon, &counters);

    // Everything acknowledged is there.
    let http = client();
    http.post(format!("{base}/api/v1/admin/flush"))
        .send()
        .unwrap();
    // Span metrics are written every 15 s.
    std::thread::sleep(Duration::from_secs(20));
    let end_ms = now_ms();
    let mut stored_samples = 0u64;
    let mut t = start_ms;
    while t < end_ms {
        let window_end = (t + 600_000).min(end_ms + 1000);
        let v: Value = http
            .get(format!("{base}/api/v1/query"))
            .query(&[
                (
                    "query",
                    format!("sum(count_over_time(soak_samples[{}ms]))", window_end - t),
                ),
                ("time", format!("{:.3}", window_end as f64 / 1000.0)),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        stored_samples += v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        t = window_end;
    }
    let docs: Value = http
        .get(format!("{es}/soak/_count"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let spans: Value = http
        .get(format!("{base}/api/v1/query"))
        .query(&[(
            "query",
            "sum(traces_span_metrics_calls_total{service_name=\"soak\"})",
        )])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let stored_spans = spans["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    let c = &counters;
    let (acked_samples, acked_docs, acked_spans) = (
        c.samples.load(Ordering::Relaxed),
        c.docs.load(Ordering::Relaxed),
        c.spans.load(Ordering::Relaxed),
    );
    println!("soak minutes            {minutes}");
    println!("samples acked/stored    {acked_samples} / {stored_samples}");
    println!("records acked/stored    {acked_docs} / {}", docs["count"]);
    println!("spans acked/counted     {acked_spans} / {stored_spans}");
    println!(
        "failed writes           {}",
        c.failed_writes.load(Ordering::Relaxed)
    );
    println!(
        "hostile requests        {} ({} answered other than 4xx)",
        c.hostile.load(Ordering::Relaxed),
        c.hostile_unexpected.load(Ordering::Relaxed)
    );
    println!(
        "RSS MiB                 first {:.0}, last {:.0}, peak {:.0}; slope over the second half {:+.1} MiB/h",
        rss.first().map_or(0.0, |r| r.1),
        rss.last().map_or(0.0, |r| r.1),
        peak_rss_mib(pid),
        slope_mib_per_hour(&rss)
    );
    println!(
        "anonymous RSS MiB       first {:.0}, last {:.0}; slope over the second half {:+.1} MiB/h",
        anon.first().map_or(0.0, |r| r.1),
        anon.last().map_or(0.0, |r| r.1),
        slope_mib_per_hour(&anon)
    );
    let complete = acked_samples == stored_samples
        && docs["count"].as_u64() == Some(acked_docs)
        && acked_spans == stored_spans;
    println!("every acknowledged item present: {complete}");
    let _ = child.kill();
    let _ = child.wait();
    if !complete {
        std::process::exit(1);
    }
}

/// Least-squares slope of RSS over the second half of the samples, MiB/h.
fn slope_mib_per_hour(points: &[(f64, f64)]) -> f64 {
    let half = &points[points.len() / 2..];
    if half.len() < 2 {
        return 0.0;
    }
    let n = half.len() as f64;
    let mean_x = half.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = half.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = half.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let var: f64 = half.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 3600.0
    }
}
