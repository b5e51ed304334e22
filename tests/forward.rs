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

use std::collections::BTreeMap;
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
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
            "oxeye_forward_requests_total{destination=\"edge\",outcome=\"retried\"}"
        ) >= 4.0
    );
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_sent_total{destination=\"edge\",kind=\"remote_write\",item=\"samples\"}"
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
    write_samples(&base, "fw_refused", 2, 10, now_ms() - 60_000);
    let done = wait_for(Duration::from_secs(30), || {
        let sent = metric_value(&base, "oxeye_forward_sent_total{destination=\"strict\"");
        let dropped = metric_value(
            &base,
            "oxeye_forward_dropped_total{destination=\"strict\",reason=\"rejected\"}",
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
            "oxeye_forward_dropped_total{destination=\"nothing\",reason=\"relabel\"}",
        );
        (n >= 20.0).then_some(n)
    });
    assert_eq!(relabeled, Some(20.0));
    assert_eq!(
        metric_value(
            &base,
            "oxeye_forward_requests_total{destination=\"nothing\""
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
            "oxeye_forward_dropped_wal_bytes_total{destination=\"down\",reason=\"backlog\"}",
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
            "oxeye_forward_requests_total{destination=\"down\",outcome=\"retried\"}"
        ) > 0.0
    );
}
