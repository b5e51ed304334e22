//! OTLP metrics from the OpenTelemetry Python SDK, over gRPC and HTTP, and
//! OTLP/JSON bodies: names, labels, types and exemplars as Prometheus'
//! translation gives them.

mod common;

use common::*;
use serde_json::json;

fn values(base: &str, selector: &str) -> Vec<f64> {
    let found = export(base, selector);
    assert_eq!(found.len(), 1, "{selector}: {found:?}");
    found[0].1.iter().map(|(_, v)| *v).collect()
}

/// Values with consecutive repeats collapsed: the SDK exports once more at
/// shutdown, repeating the last cumulative value.
fn changes(base: &str, selector: &str) -> Vec<f64> {
    let mut out = values(base, selector);
    out.dedup();
    out
}

fn check_sdk_export(server: &TestServer, job: &str, output: &str) {
    let base = server.url("");
    let sel = |s: &str| s.replace("JOB", job);
    // counter: cumulative 5 then 8, with unit dropped ({request}) and _total added
    assert_eq!(
        changes(
            &base,
            &sel(
                r#"app_requests_total{job="JOB",http_route="/pay",http_method="POST",instance="i-1"}"#
            )
        ),
        vec![5.0, 8.0]
    );
    // up-down counter -> gauge without _total
    assert_eq!(
        changes(&base, &sel(r#"app_queue_depth{job="JOB"}"#)),
        vec![7.0, 5.0]
    );
    // observable gauge with unit suffix
    assert_eq!(
        values(&base, &sel(r#"app_memory_bytes{job="JOB",area="heap"}"#))[0],
        1024.0
    );
    // classic histogram: cumulative buckets, sum, count
    let buckets = export(&base, &sel(r#"app_latency_milliseconds_bucket{job="JOB"}"#));
    let le = |le: &str| {
        buckets
            .iter()
            .find(|(m, _)| m["le"] == le)
            .unwrap_or_else(|| panic!("no le={le} in {buckets:?}"))
            .1[0]
            .1
    };
    assert_eq!(le("5"), 1.0);
    assert_eq!(le("50"), 3.0);
    assert_eq!(le("500"), 4.0);
    assert_eq!(le("+Inf"), 4.0);
    assert_eq!(
        values(&base, &sel(r#"app_latency_milliseconds_count{job="JOB"}"#))[0],
        4.0
    );
    assert_eq!(
        values(&base, &sel(r#"app_latency_milliseconds_sum{job="JOB"}"#))[0],
        375.0
    );
    // exponential histogram in its classic form: +Inf bucket equals the count
    let exp = export(&base, &sel(r#"app_size_bytes_bucket{job="JOB"}"#));
    assert!(exp.len() >= 5, "{exp:?}");
    let inf = exp.iter().find(|(m, _)| m["le"] == "+Inf").unwrap();
    assert_eq!(inf.1[0].1, 4.0);
    assert_eq!(
        values(&base, &sel(r#"app_size_bytes_sum{job="JOB"}"#))[0],
        1111.0
    );
    // resource attributes other than job/instance land in target_info
    let info = export(&base, &sel(r#"target_info{job="JOB"}"#));
    assert_eq!(info[0].0["deployment_environment"], "test");
    assert_eq!(info[0].0["instance"], "i-1");
    // metadata from the instruments
    let metadata = get_json(&server.url("/api/v1/metadata?metric=app_requests_total"));
    assert_eq!(metadata["data"]["app_requests_total"][0]["type"], "counter");
    assert_eq!(
        metadata["data"]["app_requests_total"][0]["help"],
        "Requests handled"
    );
    // the exemplar recorded inside a sampled span carries its trace id
    let trace_id = serde_json::from_str::<serde_json::Value>(output.lines().last().unwrap())
        .unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let exemplars: serde_json::Value = client()
        .get(server.url("/api/v1/query_exemplars"))
        .query(&[(
            "query",
            sel(r#"app_latency_milliseconds_bucket{job="JOB"}"#),
        )])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let all = exemplars["data"].as_array().unwrap();
    let found = all.iter().any(|series| {
        series["exemplars"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["labels"]["trace_id"] == trace_id.as_str() && e["value"] == "42")
    });
    assert!(
        found,
        "exemplar with trace {trace_id} not found in {exemplars}"
    );
}

#[test]
fn python_sdk_over_grpc() {
    let server = TestServer::start();
    let output = run_python(
        "otlp_metrics.py",
        &[
            ("OTLP_ENDPOINT", format!("http://{}", server.otlp_grpc)),
            ("SERVICE", "checkout-grpc".into()),
            ("TRANSPORT", "grpc".into()),
        ],
    );
    check_sdk_export(&server, "checkout-grpc", &output);
}

#[test]
fn python_sdk_over_http_with_delta_counters() {
    let server = TestServer::start();
    let output = run_python(
        "otlp_metrics.py",
        &[
            ("OTLP_ENDPOINT", format!("http://{}", server.otlp_http)),
            ("SERVICE", "checkout-http".into()),
            ("TRANSPORT", "http".into()),
            ("TEMPORALITY", "delta".into()),
        ],
    );
    // Deltas (+5, +3) are stored as the cumulative 5, 8.
    check_sdk_export(&server, "checkout-http", &output);
}

#[test]
fn otlp_json_and_gzip_on_the_main_listener() {
    let server = TestServer::start();
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "temp", "unit": "Cel", "gauge": {"dataPoints": [
                {"asDouble": 21.5, "timeUnixNano": "1700000000000000000", "attributes": [{"key": "room", "value": {"stringValue": "lab"}}]}
            ]}},
            {"name": "jobs", "unit": "1", "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
                {"asInt": "12", "timeUnixNano": "1700000000000000000"}
            ]}},
            {"name": "rpc.duration", "unit": "s", "summary": {"dataPoints": [
                {"timeUnixNano": "1700000000000000000", "count": "3", "sum": 1.5,
                 "quantileValues": [{"quantile": 0.5, "value": 0.4}, {"quantile": 0.99, "value": 0.9}]}
            ]}},
            {"name": "bad.delta.hist", "histogram": {"aggregationTemporality": 1, "dataPoints": [
                {"timeUnixNano": "1700000000000000000", "count": "1", "bucketCounts": ["1"]}
            ]}}
        ]}]
    }]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, body.to_string().as_bytes()).unwrap();
    let response = client()
        .post(server.url("/v1/metrics"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply: serde_json::Value = response.json().unwrap();
    // int64 fields may come as numbers or strings in OTLP/JSON
    let rejected = &reply["partialSuccess"]["rejectedDataPoints"];
    assert!(rejected == 1 || rejected == "1", "{reply}");
    assert!(reply["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("delta temporality is not supported for histograms"));
    let base = server.url("");
    assert_eq!(
        values(&base, r#"temp_celsius{job="json-svc",room="lab"}"#),
        vec![21.5]
    );
    assert_eq!(values(&base, r#"jobs_total{job="json-svc"}"#), vec![12.0]);
    assert_eq!(
        values(&base, r#"rpc_duration_seconds{quantile="0.99"}"#),
        vec![0.9]
    );
    assert_eq!(values(&base, "rpc_duration_seconds_count"), vec![3.0]);

    // malformed bodies: 400 with a google.rpc.Status-shaped message
    let response = client()
        .post(server.url("/v1/metrics"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let status: serde_json::Value = response.json().unwrap();
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("invalid OTLP JSON"));
    let response = client()
        .post(server.url("/v1/metrics"))
        .header("Content-Type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client()
        .post(server.url("/v1/metrics"))
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    // nothing accepted before was disturbed
    assert_eq!(values(&base, r#"temp_celsius{job="json-svc"}"#), vec![21.5]);
}

#[test]
fn official_otlp_json_example_is_accepted() {
    let server = TestServer::start();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/otlp-json/metrics.json"
    );
    let body = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{path} is missing ({e}); it comes with ../shared"));
    let response = client()
        .post(format!("http://{}/v1/metrics", server.otlp_http))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let base = server.url("");
    assert_eq!(export(&base, "my_counter_total").len(), 1);
    assert_eq!(export(&base, "my_gauge_ratio").len(), 1);
}
