//! Crash safety with the real binary: SIGKILL while a client writes loses no
//! acknowledged sample, and a corrupt WAL tail is repaired on start-up.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

struct Process {
    guard: ChildGuard,
    base: String,
    /// Base URL of the Elasticsearch-compatible listener.
    es: String,
    /// Base URL of the OTLP/HTTP listener.
    otlp: String,
    log: std::path::PathBuf,
}

fn spawn_oxeye(data: &Path) -> Process {
    let port = free_port();
    let es_port = free_port();
    let otlp_port = free_port();
    let log = data.with_extension(format!("{port}.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_oxeye"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .args(["--otlp-grpc", "127.0.0.1:0"])
        .args(["--otlp-http", &format!("127.0.0.1:{otlp_port}")])
        .args(["--elasticsearch", &format!("127.0.0.1:{es_port}")])
        .args(["--postgres", "127.0.0.1:0"])
        .env("OXEYE_LOG__LEVEL", "info")
        .env("OXEYE_STORAGE__RETENTION", FIXED_TIME_RETENTION)
        // Commit often, so a kill lands between commits (committed + WAL-only records).
        .env("OXEYE_LOGS__COMMIT_INTERVAL", "300ms")
        // Cut span blocks often too (maintenance runs with the span metrics).
        .env("OXEYE_TRACES__MAX_HEAD_SPANS", "3000")
        .env("OXEYE_TRACES__SPAN_METRICS_INTERVAL", "200ms")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut process = Process {
        guard: ChildGuard(child),
        base,
        es: format!("http://127.0.0.1:{es_port}"),
        otlp: format!("http://127.0.0.1:{otlp_port}"),
        log,
    };
    let ready = wait_for(Duration::from_secs(60), || {
        if let Ok(Some(status)) = process.guard.0.try_wait() {
            panic!(
                "oxeye exited during start-up ({status}):\n{}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
        }
        client()
            .get(format!("{}/-/ready", process.base))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    assert!(ready.is_some(), "oxeye not ready");
    process
}

fn sigkill(process: &mut Process) {
    process.guard.0.kill().unwrap(); // SIGKILL on Unix
    process.guard.0.wait().unwrap();
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_sample() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = spawn_oxeye(&data);
    let acked: Arc<Mutex<Vec<(u32, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u32)
        .map(|writer| {
            let base = server.base.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = client();
                // Bounded: at most 2000 requests per writer.
                for round in 0..2000i64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let t = 1_700_000_000_000 + round * 1000;
                    let names: Vec<String> = (0..50).map(|i| format!("s{writer}_{i}")).collect();
                    let series: Vec<TestSeries<'_>> = names
                        .iter()
                        .map(|n| {
                            (
                                vec![("__name__", "load"), ("series", n.as_str())],
                                vec![(t, round as f64)],
                            )
                        })
                        .collect();
                    let result = client
                        .post(format!("{base}/api/v1/write"))
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .body(remote_write_body(&series))
                        .send();
                    match result {
                        Ok(response) if response.status().as_u16() == 204 => {
                            acked.lock().unwrap().push((writer, t));
                        }
                        _ => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let the writers get going, then pull the plug.
    wait_for(Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .expect("writers made progress");
    sigkill(&mut server);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    let server = spawn_oxeye(&data);
    let stored = export(&server.base, "load");
    let mut have = std::collections::HashSet::new();
    for (metric, samples) in &stored {
        let name = metric["series"].as_str().unwrap().to_owned();
        for (t, _) in samples {
            have.insert((name.clone(), *t));
        }
    }
    for (writer, t) in &acked {
        for i in 0..50 {
            let key = (format!("s{writer}_{i}"), *t);
            assert!(
                have.contains(&key),
                "acknowledged sample {key:?} lost after SIGKILL"
            );
        }
    }
    eprintln!(
        "{} acknowledged requests ({} samples) all present after SIGKILL; {} samples stored",
        acked.len(),
        acked.len() * 50,
        have.len()
    );
}

#[test]
fn sigkill_during_bulk_loses_no_acknowledged_log_record() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = spawn_oxeye(&data);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let writers: Vec<_> = (0..2u32)
        .map(|writer| {
            let es = server.es.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            let now = now.clone();
            std::thread::spawn(move || {
                let client = client();
                // Bounded: at most 2000 requests per writer.
                for round in 0..2000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let keys: Vec<String> = (0..50).map(|i| format!("w{writer}-{round}-{i}")).collect();
                    let mut body = String::new();
                    for key in &keys {
                        body.push_str("{\"index\":{\"_index\":\"crash\"}}\n");
                        body.push_str(&format!(
                            "{{\"@timestamp\":\"{now}\",\"key\":\"{key}\",\"message\":\"record {key}\"}}\n"
                        ));
                    }
                    let result = client
                        .post(format!("{es}/_bulk"))
                        .header("Content-Type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .and_then(|r| r.json::<serde_json::Value>());
                    match result {
                        Ok(response) if response["errors"] == false => {
                            acked.lock().unwrap().extend(keys);
                        }
                        _ => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 40_000).then_some(())
    })
    .expect("writers made progress");
    sigkill(&mut server);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = spawn_oxeye(&data);
    let http = client();
    let mut stored = Vec::new();
    let mut after: Option<serde_json::Value> = None;
    loop {
        let mut body =
            serde_json::json!({"size": 10000, "sort": [{"key": "asc"}], "_source": ["key"]});
        if let Some(after) = &after {
            body["search_after"] = after.clone();
        }
        let page: serde_json::Value = http
            .post(format!("{}/crash/_search", server.es))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let hits = page["hits"]["hits"].as_array().unwrap().clone();
        if hits.is_empty() {
            break;
        }
        after = Some(hits.last().unwrap()["sort"].clone());
        stored.extend(
            hits.iter()
                .map(|h| h["_source"]["key"].as_str().unwrap().to_owned()),
        );
    }
    let unique: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "replay duplicated records");
    for key in &acked {
        assert!(
            unique.contains(key),
            "acknowledged record {key} lost after SIGKILL"
        );
    }
    eprintln!(
        "{} acknowledged log records all present after SIGKILL; {} stored, no duplicates",
        acked.len(),
        stored.len()
    );
}

#[test]
fn sigkill_during_span_export_loses_no_acknowledged_span() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = spawn_oxeye(&data);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u32)
        .map(|writer| {
            let otlp = server.otlp.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = client();
                // Bounded: at most 2000 requests per writer, one 20-span trace each.
                for round in 0..2000u32 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let trace_id = format!("{writer:08x}{round:08x}{:016x}", 0xfeed_u64);
                    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
                    let spans: Vec<serde_json::Value> = (0..20u32)
                        .map(|i| {
                            let mut span = serde_json::json!({
                                "traceId": trace_id,
                                "spanId": format!("{:08x}{:08x}", round + 1, i + 1),
                                "name": format!("op-{i}"),
                                "kind": 2,
                                "startTimeUnixNano": (now - 1_000_000).to_string(),
                                "endTimeUnixNano": now.to_string(),
                            });
                            if i > 0 {
                                span["parentSpanId"] = serde_json::json!(format!("{:08x}{:08x}", round + 1, 1));
                            }
                            span
                        })
                        .collect();
                    let body = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
                        {"key": "service.name", "value": {"stringValue": format!("svc-{writer}")}}]},
                        "scopeSpans": [{"spans": spans}]}]});
                    let result = client
                        .post(format!("{otlp}/v1/traces"))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send();
                    match result {
                        Ok(response) if response.status().is_success() => {
                            acked.lock().unwrap().push(trace_id);
                        }
                        _ => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 600).then_some(())
    })
    .expect("writers made progress");
    sigkill(&mut server);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let server = spawn_oxeye(&data);
    let http = client();
    for trace_id in &acked {
        let trace: serde_json::Value = http
            .get(format!("{}/api/traces/{trace_id}", server.base))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let spans = trace["data"][0]["spans"].as_array().map_or(0, Vec::len);
        assert_eq!(
            spans, 20,
            "acknowledged trace {trace_id} incomplete after SIGKILL: {trace}"
        );
    }
    eprintln!(
        "{} acknowledged traces ({} spans) all complete after SIGKILL",
        acked.len(),
        acked.len() * 20
    );
}

#[test]
fn corrupt_wal_tail_is_repaired_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = spawn_oxeye(&data);
    for round in 0..5i64 {
        let body = remote_write_body(&[(
            vec![("__name__", "kept")],
            vec![(1000 + round, round as f64)],
        )]);
        assert_eq!(post_remote_write(&server.base, body).0, 204);
    }
    sigkill(&mut server);
    // Tear the last record and append garbage, as a crash mid-write would.
    let wal = data.join("metrics/wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segments.sort();
    let last = segments.last().expect("a non-empty wal segment");
    let len = std::fs::metadata(last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    file.set_len(len - 3).unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    file.write_all(&[0xde, 0xad, 0xbe, 0xef, 0x01]).unwrap();
    drop(file);

    let server = spawn_oxeye(&data);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("wal repaired"), "no repair warning in:\n{log}");
    let stored = export(&server.base, "kept");
    let samples = &stored[0].1;
    // The torn (last) record is gone, everything before it is intact.
    assert_eq!(samples.len(), 4, "{samples:?}");
    assert_eq!(samples[3], (1003, 3.0));
    // And the server takes new writes.
    let body = remote_write_body(&[(vec![("__name__", "kept")], vec![(2000, 9.0)])]);
    assert_eq!(post_remote_write(&server.base, body).0, 204);
}
