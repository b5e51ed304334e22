//! The real Prometheus 2.42 (Debian) scrapes node_exporter and itself and
//! remote-writes into Oxeye: every sample Prometheus stored is read back from
//! Oxeye, and the metadata it sends is kept.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::*;

fn series_key(metric: &serde_json::Value) -> String {
    let mut pairs: Vec<(String, String)> = metric
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    pairs.sort();
    format!("{pairs:?}")
}

#[test]
fn prometheus_remote_write_round_trip() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let oxeye_addr = server.http;
    let stack = NodeAndPrometheus::start(work.path(), |node_port, prom_port| {
        format!(
            r#"
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]
remote_write:
  - url: http://{oxeye_addr}/api/v1/write
    queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}
    metadata_config: {{send: true, send_interval: 2s}}
"#
        )
    });
    let prom_port = stack.prom_port;
    let prom = format!("http://127.0.0.1:{prom_port}");
    let oxeye = server.url("");

    // Let a few scrapes happen and reach Oxeye.
    let enough = wait_for(Duration::from_secs(120), || {
        let found = export(&oxeye, r#"up{job="node"}"#);
        (found.first().map_or(0, |s| s.1.len()) >= 8).then_some(())
    });
    assert!(
        enough.is_some(),
        "Oxeye did not receive 8 scrapes of up{{job=\"node\"}}; prometheus log:\n{}",
        stack.log_text()
    );

    // Everything Prometheus has in the last minute up to `cut` ...
    let cut = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 2.0;
    let answer: serde_json::Value = client()
        .get(format!("{prom}/api/v1/query"))
        .query(&[
            ("query", "{job=~\"node|prometheus\"}[1m]"),
            ("time", &cut.to_string()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut expected: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    for series in answer["data"]["result"].as_array().unwrap() {
        let samples = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
                (t, v)
            })
            .collect();
        expected.insert(series_key(&series["metric"]), samples);
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(
        expected.len() > 100,
        "only {} series from Prometheus",
        expected.len()
    );

    // ... is in Oxeye once the remote-write queues have caught up.
    let cut_ms = (cut * 1000.0) as i64;
    let mut missing = Vec::new();
    let caught_up = wait_for(Duration::from_secs(60), || {
        let response = client()
            .get(format!("{oxeye}/api/v1/export"))
            .query(&[
                ("match[]", "{job=~\"node|prometheus\"}"),
                ("start", &((cut_ms - 60_000) as f64 / 1000.0).to_string()),
                ("end", &(cut_ms as f64 / 1000.0).to_string()),
            ])
            .send()
            .unwrap()
            .text()
            .unwrap();
        let mut have: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
        for line in response.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let samples = v["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .zip(v["values"].as_array().unwrap())
                .map(|(t, x)| {
                    (
                        t.as_i64().unwrap(),
                        x.as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            have.insert(series_key(&v["metric"]), samples);
        }
        missing.clear();
        for (key, samples) in &expected {
            let got = have.get(key).cloned().unwrap_or_default();
            let same = got.len() == samples.len()
                && got
                    .iter()
                    .zip(samples)
                    .all(|(a, b)| a.0 == b.0 && (a.1 == b.1 || (a.1.is_nan() && b.1.is_nan())));
            if !same {
                missing.push(format!("{key}: prometheus {samples:?} oxeye {got:?}"));
            }
        }
        missing.is_empty().then_some(())
    });
    assert!(
        caught_up.is_some(),
        "{} of {} series differ, e.g.:\n{}",
        missing.len(),
        expected.len(),
        missing
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{} series, {total} samples from Prometheus all read back from Oxeye",
        expected.len()
    );

    // Metadata sent by Prometheus is kept.
    let metadata = wait_for(Duration::from_secs(30), || {
        let m = get_json(&server.url("/api/v1/metadata?metric=node_cpu_seconds_total"));
        (!m["data"].as_object().unwrap().is_empty()).then_some(m)
    })
    .expect("metadata for node_cpu_seconds_total");
    assert_eq!(
        metadata["data"]["node_cpu_seconds_total"][0]["type"],
        "counter"
    );
    // Label APIs see the same series.
    let jobs = get_json(&server.url("/api/v1/label/job/values"));
    assert_eq!(jobs["data"], serde_json::json!(["node", "prometheus"]));
}

#[test]
fn prometheus_federates_from_oxeye() {
    let prometheus = require_program("prometheus");
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = remote_write_body(&[
        (
            vec![
                ("__name__", "app_requests_total"),
                ("job", "app"),
                ("code", "200"),
            ],
            vec![(now - 1000, 1e6)],
        ),
        (
            vec![
                ("__name__", "app_requests_total"),
                ("job", "app"),
                ("code", "500"),
            ],
            vec![(now - 1000, 7.5)],
        ),
        (
            vec![("__name__", "other_metric"), ("job", "other")],
            vec![(now - 1000, 1.0)],
        ),
    ]);
    assert_eq!(post_remote_write(&server.url(""), body).0, 204);

    // The exposition itself.
    let text = client()
        .get(server.url("/federate"))
        .query(&[("match[]", "{job=\"app\"}")])
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.starts_with("# TYPE app_requests_total untyped\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "app_requests_total{{code=\"200\",job=\"app\"}} 1e+06 {}",
            now - 1000
        )),
        "{text}"
    );
    assert!(!text.contains("other_metric"));

    // A real Prometheus scraping it with honor_labels.
    let prom_port = free_port();
    let config = format!(
        r#"
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params: {{'match[]': ['{{job="app"}}']}}
    static_configs: [{{targets: ['{oxeye}']}}]
"#,
        oxeye = server.http
    );
    let config_path = work.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let _prom = ChildGuard(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let result = wait_for(Duration::from_secs(60), || {
        let answer: serde_json::Value = client()
            .get(format!("{prom}/api/v1/query"))
            .query(&[("query", "app_requests_total")])
            .send()
            .ok()?
            .json()
            .ok()?;
        let result = answer["data"]["result"].as_array()?.clone();
        (result.len() == 2).then_some(result)
    })
    .expect("Prometheus scraped the federated series");
    let mut seen: Vec<(String, String, String)> = result
        .iter()
        .map(|s| {
            (
                s["metric"]["job"].as_str().unwrap().to_owned(),
                s["metric"]["code"].as_str().unwrap().to_owned(),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("app".to_owned(), "200".to_owned(), "1000000".to_owned()),
            ("app".to_owned(), "500".to_owned(), "7.5".to_owned()),
        ]
    );
}

#[test]
fn promtool_queries_oxeye() {
    let promtool = require_program("promtool");
    let server = TestServer::start();
    let t0 = 1_700_000_000_000i64;
    let samples: Vec<(i64, f64)> = (0..=20)
        .map(|i| (t0 + i * 15_000, (i * 30) as f64))
        .collect();
    let body = remote_write_body(&[(vec![("__name__", "jobs_total"), ("job", "batch")], samples)]);
    assert_eq!(post_remote_write(&server.url(""), body).0, 204);
    let base = server.url("");
    let run = |args: &[&str]| {
        let output = Command::new(&promtool).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let instant = run(&[
        "query",
        "instant",
        "--time=1700000300",
        &base,
        "sum by (job) (rate(jobs_total[1m]))",
    ]);
    // `{job="batch"} => <value> @[1700000300]`
    let (series, rest) = instant
        .trim()
        .split_once(" => ")
        .expect("promtool instant output");
    let (value, at) = rest.split_once(' ').unwrap();
    assert_eq!(series, "{job=\"batch\"}");
    assert_eq!(at, "@[1700000300]");
    assert!(
        (value.parse::<f64>().unwrap() - 2.0).abs() < 1e-9,
        "{instant}"
    );
    let range = run(&[
        "query",
        "range",
        "--start=1700000000",
        "--end=1700000060",
        "--step=30s",
        &base,
        "jobs_total",
    ]);
    assert!(range.contains("jobs_total{job=\"batch\"} =>"), "{range}");
    assert!(
        range.contains("60 @[1700000030]") && range.contains("120 @[1700000060]"),
        "{range}"
    );
    let window = ["--start=1700000000", "--end=1700000300"];
    let series = run(&[
        "query",
        "series",
        "--match=jobs_total",
        window[0],
        window[1],
        &base,
    ]);
    assert!(series.contains("job=\"batch\""), "{series}");
    let values = run(&["query", "labels", window[0], window[1], &base, "job"]);
    assert_eq!(values.trim(), "batch", "{values}");
}

#[test]
fn shipped_prometheus_examples_are_valid() {
    let promtool = require_program("promtool");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    for name in ["prometheus-remote-write.yml", "prometheus-federate.yml"] {
        let output = Command::new(&promtool)
            .args(["check", "config", "--syntax-only"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
