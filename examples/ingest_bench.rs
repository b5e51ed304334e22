//! Remote-write ingest on one thread, without HTTP: snappy + decode + append
//! for bodies shaped like Prometheus' (2000 samples per request, one sample per
//! TimeSeries, ~10 labels). Prints samples per CPU-second for each phase.
//!
//! `cargo run --release --example ingest_bench [SERIES] [SAMPLES_PER_SERIES]`

use std::time::{Duration, Instant};

use oxeye::ingest::remote_write::{self, encode};
use oxeye::ingest::LabelCheck;
use oxeye::storage::metrics::{MetricsStore, StoreOptions};

fn cpu_time() -> Duration {
    // Process CPU time from /proc (user + system), in clock ticks of 10ms.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per_series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(240);
    let labels: Vec<Vec<(String, String)>> = (0..series)
        .map(|i| {
            vec![
                (
                    "__name__".into(),
                    format!("node_cpu_seconds_total_{}", i % 40),
                ),
                ("cpu".into(), format!("{}", i % 4)),
                (
                    "instance".into(),
                    format!("host-{:04}.example.internal:9100", i / 124),
                ),
                ("job".into(), "node-exporter".into()),
                ("mode".into(), format!("mode{}", i % 8)),
                ("region".into(), "eu-west-1".into()),
                (
                    "zone".into(),
                    format!("eu-west-1{}", ["a", "b", "c"][i % 3]),
                ),
            ]
        })
        .collect();
    // Time-major requests of 2000 samples, labels sorted, as Prometheus sends them.
    let mut bodies = Vec::new();
    let mut raw = Vec::new();
    let mut in_body = 0;
    let mut raw_bytes = 0usize;
    for k in 0..per_series {
        for (i, l) in labels.iter().enumerate() {
            let refs: Vec<(&str, &str)> = l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let t = 1_700_000_000_000 + k as i64 * 15_000 + (i % 1000) as i64;
            encode::timeseries(&mut raw, &refs, &[(t, (k * 3 + i) as f64 * 0.25)]);
            in_body += 1;
            if in_body == 2000 {
                raw_bytes += raw.len();
                bodies.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
                raw.clear();
                in_body = 0;
            }
        }
    }
    if !raw.is_empty() {
        raw_bytes += raw.len();
        bodies.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
    }
    let total = series * per_series;
    let compressed: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "{} requests, {total} samples, {:.1} B/sample compressed, {:.1} B/sample raw",
        bodies.len(),
        compressed as f64 / total as f64,
        raw_bytes as f64 / total as f64
    );
    let check = LabelCheck {
        max_series_per_request: 100_000,
        max_labels_per_series: 64,
        max_label_name_length: 256,
        max_label_value_length: 4096,
    };

    // Phase 1: decode only.
    let started = (Instant::now(), cpu_time());
    let mut decoded_samples = 0;
    for body in &bodies {
        let plain = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        let decoded = remote_write::decode(&plain, &check).unwrap();
        decoded_samples += decoded.sample_count();
    }
    let decode_secs = started.0.elapsed().as_secs_f64();
    assert_eq!(decoded_samples, total);
    println!(
        "snappy+decode:          {:>10.0} samples/s (wall, one thread)",
        total as f64 / decode_secs
    );

    // Phase 2: decode + append into a store (WAL written, fsync per request).
    let dir = tempfile::tempdir().unwrap();
    // The server's defaults: fsync before every acknowledgement.
    let store = MetricsStore::open(StoreOptions {
        max_active_series: 0,
        ..StoreOptions::new(dir.path())
    })
    .unwrap();
    let started = (Instant::now(), cpu_time());
    for body in &bodies {
        let plain = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        let decoded = remote_write::decode(&plain, &check).unwrap();
        let outcome = store.append(&decoded.writes(), &decoded.metadata).unwrap();
        assert_eq!(outcome.rejected_total(), 0);
    }
    let wall = started.0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - started.1).as_secs_f64().max(0.01);
    println!(
        "snappy+decode+append:   {:>10.0} samples/s wall, {:.0} samples per CPU-second",
        total as f64 / wall,
        total as f64 / cpu
    );
    let started = Instant::now();
    let report = store.flush().unwrap();
    let summary = store.summary();
    println!(
        "flush: {} blocks in {:.2}s, {:.3} bytes/sample in blocks",
        report.blocks.len(),
        started.elapsed().as_secs_f64(),
        summary.block_bytes as f64 / total as f64
    );
    store.close().unwrap();
    let mut on_disk = Vec::new();
    let mut all = 0;
    for entry in ["blocks", "index", "wal"] {
        let bytes = dir_bytes(&dir.path().join(entry));
        all += bytes;
        on_disk.push(format!("{entry}={:.2}MiB", bytes as f64 / (1 << 20) as f64));
    }
    println!(
        "on disk: {} ({:.3} bytes/sample in all)",
        on_disk.join(" "),
        all as f64 / total as f64
    );
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dir_bytes(&e.path())
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}
