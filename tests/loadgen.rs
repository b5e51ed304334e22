//! `oxeye loadgen` against a running server: what it reports acknowledged
//! is what the server then holds, per protocol; the rate limit holds; churn
//! brings new series.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn loadgen(server: &TestServer, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .arg("loadgen")
        .args(["--url", &server.url("")])
        .args(["--otlp-grpc", &format!("http://{}", server.otlp_grpc)])
        .args([
            "--elasticsearch",
            &format!("http://{}", server.elasticsearch),
        ])
        .args(["--format", "json", "--quiet"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadgen failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

fn acknowledged(report: &Value, protocol: &str) -> u64 {
    report["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["protocol"] == protocol)
        .unwrap_or_else(|| panic!("{protocol} in {report:#}"))["acknowledged"]
        .as_u64()
        .unwrap()
}

fn instant(server: &TestServer, query: &str) -> f64 {
    let v = get_json(&format!(
        "{}?query={}",
        server.url("/api/v1/query"),
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    ));
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0.0, |s| s.parse().unwrap())
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Spans of the run sent over one protocol, through the Jaeger API.
fn spans(server: &TestServer, run: &str, source: &str, services: u64) -> u64 {
    let tags = format!(r#"{{"run":"{run}","source":"{source}"}}"#);
    let mut total = 0;
    for s in 0..services {
        let url = format!(
            "{}?service=loadgen-svc-{s}&limit=1500&start={}&end={}&tags={}",
            server.url("/api/traces"),
            now_us() - 3_600_000_000,
            now_us() + 60_000_000,
            form_urlencoded::byte_serialize(tags.as_bytes()).collect::<String>()
        );
        let v = get_json(&url);
        for trace in v["data"].as_array().unwrap() {
            total += trace["spans"].as_array().unwrap().len() as u64;
        }
    }
    total
}

fn log_count(server: &TestServer, index: &str, query: Value) -> u64 {
    let v: Value = client()
        .post(format!("http://{}/{index}/_count", server.elasticsearch))
        .json(&serde_json::json!({ "query": query }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["count"].as_u64().unwrap_or(0)
}

#[test]
fn every_protocol_acknowledged_is_stored() {
    let server = TestServer::start_with(&[("OXEYE_LOGS__COMMIT_INTERVAL", "200ms")]);
    let run = "every-protocol";
    let report = loadgen(
        &server,
        &[
            "--protocol",
            "all",
            "--items",
            "4000",
            "--batch",
            "250",
            "--rate",
            "0",
            "--series",
            "500",
            "--services",
            "2",
            "--run-id",
            run,
        ],
    );
    for p in report["protocols"].as_array().unwrap() {
        assert_eq!(p["sent"], 4000, "{p:#}");
        assert_eq!(p["acknowledged"], 4000, "{p:#}");
        assert_eq!(p["requests"], 16, "{p:#}");
        assert!(p["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    }
    // The server's CPU came from its process_cpu_seconds_total.
    assert!(
        report["server"]["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );

    // Samples: count_over_time of each protocol's metrics.
    for (protocol, prefix) in [
        ("remote_write", "loadgen_rw_"),
        ("otlp-grpc-metrics", "loadgen_otlp_grpc_"),
        ("otlp-http-metrics", "loadgen_otlp_http_"),
    ] {
        let stored = instant(
            &server,
            &format!(r#"sum(count_over_time({{run="{run}",__name__=~"{prefix}.+"}}[10m]))"#),
        );
        assert_eq!(stored as u64, acknowledged(&report, protocol), "{protocol}");
    }
    // Spans, through the Jaeger API.
    for (protocol, source) in [
        ("otlp-grpc-traces", "otlp_grpc"),
        ("otlp-http-traces", "otlp_http"),
    ] {
        assert_eq!(
            spans(&server, run, source, 2),
            acknowledged(&report, protocol),
            "{protocol}"
        );
    }
    // Log records, through _count once committed.
    for (protocol, index, query) in [
        (
            "otlp-grpc-logs",
            "otel-logs",
            serde_json::json!({"bool": {"filter": [
                {"term": {"attributes.run": run}},
                {"term": {"attributes.source": "otlp_grpc"}}]}}),
        ),
        (
            "otlp-http-logs",
            "otel-logs",
            serde_json::json!({"bool": {"filter": [
                {"term": {"attributes.run": run}},
                {"term": {"attributes.source": "otlp_http"}}]}}),
        ),
        (
            "es-bulk",
            "loadgen",
            serde_json::json!({"term": {"run": run}}),
        ),
    ] {
        let want = acknowledged(&report, protocol);
        let got = wait_for(Duration::from_secs(20), || {
            let n = log_count(&server, index, query.clone());
            (n == want).then_some(n)
        });
        assert_eq!(
            got,
            Some(want),
            "{protocol}: {}",
            log_count(&server, index, query.clone())
        );
    }
}

#[test]
fn the_rate_limit_holds_and_churn_brings_new_series() {
    let server = TestServer::start();
    let (rate, seconds, batch) = (2000u64, 3u64, 100u64);
    let report = loadgen(
        &server,
        &[
            "--protocol",
            "remote_write",
            "--rate",
            &rate.to_string(),
            "--duration",
            &format!("{seconds}s"),
            "--batch",
            &batch.to_string(),
            "--series",
            "200",
            "--churn",
            "0.5",
            "--churn-interval",
            "1s",
            "--run-id",
            "churn",
        ],
    );
    let sent = report["protocols"][0]["sent"].as_u64().unwrap();
    // Batches are paced: none starts before first_item / rate seconds.
    assert!(sent <= rate * seconds + batch, "{sent}");
    assert!(sent >= batch, "{sent}");
    assert_eq!(report["protocols"][0]["acknowledged"], sent);
    // A hundred series replaced every second: more than 200 distinct.
    let series = instant(&server, r#"count(count by (series) ({run="churn"}))"#);
    assert!(series > 200.0, "{series}");
    assert_eq!(
        instant(&server, r#"sum(count_over_time({run="churn"}[10m]))"#) as u64,
        sent
    );
}

#[test]
fn bad_arguments_are_named() {
    for (args, needle) in [
        (
            vec!["--protocol", "pigeon", "--items", "1"],
            "unknown protocol",
        ),
        (
            vec!["--protocol", "remote_write"],
            "--duration, --items or --backfill",
        ),
        (
            vec!["--items", "1", "--url", "https://127.0.0.1:1"],
            "only http://",
        ),
        (vec!["--items", "1", "--churn", "2"], "--churn"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_oxeye"))
            .arg("loadgen")
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn backfill_writes_history_on_the_interval_grid() {
    let server = TestServer::start();
    let report = loadgen(
        &server,
        &[
            "--protocol",
            "remote_write",
            "--backfill",
            "1h",
            "--interval",
            "60s",
            "--series",
            "50",
            "--rate",
            "0",
            "--run-id",
            "history",
        ],
    );
    assert_eq!(report["protocols"][0]["acknowledged"], 60 * 50);
    let samples = export(&server.url(""), r#"{run="history",series="7"}"#);
    assert_eq!(samples.len(), 1);
    let times: Vec<i64> = samples[0].1.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 60);
    assert!(times.windows(2).all(|w| w[1] - w[0] == 60_000), "{times:?}");
    let now = now_us() / 1000;
    assert!(now - times[0] >= 59 * 60_000 && now - times[0] < 61 * 60_000);
}

/// The Locust suite, headless for a few seconds against data that loadgen
/// wrote (metric history, log records, traces): every request of every
/// user class answered correctly.
#[test]
fn locust_suite_runs_without_failures() {
    let server = TestServer::start_with(&[("OXEYE_LOGS__COMMIT_INTERVAL", "200ms")]);
    loadgen(
        &server,
        &[
            "--protocol",
            "remote_write",
            "--backfill",
            "2h",
            "--interval",
            "60s",
            "--series",
            "300",
            "--rate",
            "0",
            "--run-id",
            "locust",
        ],
    );
    loadgen(
        &server,
        &[
            "--protocol",
            "es-bulk,otlp-grpc-traces",
            "--items",
            "2000",
            "--rate",
            "0",
            "--run-id",
            "locust",
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("oxeye");
    let locustfile =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/locustfile.py");
    let output = Command::new(python())
        .args(["-m", "locust", "-f"])
        .arg(&locustfile)
        .args([
            "--headless",
            "-u",
            "10",
            "-r",
            "10",
            "-t",
            "8s",
            "--only-summary",
        ])
        .args(["--host", &server.url("")])
        .arg("--csv")
        .arg(&prefix)
        .env("OXEYE_ES_URL", format!("http://{}", server.elasticsearch))
        .env("OXEYE_LOCUST_RANGE", "1h")
        .env("OXEYE_LOCUST_REFRESH", "3s")
        .output()
        .unwrap_or_else(|e| panic!("cannot run locust ({e}); scripts/test installs it"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "locust failed ({}):\n{stderr}",
        output.status
    );
    let stats = std::fs::read_to_string(out.path().join("oxeye_stats.csv")).unwrap();
    let mut rows = stats.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_matches('"') == name)
            .unwrap()
    };
    let (name, requests, failures) = (
        column("Name"),
        column("Request Count"),
        column("Failure Count"),
    );
    let mut seen = Vec::new();
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        let count: u64 = cells[requests].parse().unwrap();
        assert_eq!(cells[failures], "0", "{row}\n{stderr}");
        seen.push((cells[name].trim_matches('"').to_owned(), count));
    }
    // Every request of every kind of user ran (each user sends all of its
    // kinds on its first visit).
    for needle in [
        "dashboard panel 00",
        "dashboard panel 11",
        "explore label values",
        "explore query_range",
        "explore query",
        "logs search",
        "logs volume",
        "jaeger services",
        "jaeger search",
        "jaeger trace",
        "Aggregated",
    ] {
        assert!(
            seen.iter().any(|(n, c)| n == needle && *c > 0),
            "no {needle} requests: {seen:?}"
        );
    }
}
