//! Forwarding (`[forward]`): everything accepted is sent on, from the WAL.
//!
//! - A scripted receiver on loopback that hangs, answers garbage, answers
//!   503 with `Retry-After`, then accepts: every sample arrives, in order
//!   per series; a 400 drops what it refused, counted; a relabel that drops
//!   everything sends nothing and counts it; an unreachable receiver with a
//!   small `max_backlog` keeps the WAL bounded and counts what it skipped.
//! - The real Prometheus 2.42 (`--web.enable-remote-write-receiver`) and
//!   VictoriaMetrics as receivers of the real binary: every sample arrives,
//!   across a receiver restart and an Oxeye `kill -9`.
//! - OTLP and `_bulk` forwarding, with a second Oxeye as the receiver
//!   (Jaeger and Elasticsearch are not installable here; the wire formats
//!   are the real ones).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client, post_remote_write, remote_write_body, wait_for, TestServer};
use prost::Message;

#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Read the request, never answer (until the sender gives up).
    Hang,
    /// Answer bytes that are not HTTP.
    Garbage,
    /// 503 with `Retry-After: 1`.
    Busy,
    /// 400: refused for good.
    BadRequest,
    Ok,
}

/// A remote_write receiver on loopback that answers from a script, then 200.
struct Receiver {
    port: u16,
    /// Bodies it answered 200 to, decoded.
    accepted: Arc<Mutex<Vec<oxeye::model::prompb::WriteRequest>>>,
    requests: Arc<Mutex<Vec<Answer>>>,
}

impl Receiver {
    fn start(script: Vec<Answer>) -> Receiver {
        Receiver::start_on(0, script)
    }

    fn start_on(port: u16, script: Vec<Answer>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let (acc, reqs) = (accepted.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let answer = script.lock().unwrap().pop_front().unwrap_or(Answer::Ok);
                let (acc, reqs) = (acc.clone(), reqs.clone());
                std::thread::spawn(move || {
                    let Some(body) = read_request(&mut stream) else {
                        return;
                    };
                    reqs.lock().unwrap().push(answer);
                    let reply: &[u8] = match answer {
                        Answer::Hang => {
                            std::thread::sleep(Duration::from_secs(3));
                            return;
                        }
                        Answer::Garbage => b"\x00\x01garbage garbage\r\n\r\n",
                        Answer::Busy => b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
                        Answer::BadRequest => b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\nconnection: close\r\n\r\nout of order",
                        Answer::Ok => {
                            let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                            let request = oxeye::model::prompb::WriteRequest::decode(raw.as_slice()).unwrap();
                            acc.lock().unwrap().push(request);
                            b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
                        }
                    };
                    let _ = stream.write_all(reply);
                });
            }
        });
        Receiver {
            port,
            accepted,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// Samples received per series (by `series` label), in arrival order.
    fn samples(&self) -> BTreeMap<String, Vec<(i64, f64)>> {
        let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for request in self.accepted.lock().unwrap().iter() {
            for ts in &request.timeseries {
                let name = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "series")
                    .map(|l| l.value.clone())
                    .unwrap_or_default();
                out.entry(name)
                    .or_default()
                    .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
            }
        }
        out
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let header_end = loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some(data[header_end..header_end + length].to_vec())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `series` × `samples` samples, a minute apart per series… ending now.
fn write_samples(
    base: &str,
    metric: &str,
    series: usize,
    samples: usize,
    start_ms: i64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut expected: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for batch in 0..samples {
        let names: Vec<String> = (0..series).map(|s| format!("s{s}")).collect();
        let bodies: Vec<common::TestSeries<'_>> = names
            .iter()
            .enumerate()
            .map(|(s, name)| {
                let t = start_ms + batch as i64 * 1000;
                let v = (s * 1000 + batch) as f64;
                expected.entry(name.clone()).or_default().push((t, v));
                (
                    vec![
                        ("__name__", metric),
                        ("series", name.as_str()),
                        ("job", "fw"),
                    ],
                    vec![(t, v)],
                )
            })
            .collect();
        let (status, text) = post_remote_write(base, remote_write_body(&bodies));
        assert!(status == 204 || status == 200, "{status} {text}");
    }
    expected
}

fn forward_env(destinations: &str) -> Vec<(&'static str, String)> {
    vec![("OXEYE_FORWARD__REMOTE_WRITE", destinations.to_owned())]
}

fn metric_value(base: &str, needle: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_receiver_that_hangs_answers_garbage_or_is_busy_still_gets_every_sample_in_order() {
    let receiver = Receiver::start(vec![
        Answer::Hang,
        Answer::Garbage,
        Answer::Busy,
        Answer::Garbage,
    ]);
    let env = forward_env(&format!(
        r#"[{{name = "edge", url = "{}", timeout = "500ms", min_backoff = "10ms", max_backoff = "200ms", shards = 3, max_samples_per_send = 7}}]"#,
        receiver.url()
    ));
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&overrides);
    let base = server.url("");
    let expected = write_samples(&base, "fw_faults", 5, 20, now_ms() - 60_000);
    let got = wait_for(Duration::from_secs(60), || {
        let got = receiver.samples();
        (got.values().map(Vec::len).sum::<usize>() >= 100).then_some(got)
    })
    .unwrap_or_else(|| panic!("not everything arrived: {:?}", receiver.samples()));
    // Every sample, once, in order per series (a series stays in one shard).
    assert_eq!(got, expected);
    let answers = receiver.requests.lock().unwrap().clone();
    let count = |a: fn(&Answer) -> bool| answers.iter().filter(|x| a(x)).count();
    assert_eq!(count(|a| matches!(a, Answer::Hang)), 1, "{answers:?}");
    assert_eq!(count(|a| matches!(a, Answer::Garbage)), 2, "{answers:?}");
    assert_eq!(count(|a| matches!(a, Answer::Busy)), 1, "{answers:?}");
    assert!(
        metric_value(
            &base,
            "oxeye_forward_requests_total{destination=\"edge\",signal=\"metrics\",outcome=\"retried\"}"
        ) >= 4.0
    );
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_sent_total{destination=\"edge\",signal=\"metrics\",kind=\"remote_write\",item=\"samples\"}"
        ),
        100.0
    );
    // Requests hold at most max_samples_per_send samples.
    assert!(receiver.accepted.lock().unwrap().iter().all(|r| r
        .timeseries
        .iter()
        .map(|t| t.samples.len())
        .sum::<usize>()
        <= 7));
    // The Status page shows the destination.
    let page = client()
        .get(server.url("/ui/status"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("id=\"forward\"") && page.contains("edge") && page.contains("100 samples"),
        "{page}"
    );
}

#[test]
fn refused_requests_and_relabeled_series_are_counted_not_retried() {
    let receiver = Receiver::start(vec![Answer::BadRequest]);
    let env = forward_env(&format!(
        r#"[{{name = "strict", url = "{}", shards = 1, max_samples_per_send = 10, min_backoff = "10ms"}},
            {{name = "nothing", url = "http://127.0.0.1:9/never", write_relabel_configs = [{{source_labels = ["__name__"], regex = ".+", action = "drop"}}]}}]"#,
        receiver.url()
    ));
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&overrides);
    let base = server.url("");
    // One request, so one WAL record and one round: two requests of 10.
    let start = now_ms() - 60_000;
    let body: Vec<common::TestSeries<'_>> = ["a", "b"]
        .iter()
        .map(|s| {
            let samples = (0..10).map(|i| (start + i * 1000, i as f64)).collect();
            (vec![("__name__", "fw_refused"), ("series", *s)], samples)
        })
        .collect();
    let (status, text) = post_remote_write(&base, remote_write_body(&body));
    assert_eq!(status, 204, "{text}");
    let done = wait_for(Duration::from_secs(30), || {
        let sent = metric_value(
            &base,
            "oxeye_forward_sent_total{destination=\"strict\",signal=\"metrics\"",
        );
        let dropped = metric_value(
            &base,
            "oxeye_forward_dropped_total{destination=\"strict\",signal=\"metrics\",reason=\"rejected\"}",
        );
        (sent + dropped >= 20.0).then_some((sent, dropped))
    });
    let (sent, dropped) = done.expect("every sample sent or dropped");
    assert_eq!(
        dropped, 10.0,
        "the first request (10 samples) was refused for good"
    );
    assert_eq!(sent, 10.0);
    assert_eq!(
        receiver.requests.lock().unwrap().len(),
        2,
        "a 400 is not retried"
    );
    let relabeled = wait_for(Duration::from_secs(30), || {
        let n = metric_value(
            &base,
            "oxeye_forward_dropped_total{destination=\"nothing\",signal=\"metrics\",reason=\"relabel\"}",
        );
        (n >= 20.0).then_some(n)
    });
    assert_eq!(relabeled, Some(20.0));
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_requests_total{destination=\"nothing\",signal=\"metrics\""
        ),
        0.0,
        "nothing to send, so no request to the unreachable URL"
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_receiver_down_for_good_cannot_grow_the_wal_past_max_backlog() {
    // Nothing listens on this port.
    let port = common::free_port();
    let env = [
        (
            "OXEYE_FORWARD__REMOTE_WRITE",
            format!(
                r#"[{{name = "down", url = "http://127.0.0.1:{port}/api/v1/write", min_backoff = "10ms", max_backoff = "50ms"}}]"#
            ),
        ),
        ("OXEYE_FORWARD__MAX_BACKLOG", "\"2MiB\"".to_owned()),
        ("OXEYE_WAL__SEGMENT_SIZE", "\"1MiB\"".to_owned()),
    ];
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&overrides);
    let base = server.url("");
    let wal = server.dir.path().join("metrics/wal");
    let start = now_ms() - 3_600_000;
    let mut peak = 0;
    for round in 0..12 {
        for request in 0..10 {
            let names: Vec<String> = (0..500)
                .map(|s| format!("r{round}-q{request}-s{s}"))
                .collect();
            let body: Vec<common::TestSeries<'_>> = names
                .iter()
                .map(|n| {
                    let samples = (0..10).map(|i| (start + i * 1000, i as f64)).collect();
                    (
                        vec![("__name__", "fw_backlog"), ("series", n.as_str())],
                        samples,
                    )
                })
                .collect();
            let (status, text) = post_remote_write(&base, remote_write_body(&body));
            assert!(status == 204 || status == 200, "{status} {text}");
        }
        // A head cut releases the store's segments; the destination's hold
        // is what is left.
        client()
            .post(server.url("/api/v1/admin/flush"))
            .send()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(dir_bytes(&wal));
    }
    let written = metric_value(&base, "oxeye_wal_written_bytes_total");
    assert!(
        written > 6.0 * 1048576.0,
        "the test wrote only {written} WAL bytes"
    );
    let skipped = wait_for(Duration::from_secs(30), || {
        let n = metric_value(
            &base,
            "oxeye_forward_dropped_wal_bytes_total{destination=\"down\",signal=\"metrics\",reason=\"backlog\"}",
        );
        (n > 0.0).then_some(n)
    });
    assert!(skipped.is_some(), "the backlog was never cut");
    client()
        .post(server.url("/api/v1/admin/flush"))
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let now = dir_bytes(&wal);
    // max_backlog, plus the segment being read and the one being written.
    assert!(
        now <= 4 * 1048576 + 512 * 1024,
        "WAL at {now} bytes (peak {peak}, written {written})"
    );
    assert!(
        peak <= 5 * 1048576,
        "WAL peaked at {peak} bytes of {written} written"
    );
    assert!(
        metric_value(
            &base,
            "oxeye_forward_requests_total{destination=\"down\",signal=\"metrics\",outcome=\"retried\"}"
        ) > 0.0
    );
}

/// The real Prometheus with its remote-write receiver, on `port`, keeping
/// its TSDB in `dir` (so a restart keeps what it took).
fn start_prometheus_receiver(dir: &std::path::Path, port: u16) -> common::ChildGuard {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let child = std::process::Command::new(common::require_program("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let guard = common::ChildGuard(child);
    let ready = wait_for(Duration::from_secs(60), || {
        client()
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    assert!(ready.is_some(), "prometheus did not start");
    guard
}

fn start_victoriametrics(dir: &std::path::Path, port: u16) -> common::ChildGuard {
    let child = std::process::Command::new(common::require_program("victoria-metrics"))
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=1y")
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-dedup.minScrapeInterval=1ms")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = common::ChildGuard(child);
    let ready = wait_for(Duration::from_secs(60), || {
        client()
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    assert!(ready.is_some(), "victoria-metrics did not start");
    guard
}

/// Raw samples per `series` label as Prometheus has them.
fn prometheus_samples(port: u16, metric: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let answer: serde_json::Value = client()
        .get(url)
        .query(&[
            ("query", format!("{metric}[2h]")),
            ("time", format!("{}", now_ms() / 1000 + 1)),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut out = BTreeMap::new();
    for series in answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = series["metric"]["series"].as_str().unwrap_or("").to_owned();
        let values = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(name, values);
    }
    out
}

/// Raw samples per `series` label as VictoriaMetrics exports them (sorted,
/// duplicates removed: delivery is at least once).
fn victoria_samples(port: u16, selector: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let text = client()
        .get(format!("http://127.0.0.1:{port}/api/v1/export"))
        .query(&[("match[]", selector), ("start", "0")])
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let series: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = format!(
            "{}/{}",
            series["metric"]["__name__"].as_str().unwrap_or(""),
            series["metric"]["series"].as_str().unwrap_or("")
        );
        let entry = out.entry(name).or_default();
        for (t, v) in series["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(series["values"].as_array().unwrap())
        {
            entry.insert(t.as_i64().unwrap(), v.as_f64().unwrap());
        }
    }
    out.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

fn merge(into: &mut BTreeMap<String, Vec<(i64, f64)>>, more: BTreeMap<String, Vec<(i64, f64)>>) {
    for (k, v) in more {
        into.entry(k).or_default().extend(v);
    }
}

#[test]
fn prometheus_and_victoriametrics_get_every_sample_across_a_receiver_restart_and_a_kill_9() {
    let work = tempfile::tempdir().unwrap();
    let (prom_port, vm_port) = (common::free_port(), common::free_port());
    let mut prometheus = Some(start_prometheus_receiver(
        &work.path().join("prom"),
        prom_port,
    ));
    let _vm = start_victoriametrics(&work.path().join("vm"), vm_port);
    let destinations = format!(
        r#"[{{name = "prom", url = "http://127.0.0.1:{prom_port}/api/v1/write", min_backoff = "20ms", max_backoff = "300ms", max_samples_per_send = 100}},
            {{name = "vm", url = "http://127.0.0.1:{vm_port}/api/v1/write", write_relabel_configs = [{{source_labels = ["__name__"], regex = "fw_secret", action = "drop"}}]}}]"#
    );
    let data = work.path().join("oxeye");
    let env = [("OXEYE_FORWARD__REMOTE_WRITE", destinations.as_str())];
    let mut oxeye = common::spawn_binary_with(&data, &env);
    let start = now_ms() - 20 * 60_000;

    // 1. Both receivers up.
    let mut expected = write_samples(&oxeye.base, "fw_real", 10, 30, start);
    write_samples(&oxeye.base, "fw_secret", 1, 5, start);
    let arrived = wait_for(Duration::from_secs(60), || {
        (prometheus_samples(prom_port, "fw_real") == expected).then_some(())
    });
    assert!(
        arrived.is_some(),
        "Prometheus has {:?}",
        prometheus_samples(prom_port, "fw_real")
    );
    assert_eq!(
        prometheus_samples(prom_port, "fw_secret").len(),
        1,
        "not relabeled for Prometheus"
    );

    // 2. Prometheus down; Oxeye accepts more and keeps retrying, then dies
    //    with kill -9 while Prometheus is still down.
    drop(prometheus.take());
    merge(
        &mut expected,
        write_samples(&oxeye.base, "fw_real", 10, 30, start + 30_000),
    );
    let retried = wait_for(Duration::from_secs(30), || {
        let n = metric_value(
            &oxeye.base,
            "oxeye_forward_requests_total{destination=\"prom\",signal=\"metrics\",outcome=\"retried\"}",
        );
        (n > 0.0).then_some(n)
    });
    assert!(retried.is_some(), "no retries while Prometheus was down");
    oxeye.guard.0.kill().unwrap();
    oxeye.guard.0.wait().unwrap();

    // 3. Both back; more data; everything arrives.
    prometheus = Some(start_prometheus_receiver(
        &work.path().join("prom"),
        prom_port,
    ));
    let oxeye = common::spawn_binary_with(&data, &env);
    merge(
        &mut expected,
        write_samples(&oxeye.base, "fw_real", 10, 30, start + 60_000),
    );
    let arrived = wait_for(Duration::from_secs(90), || {
        (prometheus_samples(prom_port, "fw_real") == expected).then_some(())
    });
    let got = prometheus_samples(prom_port, "fw_real");
    assert!(
        arrived.is_some(),
        "Prometheus is missing samples: has {} of {}",
        got.values().map(Vec::len).sum::<usize>(),
        expected.values().map(Vec::len).sum::<usize>()
    );
    let vm_expected: BTreeMap<String, Vec<(i64, f64)>> = expected
        .iter()
        .map(|(k, v)| (format!("fw_real/{k}"), v.clone()))
        .collect();
    let vm = wait_for(Duration::from_secs(60), || {
        let got = victoria_samples(vm_port, "{__name__=~\"fw_.*\"}");
        (got == vm_expected).then_some(got)
    });
    assert!(
        vm.is_some(),
        "VictoriaMetrics differs: {:?}",
        victoria_samples(vm_port, "{__name__=~\"fw_.*\"}")
            .keys()
            .collect::<Vec<_>>()
    );
    drop(prometheus);
}

fn post_json(url: &str, body: &serde_json::Value) -> serde_json::Value {
    let response = client().post(url).json(body).send().unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().unwrap_or(serde_json::Value::Null)
}

fn es_search(base: &str, index: &str) -> Vec<serde_json::Value> {
    let response = client()
        .post(format!("{base}/{index}/_search"))
        .json(&serde_json::json!({"size": 100, "sort": [{"@timestamp": "asc"}]}))
        .send()
        .unwrap();
    if !response.status().is_success() {
        return Vec::new();
    }
    let answer: serde_json::Value = response.json().unwrap();
    answer["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Spans and log records over OTLP/HTTP and `_bulk`, to a second Oxeye.
#[test]
fn spans_and_logs_reach_a_second_oxeye_over_otlp_and_bulk() {
    use serde_json::json;
    let receiver = TestServer::start();
    let grpc_receiver = TestServer::start();
    let otlp = format!(
        r#"[{{name = "collector", url = "http://{}", signals = ["traces", "logs"], services = ["check.*"], min_backoff = "10ms"}},
            {{name = "tempo", url = "http://{}", protocol = "grpc", signals = ["traces", "logs"], min_backoff = "10ms"}}]"#,
        receiver.otlp_http, grpc_receiver.otlp_grpc
    );
    let es = format!(
        r#"[{{name = "central-es", url = "http://{}", indices = ["app-*"], index = "fwd-{{index}}", min_backoff = "10ms"}}]"#,
        receiver.elasticsearch
    );
    let sender = TestServer::start_with(&[
        ("OXEYE_FORWARD__OTLP", otlp.as_str()),
        ("OXEYE_FORWARD__ELASTICSEARCH", es.as_str()),
    ]);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let trace_id = "5b8aa5a2d2c872e8321cf37308d69df2";
    let span = |id: &str, parent: &str, name: &str, service: &str| {
        json!({"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "host.name", "value": {"stringValue": "edge-1"}}]},
            "scopeSpans": [{"scope": {"name": "shop", "version": "1.2"}, "spans": [{
                "traceId": trace_id, "spanId": id, "parentSpanId": parent, "name": name, "kind": 2,
                "startTimeUnixNano": (now - 5_000_000_000i64).to_string(),
                "endTimeUnixNano": (now - 4_000_000_000i64).to_string(),
                "attributes": [{"key": "http.status_code", "value": {"intValue": "500"}},
                               {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}}],
                "events": [{"timeUnixNano": (now - 4_500_000_000i64).to_string(), "name": "retry"}],
                "status": {"code": 2, "message": "card declined"}}]}]}]})
    };
    post_json(
        &format!("http://{}/v1/traces", sender.otlp_http),
        &span("051581bf3cb55c13", "", "POST /checkout", "checkout"),
    );
    post_json(
        &format!("http://{}/v1/traces", sender.otlp_http),
        &span(
            "1111111111111111",
            "051581bf3cb55c13",
            "charge",
            "checkout-payments",
        ),
    );
    // Not forwarded: `services` lists check.* only.
    post_json(
        &format!("http://{}/v1/traces", sender.otlp_http),
        &span("2222222222222222", "051581bf3cb55c13", "audit", "audit"),
    );
    post_json(
        &format!("http://{}/v1/logs", sender.otlp_http),
        &json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeLogs": [{"logRecords": [{"timeUnixNano": (now - 4_000_000_000i64).to_string(), "severityText": "ERROR", "severityNumber": 17,
                "body": {"stringValue": "payment failed"}, "traceId": trace_id, "spanId": "051581bf3cb55c13",
                "attributes": [{"key": "order", "value": {"intValue": "42"}}]}]}]}]}),
    );
    let stamp = chrono::Utc::now().to_rfc3339();
    let bulk = format!(
        "{{\"index\":{{\"_index\":\"app-web\",\"_id\":\"a1\"}}}}\n{{\"@timestamp\":\"{stamp}\",\"message\":\"hello\",\"status\":200}}\n\
         {{\"index\":{{\"_index\":\"app-web\"}}}}\n{{\"@timestamp\":\"{stamp}\",\"message\":\"second\",\"status\":404}}\n\
         {{\"index\":{{\"_index\":\"other\"}}}}\n{{\"@timestamp\":\"{stamp}\",\"message\":\"not forwarded\"}}\n"
    );
    let answer = client()
        .post(format!(
            "http://{}/_bulk?refresh=true",
            sender.elasticsearch
        ))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().unwrap();
    let generated = answer["items"][1]["index"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The trace, through the receiver's Jaeger API.
    let trace = wait_for(Duration::from_secs(30), || {
        let trace: serde_json::Value = client()
            .get(format!("http://{}/api/traces/{trace_id}", receiver.http))
            .send()
            .ok()?
            .json()
            .ok()?;
        (trace["data"][0]["spans"].as_array()?.len() == 2).then_some(trace)
    })
    .expect("the forwarded trace");
    let spans = trace["data"][0]["spans"].as_array().unwrap();
    let root = spans
        .iter()
        .find(|s| s["operationName"] == "POST /checkout")
        .unwrap();
    let tag = |span: &serde_json::Value, key: &str| {
        span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| t["value"].clone())
    };
    assert_eq!(tag(root, "http.status_code"), Some(json!(500)));
    assert_eq!(tag(root, "error"), Some(json!(true)));
    assert_eq!(
        tag(root, "otel.status_description"),
        Some(json!("card declined"))
    );
    assert_eq!(tag(root, "otel.scope.name"), Some(json!("shop")));
    assert_eq!(root["logs"][0]["fields"][0]["value"], "retry");
    let processes = &trace["data"][0]["processes"];
    let services: BTreeSet<&str> = processes
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["serviceName"].as_str().unwrap())
        .collect();
    assert_eq!(services, BTreeSet::from(["checkout", "checkout-payments"]));
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "charge")
        .unwrap();
    assert_eq!(child["references"][0]["spanID"], "051581bf3cb55c13");

    // Over gRPC too, unfiltered: all three spans, and the log record.
    let over_grpc = wait_for(Duration::from_secs(30), || {
        let trace: serde_json::Value = client()
            .get(format!(
                "http://{}/api/traces/{trace_id}",
                grpc_receiver.http
            ))
            .send()
            .ok()?
            .json()
            .ok()?;
        (trace["data"][0]["spans"].as_array()?.len() == 3).then_some(trace)
    });
    assert!(over_grpc.is_some(), "the trace did not arrive over gRPC");
    // The three `_bulk` records go with their source as a map body, which
    // the receiver (Oxeye, like Elasticsearch) refuses once `body` is text:
    // its partial success is read and counted.
    let grpc_records = wait_for(Duration::from_secs(30), || {
        let hits = es_search(
            &format!("http://{}", grpc_receiver.elasticsearch),
            "otel-logs",
        );
        let refused = metric_value(
            &sender.url(""),
            "oxeye_forward_dropped_total{destination=\"tempo\",signal=\"logs\",reason=\"rejected\"}",
        );
        (hits.len() == 1 && refused == 3.0).then_some(hits)
    })
    .unwrap_or_else(|| {
        let text = client()
            .get(sender.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("oxeye_forward") && l.contains("tempo"))
            .collect();
        let hits = es_search(
            &format!("http://{}", grpc_receiver.elasticsearch),
            "otel-logs",
        );
        panic!("the log records over gRPC: {lines:#?} {hits:#?}")
    });
    assert!(grpc_records
        .iter()
        .any(|h| h["_source"]["body"] == "payment failed"));

    // The OTLP log record, in the receiver's OTLP index.
    let records = wait_for(Duration::from_secs(30), || {
        let hits = es_search(&format!("http://{}", receiver.elasticsearch), "otel-logs");
        (!hits.is_empty()).then_some(hits)
    })
    .expect("the forwarded log record");
    let record = &records[0]["_source"];
    assert_eq!(record["body"], "payment failed");
    assert_eq!(record["severity_text"], "ERROR");
    assert_eq!(record["trace_id"], trace_id);
    assert_eq!(record["attributes"]["order"], 42);
    assert_eq!(record["resource"]["attributes"]["service.name"], "checkout");

    // The `_bulk` documents, routed to fwd-<index>, with their ids.
    let docs = wait_for(Duration::from_secs(30), || {
        let hits = es_search(&format!("http://{}", receiver.elasticsearch), "fwd-app-web");
        (hits.len() == 2).then_some(hits)
    })
    .expect("the forwarded documents");
    let ids: BTreeSet<String> = docs
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, BTreeSet::from(["a1".to_owned(), generated]));
    assert_eq!(docs[0]["_source"]["message"], "hello");
    assert!(es_search(&format!("http://{}", receiver.elasticsearch), "fwd-other").is_empty());
    let base = sender.url("");
    assert_eq!(metric_value(&base, "oxeye_forward_sent_total{destination=\"central-es\",signal=\"logs\",kind=\"elasticsearch\",item=\"log_records\"}"), 2.0);
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_dropped_total{destination=\"central-es\",signal=\"logs\",reason=\"filtered\"}"
        ),
        2.0,
        "the `other` document and the OTLP record (index otel-logs)"
    );
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_sent_total{destination=\"collector\",signal=\"traces\",kind=\"otlp\",item=\"spans\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_dropped_total{destination=\"collector\",signal=\"traces\",reason=\"filtered\"}"
        ),
        1.0,
        "the audit span"
    );
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_dropped_total{destination=\"collector\",signal=\"logs\",reason=\"filtered\"}"
        ),
        3.0,
        "the three _bulk records (no service)"
    );
}

#[test]
fn with_on_backlog_block_ingest_waits_for_the_destination_and_nothing_is_lost() {
    let port = common::free_port();
    let env = [
        (
            "OXEYE_FORWARD__REMOTE_WRITE",
            format!(
                r#"[{{name = "later", url = "http://127.0.0.1:{port}/api/v1/write", min_backoff = "10ms", max_backoff = "100ms"}}]"#
            ),
        ),
        ("OXEYE_FORWARD__MAX_BACKLOG", "\"1MiB\"".to_owned()),
        ("OXEYE_FORWARD__ON_BACKLOG", "\"block\"".to_owned()),
        ("OXEYE_WAL__SEGMENT_SIZE", "\"1MiB\"".to_owned()),
    ];
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&overrides);
    let base = server.url("");
    let start = now_ms() - 600_000;
    let mut accepted = 0usize;
    let mut refusal = None;
    for request in 0..400 {
        let names: Vec<String> = (0..500).map(|s| format!("q{request}-s{s}")).collect();
        let body: Vec<common::TestSeries<'_>> = names
            .iter()
            .map(|n| {
                let samples = (0..10).map(|i| (start + i * 1000, i as f64)).collect();
                (
                    vec![("__name__", "fw_block"), ("series", n.as_str())],
                    samples,
                )
            })
            .collect();
        let response = client()
            .post(format!("{base}/api/v1/write"))
            .header("content-encoding", "snappy")
            .header("content-type", "application/x-protobuf")
            .body(remote_write_body(&body))
            .send()
            .unwrap();
        match response.status().as_u16() {
            204 => accepted += 5000,
            503 => {
                let retry = response.headers().get("retry-after").cloned();
                refusal = Some((retry, response.text().unwrap()));
                break;
            }
            other => panic!("unexpected {other}: {}", response.text().unwrap()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (retry, why) = refusal.expect("ingest was never refused while the destination was down");
    assert_eq!(retry.unwrap(), "5");
    assert!(
        why.contains("later") && why.contains("forward.max_backlog"),
        "{why}"
    );
    assert!(accepted > 0);
    // Other signals are not held back.
    let bulk = client()
        .post(format!("http://{}/_bulk", server.elasticsearch))
        .header("content-type", "application/x-ndjson")
        .body("{\"index\":{\"_index\":\"free\"}}\n{\"message\":\"still accepted\"}\n")
        .send()
        .unwrap();
    assert_eq!(bulk.status(), 200);
    // The receiver comes up: everything acknowledged arrives, and ingest
    // is accepted again.
    let receiver = Receiver::start_on(port, Vec::new());
    let all = wait_for(Duration::from_secs(60), || {
        let n: usize = receiver.samples().values().map(Vec::len).sum();
        (n >= accepted).then_some(n)
    });
    assert_eq!(all, Some(accepted), "every acknowledged sample, once");
    let open = wait_for(Duration::from_secs(30), || {
        let body = remote_write_body(&[(
            vec![("__name__", "fw_block"), ("series", "after")],
            vec![(now_ms(), 1.0)],
        )]);
        (post_remote_write(&base, body).0 == 204).then_some(())
    });
    assert!(
        open.is_some(),
        "ingest stayed refused after the destination caught up"
    );
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_dropped_wal_bytes_total{destination=\"later\",signal=\"metrics\",reason=\"backlog\"}"
        ),
        0.0
    );
}
