//! Elasticsearch semantics that real clients rely on, sent as those clients
//! send them (Grafana's Elasticsearch data source, Kibana, the official
//! clients): exact range bounds on epoch-millisecond dates,
//! `rest_total_hits_as_int`, and numeric parameters given as strings.

mod common;

use common::*;
use serde_json::{json, Value};

fn search(server: &TestServer, query: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!(
            "http://{}/logs/_search{query}",
            server.elasticsearch
        ))
        .json(&body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

fn total(result: &Value) -> i64 {
    result["hits"]["total"]["value"]
        .as_i64()
        .unwrap_or_else(|| panic!("no total in {result}"))
}

#[test]
fn range_bounds_rest_total_hits_and_string_parameters() {
    let server = TestServer::start();
    // Three records one millisecond apart; large epoch values (a product in
    // f64 nanoseconds cannot represent them exactly).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base: i64 = now - 60_000;
    let mut bulk = String::new();
    for (i, latency) in [10.0, 20.0, 60.0].iter().enumerate() {
        bulk.push_str("{\"index\":{\"_index\":\"logs\"}}\n");
        bulk.push_str(
            &json!({"@timestamp": base + i as i64, "latency": latency, "message": "req"})
                .to_string(),
        );
        bulk.push('\n');
    }
    let response = client()
        .post(format!(
            "http://{}/_bulk?refresh=true",
            server.elasticsearch
        ))
        .header("Content-Type", "application/x-ndjson")
        .body(bulk)
        .send()
        .unwrap();
    let acked: Value = response.json().unwrap();
    assert_eq!(acked["errors"], false, "{acked}");

    // Each bound, as epoch_millis numbers, epoch_millis strings and ISO
    // strings: identical answers.
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let cases = [
        ("gt", base, 2),
        ("gte", base, 3),
        ("lt", base + 2, 2),
        ("lte", base + 2, 3),
        ("gt", base + 1, 1),
        ("lt", base + 1, 1),
    ];
    for (op, ms, expected) in cases {
        for (bound, format) in [
            (json!(ms), Some("epoch_millis")),
            (json!(ms.to_string()), Some("epoch_millis")),
            (json!(ms), None),
            (json!(iso(ms)), None),
            (json!(iso(ms)), Some("strict_date_optional_time")),
        ] {
            let mut range = json!({ op: bound });
            if let Some(format) = format {
                range["format"] = json!(format);
            }
            let (status, result) = search(
                &server,
                "",
                json!({"query": {"bool": {"filter": [{"range": {"@timestamp": range}}]}}}),
            );
            assert_eq!(status, 200, "{result}");
            assert_eq!(
                total(&result),
                expected,
                "@timestamp {op} {bound} ({format:?})"
            );
        }
    }

    // rest_total_hits_as_int: an exact integer total; a bounded count is an
    // error; tracking off gives -1.
    let (status, result) = search(&server, "?rest_total_hits_as_int=true", json!({}));
    assert_eq!(status, 200);
    assert_eq!(result["hits"]["total"], 3, "{result}");
    let (status, result) = search(
        &server,
        "?rest_total_hits_as_int=true",
        json!({"track_total_hits": 2}),
    );
    assert_eq!(status, 400, "{result}");
    assert_eq!(result["error"]["type"], "illegal_argument_exception");
    assert!(result["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("rest_total_hits_as_int"));
    let (status, result) = search(
        &server,
        "?rest_total_hits_as_int=true",
        json!({"track_total_hits": false}),
    );
    assert_eq!(status, 200);
    assert_eq!(result["hits"]["total"], -1, "{result}");

    // Grafana: percents and sigma as strings.
    let (status, result) = search(
        &server,
        "",
        json!({"size": 0, "aggs": {
            "p": {"percentiles": {"field": "latency", "percents": ["50", "99"]}},
            "x": {"extended_stats": {"field": "latency", "sigma": "1"}},
        }}),
    );
    assert_eq!(status, 200, "{result}");
    let values = &result["aggregations"]["p"]["values"];
    let p50 = values["50.0"]
        .as_f64()
        .unwrap_or_else(|| panic!("{values}"));
    assert!((15.0..=25.0).contains(&p50), "p50 {p50}");
    let stats = &result["aggregations"]["x"];
    assert_eq!(stats["count"], 3, "{stats}");
    assert_eq!(stats["avg"], 30.0, "{stats}");
    let std_dev = stats["std_deviation"].as_f64().unwrap();
    let upper = stats["std_deviation_bounds"]["upper"].as_f64().unwrap();
    assert!(
        (upper - (30.0 + std_dev)).abs() < 1e-9,
        "sigma 1: upper bound {upper}, std_dev {std_dev}"
    );
    let (status, result) = search(
        &server,
        "",
        json!({"size": 0, "aggs": {"p": {"percentiles": {"field": "latency", "percents": ["fifty"]}}}}),
    );
    assert_eq!(status, 400, "{result}");
    assert!(result["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("percents"));
}
