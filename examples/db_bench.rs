//! Database and cache advice over a million database spans.
//!
//! Writes DB_SPANS database client spans (with their request spans as
//! parents; 20 query templates, an N+1 loop in one endpoint, reads of
//! 100,000 keys under a Zipf law, 1 % writes) into a trace store in a
//! temporary directory, cuts them into blocks as the server would, and
//! times `recommend::database::analyse` and `recommend::cache::analyse`
//! over them: wall time, CPU time and peak RSS of this process, spans per
//! CPU-second. Compare the last figure with `traces_bench`'s ingest rate
//! (spans per server CPU-second) for the analyses' cost as a share of
//! ingest if they were run continuously.
//!
//! `cargo run --release --example db_bench -- [DB_SPANS]` (default 1,000,000).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use oxeye::model::span::{AttrValue, Span};
use oxeye::recommend::{cache, database};
use oxeye::storage::traces::{TraceStore, TraceStoreOptions};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn cpu_seconds() -> f64 {
    support::cpu_seconds(std::process::id())
}

fn open(dir: &std::path::Path) -> Arc<TraceStore> {
    let mut options = TraceStoreOptions::new(dir);
    options.retention_ms = i64::MAX / 4;
    TraceStore::open(options).unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--analyse") {
        // The analyses in a fresh process, so that its peak RSS is theirs.
        let dir = std::path::PathBuf::from(args.next().unwrap());
        let start_ns: i64 = args.next().unwrap().parse().unwrap();
        let end_ns: i64 = args.next().unwrap().parse().unwrap();
        let store = open(&dir);
        println!(
            "store opened: peak RSS {:.0} MiB",
            support::peak_rss_mib(std::process::id())
        );
        analyse(&store, start_ns, end_ns);
        return;
    }
    let db_spans: usize = first
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000)
        .clamp(1000, 20_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let start_ns = now_ns - 3_600_000_000_000;
    let resource = Arc::new(vec![(
        "service.name".to_string(),
        AttrValue::Str("shop".into()),
    )]);
    // Zipf-ish keys by inverse power: small ids are hot.
    let mut rng = Rng(99);
    let mut keys = Rng(7);
    let mut zipf = |n: u64| -> u64 {
        let u = (keys.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as u64).min(n - 1)
    };
    let mut written = 0usize;
    let mut trace_no = 0u64;
    let t0 = Instant::now();
    let mut batch: Vec<Span> = Vec::new();
    while written < db_spans {
        trace_no += 1;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&trace_no.to_be_bytes());
        trace_id[8] = 1;
        let t = start_ns
            + (trace_no as i64 * 3_600_000_000_000 / (db_spans as i64 / 10).max(1))
                % 3_500_000_000_000;
        let n_plus_one = trace_no.is_multiple_of(4);
        let root = Span {
            trace_id,
            span_id: [1, 0, 0, 0, 0, 0, 0, 1],
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: if n_plus_one {
                "GET /orders".into()
            } else {
                "GET /product".into()
            },
            kind: 2,
            start_ns: t,
            end_ns: t + 200_000_000,
            status_code: 0,
            status_message: String::new(),
            service: "shop".into(),
            resource: resource.clone(),
            scope_name: String::new(),
            scope_version: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
        };
        batch.push(root.clone());
        let calls = if n_plus_one { 20 } else { 5 };
        for c in 0..calls {
            let statement = if n_plus_one {
                format!(
                    "SELECT id, title FROM items WHERE order_id = {}",
                    zipf(100_000)
                )
            } else if c == 4 && trace_no.is_multiple_of(25) {
                format!(
                    "UPDATE products SET stock = stock - 1 WHERE id = {}",
                    zipf(100_000)
                )
            } else {
                format!(
                    "SELECT name, price FROM products_{} WHERE id = {} AND region IN ('eu', 'us')",
                    c % 20,
                    zipf(100_000)
                )
            };
            // N+1 calls one after the other (5–8 ms each, Sentry's 100 ms
            // total reached); the others overlap.
            let (s, len) = if n_plus_one {
                (
                    t + 1_000_000 + c as i64 * 9_000_000,
                    5_000_000 + (rng.next() % 3_000_000) as i64,
                )
            } else {
                (
                    t + 1_000_000 + c as i64 * 2_000_000,
                    1_000_000 + (rng.next() % 3_000_000) as i64,
                )
            };
            let mut span = root.clone();
            span.span_id = [2, 0, 0, 0, 0, 0, 0, c as u8];
            span.parent_span_id = Some(root.span_id);
            span.name = "SELECT".into();
            span.kind = 3;
            span.start_ns = s;
            span.end_ns = s + len;
            span.attributes = vec![
                ("db.system".into(), AttrValue::Str("postgresql".into())),
                ("db.statement".into(), AttrValue::Str(statement)),
            ];
            batch.push(span);
            written += 1;
        }
        if batch.len() >= 4096 {
            store
                .append(std::mem::take(&mut batch), now_ns / 1_000_000)
                .unwrap();
        }
    }
    store.append(batch, now_ns / 1_000_000).unwrap();
    store.cut().unwrap();
    store.close().unwrap();
    drop(store);
    println!(
        "wrote {written} database spans in {trace_no} traces ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--analyse")
        .arg(dir.path())
        .arg(start_ns.to_string())
        .arg(now_ns.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn analyse(store: &TraceStore, start_ns: i64, now_ns: i64) {
    let request = database::DbRequest {
        start_ns,
        end_ns: now_ns,
        service: None,
    };
    let config = oxeye::config::Config::default_config();
    let db_options = database::DbOptions {
        max_spans: 50_000_000,
        ..config.recommendations.db_options()
    };
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let report = database::analyse(store, &db_options, &request).unwrap();
    let (db_cpu, db_wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
    println!(
        "database analysis: {} spans scanned, {} db calls, {} templates, {} findings in {db_wall:.2} s wall, {db_cpu:.2} CPU-s ({:.0} spans per CPU-second); peak RSS {:.0} MiB",
        report["spans_scanned"],
        report["db_calls"],
        report["templates"].as_array().map_or(0, Vec::len),
        report["findings"].as_array().map_or(0, Vec::len),
        report["spans_scanned"].as_f64().unwrap_or(0.0) / db_cpu.max(0.01),
        support::peak_rss_mib(std::process::id())
    );
    let cache_options = cache::CacheOptions {
        max_spans: 50_000_000,
        ..config.recommendations.cache_options()
    };
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let report = cache::analyse(store, &cache_options, &request).unwrap();
    let (c_cpu, c_wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
    let top = &report["candidates"][0];
    println!(
        "cache analysis: {} candidates in {c_wall:.2} s wall, {c_cpu:.2} CPU-s; top: {} reads, {} keys, achievable {:.3}, sampling rate {}; peak RSS {:.0} MiB",
        report["candidates"].as_array().map_or(0, Vec::len),
        top["reads"],
        top["distinct_keys"],
        top["achievable_hit_ratio"].as_f64().unwrap_or(0.0),
        top["sampling_rate"],
        support::peak_rss_mib(std::process::id())
    );
}
