//! Rules end to end: the real binary evaluates a Prometheus rule file over
//! data sent with remote_write and delivers alerts to the real Alertmanager
//! (Debian's `prometheus-alertmanager`, installed by scripts/test), which
//! notifies a webhook receiver run by this test. Fire, group, resolve and a
//! silence; a second Alertmanager that is down; the rules and alerts APIs;
//! reloads by SIGHUP and `POST /-/reload` with a broken and a fixed file;
//! `oxeye check-rules` agreeing with `promtool check rules`; log rules over
//! `_bulk` data; trace rules over the span metrics of spans sent by the
//! OpenTelemetry Python SDK.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A webhook receiver: every JSON body POSTed to it, in order.
fn webhook() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10_000) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length.min(1 << 20)];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push(v);
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, received)
}

fn write_rules(path: &std::path::Path, extra: &str) {
    std::fs::write(
        path,
        format!(
            r#"groups:
  - name: test
    interval: 1s
    rules:
      - record: job:errors:sum
        expr: sum by (job) (errors_total)
      - alert: ErrorsHigh
        expr: job:errors:sum > 5
        labels:
          severity: page
        annotations:
          summary: "{{{{ $labels.job }}}} has {{{{ $value }}}} errors"
          ratio: "{{{{ with query \"sum(errors_total)\" }}}}{{{{ . | first | value | humanize }}}}{{{{ end }}}}"
      - alert: Silenced
        expr: vector(1)
{extra}"#
        ),
    )
    .unwrap();
}

fn push(base: &str, value: f64) {
    let now = chrono::Utc::now().timestamp_millis();
    let body = remote_write_body(&[(
        vec![("__name__", "errors_total"), ("job", "api")],
        vec![(now, value)],
    )]);
    let (status, text) = post_remote_write(base, body);
    assert_eq!(status, 204, "{text}");
}

fn names_in(notifications: &[Value], status: &str) -> Vec<String> {
    notifications
        .iter()
        .filter(|n| n["status"] == status)
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == status)
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn rules_fire_and_resolve_through_a_real_alertmanager() {
    let alertmanager_bin = require_program("prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let (hook_port, notifications) = webhook();
    let am_port = free_port();
    let am_config = dir.path().join("am.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let am_log = std::fs::File::create(dir.path().join("am.log")).unwrap();
    let _alertmanager = ChildGuard(
        Command::new(alertmanager_bin)
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .stdout(Stdio::null())
            .stderr(am_log)
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{am_port}");
    assert!(
        wait_for(Duration::from_secs(30), || client()
            .get(format!("{am}/-/ready"))
            .send()
            .ok()
            .filter(|r| r.status().is_success()))
        .is_some(),
        "alertmanager did not start: {}",
        std::fs::read_to_string(dir.path().join("am.log")).unwrap_or_default()
    );
    // Silence one alert before it ever fires.
    let now = chrono::Utc::now();
    let silence = client()
        .post(format!("{am}/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "alertname", "value": "Silenced", "isRegex": false, "isEqual": true}],
            "startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "test",
            "comment": "silence honoured",
        }))
        .send()
        .unwrap();
    assert!(silence.status().is_success(), "{:?}", silence.text());

    let rules = dir.path().join("rules.yml");
    write_rules(&rules, "");
    let down = free_port();
    let files = format!("[\"{}\"]", rules.display());
    let managers = format!("[\"{am}\", \"http://127.0.0.1:{down}\"]");
    let mut server = spawn_binary_with(
        &dir.path().join("data"),
        &[
            ("OXEYE_RULES__FILES", files.as_str()),
            ("OXEYE_RULES__EXTERNAL_LABELS", "[\"cluster=test\"]"),
            ("OXEYE_RULES__RESEND_DELAY", "1s"),
            ("OXEYE_ALERTING__ALERTMANAGERS", managers.as_str()),
            ("OXEYE_ALERTING__TIMEOUT", "2s"),
        ],
    );
    let base = server.base.clone();
    push(&base, 10.0);

    // Alertmanager holds the alert (with the external label) and notifies
    // the webhook; the silenced alert is suppressed and never notified.
    let firing = wait_for(Duration::from_secs(60), || {
        let n = notifications.lock().unwrap().clone();
        names_in(&n, "firing")
            .contains(&"ErrorsHigh".to_owned())
            .then_some(n)
    })
    .expect("ErrorsHigh reached the webhook through Alertmanager");
    let alert = firing
        .iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .find(|a| a["labels"]["alertname"] == "ErrorsHigh")
        .unwrap();
    // Alertmanager grouped it by alertname, as its route says.
    let notification = firing
        .iter()
        .find(|n| n["groupLabels"]["alertname"] == "ErrorsHigh")
        .expect("a notification for the ErrorsHigh group");
    assert_eq!(notification["receiver"], "hook");
    assert_eq!(notification["commonLabels"]["severity"], "page");
    assert_eq!(alert["labels"]["cluster"], "test");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["job"], "api");
    assert_eq!(alert["annotations"]["summary"], "api has 10 errors");
    assert_eq!(alert["annotations"]["ratio"], "10");
    assert!(alert["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{base}/ui/metrics?query=")));
    let silenced = wait_for(Duration::from_secs(30), || {
        let alerts: Value = client()
            .get(format!("{am}/api/v2/alerts"))
            .send()
            .ok()?
            .json()
            .ok()?;
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "Silenced")
            .filter(|a| a["status"]["state"] == "suppressed")
            .cloned()
    });
    assert!(
        silenced.is_some(),
        "the silenced alert reached Alertmanager, suppressed"
    );

    // Oxeye's own views, in Prometheus' shapes.
    let rules_api = get_json(&format!("{base}/api/v1/rules"));
    assert_eq!(rules_api["status"], "success");
    let group = &rules_api["data"]["groups"][0];
    assert_eq!(group["name"], "test");
    assert_eq!(group["interval"], 1.0);
    let kinds: Vec<&str> = group["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["recording", "alerting", "alerting"]);
    let high = &group["rules"][1];
    assert_eq!(high["state"], "firing");
    assert_eq!(high["health"], "ok");
    assert_eq!(high["alerts"][0]["value"], "1e+01");
    let active_at = high["alerts"][0]["activeAt"].as_str().unwrap().to_owned();
    let only_records = get_json(&format!("{base}/api/v1/rules?type=record"));
    assert_eq!(
        only_records["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let alerts = get_json(&format!("{base}/api/v1/alerts"));
    assert_eq!(alerts["data"]["alerts"].as_array().unwrap().len(), 2);
    let managers = get_json(&format!("{base}/api/v1/alertmanagers"));
    assert_eq!(
        managers["data"]["activeAlertmanagers"][0]["url"],
        format!("{am}/api/v2/alerts")
    );
    // The recorded series and ALERTS are queryable.
    let recorded = get_json(&format!("{base}/api/v1/query?query=job:errors:sum"));
    assert_eq!(recorded["data"]["result"][0]["value"][1], "10");
    let alerts_series = get_json(&format!(
        "{base}/api/v1/query?query=ALERTS%7Balertname%3D%22ErrorsHigh%22%7D"
    ));
    assert_eq!(
        alerts_series["data"]["result"][0]["metric"]["alertstate"],
        "firing"
    );
    // The Alertmanager that is down counts errors; delivery to the other went on.
    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oxeye_notifications_errors_total{")
                && l.contains(&format!("127.0.0.1:{down}"))),
        "{metrics}"
    );

    // A broken file on SIGHUP and on /-/reload: the old rules keep running.
    std::fs::write(
        &rules,
        "groups:\n  - name: test\n    rules:\n      - alert: Broken\n        expr: 'sum(('\n",
    )
    .unwrap();
    let pid = server.guard.0.id();
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(500));
    server.assert_running("SIGHUP");
    let reload = client().post(format!("{base}/-/reload")).send().unwrap();
    assert_eq!(reload.status().as_u16(), 500);
    let text = reload.text().unwrap();
    assert!(
        text.contains("group \"test\", rule 1, \"Broken\": could not parse expression"),
        "{text}"
    );
    let still = get_json(&format!("{base}/api/v1/rules"));
    assert_eq!(
        still["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Fixed, with one more rule: the unchanged alert keeps its state.
    write_rules(&rules, "      - record: extra\n        expr: vector(2)\n");
    let reload = client().post(format!("{base}/-/reload")).send().unwrap();
    assert_eq!(reload.status().as_u16(), 200, "{:?}", reload.text());
    let after = get_json(&format!("{base}/api/v1/rules"));
    let rules_after = after["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rules_after.len(), 4);
    let kept = wait_for(Duration::from_secs(10), || {
        let r = get_json(&format!("{base}/api/v1/rules?rule_name[]=ErrorsHigh"));
        let alert = r["data"]["groups"][0]["rules"][0]["alerts"][0].clone();
        (alert["state"] == "firing").then_some(alert)
    })
    .expect("ErrorsHigh still firing after the reload");
    assert_eq!(kept["activeAt"], active_at);

    // The condition clears: resolved in Oxeye, in Alertmanager, at the webhook.
    push(&base, 0.0);
    let resolved = wait_for(Duration::from_secs(60), || {
        let n = notifications.lock().unwrap().clone();
        names_in(&n, "resolved")
            .contains(&"ErrorsHigh".to_owned())
            .then_some(())
    });
    assert!(resolved.is_some(), "ErrorsHigh resolved at the webhook");
    assert!(!names_in(&notifications.lock().unwrap(), "firing").contains(&"Silenced".to_owned()));
    let alerts = get_json(&format!("{base}/api/v1/alerts"));
    let names: Vec<&str> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Silenced"]);
    server.assert_running("the whole test");
}

/// `oxeye check-rules` accepts what `promtool check rules` accepts and
/// rejects what it rejects, naming the file, group and rule.
#[test]
fn check_rules_agrees_with_promtool() {
    let promtool = require_program("promtool");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("good.yml", "groups:\n  - name: g\n    interval: 30s\n    rules:\n      - record: a:b\n        expr: sum(up)\n      - alert: X\n        expr: up == 0\n        for: 5m\n        keep_firing_for: 1m\n        labels: {severity: page}\n        annotations:\n          summary: '{{ $labels.instance }} {{ $value | humanize }} {{ if gt $value 1.0 }}big{{ end }}'\n", true),
        ("empty.yml", "", true),
        ("log_rule.yml", LOG_RULES, true),
        ("unknown_key.yml", "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up\n        severity: page\n", false),
        ("bad_expr.yml", "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: 'sum(('\n", false),
        ("both.yml", "groups:\n  - name: g\n    rules:\n      - alert: X\n        record: y\n        expr: up\n", false),
        ("dup_group.yml", "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n", false),
        ("bad_record.yml", "groups:\n  - name: g\n    rules:\n      - record: 'a b'\n        expr: up\n", false),
        ("record_for.yml", "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        for: 1m\n", false),
        ("bad_template.yml", "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up\n        annotations:\n          a: '{{ $labels.x '\n", false),
        ("bad_label.yml", "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up\n        labels:\n          '0bad': x\n", false),
        ("no_expr.yml", "groups:\n  - name: g\n    rules:\n      - alert: X\n", false),
    ];
    for (name, text, ok) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let theirs = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&path)
            .output()
            .unwrap();
        let ours = Command::new(env!("CARGO_BIN_EXE_oxeye"))
            .arg("check-rules")
            .arg(&path)
            .output()
            .unwrap();
        let our_text = String::from_utf8_lossy(&ours.stdout);
        assert_eq!(
            theirs.status.success(),
            ok,
            "promtool on {name}: {theirs:?}"
        );
        assert_eq!(ours.status.success(), ok, "oxeye on {name}: {our_text}");
        if !ok {
            assert!(our_text.contains(&path.display().to_string()), "{our_text}");
        }
    }
}

const LOG_RULES: &str = r#"groups:
  - name: logs
    interval: 1s
    rules:
      - alert: ErrorLogs
        expr: oxeye_log_records{query="level:error", window="5m", by="service.name"} > 2
        labels:
          severity: ticket
        annotations:
          summary: "{{ $labels.service_name }} logged {{ $value }} errors in 5m"
      - record: service:error_logs:count5m
        expr: oxeye_log_records{query="level:error AND NOT message:ignored", window="5m"}
"#;

/// A rule over logs: records matching a Lucene query in a window, per
/// service, as a PromQL selector (the file stays valid for promtool).
#[test]
fn log_rules_count_matching_records_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("logs.yml");
    std::fs::write(&rules, LOG_RULES).unwrap();
    let files = format!("[\"{}\"]", rules.display());
    let server = TestServer::start_with(&[
        ("OXEYE_RULES__FILES", files.as_str()),
        ("OXEYE_LOGS__COMMIT_INTERVAL", "200ms"),
    ]);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut bulk = String::new();
    for (service, level, message) in [
        ("checkout", "error", "payment failed"),
        ("checkout", "error", "payment failed again"),
        ("checkout", "error", "card declined"),
        ("checkout", "info", "ok"),
        ("cart", "error", "timeout"),
        ("cart", "error", "ignored retry"),
    ] {
        bulk.push_str("{\"index\":{\"_index\":\"app-logs\"}}\n");
        bulk.push_str(
            &json!({"@timestamp": now, "level": level, "service": {"name": service}, "message": message})
                .to_string(),
        );
        bulk.push('\n');
    }
    let response = client()
        .post(format!(
            "http://{}/_bulk?refresh=true",
            server.elasticsearch
        ))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    assert!(response.status().is_success());
    let body: Value = response.json().unwrap();
    assert_eq!(body["errors"], false, "{body}");
    let alert = wait_for(Duration::from_secs(30), || {
        let alerts = get_json(&server.url("/api/v1/alerts"));
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "ErrorLogs")
            .cloned()
    })
    .expect("ErrorLogs fired");
    assert_eq!(alert["labels"]["service_name"], "checkout");
    assert_eq!(alert["state"], "firing");
    assert_eq!(
        alert["annotations"]["summary"],
        "checkout logged 3 errors in 5m"
    );
    let alerts = get_json(&server.url("/api/v1/alerts"));
    assert_eq!(
        alerts["data"]["alerts"].as_array().unwrap().len(),
        1,
        "cart has 2 errors: below the threshold"
    );
    let recorded = wait_for(Duration::from_secs(10), || {
        let r = get_json(&server.url("/api/v1/query?query=service:error_logs:count5m"));
        r["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(recorded.as_deref(), Some("4"));
    // A log selector with a bad parameter is the rule's error, not a crash.
    std::fs::write(
        &rules,
        "groups:\n  - name: logs\n    interval: 1s\n    rules:\n      - record: bad\n        expr: oxeye_log_records{window=\"soon\"}\n",
    )
    .unwrap();
    let reload = client().post(server.url("/-/reload")).send().unwrap();
    assert_eq!(reload.status().as_u16(), 200);
    let error = wait_for(Duration::from_secs(10), || {
        let r = get_json(&server.url("/api/v1/rules"));
        r["data"]["groups"][0]["rules"][0]["lastError"]
            .as_str()
            .map(str::to_owned)
    })
    .expect("the rule reports its error");
    assert!(
        error.contains("window \"soon\" is not a duration"),
        "{error}"
    );
}

/// Rules over traces: the span-metrics series of spans sent by the
/// OpenTelemetry Python SDK (an error count and a latency quantile per
/// service and operation).
#[test]
fn trace_rules_alert_on_span_errors_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("traces.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: traces
    interval: 1s
    rules:
      - alert: SpanErrors
        expr: sum by (service_name, span_name) (traces_span_metrics_calls_total{status_code="STATUS_CODE_ERROR"}) > 0
        annotations:
          summary: "{{ $labels.span_name }} of {{ $labels.service_name }} failed {{ $value }} times"
      - alert: SlowQueries
        expr: histogram_quantile(0.99, sum by (le, service_name, span_name) (traces_span_metrics_duration_milliseconds_bucket{span_name="SELECT orders"})) > 10
"#,
    )
    .unwrap();
    let files = format!("[\"{}\"]", rules.display());
    let server = TestServer::start_with(&[
        ("OXEYE_RULES__FILES", files.as_str()),
        ("OXEYE_TRACES__SPAN_METRICS_INTERVAL", "200ms"),
    ]);
    run_python(
        "otlp_traces.py",
        &[
            ("TRANSPORT", "grpc".into()),
            ("OTLP_ENDPOINT", format!("http://{}", server.otlp_grpc)),
        ],
    );
    let alerts = wait_for(Duration::from_secs(30), || {
        let body = get_json(&server.url("/api/v1/alerts"));
        let alerts = body["data"]["alerts"].as_array()?.clone();
        (alerts.len() >= 2).then_some(alerts)
    })
    .expect("both trace alerts fired");
    let errors = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "SpanErrors")
        .unwrap();
    assert_eq!(errors["labels"]["service_name"], "api");
    assert_eq!(errors["labels"]["span_name"], "GET cart:42");
    assert_eq!(
        errors["annotations"]["summary"],
        "GET cart:42 of api failed 1 times"
    );
    let slow = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "SlowQueries")
        .unwrap();
    assert_eq!(slow["labels"]["span_name"], "SELECT orders");
    assert!(slow["value"].as_str().unwrap().parse::<f64>().unwrap() > 10.0);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
}
