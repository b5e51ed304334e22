//! Store-level tests: append rules, reads across head/blocks, restart.

use super::matcher::Matcher;
use super::*;

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        out_of_order_window_ms: 60_000,
        max_active_series: 100,
        max_exemplars: 10,
        wal_segment_size: 1 << 20,
        ..StoreOptions::new(dir)
    }
}

struct Series {
    labels: Labels,
}

impl Series {
    fn new(pairs: &[(&str, &str)]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
        }
    }

    fn append(&self, store: &MetricsStore, samples: &[(i64, f64)]) -> AppendOutcome {
        let refs: Vec<LabelRef<'_>> = self.labels.iter().collect();
        let samples: Vec<Sample> = samples.iter().map(|&(t, v)| Sample { t, v }).collect();
        store
            .append(
                &[SeriesWrite {
                    hash: self.labels.hash(),
                    key: &self.labels.key(),
                    labels: &refs,
                    samples: &samples,
                    exemplars: &[],
                }],
                &[],
            )
            .unwrap()
    }
}

fn read(store: &MetricsStore, name: &str) -> Vec<(i64, f64)> {
    let found = store.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX);
    found
        .into_iter()
        .flat_map(|s| s.samples)
        .map(|s| (s.t, s.v))
        .collect()
}

#[test]
fn append_rules_out_of_order_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricsStore::open(options(dir.path())).unwrap();
    let s = Series::new(&[("__name__", "x"), ("job", "a")]);
    let outcome = s.append(&store, &[(100_000, 1.0), (115_000, 2.0)]);
    assert_eq!(outcome.samples_accepted, 2);
    assert_eq!(outcome.series_created, 1);
    // identical resend: accepted silently; different value: rejected
    let outcome = s.append(&store, &[(115_000, 2.0), (115_000, 3.0)]);
    assert_eq!(outcome.samples_accepted, 0);
    assert_eq!(outcome.rejected[&RejectReason::Duplicate], 1);
    // inside the out-of-order window: kept; outside: rejected
    let outcome = s.append(&store, &[(60_000, 0.5), (10_000, 0.1)]);
    assert_eq!(outcome.samples_accepted, 1);
    assert_eq!(outcome.rejected[&RejectReason::OutOfOrder], 1);
    assert!(
        outcome.messages[0].contains("out of order sample"),
        "{:?}",
        outcome.messages
    );
    assert_eq!(
        read(&store, "x"),
        vec![(60_000, 0.5), (100_000, 1.0), (115_000, 2.0)]
    );
}

#[test]
fn series_limit_rejects_new_series_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_active_series = 1;
    let store = MetricsStore::open(opts).unwrap();
    let a = Series::new(&[("__name__", "a")]);
    let b = Series::new(&[("__name__", "b")]);
    assert_eq!(a.append(&store, &[(1, 1.0)]).samples_accepted, 1);
    let outcome = b.append(&store, &[(1, 1.0), (2, 2.0)]);
    assert_eq!(outcome.rejected[&RejectReason::SeriesLimit], 2);
    assert!(outcome.messages[0].contains("max_active_series"));
    assert_eq!(a.append(&store, &[(2, 2.0)]).samples_accepted, 1);
}

#[test]
fn restart_replays_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Series::new(&[("__name__", "x")]);
    {
        let store = MetricsStore::open(options(dir.path())).unwrap();
        s.append(&store, &[(1_000, 1.0), (2_000, 2.0)]);
        s.append(&store, &[(1_500, 1.5)]);
        // dropped without close(): like a crash after the acknowledgement
    }
    let store = MetricsStore::open(options(dir.path())).unwrap();
    assert_eq!(
        read(&store, "x"),
        vec![(1_000, 1.0), (1_500, 1.5), (2_000, 2.0)]
    );
    // ordering state survived: a duplicate with another value is still refused
    let outcome = s.append(&store, &[(2_000, 9.0), (3_000, 3.0)]);
    assert_eq!(outcome.rejected[&RejectReason::Duplicate], 1);
    assert_eq!(outcome.samples_accepted, 1);
}

#[test]
fn flush_moves_the_head_into_blocks_and_restart_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3600 * 1000;
    let s = Series::new(&[("__name__", "x"), ("job", "a")]);
    let t = Series::new(&[("__name__", "y"), ("job", "b")]);
    {
        let store = MetricsStore::open(options(dir.path())).unwrap();
        // spans two aligned 2h windows -> two blocks
        let samples: Vec<(i64, f64)> = (0..20).map(|i| (i * hour / 4 + 1000, i as f64)).collect();
        s.append(&store, &samples);
        t.append(&store, &[(1000, 7.0)]);
        let report = store.flush().unwrap();
        assert_eq!(report.blocks.len(), 3, "{report:?}");
        assert_eq!(report.samples, 21);
        assert_eq!(read(&store, "x").len(), 20);
        assert_eq!(store.summary().head_samples, 0);
        // after the cut, new data goes to the head and reads merge both
        s.append(&store, &[(6 * hour, 100.0)]);
        assert_eq!(read(&store, "x").len(), 21);
        store.close().unwrap();
    }
    let store = MetricsStore::open(options(dir.path())).unwrap();
    let x = read(&store, "x");
    assert_eq!(x.len(), 21);
    assert_eq!(x[20], (6 * hour, 100.0));
    assert_eq!(store.summary().blocks, 3);
    // old WAL segments were removed, only the post-cut one replays
    assert_eq!(store.summary().head_samples, 1);
    let names = store.label_names(&[], i64::MIN, i64::MAX);
    assert_eq!(names, vec!["__name__", "job"]);
    let jobs = store.label_values(
        "job",
        &[vec![Matcher::equal("__name__", "y")]],
        i64::MIN,
        i64::MAX,
    );
    assert_eq!(jobs, vec!["b"]);
    // time filtering of series
    assert!(store
        .series(&[vec![Matcher::equal("job", "b")]], 10 * hour, 11 * hour)
        .is_empty());
    assert_eq!(
        store
            .series(&[vec![Matcher::equal("job", "b")]], 0, hour)
            .len(),
        1
    );
}

#[test]
fn retention_deletes_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricsStore::open(options(dir.path())).unwrap();
    let s = Series::new(&[("__name__", "x")]);
    s.append(&store, &[(1000, 1.0)]);
    store.flush().unwrap();
    assert_eq!(store.summary().blocks, 1);
    let day = 86400 * 1000;
    store.maintain(14 * day).unwrap();
    assert_eq!(store.summary().blocks, 1);
    store.maintain(16 * day).unwrap();
    assert_eq!(store.summary().blocks, 0);
    assert!(read(&store, "x").is_empty());
}

#[test]
fn exemplars_and_metadata_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let labels = Labels::from_pairs([("__name__", "req_total")]);
    let refs: Vec<LabelRef<'_>> = labels.iter().collect();
    let exemplar = Exemplar {
        labels: Labels::from_pairs([("trace_id", "abc")]),
        t: 5,
        v: 1.0,
    };
    let metadata = MetricMetadata {
        metric_family: "req_total".into(),
        metric_type: crate::model::MetricType::Counter,
        help: "requests".into(),
        unit: String::new(),
    };
    {
        let store = MetricsStore::open(options(dir.path())).unwrap();
        store
            .append(
                &[SeriesWrite {
                    hash: labels.hash(),
                    key: &labels.key(),
                    labels: &refs,
                    samples: &[Sample { t: 5, v: 1.0 }],
                    exemplars: std::slice::from_ref(&exemplar),
                }],
                std::slice::from_ref(&metadata),
            )
            .unwrap();
    }
    let store = MetricsStore::open(options(dir.path())).unwrap();
    let found = store.exemplars(&[Matcher::equal("__name__", "req_total")], 0, 10);
    assert_eq!(found[0].1, vec![exemplar]);
    assert_eq!(store.metadata(), vec![metadata]);
}

/// Every way a head cut can fail on disk leaves the data readable, keeps
/// the WAL that holds it, and loses nothing across a restart; the cut is
/// retried and then writes everything exactly once.
#[test]
fn failed_head_cuts_lose_nothing() {
    use crate::storage::faults;
    let hour = 3600 * 1000;
    for (point, skip) in [
        ("block.write", 0),
        ("block.write", 1),  // the second of three blocks
        ("block.rename", 2), // the last block
        ("wal.fsync", 0),    // syncing the rotated WAL
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = Series::new(&[("__name__", "x"), ("job", "a")]);
        let samples: Vec<(i64, f64)> = (0..20).map(|i| (i * hour / 4 + 1000, i as f64)).collect();
        {
            let store = MetricsStore::open(options(dir.path())).unwrap();
            s.append(&store, &samples);
            faults::arm(point, skip, 1, std::io::ErrorKind::StorageFull);
            let err = store.flush().unwrap_err();
            faults::clear();
            assert!(err.to_string().contains("injected fault"), "{point}: {err}");
            // Still readable, nothing published, the WAL kept.
            assert_eq!(read(&store, "x"), samples, "{point}");
            assert_eq!(store.summary().blocks, 0, "{point}");
            let on_disk = std::fs::read_dir(dir.path().join("blocks"))
                .map(|d| d.count())
                .unwrap_or(0);
            assert_eq!(on_disk, 0, "{point}: a failed cut left blocks behind");
        }
        // A restart finds everything (from the WAL).
        let store = MetricsStore::open(options(dir.path())).unwrap();
        assert_eq!(read(&store, "x"), samples, "{point} after restart");
        if point == "wal.fsync" {
            // A failed fsync stops the WAL until restart; the restarted
            // store cuts normally.
            let report = store.flush().unwrap();
            assert_eq!(report.samples, 20);
        }
        drop(store);
        // And a cut that fails, then succeeds on retry, writes it all once.
        let store = MetricsStore::open(options(dir.path())).unwrap();
        if point != "wal.fsync" {
            faults::arm(point, skip, 1, std::io::ErrorKind::StorageFull);
            assert!(store.flush().is_err());
            faults::clear();
            let report = store.flush().unwrap();
            assert_eq!(report.samples, 20, "{point}: the retried cut");
        }
        assert_eq!(read(&store, "x"), samples, "{point}");
        drop(store);
        let store = MetricsStore::open(options(dir.path())).unwrap();
        assert_eq!(
            read(&store, "x"),
            samples,
            "{point}: exactly once after restart"
        );
        assert_eq!(store.summary().blocks, 3, "{point}");
    }
}

#[test]
fn block_names_are_unique_whatever_the_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3600 * 1000;
    let store = MetricsStore::open(options(dir.path())).unwrap();
    let s = Series::new(&[("__name__", "neg"), ("job", "a")]);
    // Negative times in three different windows, then the same window twice
    // (out-of-order data cut in two flushes).
    s.append(&store, &[(-5 * hour, 1.0), (-3 * hour, 2.0), (-hour, 3.0)]);
    store.flush().unwrap();
    let t = Series::new(&[("__name__", "neg"), ("job", "b")]);
    t.append(&store, &[(-5 * hour, 4.0)]);
    store.flush().unwrap();
    assert_eq!(read(&store, "neg").len(), 4);
    assert_eq!(store.summary().blocks, 4);
    drop(store);
    let store = MetricsStore::open(options(dir.path())).unwrap();
    assert_eq!(read(&store, "neg").len(), 4);
}

#[test]
fn series_whose_data_retention_removed_leave_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3600 * 1000;
    let opts = || StoreOptions {
        retention_ms: 2 * hour,
        max_active_series: 2,
        ..options(dir.path())
    };
    let old = Series::new(&[("__name__", "m"), ("job", "old")]);
    let new = Series::new(&[("__name__", "m"), ("job", "new")]);
    {
        let store = MetricsStore::open(opts()).unwrap();
        old.append(&store, &[(1000, 1.0)]);
        new.append(&store, &[(10 * hour, 2.0)]);
        store.flush().unwrap();
        // The limit is reached.
        let third = Series::new(&[("__name__", "m"), ("job", "third")]);
        assert_eq!(
            third.append(&store, &[(10 * hour, 3.0)]).samples_accepted,
            0
        );
        // Retention removes the old block, and with it the old series.
        store.maintain(10 * hour + 1).unwrap();
        assert_eq!(store.summary().series, 1);
        let jobs = store.label_values("job", &[], i64::MIN, i64::MAX);
        assert_eq!(jobs, vec!["new"]);
        // Now a new series fits under the limit again.
        assert_eq!(
            third.append(&store, &[(10 * hour, 3.0)]).samples_accepted,
            1
        );
        // The old labels written again make a new series.
        assert_eq!(old.append(&store, &[(10 * hour, 4.0)]).samples_accepted, 0);
        store.close().unwrap();
    }
    let store = MetricsStore::open(opts()).unwrap();
    let jobs = store.label_values("job", &[], i64::MIN, i64::MAX);
    assert_eq!(jobs, vec!["new", "third"]);
    assert_eq!(store.summary().series, 2);
    assert_eq!(read(&store, "m").len(), 2);
}

/// Out of file descriptors (or memory) while opening blocks is not
/// corruption: start-up fails with the reason, and the blocks stay.
#[test]
fn transient_open_errors_leave_blocks_alone() {
    use crate::storage::faults;
    let dir = tempfile::tempdir().unwrap();
    let s = Series::new(&[("__name__", "kept"), ("job", "a")]);
    {
        let store = MetricsStore::open(options(dir.path())).unwrap();
        s.append(&store, &[(1000, 1.0), (2000, 2.0)]);
        store.flush().unwrap();
    }
    for errno in [24, 12] {
        faults::arm_errno("block.open", errno);
        let err = MetricsStore::open(options(dir.path()))
            .err()
            .expect("start-up stops");
        faults::clear();
        assert!(crate::storage::is_transient(&err), "{err}");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("corrupt-")),
        "{names:?}"
    );
    let store = MetricsStore::open(options(dir.path())).unwrap();
    assert_eq!(read(&store, "kept").len(), 2);
}

/// A day of 2h windows, each flushed twice: 24 small blocks.
fn day_of_small_blocks(store: &MetricsStore, series: &[Series]) -> Vec<Vec<(i64, f64)>> {
    let hour = 3_600_000i64;
    let mut written = vec![Vec::new(); series.len()];
    for half in 0..24 {
        let from = half * hour;
        for (i, s) in series.iter().enumerate() {
            let samples: Vec<(i64, f64)> = (0..60)
                .map(|k| {
                    (
                        from + k * 60_000,
                        (i * 10_000) as f64 + (half * 60 + k) as f64,
                    )
                })
                .collect();
            s.append(store, &samples);
            written[i].extend(samples);
        }
        store.flush().unwrap();
    }
    // Something past the day, so that its windows are over.
    for s in series {
        s.append(store, &[(25 * hour, 0.0)]);
    }
    store.flush().unwrap();
    written
}

#[test]
fn compaction_merges_a_day_of_small_blocks_and_every_sample_stays_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions {
        block_duration_ms: 2 * 3_600_000,
        retention_ms: 3650 * 24 * 3_600_000,
        out_of_order_window_ms: 0,
        ..options(dir.path())
    };
    let series: Vec<Series> = (0..20)
        .map(|i| Series::new(&[("__name__", "c"), ("i", &i.to_string())]))
        .collect();
    let written = {
        let store = MetricsStore::open(opts()).unwrap();
        let written = day_of_small_blocks(&store, &series);
        let before = store.blocks.read().len();
        assert_eq!(before, 25, "a block per hour, and the one after the day");
        let reports = store.compact().unwrap();
        assert!(!reports.is_empty());
        // Keep going until the plan is empty (MAX_MERGES per call).
        while !store.compact().unwrap().is_empty() {}
        let blocks: Vec<(i64, i64)> = store
            .blocks
            .read()
            .iter()
            .map(|b| (b.meta.min_t, b.meta.max_t))
            .collect();
        // The whole day in one 24h block, and the block after it.
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        assert_eq!(blocks[0], (0, 24 * 3_600_000 - 60_000));
        assert_eq!(
            store.stats.compactions.load(Ordering::Relaxed) as usize,
            12 + 4 + 1
        );
        for (s, expected) in series.iter().zip(&written) {
            let got = store.select(&s_matchers(s), 0, 24 * 3_600_000 - 1);
            assert_eq!(got.len(), 1);
            let got: Vec<(i64, f64)> = got[0].samples.iter().map(|x| (x.t, x.v)).collect();
            assert_eq!(&got, expected);
            // A part of the day: only the rows it overlaps, the same samples.
            let (from, to) = (5 * 3_600_000 + 30 * 60_000, 7 * 3_600_000);
            let part = store.select(&s_matchers(s), from, to);
            let part: Vec<(i64, f64)> = part[0].samples.iter().map(|x| (x.t, x.v)).collect();
            let want: Vec<(i64, f64)> = expected
                .iter()
                .copied()
                .filter(|(t, _)| (from..=to).contains(t))
                .collect();
            assert_eq!(part, want);
        }
        let day = store.blocks.read()[0].clone();
        assert_eq!(day.meta.num_series, 20);
        assert_eq!(
            day.series_range(day.series.min().unwrap()),
            Some((0, 24 * 3_600_000 - 60_000))
        );
        written
    };
    // After a restart: the same, and no source block left on disk.
    let store = MetricsStore::open(opts()).unwrap();
    assert_eq!(store.blocks.read().len(), 2);
    let dirs = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .count();
    assert_eq!(dirs, 2);
    for (s, expected) in series.iter().zip(&written) {
        let got = store.select(&s_matchers(s), 0, 24 * 3_600_000 - 1);
        let got: Vec<(i64, f64)> = got[0].samples.iter().map(|x| (x.t, x.v)).collect();
        assert_eq!(&got, expected);
    }
}

fn s_matchers(s: &Series) -> Vec<Matcher> {
    s.labels
        .pairs()
        .iter()
        .map(|(k, v)| Matcher::equal(k, v))
        .collect()
}

#[test]
fn queries_during_compaction_see_every_sample_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricsStore::open(StoreOptions {
        block_duration_ms: 2 * 3_600_000,
        retention_ms: 3650 * 24 * 3_600_000,
        ..options(dir.path())
    })
    .unwrap();
    let series: Vec<Series> = (0..40)
        .map(|i| Series::new(&[("__name__", "q"), ("i", &i.to_string())]))
        .collect();
    day_of_small_blocks(&store, &series);
    let expected: usize = 40 * 24 * 60;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let checks = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    let found =
                        store.select(&[Matcher::equal("__name__", "q")], 0, 24 * 3_600_000 - 1);
                    let n: usize = found.iter().map(|s| s.samples.len()).sum();
                    assert_eq!(n, expected, "a query during compaction saw {n} samples");
                    checks.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while !store.compact().unwrap().is_empty() {}
        stop.store(true, Ordering::Release);
    });
    assert!(checks.load(Ordering::Relaxed) > 0);
    assert_eq!(store.blocks.read().len(), 2);
}

#[test]
fn a_compaction_interrupted_after_its_block_was_written_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions {
        block_duration_ms: 2 * 3_600_000,
        retention_ms: 3650 * 24 * 3_600_000,
        ..options(dir.path())
    };
    let s = Series::new(&[("__name__", "k")]);
    {
        let store = MetricsStore::open(opts()).unwrap();
        s.append(&store, &[(1000, 1.0), (2000, 2.0)]);
        store.flush().unwrap();
        s.append(&store, &[(3000, 3.0)]);
        store.flush().unwrap();
        // The merged block exists, the sources were not deleted yet: what a
        // crash between the rename and the deletion leaves.
        let blocks = store.blocks.read().clone();
        let sources: Vec<String> = blocks.iter().map(|b| b.name.clone()).collect();
        let samples: Vec<Sample> = [(1000, 1.0), (2000, 2.0), (3000, 3.0)]
            .iter()
            .map(|&(t, v)| Sample { t, v })
            .collect();
        let id = blocks[0].series.iter().next().unwrap();
        let encoded = block::EncodedSeries::encode(id, &samples).unwrap();
        block::write_compacted_block(&dir.path().join("blocks"), &[encoded], 0, &sources).unwrap();
    }
    let store = MetricsStore::open(opts()).unwrap();
    assert_eq!(store.blocks.read().len(), 1);
    assert_eq!(
        read(&store, "k"),
        vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]
    );
}
