//! Criterion benches for the storage hot paths: WAL append, chunk
//! encode/decode, series lookup on append, and matcher selection.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use oxeye::config::FsyncPolicy;
use oxeye::model::{LabelRef, Labels, Sample};
use oxeye::storage::metrics::chunk::{self, ChunkIter};
use oxeye::storage::metrics::matcher::Matcher;
use oxeye::storage::metrics::{MetricsStore, SeriesWrite, StoreOptions};
use oxeye::storage::wal::Wal;

fn samples(n: usize) -> Vec<Sample> {
    let mut v = 100.0;
    (0..n)
        .map(|i| {
            v += ((i * 7919) % 100) as f64 / 10.0;
            Sample {
                t: 1_700_000_000_000 + i as i64 * 15_000 + (i % 3) as i64,
                v,
            }
        })
        .collect()
}

fn chunks(c: &mut Criterion) {
    let data = samples(120);
    let encoded = chunk::encode(&data);
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Elements(120));
    group.bench_function("encode_120", |b| b.iter(|| chunk::encode(black_box(&data))));
    group.bench_function("decode_120", |b| {
        b.iter(|| ChunkIter::new(black_box(&encoded), 120).fold(0.0, |acc, s| acc + s.v))
    });
    group.finish();
}

fn wal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 64 << 20, 0, |_| {}).unwrap();
    let record = vec![42u8; 24_000]; // ~2000 samples' worth
    let mut group = c.benchmark_group("wal");
    group.throughput(Throughput::Bytes(record.len() as u64));
    group.bench_function("append_24k", |b| {
        b.iter(|| wal.append(black_box(&record)).unwrap())
    });
    group.bench_function("append_24k_and_fsync", |b| {
        b.iter(|| {
            let seq = wal.append(black_box(&record)).unwrap();
            wal.sync(seq).unwrap()
        })
    });
    group.finish();
}

fn options(dir: &std::path::Path) -> StoreOptions {
    // fsync on a timer: these benches measure CPU work, not the disk.
    StoreOptions {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_secs(3600),
        ..StoreOptions::new(dir)
    }
}

fn series_labels(n: usize) -> Vec<Labels> {
    (0..n)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("node_metric_{}", i % 40)),
                ("instance", format!("host-{}:9100", i / 124)),
                ("job", "node".to_owned()),
                ("cpu", format!("{}", i % 4)),
                ("mode", format!("mode{}", i % 8)),
            ])
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricsStore::open(options(dir.path())).unwrap();
    let labels = series_labels(10_000);
    let refs: Vec<Vec<LabelRef<'_>>> = labels.iter().map(|l| l.iter().collect()).collect();
    let hashes: Vec<u64> = labels.iter().map(Labels::hash).collect();
    let keys: Vec<Vec<u8>> = labels.iter().map(Labels::key).collect();
    let mut t = 1_700_000_000_000i64;
    let append_round = |t: i64| {
        let samples: Vec<[Sample; 1]> = (0..2000).map(|i| [Sample { t, v: i as f64 }]).collect();
        let writes: Vec<SeriesWrite<'_>> = (0..2000)
            .map(|i| SeriesWrite {
                hash: hashes[i],
                key: &keys[i],
                labels: &refs[i],
                samples: &samples[i],
                exemplars: &[],
            })
            .collect();
        store.append(&writes, &[]).unwrap();
    };
    append_round(t);
    let mut group = c.benchmark_group("series");
    group.throughput(Throughput::Elements(2000));
    group.bench_function("append_2000_existing_series", |b| {
        b.iter(|| {
            t += 15_000;
            append_round(t)
        })
    });
    group.finish();
    let matchers = [
        Matcher::equal("__name__", "node_metric_3"),
        Matcher::regex("mode", "mode[1-3]", false).unwrap(),
    ];
    c.bench_function("series/select_ids_regex", |b| {
        b.iter_batched(
            || (),
            |_| store.series(&[matchers.to_vec()], i64::MIN, i64::MAX).len(),
            BatchSize::SmallInput,
        )
    });
}

/// 7 days of 500 series at one sample a minute, cut into 2h blocks as the
/// head does, measured before and after compaction: bytes per sample (on
/// stdout) and query time (criterion).
fn compaction(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000i64;
    let store = MetricsStore::open(StoreOptions {
        block_duration_ms: 2 * hour,
        retention_ms: 30 * 24 * hour,
        ..options(dir.path())
    })
    .unwrap();
    let labels: Vec<Labels> = (0..500)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("node_metric_{}", i % 40)),
                ("instance", format!("host-{}:9100", i / 40)),
                ("job", "node".to_owned()),
            ])
        })
        .collect();
    let refs: Vec<Vec<LabelRef<'_>>> = labels.iter().map(|l| l.iter().collect()).collect();
    let hashes: Vec<u64> = labels.iter().map(Labels::hash).collect();
    let keys: Vec<Vec<u8>> = labels.iter().map(Labels::key).collect();
    let start = 1_700_000_000_000 / (24 * hour) * (24 * hour);
    let days = 7;
    let mut total = 0u64;
    for window in 0..days * 12 {
        let from = start + window * 2 * hour;
        let per_series: Vec<Vec<Sample>> = (0..500)
            .map(|i| {
                (0..120)
                    .map(|k| Sample {
                        t: from + k * 60_000,
                        v: ((window * 120 + k) * (i as i64 % 7 + 1)) as f64,
                    })
                    .collect()
            })
            .collect();
        let writes: Vec<SeriesWrite<'_>> = (0..500)
            .map(|i| SeriesWrite {
                hash: hashes[i],
                key: &keys[i],
                labels: &refs[i],
                samples: &per_series[i],
                exemplars: &[],
            })
            .collect();
        total += store.append(&writes, &[]).unwrap().samples_accepted;
        store.flush().unwrap();
    }
    let end = start + days * 24 * hour;
    let one_series = [
        Matcher::equal("__name__", "node_metric_3"),
        Matcher::equal("instance", "host-0:9100"),
    ];
    let all = [Matcher::regex("__name__", "node_metric_.*", false).unwrap()];
    let mut group = c.benchmark_group("compaction");
    group.sample_size(10);
    let measure = |phase: &str, group: &mut criterion::BenchmarkGroup<'_, _>| {
        let summary = store.summary();
        println!(
            "compaction {phase}: {} blocks, {} bytes, {:.3} bytes/sample over {total} samples",
            summary.blocks,
            summary.block_bytes,
            summary.block_bytes as f64 / total as f64
        );
        group.bench_function(format!("select_one_series_7d/{phase}"), |b| {
            b.iter(|| black_box(store.select(&one_series, start, end).len()))
        });
        group.bench_function(format!("select_500_series_1h/{phase}"), |b| {
            b.iter(|| black_box(store.select(&all, end - 25 * hour, end - 24 * hour).len()))
        });
        group.bench_function(format!("select_500_series_7d/{phase}"), |b| {
            b.iter(|| black_box(store.select(&all, start, end).len()))
        });
    };
    measure("before", &mut group);
    let started = std::time::Instant::now();
    let mut merges = 0;
    loop {
        let done = store.compact().unwrap().len();
        if done == 0 {
            break;
        }
        merges += done;
    }
    println!(
        "compaction: {merges} merges in {:.2?} ({:.0} samples/s)",
        started.elapsed(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    measure("after", &mut group);
    group.finish();
}

criterion_group!(benches, chunks, wal, lookup, compaction);
criterion_main!(benches);
