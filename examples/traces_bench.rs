//! Span ingest over OTLP/gRPC and trace queries, against the real server.
//!
//! Generates traces shaped like an instrumented web service (10 spans per
//! trace: an HTTP server span, internal spans, DB and cache client spans,
//! HTTP attributes, resource attributes of a Kubernetes pod; batches of
//! 512 spans as the SDKs' batch processor sends them), starts
//! `oxeye serve` with a fresh data directory, exports everything with two
//! gRPC clients and prints:
//!
//! - spans ingested per server CPU-second (user+system from /proc, from the
//!   first export to the last acknowledgement),
//! - trace-by-id latency (median of 50 random traces, answers checked),
//! - service + min-duration search latency (median of 15, `limit=20`),
//! - disk bytes per span after the head was cut into blocks.
//!
//! `cargo run --release --example traces_bench -- [SPANS] [OXEYE_BINARY]`
//! (defaults: 1,000,000 spans, the release `oxeye` beside the example).

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cpu_seconds, dir_bytes, free_port, median_ms, peak_rss_mib};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;

const SPANS_PER_TRACE: usize = 10;
const BATCH: usize = 512;
const SERVICES: usize = 8;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.into())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Requests (pre-encoded), the trace ids, and how many traces of service 0
/// have a span over 500 ms.
fn generate(spans: usize, now_ns: i64) -> (Vec<ExportTraceServiceRequest>, Vec<[u8; 16]>) {
    let mut rng = Rng(0x5DEE_CE66_D1CE_5EED);
    let traces = spans / SPANS_PER_TRACE;
    let mut trace_ids = Vec::with_capacity(traces);
    // One ResourceSpans per service per request.
    let mut pending: Vec<Vec<Span>> = vec![Vec::new(); SERVICES];
    let mut in_batch = 0;
    let mut requests = Vec::new();
    let resources: Vec<Resource> = (0..SERVICES)
        .map(|i| Resource {
            attributes: vec![
                kv("service.name", s(&format!("svc-{i}"))),
                kv("service.version", s("2.4.1")),
                kv("k8s.namespace.name", s("prod")),
                kv("k8s.pod.name", s(&format!("svc-{i}-7d9f8c6b5-x{i}k2p"))),
                kv("host.name", s(&format!("node-{}", i % 3))),
                kv("telemetry.sdk.language", s("python")),
            ],
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        })
        .collect();
    let flush = |pending: &mut Vec<Vec<Span>>, requests: &mut Vec<ExportTraceServiceRequest>| {
        let resource_spans = pending
            .iter_mut()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(i, spans)| ResourceSpans {
                resource: Some(resources[i].clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "opentelemetry.instrumentation.flask".into(),
                        version: "0.48b0".into(),
                        ..Default::default()
                    }),
                    spans: std::mem::take(spans),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        requests.push(ExportTraceServiceRequest { resource_spans });
    };
    for t in 0..traces {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&rng.next().to_be_bytes());
        trace_id[8..].copy_from_slice(&rng.next().to_be_bytes());
        trace_ids.push(trace_id);
        let service = t % SERVICES;
        let start = now_ns - 3_600_000_000_000 + (t as i64 * 3_500_000_000_000 / traces as i64);
        let root_ms = 5 + (rng.next() % 1000) as i64;
        let root_id = rng.next().to_be_bytes();
        for i in 0..SPANS_PER_TRACE {
            let (name, kind, attrs, dur_ms) = match i {
                0 => (
                    "GET /api/orders/{id}".to_owned(),
                    span::SpanKind::Server,
                    vec![
                        kv("http.method", s("GET")),
                        kv("http.route", s("/api/orders/{id}")),
                        kv(
                            "http.target",
                            s(&format!("/api/orders/{}", rng.next() % 100_000)),
                        ),
                        kv("http.status_code", any_value::Value::IntValue(200)),
                        kv("net.peer.ip", s("10.1.2.3")),
                        kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
                    ],
                    root_ms,
                ),
                1..=3 => (
                    format!("SELECT orders_{i}"),
                    span::SpanKind::Client,
                    vec![
                        kv("db.system", s("postgresql")),
                        kv("db.name", s("shop")),
                        kv(
                            "db.statement",
                            s("SELECT id, total, status FROM orders WHERE customer_id = $1"),
                        ),
                        kv("net.peer.name", s("pg-primary.prod.svc")),
                    ],
                    1 + (rng.next() % 20) as i64,
                ),
                4 | 5 => (
                    "GET".to_owned(),
                    span::SpanKind::Client,
                    vec![
                        kv("db.system", s("redis")),
                        kv("db.statement", s("GET cart:*")),
                        kv("net.peer.name", s("redis.prod.svc")),
                    ],
                    1,
                ),
                _ => (
                    format!("render step {i}"),
                    span::SpanKind::Internal,
                    vec![kv("step", any_value::Value::IntValue(i as i64))],
                    1 + (rng.next() % 5) as i64,
                ),
            };
            let span_id = if i == 0 {
                root_id
            } else {
                rng.next().to_be_bytes()
            };
            let error = i == 4 && rng.next().is_multiple_of(50);
            pending[service].push(Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: if i == 0 { Vec::new() } else { root_id.to_vec() },
                name,
                kind: kind as i32,
                start_time_unix_nano: (start + i as i64 * 1_000_000) as u64,
                end_time_unix_nano: (start + i as i64 * 1_000_000 + dur_ms * 1_000_000) as u64,
                attributes: attrs,
                status: error.then(|| Status {
                    message: "timeout".into(),
                    code: 2,
                }),
                ..Default::default()
            });
            in_batch += 1;
            if in_batch == BATCH {
                flush(&mut pending, &mut requests);
                in_batch = 0;
            }
        }
    }
    if in_batch > 0 {
        flush(&mut pending, &mut requests);
    }
    (requests, trace_ids)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(|p| p.parent()).unwrap().join("oxeye")
    });
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let t0 = Instant::now();
    let (requests, trace_ids) = generate(total, now_ns);
    let bytes: usize = requests.iter().map(prost::Message::encoded_len).sum();
    eprintln!(
        "{} spans in {} requests ({:.1} MB of protobuf) generated in {:.1}s",
        total,
        requests.len(),
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );

    let data = tempfile::tempdir().unwrap();
    let (http_port, grpc_port) = (free_port(), free_port());
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{http_port}")])
        .arg("--data")
        .arg(data.path())
        .args(["--otlp-grpc", &format!("127.0.0.1:{grpc_port}")])
        .args([
            "--otlp-http",
            "127.0.0.1:0",
            "--elasticsearch",
            "127.0.0.1:0",
            "--postgres",
            "127.0.0.1:0",
        ])
        .env("OXEYE_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .no_proxy()
        .build()
        .unwrap();
    let ready = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        http.get(format!("{base}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    assert!(ready, "oxeye did not start");
    let pid = child.id();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cpu_before = cpu_seconds(pid);
    let wall = Instant::now();
    let requests = std::sync::Arc::new(requests);
    runtime.block_on(async {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (requests, next) = (requests.clone(), next.clone());
            let endpoint = format!("http://127.0.0.1:{grpc_port}");
            tasks.push(tokio::spawn(async move {
                let mut client = TraceServiceClient::connect(endpoint)
                    .await
                    .unwrap()
                    .max_decoding_message_size(64 << 20);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        return;
                    };
                    let response = client.export(request.clone()).await.unwrap().into_inner();
                    assert!(response.partial_success.is_none(), "{response:?}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let ingest_wall = wall.elapsed().as_secs_f64();
    let ingest_cpu = cpu_seconds(pid) - cpu_before;
    // Everything into blocks, so queries and the size figure cover blocks.
    http.post(format!("{base}/api/v1/admin/flush"))
        .send()
        .unwrap();

    let mut rng = Rng(7);
    let trace_ms = median_ms(50, |_| {
        let id = trace_ids[(rng.next() % trace_ids.len() as u64) as usize];
        let body: Value = http
            .get(format!("{base}/api/traces/{}", hex(&id)))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            body["data"][0]["spans"].as_array().map_or(0, Vec::len),
            SPANS_PER_TRACE,
            "trace by id"
        );
    });
    let end_us = now_ns / 1000 + 60_000_000;
    let start_us = end_us - 7_200_000_000;
    let search = |service: usize| -> Value {
        http.get(format!(
            "{base}/api/traces?service=svc-{service}&minDuration=900ms&limit=20&start={start_us}&end={end_us}"
        ))
        .send()
        .unwrap()
        .json()
        .unwrap()
    };
    let found = search(3);
    let n = found["data"].as_array().map_or(0, Vec::len);
    assert!(n > 0, "search found nothing");
    let search_ms = median_ms(15, |i| drop(search(i % SERVICES)));
    let rss_mib = peak_rss_mib(pid);
    let metrics = http
        .get(format!("http://127.0.0.1:{http_port}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let index_bytes: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oxeye_trace_block_index_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let _ = child.kill();
    let _ = child.wait();
    let disk = dir_bytes(&data.path().join("traces"));

    println!("spans                     {total}");
    println!(
        "ingest wall s             {ingest_wall:.2}  ({:.0} spans/s)",
        total as f64 / ingest_wall
    );
    println!("server CPU s              {ingest_cpu:.2}");
    println!("spans per server CPU-s    {:.0}", total as f64 / ingest_cpu);
    println!(
        "trace by id               median {trace_ms:.2} ms (of 50, {SPANS_PER_TRACE} spans each)"
    );
    println!(
        "service+minDuration search median {search_ms:.2} ms (limit 20, {n} traces for svc-3)"
    );
    println!(
        "disk                      {:.1} MB ({:.0} B/span, WAL + blocks)",
        disk as f64 / 1e6,
        disk as f64 / total as f64
    );
    println!(
        "block index in memory     {:.0} KiB ({:.2} B/span)",
        index_bytes / 1024.0,
        index_bytes / total as f64
    );
    println!("peak RSS MiB              {:.0}", rss_mib);
}
