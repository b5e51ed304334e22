//! The query results cache (`[cache]`): answers stitched from cached and
//! fresh extents are byte for byte the answers of an uncached evaluation,
//! late writes invalidate what they could have changed, and (tests below)
//! the HTTP API, the Status page and Redis sharing.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::*;

use oxeye::api::query::result_body;
use oxeye::config::FsyncPolicy;
use oxeye::config::{ByteSize, Config};
use oxeye::model::{LabelRef, Labels, Sample};
use oxeye::query::cache::{CacheMetrics, ResultsCache};
use oxeye::query::promql::{self, EngineOptions};
use oxeye::storage::metrics::{MetricsStore, SeriesWrite, StoreOptions};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn append(store: &MetricsStore, series: &[(Labels, Vec<Sample>)]) {
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
    let outcome = store.append(&writes, &[]).unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.messages);
}

/// A counter with resets and a gauge per (job, instance), every 15 s for
/// 8 hours from T0, with gaps; deterministic.
fn store(dir: &std::path::Path) -> Arc<MetricsStore> {
    let store = MetricsStore::open(StoreOptions {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_secs(3600),
        // Late writes anywhere in the data are accepted.
        out_of_order_window_ms: 30 * 24 * HOUR,
        ..StoreOptions::new(dir)
    })
    .unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut series = Vec::new();
    for job in ["api", "db"] {
        for instance in 0..3 {
            let labels = |name: &str| {
                Labels::from_pairs([
                    ("__name__", name.to_owned()),
                    ("job", job.to_owned()),
                    ("instance", format!("host-{instance}")),
                ])
            };
            let (mut counter, mut counter_samples, mut gauge_samples) = (0.0, vec![], vec![]);
            for i in 0..(8 * 240) {
                let t = T0 + i * 15_000;
                let r = next();
                if r % 50 == 0 {
                    continue; // a missed scrape
                }
                counter = if r % 997 == 0 {
                    0.0
                } else {
                    counter + (r % 7) as f64
                };
                counter_samples.push(Sample { t, v: counter });
                gauge_samples.push(Sample {
                    t,
                    v: (r % 1000) as f64 / 10.0,
                });
            }
            series.push((labels("m"), counter_samples));
            series.push((labels("g"), gauge_samples));
        }
    }
    append(&store, &series);
    store
}

const QUERIES: &[&str] = &[
    "m",
    "rate(m[5m])",
    "sum by (job) (rate(m[2m]))",
    "g",
    "avg_over_time(g[10m])",
    "max_over_time(g[30m:1m])",
    "g offset 20m",
    "resets(m[15m])",
    "topk(2, g)",
    "scalar(sum(g))",
    "time()",
    "g > 50",
    "count by (instance) (g)",
    "absent(nonexistent)",
    "deriv(g[10m])",
    "changes(g[20m])",
    "last_over_time(g[1h])",
    "sum(rate(m[5m])) / sum(rate(m[5m] offset 1h))",
    // Not cacheable: answered by plain evaluation, still equal.
    "g @ 1700003600",
    "g offset -10m",
    "g + end()",
    "vector(range()) + vector(start())",
];

/// An in-process cache over `store` splitting at `split`, counting in
/// `metrics` (the runtime is for the backend; keep it alive).
fn cache(
    store: &MetricsStore,
    split: Duration,
    metrics: CacheMetrics,
) -> (ResultsCache, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = Config::default_config().cache;
    config.split_interval = split;
    config.max_freshness = Duration::from_secs(600);
    config.max_bytes = ByteSize(64 << 20);
    let cache = ResultsCache::new(&config, store, metrics, runtime.handle().clone())
        .unwrap()
        .expect("enabled by default");
    (cache, runtime)
}

/// Both answers, as the API would write them.
fn check(
    cache: &ResultsCache,
    store: &MetricsStore,
    query: &str,
    (start, end, step): (i64, i64, i64),
    now: i64,
) -> Result<(), TestCaseError> {
    let options = EngineOptions::default();
    let plain = promql::range_query(store, &options, query, start, end, step);
    let cached = cache.range_query(store, &options, query, (start, end, step), now);
    match (plain, cached) {
        (Ok(a), Ok(b)) => prop_assert_eq!(
            result_body(&a, true),
            result_body(&b, true),
            "{} over [{}, {}] step {} now {}",
            query,
            start,
            end,
            step,
            now
        ),
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        (a, b) => prop_assert!(false, "{query}: {:?} vs {:?}", a.err(), b.err()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Dashboard-like sequences (a range, the same range slid forward, the
    /// first again), with a late write in between, over random queries,
    /// grids, split intervals and freshness bounds: every answer equals an
    /// uncached evaluation.
    #[test]
    fn stitched_answers_equal_uncached_evaluation(
        query in 0..QUERIES.len(),
        start_min in 0i64..(6 * 60),
        length_min in 0i64..(3 * 60),
        step_s in prop::sample::select(vec![15i64, 37, 60, 300, 420, 3600]),
        unaligned_ms in prop_oneof![Just(0i64), 1i64..15_000],
        slide_min in 0i64..90,
        now_min in 0i64..(9 * 60),
        split_min in prop::sample::select(vec![7i64, 60, 120, 24 * 60]),
        late in prop::option::of((0i64..(8 * 60), 0usize..12)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (cache, _runtime) = cache(&store, Duration::from_secs(split_min as u64 * 60), CacheMetrics::default());
        let q = QUERIES[query];
        let start = T0 + start_min * 60_000 + unaligned_ms;
        let range = (start, start + length_min * 60_000, step_s * 1000);
        let slid = (range.0 + slide_min * 60_000, range.1 + slide_min * 60_000, range.2);
        let now = T0 + now_min * 60_000;
        check(&cache, &store, q, range, now)?;
        check(&cache, &store, q, range, now)?;
        if let Some((minute, which)) = late {
            // A sample into the past of one series (a backfill, an
            // out-of-order arrival): at a time no sample has.
            let job = if which % 2 == 0 { "api" } else { "db" };
            let name = if which % 4 < 2 { "m" } else { "g" };
            let labels = Labels::from_pairs([
                ("__name__", name.to_owned()),
                ("job", job.to_owned()),
                ("instance", format!("host-{}", which % 3)),
            ]);
            append(&store, &[(labels, vec![Sample { t: T0 + minute * 60_000 + 7_001, v: 4242.0 }])]);
        }
        check(&cache, &store, q, slid, now + slide_min * 60_000)?;
        check(&cache, &store, q, range, now + slide_min * 60_000)?;
        check(&cache, &store, q, range, now + slide_min * 60_000)?;
    }
}

#[test]
fn repeated_ranges_come_from_the_cache_and_late_writes_invalidate_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let metrics = CacheMetrics::default();
    let (cache, _runtime) = cache(&store, Duration::from_secs(3600), metrics.clone());
    let options = EngineOptions::default();
    let q = "sum by (job) (g)";
    // Six hours of data in the past, seen from two hours later.
    let (start, end, step, now) = (T0, T0 + 6 * HOUR, 60_000, T0 + 8 * HOUR);
    let run = || {
        result_body(
            &cache
                .range_query(&store, &options, q, (start, end, step), now)
                .unwrap(),
            true,
        )
    };
    let first = run();
    let s = metrics.summary("memory");
    assert_eq!(
        s.lookups[0],
        ("promql", 0, 0, 7),
        "7 hourly groups, all missed"
    );
    assert_eq!(s.points_evaluated, 361);
    let second = run();
    assert_eq!(first, second);
    let s = metrics.summary("memory");
    assert_eq!(s.lookups[0], ("promql", 7, 0, 7), "then all hit");
    assert_eq!(s.points_cached, 361);
    assert_eq!(s.points_evaluated, 361, "nothing evaluated again");

    // A backfilled sample at 3h30m: the groups of hours 3–6 are cut at the
    // step before it; hours 0–2 stay whole.
    let labels = Labels::from_pairs([("__name__", "g"), ("job", "api"), ("instance", "host-9")]);
    append(
        &store,
        &[(
            labels,
            vec![Sample {
                t: T0 + 3 * HOUR + 30 * 60_000,
                v: 1000.0,
            }],
        )],
    );
    let third = run();
    assert_ne!(third, second, "the backfill shows");
    let uncached = result_body(
        &promql::range_query(store.as_ref(), &options, q, start, end, step).unwrap(),
        true,
    );
    assert_eq!(third, uncached);
    let s = metrics.summary("memory");
    // Hours 0-2 hit; hour 3 partial (30 steps before the sample); 4-6 miss.
    assert_eq!(s.lookups[0], ("promql", 10, 1, 10), "{s:?}");
    // Evaluated again: from 3h30m to the end (151 steps).
    assert_eq!(s.points_evaluated, 361 + 151);
    // And then everything is cached again.
    assert_eq!(run(), uncached);
    assert_eq!(metrics.summary("memory").points_evaluated, 361 + 151);
}

#[test]
fn fresh_points_are_always_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let metrics = CacheMetrics::default();
    let (cache, _runtime) = cache(&store, Duration::from_secs(86_400), metrics.clone());
    let options = EngineOptions::default();
    // now is 5 minutes after the range's end: the steps at or after
    // now-10m (the last 6 of 1m) are evaluated on every request.
    let (start, end) = (T0 + HOUR, T0 + 2 * HOUR);
    for _ in 0..3 {
        cache
            .range_query(&store, &options, "g", (start, end, 60_000), end + 300_000)
            .unwrap();
    }
    let s = metrics.summary("memory");
    assert_eq!(s.points_evaluated, 61 + 2 * 6);
    assert_eq!(s.points_cached, 2 * 55);
}

/// The sum of a metric's samples in a /metrics page whose labels contain
/// every one of `having` (`name="value"`).
fn metric(page: &str, name: &str, having: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let bare = series.split('{').next()?;
            (bare == name && having.iter().all(|h| series.contains(h)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

fn metrics_page(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

fn range(base: &str, query: &str, start: i64, end: i64, step_s: i64) -> String {
    let reply = client()
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", query.to_string()),
            ("start", format!("{}", start as f64 / 1000.0)),
            ("end", format!("{}", end as f64 / 1000.0)),
            ("step", step_s.to_string()),
        ])
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.text().unwrap()
}

/// The value of the one series of a range answer at `t` (ms).
fn value_at(body: &str, t: i64) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert!(result.len() <= 1, "{body}");
    result.first()?["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64 == t)
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
}

fn now_aligned(step_ms: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now % step_ms
}

/// `cache_g{instance="i"}` = i, every 15 s over `[from, to]`.
fn gauges(from: i64, to: i64, instances: &[usize]) -> Vec<u8> {
    let names: Vec<String> = instances.iter().map(|i| i.to_string()).collect();
    let series: Vec<TestSeries<'_>> = instances
        .iter()
        .zip(&names)
        .map(|(i, name)| {
            (
                vec![("__name__", "cache_g"), ("instance", name.as_str())],
                (0..)
                    .map(|k| from + k * 15_000)
                    .take_while(|t| *t <= to)
                    .map(|t| (t, *i as f64))
                    .collect(),
            )
        })
        .collect();
    remote_write_body(&series)
}

fn write(base: &str, body: Vec<u8>) {
    let (status, text) = post_remote_write(base, body);
    assert_eq!(status, 204, "{text}");
}

/// Over HTTP: a repeated dashboard range is answered from the cache, fresh
/// points are evaluated every time, a backfill shows at once, and the
/// counts are in /metrics and on the Status page.
#[test]
fn query_range_over_http_is_cached_fresh_and_invalidated() {
    let server = TestServer::start();
    let base = server.url("");
    let now = now_aligned(60_000);
    write(&base, gauges(now - 3 * HOUR, now - 60_000, &[1, 2, 3]));
    let (start, end) = (now - 3 * HOUR, now);
    let q = "sum(cache_g)";
    let first = range(&base, q, start, end, 60);
    assert_eq!(value_at(&first, start + HOUR), Some(6.0));
    let second = range(&base, q, start, end, 60);
    assert_eq!(first, second);
    let page = metrics_page(&base);
    let hits = metric(
        &page,
        "oxeye_results_cache_lookups_total",
        &["backend=\"memory\"", "result=\"hit\""],
    );
    assert!(hits >= 1.0, "{page}");
    let cached = metric(
        &page,
        "oxeye_results_cache_points_total",
        &["source=\"cache\""],
    );
    assert!(
        cached >= 170.0,
        "most of 181 points came from the cache: {cached}"
    );

    // A fresh sample (30 s ago) is in the next answer.
    write(
        &base,
        remote_write_body(&[(
            vec![("__name__", "cache_g"), ("instance", "1")],
            vec![(now - 30_000, 100.0)],
        )]),
    );
    let fresh = range(&base, q, start, end, 60);
    assert_eq!(value_at(&fresh, now), Some(105.0), "{fresh}");

    // A backfill of a new series an hour ago invalidates what it touches.
    let at = now - HOUR;
    write(&base, gauges(at, at + 5 * 60_000, &[10]));
    let after = range(&base, q, start, end, 60);
    assert_eq!(value_at(&after, at - 60_000), Some(6.0));
    assert_eq!(value_at(&after, at), Some(16.0));
    assert_eq!(value_at(&after, at + 9 * 60_000), Some(16.0), "lookback 5m");
    assert_eq!(value_at(&after, at + 11 * 60_000), Some(6.0));

    let status = client()
        .get(server.url("/ui/status"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(status.contains("Results cache"), "{status}");
    assert!(status.contains("in-process"), "{status}");
    assert!(status.contains("promql lookups"), "{status}");
}

/// Redis' DBSIZE over RESP.
fn redis_keys(port: u16) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"*1\r\n$6\r\nDBSIZE\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .trim()
        .strip_prefix(':')?
        .parse()
        .ok()
}

/// Two Oxeye processes share one real redis-server: the second answers
/// from the entries of the first without evaluating; with Redis killed
/// both still answer (counted errors); once it is back, entries are
/// written again.
#[test]
fn two_servers_share_redis_and_survive_its_death() {
    let dir = tempfile::tempdir().unwrap();
    let (redis, port) = start_redis(dir.path());
    let url = format!("redis://127.0.0.1:{port}/0");
    let env = [("OXEYE_CACHE__REDIS_URL", url.as_str())];
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    let mut a = spawn_binary_with(&a_dir, &env);
    let mut b = spawn_binary_with(&b_dir, &env);
    let now = now_aligned(60_000);
    // The same stream to both (an HA pair), all of it in the past.
    for server in [&a, &b] {
        write(&server.base, gauges(now - 4 * HOUR, now - HOUR, &[1, 2]));
    }
    let (start, end) = (now - 4 * HOUR, now - HOUR);
    let q = "sum by (instance) (cache_g)";
    let from_a = range(&a.base, q, start, end, 60);
    let stored = wait_for(Duration::from_secs(10), || {
        redis_keys(port).filter(|n| *n >= 1)
    });
    assert!(stored.is_some(), "A's entries reach Redis");
    let from_b = range(&b.base, q, start, end, 60);
    assert_eq!(from_a, from_b);
    let page = metrics_page(&b.base);
    assert_eq!(
        metric(
            &page,
            "oxeye_results_cache_points_total",
            &["source=\"evaluated\""]
        ),
        0.0,
        "B evaluated nothing: {page}"
    );
    assert_eq!(
        metric(
            &page,
            "oxeye_results_cache_points_total",
            &["source=\"cache\""]
        ),
        181.0
    );
    assert!(
        metric(
            &page,
            "oxeye_results_cache_lookups_total",
            &["backend=\"redis\"", "result=\"hit\""]
        ) >= 1.0
    );

    // Redis dies: answers go on, from evaluation, errors counted.
    drop(redis);
    for server in [&mut a, &mut b] {
        let body = range(&server.base, q, start, end, 60);
        assert_eq!(body, from_a);
        server.check_alive("a query with Redis down");
        let page = metrics_page(&server.base);
        assert!(
            metric(
                &page,
                "oxeye_results_cache_errors_total",
                &["backend=\"redis\""]
            ) >= 1.0,
            "{page}"
        );
    }

    // Back (empty): the next queries fill it again.
    let _redis = start_redis_on(dir.path(), port);
    let refilled = wait_for(Duration::from_secs(20), || {
        assert_eq!(range(&a.base, q, start, end, 60), from_a);
        redis_keys(port).filter(|n| *n >= 1)
    });
    assert!(refilled.is_some(), "A reconnects to Redis");
    a.check_alive("Redis restart");
}

/// A `_bulk` of records at the given times (ms), with a level and a number.
fn bulk(es: &str, index: &str, times: &[i64]) {
    let mut body = String::new();
    for (n, t) in times.iter().enumerate() {
        let level = ["info", "warn", "error"][n % 3];
        body.push_str(&format!("{{\"create\":{{\"_index\":\"{index}\"}}}}\n"));
        body.push_str(
            &serde_json::json!({
                "@timestamp": t,
                "level": level,
                "took": (n * 37 % 500) as i64,
                "message": format!("record {n}"),
            })
            .to_string(),
        );
        body.push('\n');
    }
    let reply: serde_json::Value = client()
        .post(format!("{es}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(reply["errors"], false, "{reply}");
}

/// One search through `_msearch`, as Grafana sends it; `took` removed.
fn msearch(es: &str, index: &str, search: &serde_json::Value) -> serde_json::Value {
    let body = format!(
        "{}\n{}\n",
        serde_json::json!({"search_type": "query_then_fetch", "ignore_unavailable": true, "index": index}),
        search
    );
    let mut reply: serde_json::Value = client()
        .post(format!("{es}/_msearch"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut answer = reply["responses"][0].take();
    answer.as_object_mut().unwrap().remove("took");
    answer
}

/// Log volume histograms (Grafana's shape and variations of it) answered
/// by a server with the cache equal those of a server without, over the
/// same records, before and after a backfill; repeated ones come from the
/// cache.
#[test]
fn log_volume_histograms_equal_uncached_answers() {
    let cached = TestServer::start_with(&[("OXEYE_CACHE__SPLIT_INTERVAL", "1h")]);
    let plain = TestServer::start_with(&[("OXEYE_CACHE__ENABLED", "false")]);
    let now = now_aligned(1000);
    // Three hours of records, denser lately, some in the last minutes.
    let times: Vec<i64> = (0..3000i64)
        .map(|n| now - 3 * HOUR + (n * n) % (3 * HOUR) + n % 7)
        .chain((0..50).map(|n| now - n * 5_000))
        .collect();
    let es = |s: &TestServer| format!("http://{}", s.elasticsearch);
    for server in [&cached, &plain] {
        bulk(&es(server), "app", &times);
    }
    let mut rng = 7u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut cases = Vec::new();
    for case in 0..24 {
        let interval = ["30s", "1m", "5m", "1h", "7m"][next(5) as usize];
        let lo = now - 3 * HOUR - 60_000 + next(600_000) as i64;
        let hi = now - next(3 * HOUR as u64 / 2) as i64 * if case % 3 == 0 { 0 } else { 1 };
        let mut histogram = serde_json::json!({"field": "@timestamp", "fixed_interval": interval, "format": "epoch_millis"});
        match case % 4 {
            0 => {
                histogram["min_doc_count"] = 0.into();
                histogram["extended_bounds"] = serde_json::json!({"min": lo, "max": hi});
            }
            1 => histogram["min_doc_count"] = 1.into(),
            2 => histogram["min_doc_count"] = 0.into(),
            _ => {}
        }
        let sub = if case % 2 == 0 {
            serde_json::json!({"3": {"terms": {"field": "level", "size": 10, "order": {"_count": "desc"}, "min_doc_count": 1}}})
        } else {
            serde_json::json!({"avg": {"avg": {"field": "took"}}, "max": {"max": {"field": "took"}}})
        };
        let query = if case % 5 == 0 { "level:error" } else { "*" };
        cases.push(serde_json::json!({
            "size": 0,
            "query": {"bool": {"filter": [
                {"range": {"@timestamp": {"gte": lo, "lte": hi, "format": "epoch_millis"}}},
                {"query_string": {"analyze_wildcard": true, "query": query}}]}},
            "aggs": {"2": {"date_histogram": histogram, "aggs": sub}},
        }));
    }
    let check = |round: &str| {
        for search in &cases {
            let want = msearch(&es(&plain), "app", search);
            assert!(want["aggregations"]["2"]["buckets"].is_array(), "{want}");
            for _ in 0..2 {
                let got = msearch(&es(&cached), "app", search);
                assert_eq!(got, want, "{round}: {search}");
            }
        }
    };
    check("first");
    let page = metrics_page(&cached.url(""));
    let hits = metric(
        &page,
        "oxeye_results_cache_lookups_total",
        &["cache=\"logs\"", "result=\"hit\""],
    );
    assert!(hits >= 24.0, "{page}");

    // A backfill two hours back: every answer still equals the uncached one.
    for server in [&cached, &plain] {
        bulk(
            &es(server),
            "app",
            &[now - 2 * HOUR + 1234, now - 2 * HOUR + 99_999],
        );
    }
    check("after a backfill");
    // A record with an id, then the same id at another time (its old
    // time is not known to the cache): still equal.
    let put = |server: &TestServer, t: i64| {
        let status = client()
            .put(format!("{}/app/_doc/moved?refresh=true", es(server)))
            .json(&serde_json::json!({"@timestamp": t, "level": "info", "took": 1, "message": "moved"}))
            .send()
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    };
    for server in [&cached, &plain] {
        put(server, now - 2 * HOUR - 30 * 60_000);
    }
    check("with a record by id");
    for server in [&cached, &plain] {
        put(server, now - HOUR);
    }
    check("after the record moved");
}

/// OTLP/JSON spans of service `svc`: (trace number, start ms).
fn send_spans(server: &TestServer, spans: &[(u8, i64)]) {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|(trace, start)| {
            serde_json::json!({
                "traceId": format!("{:032x}", *trace as u128 + 1),
                "spanId": format!("{:016x}", (*start as u64) ^ (*trace as u64) << 56 | 1),
                "name": "GET /item",
                "kind": 2,
                "startTimeUnixNano": (start * 1_000_000).to_string(),
                "endTimeUnixNano": ((start + 20) * 1_000_000).to_string(),
            })
        })
        .collect();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": spans}]}]});
    let status = client()
        .post(server.url("/v1/traces"))
        .json(&body)
        .send()
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
}

/// Jaeger searches over a past range are answered from the cache, and a
/// span written late into the range shows at once.
#[test]
fn past_trace_searches_are_cached_until_a_late_span() {
    let server = TestServer::start();
    let now = now_aligned(1000);
    send_spans(
        &server,
        &[
            (1, now - 2 * HOUR),
            (2, now - 2 * HOUR + 60_000),
            (3, now - 5 * 60_000),
        ],
    );
    let search = || {
        let v = get_json(&format!(
            "{}?service=svc&limit=100&start={}&end={}",
            server.url("/api/traces"),
            (now - 3 * HOUR) * 1000,
            (now - HOUR) * 1000
        ));
        let mut ids: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let first = search();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(search(), first);
    let page = metrics_page(&server.url(""));
    assert_eq!(
        metric(
            &page,
            "oxeye_results_cache_lookups_total",
            &["cache=\"traces\"", "result=\"hit\""]
        ),
        1.0,
        "{page}"
    );
    // A span of a new trace, 90 minutes ago, arrives now.
    send_spans(&server, &[(4, now - 90 * 60_000)]);
    let after = search();
    assert_eq!(after.len(), 3, "{after:?}");
    // A fresh span (outside the range) keeps the cached answer.
    send_spans(&server, &[(5, now - 1000)]);
    assert_eq!(search(), after);
    let page = metrics_page(&server.url(""));
    assert_eq!(
        metric(
            &page,
            "oxeye_results_cache_lookups_total",
            &["cache=\"traces\"", "result=\"hit\""]
        ),
        2.0,
        "{page}"
    );
}

/// Volume histograms at the edges (i64 bounds, a millisecond interval
/// over centuries, a reversed range) get the answer a server without the
/// cache gives, and the server goes on answering.
#[test]
fn extreme_log_histograms_answer_as_uncached() {
    let cached = TestServer::start();
    let plain = TestServer::start_with(&[("OXEYE_CACHE__ENABLED", "false")]);
    let es = |s: &TestServer| format!("http://{}", s.elasticsearch);
    let now = now_aligned(1000);
    for server in [&cached, &plain] {
        bulk(&es(server), "app", &[now - HOUR, now - 2 * HOUR]);
    }
    let search = |lo: i64, hi: i64, interval: &str| {
        serde_json::json!({
            "size": 0,
            "query": {"bool": {"filter": [
                {"range": {"@timestamp": {"gte": lo, "lte": hi, "format": "epoch_millis"}}}]}},
            "aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": interval, "min_doc_count": 0}}},
        })
    };
    for body in [
        search(i64::MIN, i64::MAX, "1m"),
        search(0, i64::MAX, "1ms"),
        search(now - 100 * 365 * 24 * HOUR, now - HOUR, "1ms"),
        search(now - HOUR, now - 2 * HOUR, "1m"),
        search(now - 3 * HOUR, now - HOUR, "1m"),
    ] {
        let want = msearch(&es(&plain), "app", &body);
        for _ in 0..2 {
            assert_eq!(msearch(&es(&cached), "app", &body), want, "{body}");
        }
    }
    assert_eq!(
        client()
            .get(cached.url("/-/healthy"))
            .send()
            .unwrap()
            .status(),
        200
    );
}
