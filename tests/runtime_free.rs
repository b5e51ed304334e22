//! The async runtime stays free while large request bodies are
//! decompressed and parsed: health checks keep answering quickly even with
//! a single runtime worker. In a test binary of its own, so that no sibling
//! test loads the machine while latencies are measured.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn health_checks_answer_while_a_32_mib_gzip_bulk_is_processed() {
    use std::io::Write;
    let root = tempfile::tempdir().unwrap();
    // One runtime worker: any blocking work on it would hold every request.
    let mut server = spawn_binary_with(&root.path().join("data"), &[("TOKIO_WORKER_THREADS", "1")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // ~31 MiB of NDJSON (under limits.max_body_size once decompressed).
    let mut ndjson = Vec::with_capacity(32 << 20);
    let mut docs = 0;
    while ndjson.len() < 31 << 20 && docs < 190_000 {
        ndjson.extend_from_slice(b"{\"index\":{\"_index\":\"big\"}}\n");
        let doc = json!({
            "@timestamp": now - docs,
            "message": format!("GET /api/items/{docs} 200 in {} ms from 10.0.{}.{}", docs % 997, docs % 250, docs % 13),
            "service": {"name": format!("svc-{}", docs % 7)},
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        });
        ndjson.extend_from_slice(doc.to_string().as_bytes());
        ndjson.push(b'\n');
        docs += 1;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&ndjson).unwrap();
    let body = gz.finish().unwrap();
    let es = server.es.clone();
    let bulk = std::thread::spawn(move || {
        let response = client()
            .post(format!("{es}/_bulk"))
            .header("Content-Type", "application/x-ndjson")
            .header("Content-Encoding", "gzip")
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let result: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{}", &text[..text.len().min(500)]);
        (
            status,
            result["errors"].clone(),
            result["items"].as_array().map(Vec::len),
        )
    });
    // Health checks while the bulk is in flight (bounded: 30 s at most).
    let http = client();
    let mut latencies = Vec::new();
    let started = std::time::Instant::now();
    while !bulk.is_finished() && started.elapsed() < Duration::from_secs(30) {
        let asked = std::time::Instant::now();
        let ok = http
            .get(format!("{}/-/healthy", server.base))
            .send()
            .is_ok_and(|r| r.status().is_success());
        assert!(ok, "health check failed during the bulk");
        latencies.push(asked.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, errors, items) = bulk.join().unwrap();
    // Then a 30 MB search body (parsing it is seconds of work in a debug
    // build), with health checks again.
    let fields: Vec<String> = (0..1_500_000).map(|i| format!("field_{i}")).collect();
    let search = serde_json::to_vec(&json!({"size": 0, "fields": fields})).unwrap();
    let es = server.es.clone();
    let searching = std::thread::spawn(move || {
        client()
            .post(format!("{es}/big/_search"))
            .header("Content-Type", "application/json")
            .body(search)
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    let started = std::time::Instant::now();
    while !searching.is_finished() && started.elapsed() < Duration::from_secs(30) {
        let asked = std::time::Instant::now();
        let ok = http
            .get(format!("{}/-/healthy", server.base))
            .send()
            .is_ok_and(|r| r.status().is_success());
        assert!(ok, "health check failed during the search");
        latencies.push(asked.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(searching.join().unwrap(), 200);
    assert_eq!(status, 200);
    assert_eq!(errors, false);
    assert_eq!(items, Some(docs as usize));
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    eprintln!(
        "{} health checks during a {docs}-document gzip bulk and a 30 MB search: median {median:?}, worst {worst:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 5,
        "the bulk finished before it could be observed"
    );
    // With one runtime worker, work on the runtime holds every check for
    // its whole duration (parsing that search body on it: >300 ms in a debug
    // build); off the runtime, checks wait only for the OS scheduler (~10-20
    // ms on a busy 2-core machine). The target is 50 ms; the bound
    // leaves room for noise and still tells the two apart.
    assert!(
        worst < Duration::from_millis(150),
        "a health check took {worst:?} while the bulk was processed"
    );
    server.check_alive("the 32 MiB bulk");
}
