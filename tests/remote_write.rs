//! Prometheus remote_write 1.0 against a real server: status codes, error
//! messages, what is kept, and the read APIs.

mod common;

use common::*;
use serde_json::json;

#[test]
fn accepted_samples_are_read_back_through_every_read_api() {
    let server = TestServer::start();
    let base = server.url("");
    let body = remote_write_body(&[
        (
            vec![("__name__", "up"), ("job", "api"), ("instance", "a:1")],
            vec![(1_700_000_000_000, 1.0), (1_700_000_015_000, 0.0)],
        ),
        (
            vec![("__name__", "up"), ("job", "db"), ("instance", "b:1")],
            vec![(1_700_000_000_000, 1.0)],
        ),
        (
            vec![
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("code", "200"),
            ],
            vec![(1_700_000_000_000, 10.0)],
        ),
    ]);
    let (status, text) = post_remote_write(&base, body);
    assert_eq!(status, 204, "{text}");
    assert!(text.is_empty());

    let series = get_json(&server.url("/api/v1/series?match[]=up"));
    assert_eq!(
        series,
        json!({"status": "success", "data": [
            {"__name__": "up", "instance": "a:1", "job": "api"},
            {"__name__": "up", "instance": "b:1", "job": "db"},
        ]})
    );
    let labels = get_json(&server.url("/api/v1/labels"));
    assert_eq!(
        labels["data"],
        json!(["__name__", "code", "instance", "job"])
    );
    let labels = get_json(&server.url("/api/v1/labels?match[]=http_requests_total"));
    assert_eq!(labels["data"], json!(["__name__", "code", "job"]));
    let values = get_json(&server.url("/api/v1/label/job/values"));
    assert_eq!(values, json!({"status": "success", "data": ["api", "db"]}));
    let values = get_json(&server.url("/api/v1/label/__name__/values?match[]={job=\"db\"}"));
    assert_eq!(values["data"], json!(["up"]));
    // time range: nothing before the data
    let early = get_json(&server.url("/api/v1/series?match[]=up&start=1600000000&end=1600000100"));
    assert_eq!(early["data"], json!([]));
    let in_range = get_json(
        &server
            .url("/api/v1/series?match[]=up&start=2023-11-14T22:13:00Z&end=2023-11-14T22:14:00Z"),
    );
    assert_eq!(in_range["data"].as_array().unwrap().len(), 2);
    // POST form bodies work like GET
    let posted: serde_json::Value = client()
        .post(server.url("/api/v1/series"))
        .form(&[("match[]", "up{job=\"api\"}")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(posted["data"].as_array().unwrap().len(), 1);
    let samples = export(&base, "up{job=\"api\"}");
    assert_eq!(
        samples[0].1,
        vec![(1_700_000_000_000, 1.0), (1_700_000_015_000, 0.0)]
    );
}

#[test]
fn bad_requests_get_clear_errors_and_leave_data_alone() {
    let server = TestServer::start_with(&[("OXEYE_LIMITS__MAX_BODY_SIZE", "64KiB")]);
    let base = server.url("");
    let good = remote_write_body(&[(vec![("__name__", "kept")], vec![(1000, 1.0)])]);
    assert_eq!(post_remote_write(&base, good).0, 204);

    // corrupt snappy
    let (status, text) = post_remote_write(&base, b"\xff\xff\xff\xffnot snappy".to_vec());
    assert_eq!(status, 400);
    assert!(text.contains("snappy"), "{text}");
    // valid snappy, invalid protobuf
    let garbage = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0xff, 0xff, 0x7f])
        .unwrap();
    let (status, text) = post_remote_write(&base, garbage);
    assert_eq!(status, 400);
    assert!(text.contains("malformed remote write protobuf"), "{text}");
    // invalid and duplicate labels: 400 naming the series, the valid series is kept
    let mixed = remote_write_body(&[
        (vec![("__name__", "fine")], vec![(1000, 1.0)]),
        (vec![("__name__", "bad"), ("a-b", "x")], vec![(1000, 1.0)]),
        (
            vec![("__name__", "dup"), ("a", "1"), ("a", "2")],
            vec![(1000, 1.0)],
        ),
    ]);
    let (status, text) = post_remote_write(&base, mixed);
    assert_eq!(status, 400);
    assert!(text.contains("invalid label name \"a-b\""), "{text}");
    assert!(text.contains("duplicate label name \"a\""), "{text}");
    assert!(text.contains("2 sample(s) rejected, 1 accepted"), "{text}");
    assert_eq!(export(&base, "fine")[0].1, vec![(1000, 1.0)]);
    // out of order (outside the 10m window) and conflicting duplicates
    let late = remote_write_body(&[(
        vec![("__name__", "kept")],
        vec![
            (1000 + 3_600_000, 2.0),
            (1000 + 3_600_000, 3.0),
            (1000, 9.0),
        ],
    )]);
    let (status, text) = post_remote_write(&base, late);
    assert_eq!(status, 400);
    assert!(text.contains("duplicate sample for timestamp"), "{text}");
    assert!(text.contains("out of order sample"), "{text}");
    assert_eq!(
        export(&base, "kept")[0].1,
        vec![(1000, 1.0), (3_601_000, 2.0)]
    );
    // body over the limit
    let big = vec![0u8; 100 * 1024];
    let (status, _) = post_remote_write(&base, big);
    assert_eq!(status, 413);
    // unsupported content type and encoding
    let response = client()
        .post(server.url("/api/v1/write"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert!(response.text().unwrap().contains("application/x-protobuf"));
    let response = client()
        .post(server.url("/api/v1/write"))
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .body(vec![0u8])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    // the API errors are Prometheus-shaped
    let missing = get_json(&server.url("/api/v1/series"));
    assert_eq!(
        missing,
        json!({"status": "error", "errorType": "bad_data", "error": "no match[] parameter provided"})
    );
    let bad_selector = get_json(&server.url("/api/v1/series?match[]=up{"));
    assert_eq!(bad_selector["errorType"], "bad_data");
    // everything accepted before is still there
    assert_eq!(export(&base, "kept")[0].1.len(), 2);
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            "oxeye_samples_rejected_total{source=\"remote_write\",reason=\"out_of_order\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("oxeye_samples_ingested_total{source=\"remote_write\"} 3"),
        "{metrics}"
    );
    for needle in [
        "oxeye_samples_rejected_total{source=\"remote_write\",reason=\"invalid\"} 2",
        "oxeye_samples_rejected_total{source=\"remote_write\",reason=\"duplicate_timestamp\"} 1",
        "oxeye_ingest_requests_total{source=\"remote_write\",outcome=\"bad_request\"} 2",
        "oxeye_ingest_requests_total{source=\"remote_write\",outcome=\"ok\"} 1",
        "oxeye_series_created_total 2",
        "oxeye_series 2",
        "oxeye_head_series 2",
        "oxeye_wal_fsync_duration_seconds_count",
        "oxeye_wal_written_bytes_total",
        "oxeye_blocks 0",
        "oxeye_http_request_duration_seconds_count{handler=\"/api/v1/write\",code=\"204\"} 1",
        "oxeye_http_request_duration_seconds_count{handler=\"/api/v1/write\",code=\"413\"} 1",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let server = TestServer::start_with(&[
        ("OXEYE_LIMITS__MAX_SERIES_PER_REQUEST", "2"),
        ("OXEYE_LIMITS__MAX_LABELS_PER_SERIES", "3"),
        ("OXEYE_LIMITS__MAX_LABEL_VALUE_LENGTH", "8"),
        ("OXEYE_LIMITS__MAX_ACTIVE_SERIES", "3"),
    ]);
    let base = server.url("");
    let three = remote_write_body(&[
        (vec![("__name__", "a")], vec![(1, 1.0)]),
        (vec![("__name__", "b")], vec![(1, 1.0)]),
        (vec![("__name__", "c")], vec![(1, 1.0)]),
    ]);
    let (status, text) = post_remote_write(&base, three);
    assert_eq!(status, 400);
    assert!(text.contains("max_series_per_request"), "{text}");
    let wide = remote_write_body(&[(
        vec![("__name__", "w"), ("a", "1"), ("b", "2"), ("c", "3")],
        vec![(1, 1.0)],
    )]);
    let (status, text) = post_remote_write(&base, wide);
    assert_eq!(status, 400);
    assert!(text.contains("max_labels_per_series"), "{text}");
    let long = remote_write_body(&[(vec![("__name__", "l"), ("a", "123456789")], vec![(1, 1.0)])]);
    let (status, text) = post_remote_write(&base, long);
    assert_eq!(status, 400);
    assert!(text.contains("max_label_value_length"), "{text}");
    for name in ["s1", "s2", "s3"] {
        let body = remote_write_body(&[(vec![("__name__", name)], vec![(1, 1.0)])]);
        assert_eq!(post_remote_write(&base, body).0, 204);
    }
    let body = remote_write_body(&[(vec![("__name__", "s4")], vec![(1, 1.0)])]);
    let (status, text) = post_remote_write(&base, body);
    assert_eq!(status, 400);
    assert!(text.contains("max_active_series"), "{text}");
    // existing series keep working at the limit
    let body = remote_write_body(&[(vec![("__name__", "s1")], vec![(2, 2.0)])]);
    assert_eq!(post_remote_write(&base, body).0, 204);
}

#[test]
fn metadata_in_the_request_is_kept() {
    let server = TestServer::start();
    let mut raw = Vec::new();
    oxeye::ingest::remote_write::encode::timeseries(
        &mut raw,
        &[("__name__", "req_total")],
        &[(1, 1.0)],
    );
    oxeye::ingest::remote_write::encode::metadata(&mut raw, "req_total", 1, "Requests served.", "");
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    assert_eq!(post_remote_write(&server.url(""), body).0, 204);
    let metadata = get_json(&server.url("/api/v1/metadata"));
    assert_eq!(
        metadata["data"],
        json!({"req_total": [{"type": "counter", "help": "Requests served.", "unit": ""}]})
    );
}

#[test]
fn health_ready_and_flush() {
    let server = TestServer::start();
    let healthy = client().get(server.url("/-/healthy")).send().unwrap();
    assert_eq!(healthy.status().as_u16(), 200);
    let ready = client().get(server.url("/-/ready")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body = remote_write_body(&[(vec![("__name__", "x")], vec![(1000, 1.0), (2000, 2.0)])]);
    assert_eq!(post_remote_write(&server.url(""), body).0, 204);
    let flushed: serde_json::Value = client()
        .post(server.url("/api/v1/admin/flush"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(flushed["status"], "success");
    assert_eq!(flushed["data"]["samples"], 2);
    assert_eq!(flushed["data"]["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(
        export(&server.url(""), "x")[0].1,
        vec![(1000, 1.0), (2000, 2.0)]
    );
    // and after a restart the block is read back
    let dir = server.stop();
    let server = TestServer::start_in(dir, &[]);
    assert_eq!(
        export(&server.url(""), "x")[0].1,
        vec![(1000, 1.0), (2000, 2.0)]
    );
    let blocks = std::fs::read_dir(server.dir.path().join("metrics/blocks"))
        .unwrap()
        .count();
    assert_eq!(blocks, 1);
}
