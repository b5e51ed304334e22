//! Remote read (`POST /api/v1/read`): the real Prometheus 2.42 with
//! `remote_read` pointing at Oxeye answers PromQL over Oxeye's data; the
//! streamed XOR-chunk response decodes to the same samples; hostile
//! requests are refused with 4xx and `query.max_samples` applies.

mod common;

use std::time::Duration;

use common::{client, post_remote_write, remote_write_body, wait_for, TestServer};
use oxeye::model::prompb;
use prost::Message;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn read(base: &str, request: &prompb::ReadRequest) -> reqwest::blocking::Response {
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap();
    client()
        .post(format!("{base}/api/v1/read"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-read-version", "0.1.0")
        .body(body)
        .send()
        .unwrap()
}

fn query(metric: &str, start: i64, end: i64, types: Vec<i32>) -> prompb::ReadRequest {
    prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![prompb::LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: metric.into(),
            }],
            hints: None,
        }],
        accepted_response_types: types,
    }
}

fn promql(base: &str, expr: &str, time_s: i64) -> Vec<(String, f64)> {
    let answer: serde_json::Value = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", expr.to_owned()), ("time", time_s.to_string())])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    let mut out: Vec<(String, f64)> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"].as_str().unwrap_or("").to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn prometheus_answers_promql_over_oxeye_through_remote_read() {
    let server = TestServer::start_with(&[("OXEYE_QUERY__MAX_SAMPLES", "1000")]);
    let base = server.url("");
    let end = now_ms() / 15_000 * 15_000;
    let start = end - 120 * 15_000;
    let mut written: Vec<(i64, f64)> = Vec::new();
    for instance in ["a", "b"] {
        let samples: Vec<(i64, f64)> = (0..=120)
            .map(|i| {
                let v = i as f64 * if instance == "a" { 3.0 } else { 5.5 };
                (start + i * 15_000, v)
            })
            .collect();
        if instance == "a" {
            written = samples.clone();
        }
        let body = remote_write_body(&[(
            vec![
                ("__name__", "rr_requests_total"),
                ("job", "api"),
                ("instance", instance),
            ],
            samples,
        )]);
        assert_eq!(post_remote_write(&base, body).0, 204);
    }

    // The real Prometheus, reading from Oxeye.
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1m\nremote_read:\n  - url: {base}/api/v1/read\n    read_recent: true\n"
        ),
    )
    .unwrap();
    let _prometheus = common::ChildGuard(
        std::process::Command::new(common::require_program("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for(Duration::from_secs(60), || {
            client()
                .get(format!("{prom}/-/ready"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        })
        .is_some(),
        "prometheus did not start"
    );
    // Off the 15 s grid: Prometheus 2.42's range selectors include a sample
    // exactly at the window's start, Oxeye's (Prometheus 3's rule) do not.
    let at = end / 1000 + 7;
    for expr in [
        "rr_requests_total",
        "rate(rr_requests_total[5m])",
        "sum by (instance) (increase(rr_requests_total[30m]))",
        "max_over_time(rr_requests_total[10m]) - min_over_time(rr_requests_total[10m])",
    ] {
        let theirs = promql(&prom, expr, at);
        let ours = promql(&base, expr, at);
        assert_eq!(theirs.len(), 2, "{expr}: {theirs:?}");
        // The same values, up to the last bits (Oxeye's rate() sums in a
        // different order than Prometheus').
        assert_eq!(theirs.len(), ours.len(), "{expr}");
        for ((ta, tv), (oa, ov)) in theirs.iter().zip(&ours) {
            assert_eq!(ta, oa, "{expr}");
            assert!(
                (tv - ov).abs() <= 1e-12 * tv.abs().max(1.0),
                "{expr}: {theirs:?} vs {ours:?}"
            );
        }
    }
    // Raw samples through Prometheus are the ones written.
    let answer: serde_json::Value = client()
        .get(format!("{prom}/api/v1/query"))
        .query(&[
            ("query", "rr_requests_total{instance=\"a\"}[31m]".to_owned()),
            ("time", format!("{}", end as f64 / 1000.0)),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let raw: Vec<(i64, f64)> = answer["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                p[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(raw, written[written.len() - raw.len()..].to_vec());
    assert_eq!(raw.len(), 124.min(written.len()));
}

#[test]
fn streamed_chunks_decode_to_the_samples_and_bombs_are_refused() {
    let server = TestServer::start_with(&[("OXEYE_QUERY__MAX_SAMPLES", "1000")]);
    let base = server.url("");
    let start = now_ms() - 3_600_000;
    let samples: Vec<(i64, f64)> = (0..300)
        .map(|i| (start + i * 10_000 + (i % 3), (i as f64).sin() * 1e6))
        .collect();
    for s in ["x", "y"] {
        let body =
            remote_write_body(&[(vec![("__name__", "rr_stream"), ("s", s)], samples.clone())]);
        assert_eq!(post_remote_write(&base, body).0, 204);
    }
    let response = read(
        &base,
        &query("rr_stream", start, start + 3_600_000, vec![1, 0]),
    );
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let body = response.bytes().unwrap();
    let mut pos = 0;
    let mut series = Vec::new();
    while pos < body.len() {
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let b = body[pos];
            pos += 1;
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let crc = u32::from_be_bytes(body[pos..pos + 4].try_into().unwrap());
        pos += 4;
        let message = &body[pos..pos + len as usize];
        pos += len as usize;
        assert_eq!(
            oxeye::api::remote_read::crc32c(message),
            crc,
            "frame checksum"
        );
        let frame = prompb::ChunkedReadResponse::decode(message).unwrap();
        assert_eq!(frame.query_index, 0);
        series.extend(frame.chunked_series);
    }
    assert_eq!(series.len(), 2);
    for s in &series {
        assert_eq!(s.chunks.len(), 3, "120 samples a chunk");
        let decoded: Vec<(i64, f64)> = s
            .chunks
            .iter()
            .flat_map(|c| {
                assert_eq!(c.r#type, prompb::CHUNK_XOR);
                let d = oxeye::api::remote_read::xor::decode(&c.data).unwrap();
                assert_eq!(d.first().unwrap().t, c.min_time_ms);
                assert_eq!(d.last().unwrap().t, c.max_time_ms);
                d.into_iter().map(|x| (x.t, x.v))
            })
            .collect();
        assert_eq!(decoded, samples);
    }

    // The sampled answer when asked for it (or for nothing in particular).
    let response = read(&base, &query("rr_stream", start, start + 3_600_000, vec![]));
    assert_eq!(response.headers()["content-encoding"], "snappy");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&response.bytes().unwrap())
        .unwrap();
    let sampled = prompb::ReadResponse::decode(raw.as_slice()).unwrap();
    assert_eq!(sampled.results[0].timeseries.len(), 2);
    assert_eq!(sampled.results[0].timeseries[0].samples.len(), 300);

    // 600 samples is within query.max_samples = 1000; two such queries are not.
    let mut two = query("rr_stream", start, start + 3_600_000, vec![]);
    two.queries.push(two.queries[0].clone());
    let response = read(&base, &two);
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .unwrap()
        .contains("exceeded sample limit (1000"));

    // Hostile bodies.
    let post = |body: Vec<u8>| {
        let r = client()
            .post(format!("{base}/api/v1/read"))
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, text) = post(b"not snappy at all".to_vec());
    assert_eq!(status, 400, "{text}");
    // A snappy header claiming 4 GiB.
    let (status, text) = post(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    assert!(status == 400 || status == 413, "{status} {text}");
    let (status, text) = post(
        snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap(),
    );
    assert_eq!(status, 400, "{text}");
    let mut empty = query("x", 0, 1, vec![]);
    empty.queries[0].matchers[0].value = String::new();
    let response = read(&base, &empty);
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .unwrap()
        .contains("does not match the empty string"));
    let mut bad = query("x", 0, 1, vec![]);
    bad.queries[0].matchers[0].r#type = 2;
    bad.queries[0].matchers[0].value = "(".into();
    assert_eq!(read(&base, &bad).status(), 400);
    let backwards = query("rr_stream", 10, 1, vec![]);
    assert_eq!(read(&base, &backwards).status(), 400);
    let many = prompb::ReadRequest {
        queries: vec![query("rr_stream", 0, 1, vec![]).queries[0].clone(); 1000],
        accepted_response_types: vec![],
    };
    assert_eq!(read(&base, &many).status(), 400);
    assert_eq!(
        client()
            .get(server.url("/-/healthy"))
            .send()
            .unwrap()
            .status(),
        200
    );
}
