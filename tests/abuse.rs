//! Hostile requests against the real binary, run under a memory limit
//! (`ulimit -d`): each gets a 4xx answer naming the problem, and afterwards
//! the server still answers, still holds the data it had acknowledged, and
//! its resident memory stays bounded.

mod common;

use common::*;
use serde_json::{json, Value};

/// A request expected to be refused with a 4xx; returns its body.
fn expect_4xx(
    server: &mut BinaryServer,
    what: &str,
    request: reqwest::blocking::RequestBuilder,
) -> String {
    let response = request
        .send()
        .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    let status = response.status().as_u16();
    let body = response.text().unwrap_or_default();
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}: {}",
        &body[..body.len().min(500)]
    );
    server.check_alive(what);
    body
}

/// The status a server answers to a request's headers alone, announcing a
/// body of `length` bytes it never gets.
fn answer_to_headers(base: &str, method: &str, path: &str, length: usize) -> u16 {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer before the body: {e}"));
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {line:?}"))
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn hostile_requests_get_errors_and_the_server_keeps_its_data() {
    let root = tempfile::tempdir().unwrap();
    let mut server = spawn_binary(&root.path().join("data"));
    let http = client();

    // Data acknowledged before the abuse: a metric and a log record.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = remote_write_body(&[(
        vec![("__name__", "abuse_canary"), ("job", "t")],
        vec![(now - 1000, 42.0)],
    )]);
    assert_eq!(post_remote_write(&server.base, body).0, 204);
    let bulk = format!(
        "{{\"index\":{{\"_index\":\"canary\"}}}}\n{}\n",
        json!({"message": "still here", "@timestamp": now})
    );
    let response = http
        .post(format!("{}/_bulk?refresh=true", server.es))
        .header("Content-Type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    let acked: Value = response.json().unwrap();
    assert_eq!(acked["errors"], false, "{acked}");

    let (base, es) = (server.base.clone(), server.es.clone());

    // --- Lucene and the query DSL ---------------------------------------
    let deep_lucene = nested(200_000, "a");
    let body = expect_4xx(
        &mut server,
        "query_string with 200,000 nested parentheses",
        http.post(format!("{}/_search", es))
            .json(&json!({"query": {"query_string": {"query": deep_lucene}}})),
    );
    assert!(
        body.contains("logs.max_query_depth"),
        "{}",
        &body[..body.len().min(400)]
    );
    let shallow = nested(5_000, "a");
    for path in ["_search", "_count", "canary/_search"] {
        expect_4xx(
            &mut server,
            &format!("?q= with nested parentheses on {path}"),
            http.get(format!("{}/{path}", es))
                .query(&[("q", shallow.as_str())]),
        );
    }
    expect_4xx(
        &mut server,
        "NOT chain on /_search",
        http.post(format!("{}/_search", es))
            .json(&json!({"query": {"query_string": {"query": "NOT ".repeat(100_000) + "a"}}})),
    );
    expect_4xx(
        &mut server,
        "nested parentheses on /api/v1/logs/search",
        http.get(format!("{}/api/v1/logs/search", base))
            .query(&[("query", shallow.as_str())]),
    );
    // The dashboard shows the error on its page.
    let page = http
        .get(format!("{}/ui/logs", base))
        .query(&[("query", shallow.as_str())])
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("logs.max_query_depth"),
        "the logs page names the limit"
    );
    server.check_alive("nested parentheses on /ui/logs");
    // The live tail refuses before it starts streaming.
    expect_4xx(
        &mut server,
        "nested parentheses on the live tail",
        http.get(format!("{}/api/v1/logs/tail", base))
            .query(&[("query", shallow.as_str())]),
    );
    // A query DSL nested past the limit (but within JSON's own limit).
    let mut dsl = json!({"match_all": {}});
    for _ in 0..40 {
        dsl = json!({"bool": {"must": [dsl]}});
    }
    let body = expect_4xx(
        &mut server,
        "bool nested 40 deep",
        http.post(format!("{}/_search", es))
            .json(&json!({"query": dsl})),
    );
    assert!(body.contains("max_query_depth"), "{body}");

    // --- PromQL -----------------------------------------------------------
    let deep_promql = nested(100_000, "1");
    for path in [
        "/api/v1/query",
        "/api/v1/format_query",
        "/api/v1/parse_query",
        "/api/v1/query_exemplars",
    ] {
        let body = expect_4xx(
            &mut server,
            &format!("100,000 nested parentheses on {path}"),
            http.post(format!("{}{path}", base))
                .form(&[("query", deep_promql.as_str())]),
        );
        assert!(
            body.contains("query.max_expression_depth"),
            "{path}: {}",
            &body[..body.len().min(400)]
        );
    }
    for path in [
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/export",
        "/federate",
    ] {
        expect_4xx(
            &mut server,
            &format!("nested match[] on {path}"),
            http.post(format!("{}{path}", base))
                .form(&[("match[]", deep_promql.as_str())]),
        );
    }
    // The deepest expressions the limit admits (default 500) are parsed,
    // evaluated, printed and serialised without trouble.
    let deepest = [
        nested(490, "sum(abuse_canary) * 2"),
        vec!["1"; 498].join(" + "),
        format!("{}1", "-".repeat(498)),
        format!("{}abuse_canary{}", "abs(".repeat(490), ")".repeat(490)),
    ];
    for query in &deepest {
        for path in [
            "/api/v1/query",
            "/api/v1/format_query",
            "/api/v1/parse_query",
        ] {
            let response = http
                .post(format!("{}{path}", base))
                .form(&[("query", query.as_str())])
                .send()
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().unwrap();
            assert_eq!(
                status,
                200,
                "{path} {}: {}",
                &query[..40],
                &text[..text.len().min(300)]
            );
        }
        server.check_alive("the deepest admitted expression");
    }
    let sum: Value = http
        .post(format!("{}/api/v1/query", base))
        .form(&[("query", deepest[1].as_str())])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(sum["data"]["result"][1], "498", "{sum}");

    // Long operator chains are as deep as nested parentheses.
    let chain = vec!["1"; 100_000].join("+");
    expect_4xx(
        &mut server,
        "a chain of 100,000 additions",
        http.post(format!("{}/api/v1/query", base))
            .form(&[("query", chain.as_str())]),
    );
    let unary = "-".repeat(100_000) + "1";
    expect_4xx(
        &mut server,
        "100,000 unary minuses",
        http.post(format!("{}/api/v1/query", base))
            .form(&[("query", unary.as_str())]),
    );
    // Time arithmetic at the edges.
    let body = expect_4xx(
        &mut server,
        "query_range from -1e19 to 1e19 every second",
        http.get(format!("{}/api/v1/query_range", base)).query(&[
            ("query", "1"),
            ("start", "-1e19"),
            ("end", "1e19"),
            ("step", "1"),
        ]),
    );
    assert!(body.contains("11,000 points"), "{body}");
    expect_4xx(
        &mut server,
        "a subquery of 3 billion steps",
        http.get(format!("{}/api/v1/query", base))
            .query(&[("query", "max_over_time(vector(1)[100y:1ms])")]),
    );
    for (query, time) in [
        ("abuse_canary offset 100000000y", "1e19"),
        ("abuse_canary offset -100000000y", "-1e19"),
        ("rate(abuse_canary[100000000y])", "1e19"),
        ("abuse_canary @ 9e15", "1"),
    ] {
        let response = http
            .get(format!("{}/api/v1/query", base))
            .query(&[("query", query), ("time", time)])
            .send()
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            status == 200 || (400..500).contains(&status),
            "{query}: {status}"
        );
        server.check_alive(query);
    }

    // --- Dashboards ------------------------------------------------------
    let canary = json!({"uid": "canary", "title": "Canary", "panels": [{"type": "stat", "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}}]});
    let saved = http
        .put(format!("{base}/api/v1/dashboards/canary"))
        .json(&canary)
        .send()
        .unwrap();
    assert_eq!(saved.status(), 200);
    let deep_json = format!(
        "{{\"title\": \"t\", \"x\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let many_panels =
        json!({"title": "t", "panels": vec![json!({"type": "stat"}); 5_000]}).to_string();
    let huge_grid = r#"{"title": "t", "panels": [{"gridPos": {"x": 0, "y": 18446744073709551615, "w": 24, "h": 8}}]}"#;
    let huge_title = json!({"title": "x".repeat(2_000)}).to_string();
    for (what, body) in [
        ("a dashboard nested 100,000 arrays deep", deep_json),
        ("a dashboard of 5,000 panels", many_panels),
        ("a gridPos row at u64::MAX", huge_grid.to_owned()),
        ("a 2,000-character title", huge_title),
    ] {
        expect_4xx(
            &mut server,
            what,
            http.put(format!("{base}/api/v1/dashboards/canary"))
                .body(body),
        );
    }
    // A 6 MiB body is refused from its Content-Length, before it is read
    // (a client still sending it may see the connection closed, so the
    // answer is read after the headers alone).
    let status = answer_to_headers(&base, "PUT", "/api/v1/dashboards/canary", 6 << 20);
    assert_eq!(status, 413, "a 6 MiB dashboard");
    server.check_alive("a 6 MiB dashboard");
    for path in [
        "/api/v1/dashboards/canary/versions/18446744073709551615",
        "/api/v1/dashboards/canary/versions/-1",
        "/api/v1/dashboards/..%2F..%2Fetc",
        "/ui/d/..%2Fcanary",
    ] {
        expect_4xx(&mut server, path, http.get(format!("{base}{path}")));
    }
    let kept: Value = http
        .get(format!("{base}/api/v1/dashboards/canary"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(kept["meta"]["version"], 1, "{kept}");
    assert_eq!(kept["dashboard"]["title"], "Canary");

    // --- Everything acknowledged before is still there ------------------
    let result = get_json(&format!(
        "{}/api/v1/query?query=abuse_canary&time={}",
        base,
        now as f64 / 1000.0
    ));
    assert_eq!(result["data"]["result"][0]["value"][1], "42", "{result}");
    let found: Value = http
        .post(format!("{}/canary/_search", es))
        .json(&json!({"query": {"match": {"message": "still"}}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["hits"]["total"]["value"], 1, "{found}");
    server.check_alive("the final reads");
}

fn post_otlp_json(server: &BinaryServer, path: &str, body: &Value) -> (u16, String) {
    let response = client()
        .post(format!("{}{path}", server.base))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap_or_default())
}

/// Small OTLP bodies that would translate into huge series sets or
/// documents are refused before anything is built.
#[test]
fn otlp_amplification_is_refused_before_translation() {
    let root = tempfile::tempdir().unwrap();
    let mut server = spawn_binary(&root.path().join("data"));
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    let histogram = |bounds: usize, attr: usize| {
        json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": "amplified",
            "histogram": {"aggregationTemporality": 2, "dataPoints": [{
                "timeUnixNano": now_ns,
                "attributes": [{"key": "big", "value": {"stringValue": "x".repeat(attr)}}],
                "count": "1",
                "explicitBounds": vec![1.0; bounds],
                "bucketCounts": vec!["0"; bounds + 1],
            }]}
        }]}]}]})
    };
    let (status, body) = post_otlp_json(&server, "/v1/metrics", &histogram(200_000, 1));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("max_series_per_request"), "{body}");
    server.check_alive("a histogram point with 200,000 buckets");
    let (status, body) = post_otlp_json(&server, "/v1/metrics", &histogram(1_000, 300_000));
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_translated_size"), "{body}");
    server.check_alive("1,000 buckets × 300 KB of attributes");

    let logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "big", "value": {"stringValue": "y".repeat(1 << 20)}}]},
        "scopeLogs": [{"logRecords": vec![json!({"timeUnixNano": now_ns, "body": {"stringValue": "hi"}}); 500]}],
    }]});
    let (status, body) = post_otlp_json(&server, "/v1/logs", &logs);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_translated_size"), "{body}");
    server.check_alive("500 log records sharing a 1 MiB resource");

    // Extreme exponential-histogram scale and offsets are arithmetic, not a crash.
    let exp = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "extreme",
        "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [{
            "timeUnixNano": now_ns, "count": "2", "scale": i32::MIN, "zeroCount": "0",
            "positive": {"offset": i32::MAX, "bucketCounts": ["1", "1"]},
            "negative": {"offset": i32::MIN, "bucketCounts": ["0"]},
        }]}
    }]}]}]});
    let (status, body) = post_otlp_json(&server, "/v1/metrics", &exp);
    assert!(status == 200 || status == 400, "{status} {body}");
    server.check_alive("an exponential histogram at i32 edges");

    // An exemplar over Prometheus' 128-character label limit is dropped;
    // its sample is kept.
    let gauge = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "with_exemplar",
        "gauge": {"dataPoints": [{
            "timeUnixNano": now_ns, "asDouble": 3.0,
            "exemplars": [{"timeUnixNano": now_ns, "asDouble": 3.0,
                "filteredAttributes": [{"key": "user", "value": {"stringValue": "z".repeat(200)}}]}],
        }]}
    }]}]}]});
    let (status, body) = post_otlp_json(&server, "/v1/metrics", &gauge);
    assert_eq!(status, 200, "{body}");
    let value = get_json(&format!("{}/api/v1/query?query=with_exemplar", server.base));
    assert_eq!(value["data"]["result"][0]["value"][1], "3", "{value}");
    let exemplars = get_json(&format!(
        "{}/api/v1/query_exemplars?query=with_exemplar&start=0&end=9e9",
        server.base
    ));
    assert_eq!(exemplars["data"], json!([]), "{exemplars}");
}

/// Documents shaped to hurt the mapping: field explosions are refused as
/// they are found, control characters in field names and oversized ids are
/// per-item errors, and good items in the same bulk are kept.
#[test]
fn hostile_documents_fail_alone() {
    let root = tempfile::tempdir().unwrap();
    let mut server = spawn_binary(&root.path().join("data"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 200,000 new fields in one document (logs.max_fields_per_index = 1000).
    let mut wide = serde_json::Map::new();
    wide.insert("@timestamp".into(), json!(now));
    for i in 0..200_000 {
        wide.insert(format!("f{i}"), json!(i));
    }
    let mut bulk = String::new();
    for (action, doc) in [
        (json!({"index": {"_index": "shapes"}}), Value::Object(wide)),
        (
            json!({"index": {"_index": "shapes", "_id": "x".repeat(600)}}),
            json!({"@timestamp": now, "m": 1}),
        ),
        (
            json!({"index": {"_index": "shapes"}}),
            json!({"@timestamp": now, "bad\u{0}name": 1}),
        ),
        (
            json!({"index": {"_index": "shapes"}}),
            json!({"@timestamp": now, "nested": {"a\u{1}b": 1}}),
        ),
        (
            json!({"index": {"_index": "shapes", "_id": "good"}}),
            json!({"@timestamp": now, "message": "kept"}),
        ),
    ] {
        bulk.push_str(&action.to_string());
        bulk.push('\n');
        bulk.push_str(&doc.to_string());
        bulk.push('\n');
    }
    let response = client()
        .post(format!("{}/_bulk?refresh=true", server.es))
        .header("Content-Type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let result: Value = response.json().unwrap();
    let items = result["items"].as_array().unwrap();
    let status = |i: usize| items[i]["index"]["status"].as_u64().unwrap();
    let reason = |i: usize| {
        items[i]["index"]["error"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(status(0), 400);
    assert!(
        reason(0).contains("logs.max_fields_per_index"),
        "{}",
        reason(0)
    );
    assert_eq!(status(1), 400);
    assert!(
        reason(1).contains("no longer than 512 bytes"),
        "{}",
        reason(1)
    );
    assert_eq!(status(2), 400);
    assert_eq!(status(3), 400);
    assert!(reason(3).contains("control character"), "{}", reason(3));
    assert_eq!(status(4), 201, "{}", items[4]);
    server.check_alive("a bulk of hostile documents");
    let response = client()
        .put(format!("{}/shapes/_doc/{}", server.es, "y".repeat(600)))
        .json(&json!({"@timestamp": now}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let mapping: Value = client()
        .get(format!("{}/shapes/_mapping", server.es))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fields = mapping["shapes"]["mappings"]["properties"]
        .as_object()
        .unwrap();
    assert!(
        fields.len() < 10,
        "failed documents added fields: {}",
        fields.len()
    );
    let found: Value = client()
        .get(format!("{}/shapes/_doc/good", server.es))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["_source"]["message"], "kept", "{found}");
}

/// Items stamped outside `[now − retention, now + creation_grace_period]`
/// are rejected one by one with a reason; nothing is created for them.
#[test]
fn items_outside_the_time_window_are_rejected_alone() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut server = spawn_binary(&data);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000i64;
    // Metrics: one good sample, one a day ahead, one past retention (15d),
    // one at the end of time.
    let body = remote_write_body(&[
        (
            vec![("__name__", "window"), ("at", "now")],
            vec![(now - 1000, 1.0)],
        ),
        (
            vec![("__name__", "window"), ("at", "ahead")],
            vec![(now + day, 2.0)],
        ),
        (
            vec![("__name__", "window"), ("at", "old")],
            vec![(now - 30 * day, 3.0)],
        ),
        (
            vec![("__name__", "window"), ("at", "end")],
            vec![(i64::MAX, 4.0)],
        ),
    ]);
    let (status, text) = post_remote_write(&server.base, body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("too far in the future"), "{text}");
    assert!(text.contains("older than storage.retention"), "{text}");
    let stored = export(&server.base, "window");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0["at"], "now");
    server.check_alive("samples outside the window");

    // Logs: 1,000 records on 1,000 different future days make no partitions.
    let mut bulk = String::new();
    for i in 0..1000 {
        bulk.push_str("{\"index\":{\"_index\":\"future\"}}\n");
        bulk.push_str(&json!({"@timestamp": now + (i + 1) * day, "m": i}).to_string());
        bulk.push('\n');
    }
    bulk.push_str("{\"index\":{\"_index\":\"future\"}}\n");
    bulk.push_str(&json!({"@timestamp": now, "m": "present"}).to_string());
    bulk.push('\n');
    let result: Value = client()
        .post(format!("{}/_bulk?refresh=true", server.es))
        .header("Content-Type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let items = result["items"].as_array().unwrap();
    let rejected = items.iter().filter(|i| i["index"]["status"] == 400).count();
    assert_eq!(rejected, 1000);
    assert!(items[0]["index"]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("too far in the future"));
    assert_eq!(items[1000]["index"]["status"], 201);
    let partitions = std::fs::read_dir(data.join("logs/partitions"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        partitions <= 2,
        "{partitions} partitions for one day of data"
    );
    server.check_alive("records on 1,000 future days");

    // Spans: one far in the future is rejected with a reason.
    let otlp = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "timely"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
             "name": "now", "kind": 2,
             "startTimeUnixNano": ((now - 100) * 1_000_000).to_string(),
             "endTimeUnixNano": (now * 1_000_000).to_string()},
            {"traceId": "0af7651916cd43dd8448eb211c80319d", "spanId": "b7ad6b7169203332",
             "name": "later", "kind": 2,
             "startTimeUnixNano": "16000000000000000000",
             "endTimeUnixNano": "16000000000000000001"}]}]}]});
    let (status, body) = post_otlp_json(&server, "/v1/traces", &otlp);
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], 1, "{body}");
    assert!(body["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("too far in the future"));
    server.check_alive("a span in the year 2477");
}

/// What clients can make the server keep is bounded: indices, stored
/// templates and policies, live-tail subscribers, exports.
#[test]
fn growth_is_bounded() {
    let root = tempfile::tempdir().unwrap();
    let mut server = spawn_binary_with(
        &root.path().join("data"),
        &[
            ("OXEYE_LOGS__MAX_INDICES", "3"),
            ("OXEYE_LOGS__MAX_TAIL_SUBSCRIBERS", "2"),
            ("OXEYE_QUERY__MAX_SAMPLES", "10"),
        ],
    );
    let http = client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Indices: three are created, the fourth and fifth are refused per item.
    let mut bulk = String::new();
    for i in 0..5 {
        bulk.push_str(&format!("{{\"index\":{{\"_index\":\"idx-{i}\"}}}}\n"));
        bulk.push_str(&json!({"@timestamp": now, "i": i}).to_string());
        bulk.push('\n');
    }
    let result: Value = http
        .post(format!("{}/_bulk", server.es))
        .header("Content-Type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let statuses: Vec<u64> = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 201, 201, 400, 400], "{result}");
    let response = http.put(format!("{}/idx-9", server.es)).send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().unwrap().contains("logs.max_indices"));

    // Templates and policies: bounded in size (and count).
    let big = json!({"index_patterns": ["x-*"], "template": {"settings": {"pad": "p".repeat(300 << 10)}}});
    let response = http
        .put(format!("{}/_index_template/huge", server.es))
        .json(&big)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    for i in 0..1000 {
        let response = http
            .put(format!("{}/_ilm/policy/p{i}", server.es))
            .json(&json!({"policy": {}}))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "policy {i}");
    }
    let response = http
        .put(format!("{}/_ilm/policy/one-too-many", server.es))
        .json(&json!({"policy": {}}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Live tails: two open, the third is refused while they are.
    let tails: Vec<_> = (0..2)
        .map(|_| {
            let response = http
                .get(format!("{}/api/v1/logs/tail", server.base))
                .send()
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response
        })
        .collect();
    let refused = http
        .get(format!("{}/api/v1/logs/tail", server.base))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused
        .text()
        .unwrap()
        .contains("logs.max_tail_subscribers"));
    drop(tails);

    // Exports: held to query.max_samples.
    let samples: Vec<(i64, f64)> = (0..20)
        .map(|i| (now - 60_000 + i * 1000, i as f64))
        .collect();
    let body = remote_write_body(&[(vec![("__name__", "exported")], samples)]);
    assert_eq!(post_remote_write(&server.base, body).0, 204);
    let response = http
        .get(format!("{}/api/v1/export", server.base))
        .query(&[("match[]", "exported")])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().unwrap().contains("query.max_samples"));
    server.check_alive("growth limits");
}
