//! Saved dashboards: Grafana's dashboard JSON stored, versioned and drawn.
//!
//! - The API: save → reload → the same dashboard; every save a version, one
//!   restored; a stale save refused (412) as Grafana does; invalid files
//!   refused with the JSON path of the problem; Grafana's own paths.
//! - `oxeye dashboards import|export|list` against the real binary's server.
//! - The real thing in Chromium: the real Prometheus 2.42 scrapes the real
//!   node_exporter and remote-writes into Oxeye; the Grafana dashboards in
//!   `../shared/reference/grafana-dashboards/` (Node Exporter Full, Apache,
//!   HAProxy) are imported unchanged and every panel of every row must end
//!   drawn, "No data" or marked unsupported with its reason — none may fail
//!   its query — and the variables must list the real job and instance.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn shared_dashboard(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/grafana-dashboards")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: the tests need ../shared next to the checkout",
        path.display()
    );
    path
}

/// The dashboard without what a save changes (uid, version, id).
fn content(mut d: Value) -> Value {
    let map = d.as_object_mut().unwrap();
    map.remove("uid");
    map.remove("version");
    map.remove("id");
    d
}

#[test]
fn dashboards_api_versions_conflicts_and_errors() {
    let server = TestServer::start();
    let c = client();
    // Built-in dashboards are provisioned at start.
    let list: Value = c
        .get(server.url("/api/v1/dashboards"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let uids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    for uid in ["oxeye-self", "oxeye-red", "oxeye-node"] {
        assert!(uids.contains(&uid), "{uid} not provisioned: {uids:?}");
    }

    // Save → reload → the same dashboard (Node Exporter Full, unchanged).
    let original: Value = serde_json::from_slice(
        &std::fs::read(shared_dashboard("node-exporter-full.json")).unwrap(),
    )
    .unwrap();
    let uid = original["uid"].as_str().unwrap().to_owned();
    let put = c
        .put(server.url(&format!("/api/v1/dashboards/{uid}")))
        .json(&original)
        .send()
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().unwrap());
    let saved: Value = put.json().unwrap();
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["url"], format!("/ui/d/{uid}"));
    let got: Value = c
        .get(server.url(&format!("/api/v1/dashboards/{uid}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(content(got["dashboard"].clone()), content(original.clone()));
    assert_eq!(got["meta"]["version"], 1);
    assert_eq!(got["dashboard"]["version"], 1);

    // A second save based on version 1, then a stale one based on 1 again.
    let mut edited = got["dashboard"].clone();
    edited["title"] = json!("Node Exporter Full (edited)");
    let body = json!({"dashboard": edited, "message": "retitled"});
    let second = c
        .put(server.url(&format!("/api/v1/dashboards/{uid}")))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(second.json::<Value>().unwrap()["version"], 2);
    let stale = c
        .put(server.url(&format!("/api/v1/dashboards/{uid}")))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(stale.status(), 412, "a save based on an old version");
    let stale: Value = stale.json().unwrap();
    assert_eq!(stale["errorType"], "version-mismatch");
    assert!(stale["error"]
        .as_str()
        .unwrap()
        .contains("stored version 2"));

    // Versions, newest first; restore version 1 as version 3.
    let versions: Value = c
        .get(server.url(&format!("/api/v1/dashboards/{uid}/versions")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed: Vec<(u64, String)> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, vec![(2, "retitled".into()), (1, String::new())]);
    let old: Value = c
        .get(server.url(&format!("/api/v1/dashboards/{uid}/versions/1")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(old["dashboard"]["title"], original["title"]);
    let restored: Value = c
        .post(server.url(&format!("/api/v1/dashboards/{uid}/versions/1/restore")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(restored["version"], 3);
    let now: Value = c
        .get(server.url(&format!("/api/v1/dashboards/{uid}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(content(now["dashboard"].clone()), content(original.clone()));
    assert_eq!(now["meta"]["message"], "restored version 1");

    // Invalid files: the JSON path of the problem, nothing stored.
    let cases: [(&str, &str); 6] = [
        (
            r#"{"title": "x", "panels": [{"type": "stat"}, {"type": "graph", "gridPos": {"x": 0, "y": 0, "w": "half", "h": 8}}]}"#,
            "$.panels[1].gridPos.w",
        ),
        (
            r#"{"title": "x", "panels": [{"type": "row", "panels": [{"gridPos": {"x": 0, "y": 0, "w": 40, "h": 8}}]}]}"#,
            "$.panels[0].panels[0].gridPos.w",
        ),
        (
            r#"{"title": "x", "templating": {"list": [{"name": "job"}, {"name": 7}]}}"#,
            "$.templating.list[1].name",
        ),
        (
            r#"{"title": "x", "panels": [{"title": "a",]}"#,
            "$.panels[0]",
        ),
        (r#"{"panels": []}"#, "$.title"),
        (r#"["not", "a", "dashboard"]"#, "$:"),
    ];
    for (body, path) in cases {
        let response = c
            .post(server.url("/api/v1/dashboards"))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.starts_with(path), "{body}: {message}");
    }
    let list: Value = c
        .get(server.url("/api/v1/dashboards?query=x"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        !list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["title"] == "x"),
        "a refused dashboard was stored: {list}"
    );

    // Grafana's own paths: search, save through /api/dashboards/db, get, delete.
    let created: Value = c
        .post(server.url("/api/dashboards/db"))
        .json(&json!({"dashboard": {"title": "From Grafana tooling", "tags": ["ci"], "panels": []}, "overwrite": true}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let new_uid = created["uid"].as_str().unwrap().to_owned();
    assert!(new_uid.starts_with("from-grafana-tooling-"), "{new_uid}");
    let hits: Value = c
        .get(server.url("/api/search?tag=ci"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(hits[0]["uid"], new_uid.as_str());
    assert_eq!(hits[0]["type"], "dash-db");
    let fetched: Value = c
        .get(server.url(&format!("/api/dashboards/uid/{new_uid}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(fetched["dashboard"]["title"], "From Grafana tooling");
    let deleted = c
        .delete(server.url(&format!("/api/v1/dashboards/{new_uid}")))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = c
        .get(server.url(&format!("/api/v1/dashboards/{new_uid}")))
        .send()
        .unwrap();
    assert_eq!(gone.status(), 404);
    let page = c
        .get(server.url(&format!("/ui/d/{new_uid}")))
        .send()
        .unwrap();
    assert_eq!(page.status(), 404);

    // Durable: a restarted server lists the same dashboards and versions.
    let dir = server.stop();
    let server = TestServer::start_in(dir, &[]);
    let after: Value = c
        .get(server.url(&format!("/api/v1/dashboards/{uid}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(after["meta"]["version"], 3);
    assert_eq!(content(after["dashboard"].clone()), content(original));
}

/// Step, interval macros, variable formats, units, reducers, time
/// expressions, the old-rows migration and row expansion of
/// `web/static/dashboards.js`, checked in node against values worked out
/// from Grafana's source.
#[test]
fn renderer_follows_grafana_semantics() {
    let node = require_program("node");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dashboards_unit.mjs");
    let output = Command::new(node).arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("dashboards unit ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn grafana_dashboards_import_and_render_in_chromium() {
    let node = require_program("node");
    let chromium = require_program("chromium");
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/e2e; run scripts/test, which installs it"
    );
    let data = tempfile::tempdir().unwrap();
    let mut server = spawn_binary(data.path());
    let oxeye = server.base.clone();
    let work = tempfile::tempdir().unwrap();

    // node_exporter scraped by the real Prometheus, remote-written to Oxeye.
    let stack = NodeAndPrometheus::start(work.path(), |node_port, _| {
        format!(
            r#"
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]
remote_write:
  - url: {oxeye}/api/v1/write
    queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}
"#
        )
    });
    let node_port = stack.node_port;
    // Enough scrapes for rates over the panels' steps.
    let enough = wait_for(Duration::from_secs(120), || {
        let found = export(&oxeye, r#"node_uname_info{job="node"}"#);
        (found.first().map_or(0, |s| s.1.len()) >= 20).then_some(())
    });
    assert!(
        enough.is_some(),
        "Oxeye did not receive 20 scrapes of node_uname_info; prometheus log:\n{}",
        stack.log_text()
    );

    // Imported with the CLI, unchanged files.
    let files = [
        "node-exporter-full.json",
        "apache-full.json",
        "haproxy.json",
    ]
    .map(shared_dashboard);
    let import = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(["dashboards", "import"])
        .args(&files)
        .args(["--url", &oxeye])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&import.stdout);
    assert!(
        import.status.success(),
        "import failed: {said}{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let mut uids = Vec::new();
    for file in &files {
        let original: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let uid = original["uid"].as_str().unwrap().to_owned();
        assert!(
            said.contains(&format!("saved as {uid} version 1")),
            "{said}"
        );
        // Exported back: the same JSON.
        let out = work.path().join(format!("{uid}.json"));
        let export = Command::new(env!("CARGO_BIN_EXE_oxeye"))
            .args(["dashboards", "export", &uid])
            .arg(&out)
            .args(["--url", &oxeye])
            .output()
            .unwrap();
        assert!(export.status.success(), "{export:?}");
        let back: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(content(back), content(original));
        uids.push(uid);
    }
    let listed = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(["dashboards", "list", "node", "--url", &oxeye])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("Node Exporter Full") && listed.contains("oxeye-node"),
        "{listed}"
    );

    // Panels on Grafana's Elasticsearch and Jaeger data sources: log
    // records over _bulk, a trace over OTLP/HTTP JSON.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut bulk = String::new();
    for i in 0..60i64 {
        bulk.push_str("{\"index\": {\"_index\": \"app-logs\"}}\n");
        let status = if i % 5 == 0 { 500 } else { 200 };
        let service = ["api", "web"][i as usize % 2];
        bulk.push_str(
            &json!({"@timestamp": now_ms - i * 3_000, "message": format!("request {i} done"),
                    "service": service, "status": status, "trace_id": trace})
            .to_string(),
        );
        bulk.push('\n');
    }
    let c = client();
    let sent = c
        .post(format!("{}/_bulk?refresh=true", server.es))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let start_ns = (now_ms - 5_000) * 1_000_000;
    let spans = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": trace, "spanId": "00f067aa0ba902b7", "name": "POST /checkout", "kind": 2,
             "startTimeUnixNano": start_ns.to_string(), "endTimeUnixNano": (start_ns + 120_000_000).to_string()},
            {"traceId": trace, "spanId": "00f067aa0ba902b8", "parentSpanId": "00f067aa0ba902b7", "name": "SELECT", "kind": 3,
             "startTimeUnixNano": (start_ns + 10_000_000).to_string(), "endTimeUnixNano": (start_ns + 90_000_000).to_string()},
        ]}],
    }]});
    let sent = c
        .post(format!("{oxeye}/v1/traces"))
        .json(&spans)
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/fixtures/es-jaeger-dashboard.json");
    let saved = c
        .put(format!("{oxeye}/api/v1/dashboards/es-jaeger"))
        .body(std::fs::read(fixture).unwrap())
        .send()
        .unwrap();
    assert_eq!(saved.status(), 200, "{}", saved.text().unwrap());

    let instance = format!("127.0.0.1:{node_port}");
    let dashboards = json!([
        // Node Exporter Full: most panels have data on this machine; some
        // need hardware or settings it lacks (hwmon, systemd, …): "No data".
        {"uid": uids[0], "expect_data": 80, "expect_vars": {"job": "node", "node": instance}},
        // No Apache or HAProxy here: every panel "No data", none failing.
        {"uid": uids[1], "screenshot": false},
        {"uid": uids[2], "screenshot": false},
        {"uid": "oxeye-node", "screenshot": false, "expect_data": 10, "expect_vars": {"job": "node", "instance": instance}},
        // Elasticsearch date histograms, terms, a logs panel; Jaeger by
        // trace id and by search; a panel type Oxeye does not draw.
        {"uid": "es-jaeger", "expect_data": 6, "expect_unsupported": 1, "expect_notes": 1},
    ]);
    let shots = std::env::var("OXEYE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| work.path().join("screenshots"));
    let output = Command::new(node)
        .arg(e2e.join("grafana_dashboards.mjs"))
        .env("BASE_URL", &oxeye)
        .env("DASHBOARDS", dashboards.to_string())
        .env("FROM", "now-5m")
        .env("SHOTS", &shots)
        .env("CHROMIUM", chromium)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "grafana dashboards e2e failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("grafana dashboards ok"), "{stdout}");
    let full: Value = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("DASHBOARD "))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|d| d["uid"] == uids[0].as_str())
        .expect("a summary line for Node Exporter Full");
    // 141 panels in the file, 16 of them rows.
    assert_eq!(full["panels"], 125, "{full}");
    assert_eq!(full["errors"], 0, "{full}");
    server.assert_running("drawing the dashboards");
}
