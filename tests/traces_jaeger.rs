//! Traces from the OpenTelemetry Python SDK (gRPC and HTTP) read back
//! through the Jaeger v1 and v3 APIs; search filters; dependencies; span
//! metrics in PromQL with trace-id exemplars; malformed bodies.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{client, run_python, wait_for, TestServer};
use serde_json::{json, Value};

fn send(server: &TestServer, transport: &str, prefix: &str) -> Value {
    let endpoint = match transport {
        "grpc" => format!("http://{}", server.otlp_grpc),
        _ => format!("http://{}", server.otlp_http),
    };
    let out = run_python(
        "otlp_traces.py",
        &[
            ("TRANSPORT", transport.to_owned()),
            ("OTLP_ENDPOINT", endpoint),
            ("PREFIX", prefix.to_owned()),
        ],
    );
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let response = client().get(server.url(path)).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// Check the trace has exactly the expected tree (span name@service → parent).
fn check_tree(trace: &Value, expected: &Value, prefix: &str) {
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 7, "{trace}");
    let service_of = |span: &Value| {
        let pid = span["processID"].as_str().unwrap();
        trace["processes"][pid]["serviceName"]
            .as_str()
            .unwrap()
            .trim_start_matches(prefix)
            .to_owned()
    };
    let label = |span: &Value| {
        let name = span["operationName"].as_str().unwrap().to_owned();
        if name == "POST /api/checkout" {
            format!("{name}@{}", service_of(span))
        } else {
            name
        }
    };
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["spanID"].as_str().unwrap(), s))
        .collect();
    for span in spans {
        let parent = span["references"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["refType"] == "CHILD_OF")
            .map(|r| label(by_id[r["spanID"].as_str().unwrap()]));
        let want = expected[label(span)].as_str().map(str::to_owned);
        assert_eq!(parent, want, "parent of {}", label(span));
    }
}

#[test]
fn python_sdk_traces_through_jaeger_apis() {
    let server = TestServer::start_with(&[("OXEYE_TRACES__SPAN_METRICS_INTERVAL", "200ms")]);
    let grpc = send(&server, "grpc", "");
    let http = send(&server, "http", "h-");
    let trace_id = grpc["trace_id"].as_str().unwrap();

    // Catalogue.
    let (_, services) = get(&server, "/api/services");
    let services: Vec<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in ["frontend", "api", "jobs", "h-frontend", "h-api", "h-jobs"] {
        assert!(services.contains(&s), "{services:?}");
    }
    let (_, ops) = get(&server, "/api/services/api/operations");
    let mut ops: Vec<&str> = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        vec![
            "GET cart:42",
            "INSERT orders",
            "POST /api/checkout",
            "SELECT orders",
            "process order"
        ]
    );
    let (_, client_ops) = get(&server, "/api/operations?service=api&spanKind=client");
    assert_eq!(
        client_ops["data"].as_array().unwrap().len(),
        3,
        "{client_ops}"
    );
    assert!(client_ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["spanKind"] == "client"));
    let (status, err) = get(&server, "/api/operations");
    assert_eq!(status, 400);
    assert_eq!(err["errors"][0]["code"], 400);

    // The trace, exactly as sent, over both transports.
    let (status, trace) = get(&server, &format!("/api/traces/{trace_id}"));
    assert_eq!(status, 200);
    let trace = &trace["data"][0];
    check_tree(trace, &grpc["tree"], "");
    let (_, http_trace) = get(
        &server,
        &format!("/api/traces/{}", http["trace_id"].as_str().unwrap()),
    );
    check_tree(&http_trace["data"][0], &http["tree"], "h-");
    let spans = trace["spans"].as_array().unwrap();
    let cache = spans
        .iter()
        .find(|s| s["operationName"] == "GET cart:42")
        .unwrap();
    assert_eq!(tag(cache, "error"), Some(&json!(true)));
    assert_eq!(tag(cache, "otel.status_code"), Some(&json!("ERROR")));
    assert_eq!(tag(cache, "span.kind"), Some(&json!("client")));
    assert_eq!(tag(cache, "db.system"), Some(&json!("redis")));
    let event = &cache["logs"][0]["fields"];
    assert!(event
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["key"] == "event" && f["value"] == "exception"));
    assert!(event
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["key"] == "exception.message" && f["value"] == "cache unreachable"));
    let root = spans
        .iter()
        .find(|s| s["operationName"] == "GET /checkout")
        .unwrap();
    assert_eq!(tag(root, "http.status_code"), Some(&json!(200)));
    let pid = root["processID"].as_str().unwrap();
    assert!(trace["processes"][pid]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "host.name"));
    let select = spans
        .iter()
        .find(|s| s["operationName"] == "SELECT orders")
        .unwrap();
    assert!(select["duration"].as_i64().unwrap() >= 20_000, "{select}");
    // The link.
    let (_, job) = get(
        &server,
        &format!("/api/traces/{}", grpc["job_trace_id"].as_str().unwrap()),
    );
    let refs = &job["data"][0]["spans"][0]["references"];
    assert_eq!(refs[0]["refType"], "FOLLOWS_FROM");
    assert_eq!(refs[0]["traceID"], trace_id);
    assert_eq!(refs[0]["spanID"], root["spanID"]);
    // Unknown and malformed ids.
    let (status, missing) = get(&server, "/api/traces/0123456789abcdef0123456789abcdef");
    assert_eq!(status, 404);
    assert_eq!(missing["errors"][0]["msg"], "trace not found");
    assert_eq!(get(&server, "/api/traces/not-hex").0, 400);

    // Search: each filter narrows.
    let found = |query: &str| -> Vec<String> {
        let (status, body) = get(&server, &format!("/api/traces?{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(found("service=api"), vec![trace_id]);
    assert_eq!(
        found("service=api&operation=GET%20cart%3A42"),
        vec![trace_id]
    );
    assert!(found("service=api&operation=nope").is_empty());
    assert_eq!(
        found("service=api&tags=%7B%22db.system%22%3A%22redis%22%7D"),
        vec![trace_id]
    );
    assert_eq!(found("service=api&tag=error:true"), vec![trace_id]);
    assert!(found("service=api&tags=%7B%22db.system%22%3A%22mysql%22%7D").is_empty());
    assert_eq!(
        found("service=api&minDuration=15ms&operation=SELECT%20orders"),
        vec![trace_id]
    );
    assert!(found("service=api&minDuration=1h").is_empty());
    assert!(found("service=api&maxDuration=1us").is_empty());
    let now_us = chrono::Utc::now().timestamp_micros();
    assert!(found(&format!(
        "service=api&start={}&end={}",
        now_us - 7_200_000_000,
        now_us - 3_600_000_000
    ))
    .is_empty());
    assert_eq!(
        found(&format!(
            "service=api&start={}&end={}",
            now_us - 600_000_000,
            now_us + 1_000_000
        )),
        vec![trace_id]
    );
    assert_eq!(found(&format!("traceID={trace_id}")), vec![trace_id]);
    assert_eq!(found("service=frontend&limit=1").len(), 1);
    assert_eq!(get(&server, "/api/traces").0, 400);
    assert_eq!(
        get(&server, "/api/traces?service=api&minDuration=fast").0,
        400
    );
    assert_eq!(get(&server, "/api/traces?service=api&tags=notjson").0, 400);

    // Dependencies: service edges from parent/child spans.
    let (_, deps) = get(
        &server,
        &format!(
            "/api/dependencies?endTs={}&lookback=3600000",
            now_us / 1000 + 1000
        ),
    );
    let edges: Vec<(String, String, u64)> = deps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["parent"].as_str().unwrap().into(),
                d["child"].as_str().unwrap().into(),
                d["callCount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        vec![
            ("frontend".into(), "api".into(), 1),
            ("h-frontend".into(), "h-api".into(), 1)
        ]
    );

    // API v3.
    let (_, v3) = get(&server, "/api/v3/services");
    assert!(v3["services"].as_array().unwrap().contains(&json!("api")));
    let (_, v3) = get(&server, "/api/v3/operations?service=api&spanKind=server");
    assert_eq!(
        v3["operations"],
        json!([{"name": "POST /api/checkout", "spanKind": "server"}])
    );
    let (status, v3) = get(&server, &format!("/api/v3/traces/{trace_id}"));
    assert_eq!(status, 200);
    let resource_spans = v3["result"]["resourceSpans"].as_array().unwrap();
    let count: usize = resource_spans
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .map(|s| s["spans"].as_array().unwrap().len())
        .sum();
    assert_eq!(count, 7);
    let first = &resource_spans[0]["scopeSpans"][0]["spans"][0];
    assert_eq!(first["traceId"], trace_id);
    assert!(first["kind"].is_number());
    let start = chrono::Utc::now() - chrono::Duration::minutes(10);
    let end = chrono::Utc::now() + chrono::Duration::minutes(1);
    let (status, v3) = get(
        &server,
        &format!(
            "/api/v3/traces?query.service_name=api&query.start_time_min={}&query.start_time_max={}&query.attributes=%7B%22db.system%22%3A%22redis%22%7D",
            start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).replace('+', "%2B"),
            end.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).replace('+', "%2B"),
        ),
    );
    assert_eq!(status, 200, "{v3}");
    assert_eq!(
        v3["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"],
        trace_id
    );
    let (status, summaries) = get(
        &server,
        &format!(
            "/api/v3/trace-summaries?query.service_name=api&query.start_time_min={}&query.start_time_max={}",
            start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).replace('+', "%2B"),
            end.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).replace('+', "%2B"),
        ),
    );
    assert_eq!(status, 200, "{summaries}");
    let summary = &summaries["summaries"][0];
    assert_eq!(summary["traceId"], trace_id);
    assert_eq!(summary["rootServiceName"], "frontend");
    assert_eq!(summary["rootOperationName"], "GET /checkout");
    assert_eq!(summary["spanCount"], 7);
    assert_eq!(summary["errorSpanCount"], 1);
    assert_eq!(
        summary["services"],
        json!([{"name": "api", "spanCount": 5, "errorSpanCount": 1},
               {"name": "frontend", "spanCount": 2, "errorSpanCount": 0}])
    );
    let (status, v3) = get(&server, "/api/v3/traces/0123456789abcdef0123456789abcdef");
    assert_eq!(status, 404);
    assert_eq!(v3["error"]["httpCode"], 404);

    // Span metrics in PromQL, with exemplars pointing at the trace.
    let query = |q: &str| -> Value {
        let (_, body) = get(&server, &format!("/api/v1/query?query={}", urlencode(q)));
        body
    };
    let calls = wait_for(Duration::from_secs(20), || {
        let body = query("sum(traces_span_metrics_calls_total{service_name=\"api\"})");
        let v = body["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()?;
        (v == 5.0).then_some(v)
    });
    assert_eq!(calls, Some(5.0));
    let errors = query("sum by (span_name) (traces_span_metrics_calls_total{status_code=\"STATUS_CODE_ERROR\",service_name=\"api\"})");
    assert_eq!(
        errors["data"]["result"][0]["metric"]["span_name"],
        "GET cart:42"
    );
    assert_eq!(errors["data"]["result"][0]["value"][1], "1");
    let count = query(
        "sum(traces_span_metrics_duration_milliseconds_count{service_name=~\"api|frontend\"})",
    );
    assert_eq!(count["data"]["result"][0]["value"][1], "7");
    let slow = query("sum(traces_span_metrics_duration_milliseconds_bucket{span_name=\"SELECT orders\",le=\"10\"})");
    assert_eq!(
        slow["data"]["result"][0]["value"][1], "0",
        "SELECT took ≥ 20ms"
    );
    let (_, exemplars) = get(
        &server,
        &format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            urlencode(
                "traces_span_metrics_calls_total{span_name=\"GET cart:42\",service_name=\"api\"}"
            ),
            chrono::Utc::now().timestamp() - 600,
            chrono::Utc::now().timestamp() + 60
        ),
    );
    let ex = &exemplars["data"][0]["exemplars"][0]["labels"];
    assert_eq!(ex["trace_id"], trace_id, "{exemplars}");
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn malformed_bodies_get_400_and_disturb_nothing() {
    let server = TestServer::start();
    let http = client();
    let good = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
             "name": "ok", "kind": 2,
             "startTimeUnixNano": (chrono::Utc::now().timestamp_nanos_opt().unwrap() - 1_000_000).to_string(),
             "endTimeUnixNano": chrono::Utc::now().timestamp_nanos_opt().unwrap().to_string()},
            {"traceId": "abcd", "spanId": "EEE19B7EC3C1B174", "name": "bad ids"}]}]}]});
    let response: Value = http
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "application/json")
        .body(good.to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(response["partialSuccess"]["rejectedSpans"], 1, "{response}");
    for (content_type, body) in [
        ("application/x-protobuf", b"\xff\xff\xff garbage".to_vec()),
        ("application/json", b"{\"resourceSpans\": 7}".to_vec()),
    ] {
        let response = http
            .post(format!("http://{}/v1/traces", server.otlp_http))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 400, "{content_type}");
    }
    let response = http
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .unwrap();
    assert_eq!(response.status(), 415);
    // Over the body limit: 413 with a google.rpc.Status body in the request's encoding.
    let limited = TestServer::start_with(&[("OXEYE_LIMITS__MAX_BODY_SIZE", "2KiB")]);
    let response = http
        .post(format!("http://{}/v1/traces", limited.otlp_http))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"resourceSpans\": [], \"pad\": \"{}\"}}",
            "x".repeat(4096)
        ))
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    let status: Value = response.json().unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_body_size"),
        "{status}"
    );
    let (status, trace) = get(&server, "/api/traces/5b8efff798038103d269b633813fc60c");
    assert_eq!(status, 200);
    assert_eq!(trace["data"][0]["spans"].as_array().unwrap().len(), 1);
    assert_eq!(get(&server, "/-/healthy").0, 200);
}

/// Grafana's Jaeger data source searches `/api/v3/traces` without a depth
/// (pkg/tsdb/jaeger/grpc_client.go) and trims to its own limit afterwards;
/// Jaeger answers up to its `defaultSearchDepth`, 100 traces, not 20.
#[test]
fn v3_search_without_depth_returns_jaegers_default_of_100() {
    let server = TestServer::start();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let spans: Vec<Value> = (0..130)
        .map(|i| {
            json!({"traceId": format!("{:032x}", 0xabc000 + i), "spanId": format!("{:016x}", 0x100 + i),
                "name": "GET /", "kind": 2,
                "startTimeUnixNano": (now - 60_000_000_000 + i * 1_000_000).to_string(),
                "endTimeUnixNano": (now - 60_000_000_000 + i * 1_000_000 + 500_000).to_string()})
        })
        .collect();
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "grafana-svc"}}]},
        "scopeSpans": [{"spans": spans}]}]});
    let response = client()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let start = chrono::Utc::now() - chrono::Duration::minutes(10);
    let end = chrono::Utc::now() + chrono::Duration::minutes(1);
    // As Grafana builds it: encoded parameters, then the times unencoded.
    let search = |extra: &str| {
        let (status, v3) = get(
            &server,
            &format!(
                "/api/v3/traces?query.service_name=grafana-svc{extra}&query.start_time_min={}&query.start_time_max={}",
                start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                end.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            ),
        );
        assert_eq!(status, 200, "{v3}");
        let mut ids: Vec<String> = v3["result"]["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .flat_map(|s| s["spans"].as_array().unwrap())
            .map(|s| s["traceId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    assert_eq!(search(""), 100);
    assert_eq!(search("&query.search_depth=7"), 7);
    assert_eq!(search("&query.searchDepth=120"), 120);
    assert_eq!(search("&query.searchDepth=0"), 100);
    let (status, _) = get(
        &server,
        "/api/v3/traces?query.service_name=grafana-svc&query.search_depth=many",
    );
    assert_eq!(status, 400);
}
