//! OTLP logs from the OpenTelemetry Python SDK (gRPC and HTTP), found again
//! through the Elasticsearch API and Oxeye's own log API; the live tail.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{client, run_python, TestServer};
use serde_json::{json, Value};

fn export(server: &TestServer, transport: &str, service: &str) -> String {
    let endpoint = match transport {
        "grpc" => format!("http://{}", server.otlp_grpc),
        _ => format!("http://{}", server.otlp_http),
    };
    let out = run_python(
        "otlp_logs.py",
        &[
            ("TRANSPORT", transport.to_owned()),
            ("OTLP_ENDPOINT", endpoint),
            ("SERVICE", service.to_owned()),
        ],
    );
    let line: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    line["trace_id"].as_str().unwrap().to_owned()
}

fn search(server: &TestServer, body: Value) -> Value {
    client()
        .post(format!("http://{}/otel-logs/_search", server.elasticsearch))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn python_sdk_logs_over_grpc_and_http() {
    let server = TestServer::start();
    let grpc_trace = export(&server, "grpc", "checkout");
    let http_trace = export(&server, "http", "billing");
    client()
        .post(format!("http://{}/_refresh", server.elasticsearch))
        .send()
        .unwrap();
    let all = search(
        &server,
        json!({"size": 10, "sort": [{"@timestamp": "asc"}]}),
    );
    assert_eq!(all["hits"]["total"]["value"], 6, "{all}");

    // The error record: severity, body, the exception, the span context.
    let errors = search(
        &server,
        json!({"query": {"bool": {"filter": [
            {"term": {"severity_text": "ERROR"}},
            {"term": {"resource.attributes.service.name": "checkout"}}]}}}),
    );
    assert_eq!(errors["hits"]["total"]["value"], 1, "{errors}");
    let record = &errors["hits"]["hits"][0]["_source"];
    assert_eq!(record["body"], "payment failed");
    assert_eq!(record["severity_number"], 17);
    assert_eq!(record["trace_id"], grpc_trace.as_str());
    assert_eq!(record["span_id"].as_str().unwrap().len(), 16);
    assert_eq!(record["scope"]["name"], "oxeye.test");
    assert!(record["attributes"]["exception.stacktrace"]
        .as_str()
        .unwrap()
        .contains("card number rejected by issuer"));
    assert_eq!(record["attributes"]["exception.type"], "ValueError");

    // Attributes are searchable, body words too, and the trace id finds the record.
    let info = search(
        &server,
        json!({"query": {"term": {"attributes.user.id": "u-42"}}}),
    );
    assert_eq!(info["hits"]["total"]["value"], 2);
    let words = search(&server, json!({"query": {"match": {"body": "large"}}}));
    assert_eq!(words["hits"]["total"]["value"], 2);
    let by_trace = search(
        &server,
        json!({"query": {"term": {"trace_id": http_trace}}}),
    );
    assert_eq!(by_trace["hits"]["total"]["value"], 1);
    let stack = search(
        &server,
        json!({"query": {"match_phrase": {"attributes.exception.stacktrace": "rejected by issuer"}}}),
    );
    assert_eq!(stack["hits"]["total"]["value"], 2);

    // Oxeye's own API with Lucene syntax.
    let found: Value = client()
        .get(server.url(
            "/api/v1/logs/search?query=severity_text:ERROR%20AND%20resource.attributes.service.name:billing",
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["data"]["total"], 1, "{found}");
    assert_eq!(
        found["data"]["records"][0]["source"]["trace_id"],
        http_trace.as_str()
    );

    // JSON encoding over HTTP, with a malformed trace id rejected in partial_success.
    let body = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-client"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": (chrono::Utc::now().timestamp_nanos_opt().unwrap()).to_string(),
             "severityText": "INFO", "body": {"stringValue": "from json"}},
            {"traceId": "abcd", "body": {"stringValue": "bad ids"}}]}]}]});
    let response: Value = client()
        .post(format!("http://{}/v1/logs", server.otlp_http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        response["partialSuccess"]["rejectedLogRecords"], 1,
        "{response}"
    );
}

#[test]
fn live_tail_streams_matching_records() {
    let server = TestServer::start();
    let response = client()
        .get(server.url("/api/v1/logs/tail?query=level:error"))
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let reader = std::thread::spawn(move || {
        let mut events = Vec::new();
        let mut lines = BufReader::new(response).lines();
        // Bounded: stop after two records (or when the stream ends).
        while events.len() < 2 {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(data) = line.strip_prefix("data: ") {
                if let Ok(record) = serde_json::from_str::<Value>(data) {
                    events.push(record);
                }
            }
        }
        events
    });
    std::thread::sleep(Duration::from_millis(300));
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut body = String::new();
    for (level, message) in [
        ("info", "fine"),
        ("error", "first failure"),
        ("error", "second failure"),
    ] {
        body.push_str("{\"index\":{\"_index\":\"tail\"}}\n");
        body.push_str(&json!({"@timestamp": now, "level": level, "message": message}).to_string());
        body.push('\n');
    }
    let response = client()
        .post(format!("http://{}/_bulk", server.elasticsearch))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = reader.join().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["source"]["message"], "first failure");
    assert_eq!(events[1]["source"]["message"], "second failure");
    assert_eq!(events[0]["index"], "tail");
}
