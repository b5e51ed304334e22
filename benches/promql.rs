//! Criterion benches for PromQL's hot evaluation paths over the real store:
//! `rate` over many series, `sum by`, and `histogram_quantile`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use oxeye::config::FsyncPolicy;
use oxeye::model::{LabelRef, Labels, Sample};
use oxeye::query::promql::{self, EngineOptions};
use oxeye::storage::metrics::{MetricsStore, SeriesWrite, StoreOptions};

const HOSTS: usize = 100;
const CPUS: usize = 8;
const MODES: usize = 8;
/// One hour of 15s scrapes.
const POINTS: i64 = 240;
const T0: i64 = 1_700_000_000_000;

fn store(dir: &std::path::Path) -> std::sync::Arc<MetricsStore> {
    let store = MetricsStore::open(StoreOptions {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_secs(3600),
        ..StoreOptions::new(dir)
    })
    .unwrap();
    let mut series: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for host in 0..HOSTS {
        for cpu in 0..CPUS {
            for mode in 0..MODES {
                let labels = Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_owned()),
                    ("instance", format!("host-{host}:9100")),
                    ("job", "node".to_owned()),
                    ("cpu", cpu.to_string()),
                    ("mode", format!("mode{mode}")),
                ]);
                let samples = (0..POINTS)
                    .map(|i| Sample {
                        t: T0 + i * 15_000,
                        v: (i * (mode as i64 + 1)) as f64 * 0.37,
                    })
                    .collect();
                series.push((labels, samples));
            }
        }
        for (k, le) in ["0.1", "0.5", "1", "5", "+Inf"].iter().enumerate() {
            let labels = Labels::from_pairs([
                (
                    "__name__",
                    "http_request_duration_seconds_bucket".to_owned(),
                ),
                ("instance", format!("host-{host}:8080")),
                ("job", "api".to_owned()),
                ("le", le.to_string()),
            ]);
            let samples = (0..POINTS)
                .map(|i| Sample {
                    t: T0 + i * 15_000,
                    v: (i * (k as i64 + 1) * 10) as f64,
                })
                .collect();
            series.push((labels, samples));
        }
    }
    let refs: Vec<Vec<LabelRef<'_>>> = series.iter().map(|(l, _)| l.iter().collect()).collect();
    let keys: Vec<Vec<u8>> = series.iter().map(|(l, _)| l.key()).collect();
    let writes: Vec<SeriesWrite<'_>> = series
        .iter()
        .zip(&refs)
        .zip(&keys)
        .map(|(((labels, samples), refs), key)| SeriesWrite {
            hash: labels.hash(),
            key,
            labels: refs,
            samples,
            exemplars: &[],
        })
        .collect();
    store.append(&writes, &[]).unwrap();
    store
}

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let options = EngineOptions::default();
    let end = T0 + (POINTS - 1) * 15_000;
    let start = end - 20 * 60_000;
    let cases = [
        ("rate_6400_series_range", "rate(node_cpu_seconds_total[5m])"),
        (
            "sum_by_instance_rate_range",
            "sum by (instance) (rate(node_cpu_seconds_total[5m]))",
        ),
        (
            "histogram_quantile_range",
            "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        ),
    ];
    let mut group = c.benchmark_group("promql");
    group.sample_size(20);
    for (name, query) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                promql::range_query(store.as_ref(), &options, query, start, end, 60_000).unwrap()
            })
        });
    }
    group.bench_function("rate_6400_series_instant", |b| {
        b.iter(|| {
            promql::instant_query(
                store.as_ref(),
                &options,
                "rate(node_cpu_seconds_total[5m])",
                end,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
