//! Log ingest and search, measured against the real server binary.
//!
//! Generates a realistic corpus (a third each: web access logs, application
//! logs with multi-line Java stack traces, nested JSON events in the style of
//! Kubernetes/ECS), starts `oxeye serve` on loopback ports with a fresh data
//! directory, `_bulk`s the corpus with two client threads, and prints:
//!
//! - ingest: raw NDJSON MB per server CPU-second (the server's own
//!   user+system time from /proc, from the first request to the refresh),
//! - size: on-disk index bytes as a fraction of the raw document bytes,
//! - search latency (median of 15) for a rare term, a phrase, and a
//!   date_histogram over everything; answers are checked against the corpus.
//!
//! `cargo run --release --example logs_bench -- [DOCS] [OXEYE_BINARY]`
//! (defaults: 600000 docs, the release `oxeye` binary beside the example).

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cpu_seconds, dir_bytes, free_port, median_ms, peak_rss_mib};

use serde_json::{json, Value};

/// A small deterministic generator (xorshift64*), so every run indexes the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const RARE: &str = "zebracorn";
const PHRASE: &str = "connection reset by peer";

struct Corpus {
    bodies: Vec<Vec<u8>>,
    raw_doc_bytes: usize,
    ndjson_bytes: usize,
    docs: usize,
    rare: usize,
    phrase: usize,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn generate(docs: usize, start_ms: i64, span_ms: i64) -> Corpus {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let paths = [
        "/",
        "/login",
        "/logout",
        "/api/v1/items",
        "/api/v1/orders",
        "/api/v1/cart",
        "/static/js/app.4f3a.js",
        "/static/css/site.css",
        "/health",
        "/search",
    ];
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        "curl/8.4.0",
        "Go-http-client/1.1",
        "kube-probe/1.28",
    ];
    let services = [
        "checkout",
        "cart",
        "payments",
        "search",
        "inventory",
        "auth",
    ];
    let classes = [
        "com.shop.payments.GatewayClient",
        "com.shop.cart.CartService",
        "com.shop.db.ConnectionPool",
        "org.apache.http.impl.client.InternalHttpClient",
        "io.netty.channel.AbstractChannel",
    ];
    let namespaces = ["prod", "staging", "batch"];
    let regions = ["eu-west-1", "us-east-1", "ap-south-1"];
    let mut bodies = Vec::new();
    let mut body = Vec::with_capacity(6 << 20);
    let (mut raw_doc_bytes, mut ndjson_bytes, mut rare, mut phrase) = (0, 0, 0, 0);
    for i in 0..docs {
        let ts = start_ms + (i as i64 * span_ms) / docs as i64;
        let mut doc = match i % 3 {
            0 => {
                let status = [200, 200, 200, 200, 304, 301, 404, 500, 503][rng.below(9) as usize];
                let path = rng.pick(&paths);
                let method = rng.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"]);
                let ip = format!(
                    "10.{}.{}.{}",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                );
                let bytes = rng.below(120_000);
                let agent = rng.pick(&agents);
                json!({
                    "@timestamp": iso(ts),
                    "message": format!("{ip} - - [{}] \"{method} {path}?page={} HTTP/1.1\" {status} {bytes} \"-\" \"{agent}\"",
                        iso(ts), rng.below(50)),
                    "http": {"request": {"method": method}, "response": {"status_code": status, "body": {"bytes": bytes}}},
                    "url": {"path": path},
                    "client": {"ip": ip},
                    "user_agent": {"original": agent},
                    "event": {"dataset": "nginx.access"},
                })
            }
            1 => {
                let service = rng.pick(&services);
                let level = rng.pick(&["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]);
                let mut message = match level {
                    "ERROR" => {
                        let class = rng.pick(&classes);
                        let mut trace = format!(
                            "Request {} failed: java.io.IOException: {}\n",
                            rng.next() % 1_000_000,
                            if rng.below(4) == 0 {
                                PHRASE
                            } else {
                                "read timed out"
                            }
                        );
                        for depth in 0..(8 + rng.below(12)) {
                            let c = rng.pick(&classes);
                            trace.push_str(&format!(
                                "\tat {c}.{}({}.java:{})\n",
                                rng.pick(&["execute", "send", "read", "call", "apply", "invoke"]),
                                c.rsplit('.').next().unwrap_or("X"),
                                40 + depth * 7 + rng.below(300)
                            ));
                        }
                        trace.push_str(&format!(
                            "Caused by: {class}$Timeout: after {}ms",
                            rng.below(30_000)
                        ));
                        trace
                    }
                    _ => format!(
                        "{} order={} user=u{} took={}ms items={}",
                        rng.pick(&[
                            "order placed",
                            "cart updated",
                            "payment authorised",
                            "stock reserved",
                            "session refreshed"
                        ]),
                        rng.next() % 10_000_000,
                        rng.below(50_000),
                        rng.below(2_000),
                        rng.below(20)
                    ),
                };
                if rng.below(60_000) == 0 {
                    message.push_str(&format!(" {RARE}"));
                }
                json!({
                    "@timestamp": iso(ts),
                    "log": {"level": level, "logger": format!("{service}.Main")},
                    "service": {"name": service, "version": format!("1.{}.{}", rng.below(5), rng.below(20))},
                    "message": message,
                    "trace": {"id": format!("{:016x}{:016x}", rng.next(), rng.next())},
                })
            }
            _ => {
                let ns = rng.pick(&namespaces);
                json!({
                    "@timestamp": iso(ts),
                    "message": format!("{} {}", rng.pick(&["pod started", "container restarted", "image pulled", "probe failed", "volume mounted"]), rng.below(1000)),
                    "event": {"dataset": "kubernetes.event", "action": rng.pick(&["start", "restart", "pull", "probe", "mount"])},
                    "kubernetes": {
                        "namespace": ns,
                        "pod": {"name": format!("{}-{:x}", rng.pick(&services), rng.next() & 0xffff_ffff)},
                        "node": {"name": format!("node-{}", rng.below(40))},
                        "labels": {"app": rng.pick(&services), "tier": rng.pick(&["web", "api", "worker"])},
                    },
                    "cloud": {"region": rng.pick(&regions), "availability_zone": format!("{}{}", rng.pick(&regions), rng.pick(&["a", "b", "c"]))},
                    "user": {"id": format!("u{}", rng.below(50_000)), "roles": ["reader", rng.pick(&["writer", "admin", "billing"])]},
                    "duration_ms": rng.below(5_000) as f64 / 10.0,
                })
            }
        };
        let message = doc["message"].as_str().unwrap_or("");
        rare += usize::from(message.split_whitespace().any(|w| w == RARE));
        phrase += usize::from(message.contains(PHRASE));
        if let Some(map) = doc.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        let line = serde_json::to_vec(&doc).unwrap();
        raw_doc_bytes += line.len() + 1;
        body.extend_from_slice(b"{\"index\":{\"_index\":\"bench\"}}\n");
        body.extend_from_slice(&line);
        body.push(b'\n');
        if body.len() >= 5 << 20 {
            ndjson_bytes += body.len();
            bodies.push(std::mem::replace(&mut body, Vec::with_capacity(6 << 20)));
        }
    }
    if !body.is_empty() {
        ndjson_bytes += body.len();
        bodies.push(body);
    }
    Corpus {
        bodies,
        raw_doc_bytes,
        ndjson_bytes,
        docs,
        rare,
        phrase,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let docs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(600_000);
    // Default: the server binary next to this example's directory
    // (`<target>/release/examples/logs_bench` → `<target>/release/oxeye`).
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(|p| p.parent()).unwrap().join("oxeye")
    });
    let now_ms = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let corpus = generate(docs, now_ms - 6 * 3_600_000, 6 * 3_600_000 - 60_000);
    eprintln!(
        "corpus: {} docs, {:.1} MB of documents, {:.1} MB of NDJSON in {} bodies (generated in {:.1}s)",
        corpus.docs,
        corpus.raw_doc_bytes as f64 / 1e6,
        corpus.ndjson_bytes as f64 / 1e6,
        corpus.bodies.len(),
        started.elapsed().as_secs_f64()
    );

    let data = tempfile::tempdir().unwrap();
    let (http_port, es_port) = (free_port(), free_port());
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{http_port}")])
        .arg("--data")
        .arg(data.path())
        .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
        .args(["--elasticsearch", &format!("127.0.0.1:{es_port}")])
        .args(["--postgres", "127.0.0.1:0"])
        .env("OXEYE_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let es = format!("http://127.0.0.1:{es_port}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .no_proxy()
        .build()
        .unwrap();
    let ready = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        http.get(format!("{es}/"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    assert!(ready, "oxeye did not start");
    let pid = child.id();

    let cpu_before = cpu_seconds(pid);
    let wall = Instant::now();
    let bodies = std::sync::Arc::new(corpus.bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (bodies, next, http, es) = (bodies.clone(), next.clone(), http.clone(), es.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return };
                let response: Value = http
                    .post(format!("{es}/_bulk"))
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                assert_eq!(response["errors"], false, "bulk errors");
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    http.post(format!("{es}/_refresh")).send().unwrap();
    let ingest_wall = wall.elapsed().as_secs_f64();
    let ingest_cpu = cpu_seconds(pid) - cpu_before;

    // Let background merges settle before measuring size.
    let parts = data.path().join("logs/partitions");
    let mut size = dir_bytes(&parts);
    for _ in 0..60 {
        std::thread::sleep(Duration::from_secs(1));
        let now = dir_bytes(&parts);
        if now == size {
            break;
        }
        size = now;
    }

    let search = |body: Value| -> Value {
        http.post(format!("{es}/bench/_search"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let rare_q = json!({"query": {"match": {"message": RARE}}, "track_total_hits": true});
    let phrase_q = json!({"query": {"match_phrase": {"message": PHRASE}}, "track_total_hits": true, "size": 10});
    let histo_q = json!({"size": 0, "track_total_hits": true,
        "aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}}}});
    let rare_hits = search(rare_q.clone())["hits"]["total"]["value"]
        .as_u64()
        .unwrap();
    let phrase_hits = search(phrase_q.clone())["hits"]["total"]["value"]
        .as_u64()
        .unwrap();
    let histo = search(histo_q.clone());
    let histo_docs: u64 = histo["aggregations"]["h"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["doc_count"].as_u64().unwrap())
        .sum();
    assert_eq!(rare_hits as usize, corpus.rare, "rare-term answer");
    assert_eq!(phrase_hits as usize, corpus.phrase, "phrase answer");
    assert_eq!(histo_docs as usize, corpus.docs, "date_histogram answer");
    let rare_ms = median_ms(15, |_| {
        search(rare_q.clone());
    });
    let phrase_ms = median_ms(15, |_| {
        search(phrase_q.clone());
    });
    let histo_ms = median_ms(15, |_| {
        search(histo_q.clone());
    });
    let rss_mib = peak_rss_mib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let breakdown = space_breakdown(&parts);

    let raw_mb = corpus.ndjson_bytes as f64 / 1e6;
    let mut out = std::io::stdout().lock();
    writeln!(out, "docs                      {}", corpus.docs).unwrap();
    writeln!(
        out,
        "raw NDJSON MB             {raw_mb:.1}  (documents alone {:.1})",
        corpus.raw_doc_bytes as f64 / 1e6
    )
    .unwrap();
    writeln!(
        out,
        "ingest wall s             {ingest_wall:.2}  ({:.1} MB/s, {:.0} docs/s)",
        raw_mb / ingest_wall,
        corpus.docs as f64 / ingest_wall
    )
    .unwrap();
    writeln!(out, "server CPU s              {ingest_cpu:.2}").unwrap();
    writeln!(out, "MB/s per server CPU-s     {:.1}", raw_mb / ingest_cpu).unwrap();
    writeln!(
        out,
        "on-disk MB                {:.1}  ({:.1}% of the documents' bytes)",
        size as f64 / 1e6,
        100.0 * size as f64 / corpus.raw_doc_bytes as f64
    )
    .unwrap();
    writeln!(out, "peak RSS MiB              {:.0}", rss_mib).unwrap();
    writeln!(
        out,
        "rare term ({RARE}, {rare_hits} hits)        median {rare_ms:.2} ms"
    )
    .unwrap();
    writeln!(
        out,
        "phrase (\"{PHRASE}\", {phrase_hits} hits) median {phrase_ms:.2} ms"
    )
    .unwrap();
    writeln!(
        out,
        "date_histogram 1m over all {histo_docs} docs median {histo_ms:.2} ms"
    )
    .unwrap();
    writeln!(out, "where the bytes go (MB):").unwrap();
    for (what, bytes) in breakdown {
        writeln!(out, "  {what:<28} {:>8.2}", bytes as f64 / 1e6).unwrap();
    }
}

/// Bytes per index component and field, over every partition, largest first.
fn space_breakdown(parts: &std::path::Path) -> Vec<(String, u64)> {
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for entry in std::fs::read_dir(parts).into_iter().flatten().flatten() {
        let Ok(index) = tantivy::Index::open_in_dir(entry.path()) else {
            continue;
        };
        let Ok(reader) = index.reader() else { continue };
        let Ok(usage) = reader.searcher().space_usage() else {
            continue;
        };
        for segment in usage.segments() {
            let mut add =
                |component: &str, per_field: &tantivy::space_usage::PerFieldSpaceUsage| {
                    for field in per_field.fields() {
                        *totals
                            .entry(format!("{component} {}", field.field_name()))
                            .or_default() += field.total().get_bytes();
                    }
                };
            add("terms", segment.termdict());
            add("postings", segment.postings());
            add("positions", segment.positions());
            add("fast", segment.fast_fields());
            add("norms", segment.fieldnorms());
            *totals.entry("store (docs, zstd)".into()).or_default() +=
                segment.store().total().get_bytes();
        }
    }
    let mut rows: Vec<(String, u64)> = totals.into_iter().filter(|(_, b)| *b > 10_000).collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    rows
}
