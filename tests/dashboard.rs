//! The dashboard end to end in a real headless Chromium (Debian's
//! `chromium`, driven by playwright-core from `tests/e2e/`): data loaded with
//! the real OpenTelemetry SDK, then every page opened, used and checked by
//! `tests/e2e/dashboard.mjs`, which fails on any console error and saves a
//! screenshot of each page. `OXEYE_SCREENSHOTS=docs/screenshots` refreshes
//! the README's screenshots.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{client, require_program, run_python, wait_for, TestServer};
use serde_json::Value;

#[test]
fn dashboard_pages_in_chromium() {
    let node = require_program("node");
    let chromium = require_program("chromium");
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/e2e; run scripts/test, which installs it"
    );
    // Rules for the Alerts and Rules pages: one firing, one failing.
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: demo
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: page}
        annotations: {summary: "the demo alert fires"}
      - alert: ErrorLogs
        expr: oxeye_log_records{query="severity_text:ERROR", window="1h"} > 1000
      - record: broken
        expr: 'label_replace(vector(1), "a", "", "b", "(")'
"#,
    )
    .unwrap();
    let files = format!("[\"{}\"]", rules.display());
    let server = TestServer::start_with(&[
        ("OXEYE_TRACES__SPAN_METRICS_INTERVAL", "200ms"),
        ("OXEYE_RULES__FILES", files.as_str()),
    ]);
    let grpc = format!("http://{}", server.otlp_grpc);
    let sent = run_python(
        "otlp_traces.py",
        &[
            ("TRANSPORT", "grpc".into()),
            ("OTLP_ENDPOINT", grpc.clone()),
        ],
    );
    let trace_id = serde_json::from_str::<Value>(sent.lines().last().unwrap()).unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for script in ["otlp_logs.py", "otlp_metrics.py"] {
        run_python(
            script,
            &[
                ("TRANSPORT", "grpc".into()),
                ("OTLP_ENDPOINT", grpc.clone()),
            ],
        );
    }
    // Kubernetes workloads for the Recommendations page.
    common::k8s::write(&server.url(""), &common::k8s::fixtures());
    // Repeated database reads (30 of 5 products) for the Database advice
    // page's cache candidate and its hit-ratio chart.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 60_000_000_000;
    let reads: Vec<Value> = (0..30i64)
        .map(|i| {
            let start = now_ns + i * 100_000_000;
            serde_json::json!({
                "traceId": format!("{:032x}", 0xcafe_0000u64 + i as u64),
                "spanId": format!("{:016x}", 0x100 + i),
                "name": "SELECT",
                "kind": 3,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 2_000_000).to_string(),
                "attributes": [
                    {"key": "db.system", "value": {"stringValue": "postgresql"}},
                    {"key": "db.statement", "value": {"stringValue": format!("SELECT * FROM products WHERE id = {}", i % 5)}},
                ],
            })
        })
        .collect();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "catalog"}}]},
        "scopeSpans": [{"spans": reads}],
    }]});
    let sent = client()
        .post(server.url("/v1/traces"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    client()
        .post(server.url("/api/v1/admin/flush"))
        .send()
        .unwrap();
    // Span metrics are written on their timer; wait until the explorer can show them.
    let ready = wait_for(Duration::from_secs(20), || {
        let body: Value = client()
            .get(server.url("/api/v1/query?query=traces_span_metrics_calls_total"))
            .send()
            .ok()?
            .json()
            .ok()?;
        (!body["data"]["result"].as_array()?.is_empty()).then_some(())
    });
    assert!(ready.is_some(), "span metrics did not appear");
    let shots = std::env::var("OXEYE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| server.dir.path().join("screenshots"));
    let output = Command::new(node)
        .arg(e2e.join("dashboard.mjs"))
        .env("BASE_URL", format!("http://{}", server.http))
        .env("ES_URL", format!("http://{}", server.elasticsearch))
        .env("TRACE_ID", &trace_id)
        .env("REC_TIME", (common::k8s::END / 1000).to_string())
        .env("SHOTS", &shots)
        .env("CHROMIUM", chromium)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "dashboard e2e failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("dashboard ok"), "{stdout}");
    for page in [
        "overview",
        "metrics",
        "logs",
        "traces",
        "trace",
        "services",
        "status",
        "alerts",
        "rules",
        "recommendations",
        "database",
        "sql",
        "dashboards",
        "dashboard-red",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
    eprintln!("{stdout}");
}

#[test]
fn pages_render_empty_states_and_bad_input() {
    let server = TestServer::start();
    let http = client();
    for (path, needle) in [
        ("/", "Nothing has arrived yet"),
        ("/ui/logs", "No log records in this range"),
        ("/ui/traces", "No traces yet"),
        ("/ui/services", "No calls between services"),
        ("/ui/metrics", "Metrics explorer"),
        ("/ui/status", "max_body_size"),
        ("/ui/alerts", "No alerting rules"),
        ("/ui/rules", "No rule groups"),
        ("/ui/recommendations", "No workloads with container usage"),
        ("/ui/recommendations?window=-1d", "not a positive duration"),
        ("/ui/recommendations/database", "No findings in this range"),
        (
            "/ui/traces/0123456789abcdef0123456789abcdef",
            "No spans with this trace id",
        ),
        ("/ui/logs?query=a%20AND%20(", "Failed to parse query"),
    ] {
        let response = http.get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.text().unwrap();
        assert!(body.contains(needle), "{path}: no {needle:?} in\n{body}");
    }
    assert_eq!(
        http.get(server.url("/ui/traces/xyz"))
            .send()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.get(server.url("/static/nope.js"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let js = http
        .get(server.url("/static/vendor/uplot/uPlot.iife.min.js"))
        .send()
        .unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript");
}
